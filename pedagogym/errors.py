"""The one base class of pedagogym's user errors (bad config, curriculum, log, bundle, request...).

The CLI prints a ``PedagogymError`` as one line and exits 2; any other exception keeps its
traceback, because it is a bug. It derives from ``ValueError`` so callers that caught the
older ``ValueError`` subclasses keep working. The deploy runtime (``pedagogym.deploy``) imports
nothing from pedagogym, so its errors (``BundleError``, ``EventError``...) keep ``ValueError`` as base."""
from __future__ import annotations


class PedagogymError(ValueError):
    """A user error: the message names what is wrong and where (file, line, key)."""
