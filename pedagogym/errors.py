"""The one base class of pedagogym's user errors (bad config, curriculum, log, bundle, request...).

The CLI prints a ``PedagogymError`` as one line and exits 2; any other exception keeps its
traceback, because it is a bug. It derives from ``ValueError`` so callers that caught the
older ``ValueError`` subclasses keep working. The deploy runtime (``pedagogym.deploy``) imports
nothing from pedagogym, so its errors (``BundleError``, ``EventError``...) keep ``ValueError`` as base."""
from __future__ import annotations

import sys


class PedagogymError(ValueError):
    """A user error: the message names what is wrong and where (file, line, key)."""


class UsageError(PedagogymError):
    """Command-line flags that do not go together or have a bad value."""


def is_user_error(exc: BaseException) -> bool:
    """What the CLI prints as one line (exit 2): a :class:`PedagogymError`, a ``ValueError`` of
    the deploy runtime (``BundleError``, ``EventError``, ``ConstraintError``..., which cannot
    derive from this module's base) and a file that cannot be read or written (``OSError``).
    Anything else is a bug and keeps its traceback."""
    if isinstance(exc, (PedagogymError, OSError)):
        return True
    return isinstance(exc, ValueError) and type(exc).__module__.startswith("pedagogym.deploy.")


def exit_on_user_error(exc: BaseException, prog: str) -> int:
    """In a CLI's ``except Exception``: print a user error as one line and return exit code 2;
    re-raise anything else (a bug keeps its traceback)."""
    if not is_user_error(exc):
        raise exc
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return 2
