"""Neutral helpers shared by every layer (experiments, agents, stress, fitting, warning, export):
atomic file writes (an interrupted run never leaves a half file), version stamps for manifests,
seed lists, and spreadsheet-safe CSV cells. Imports nothing from pedagogym at module level."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it over ``path``. The file
    gets the permissions a plain write would give it (0666 minus the umask), not mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str]:
    import jax
    import jaxlib
    import numpy

    from pedagogym._version import __version__

    return {"pedagogym": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": numpy.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": str(jax.devices()[0])}


def parse_seeds(value: Any) -> tuple[int, ...] | None:
    """A config's ``seeds`` (an integer or a list of them) as a tuple, or None unless they are
    distinct non-negative integers (the caller raises its own error, naming its file)."""
    seeds = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        return None
    return tuple(seeds)


_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (it begins with ``=``, ``+``, ``-``,
    ``@``, tab or carriage return: OWASP's CSV-injection rule) gets a leading ``'``; numbers and
    every other value pass unchanged, so numeric columns (negative numbers included) stay numeric."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_safe_frame(df: Any) -> Any:
    """A pandas DataFrame with :func:`csv_safe` applied to every text cell (object, string and
    categorical columns); numeric columns, and frames with nothing to escape, come back as
    they are (the same object), so their CSV is byte-identical."""
    out = df
    for col in df.columns:
        s = df[col]
        if s.dtype.kind in "biufcmM":
            continue
        risky = s.map(lambda v: isinstance(v, str) and v.startswith(_FORMULA_PREFIXES)).astype(bool)
        if risky.any():
            if out is df:
                out = df.copy()
            out[col] = s.astype(object).map(csv_safe)
    return out


# ---- names and paths -----------------------------------------------------------------------------
SAFE_NAME_RULE = "letters, digits, '_', '-', '.' (not '.' or '..', at most 128 characters)"


def is_safe_name(value: Any) -> bool:
    """True if ``value`` can name a folder under a results root: ASCII letters, digits, ``_``,
    ``-``, ``.``; not ``.`` or ``..``; no separators; 1..128 characters."""
    import re

    return (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", value) is not None
            and value not in (".", ".."))


def confined(root: Path | str, path: Path | str, what: str = "output path") -> Path:
    """``path`` (relative paths are taken under ``root``), checked to resolve inside ``root``
    (symlinks followed): a :class:`~pedagogym.errors.PedagogymError` naming both otherwise."""
    from pedagogym.errors import PedagogymError

    root_r = Path(root).resolve()
    p = Path(path)
    full = (p if p.is_absolute() else Path(root) / p).resolve()
    if full != root_r and root_r not in full.parents:
        raise PedagogymError(f"{what} {str(path)!r} resolves to {full}, outside {root_r}")
    if full == root_r:
        raise PedagogymError(f"{what} {str(path)!r} is {root_r} itself, not a folder inside it")
    return full


# ---- output-folder lock ------------------------------------------------------------------------
LOCK_NAME = ".pedagogym.lock"


class DirLock:
    """An exclusive lock on an output folder while a run writes it (``with DirLock(out): ...``).

    ``<out>/.pedagogym.lock`` is held with ``fcntl.flock``: the kernel releases it when the
    holder exits or is killed, so a lock left by a dead process never blocks a rerun (the file
    stays; only the flock counts). Where ``fcntl`` is missing (Windows), the file is created with
    ``O_EXCL`` and holds the owner's pid; a file whose pid no longer runs is taken over. A
    second run into the same folder gets :class:`~pedagogym.errors.PedagogymError` at once."""

    def __init__(self, folder: Path | str, what: str = "run"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def _busy(self, pid: str) -> Exception:
        from pedagogym.errors import PedagogymError

        who = f" (pid {pid.strip()})" if pid.strip().isdigit() else ""
        return PedagogymError(f"{self.folder}: another {self.what} is writing this folder{who}; wait for it to "
                              f"finish or choose another output folder")

    def __enter__(self) -> "DirLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            self._enter_excl()
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                pid = os.pread(fd, 32, 0).decode(errors="replace")
            finally:
                os.close(fd)
            raise self._busy(pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def _enter_excl(self) -> None:  # pragma: no cover - Windows
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    pid = self.path.read_text()
                except OSError:
                    pid = ""
                if pid.strip().isdigit() and _pid_alive(int(pid)):
                    raise self._busy(pid) from None
                self.path.unlink(missing_ok=True)  # stale: its owner is gone
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return
        raise self._busy("")

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
        else:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None


def _pid_alive(pid: int) -> bool:  # pragma: no cover - Windows path
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
