"""Reading a TOML file with errors that name the file and the problem (one place for every config)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib


def read_toml(path: str | Path, error: type[Exception], what: str) -> dict[str, Any]:
    """The table in ``path``; ``error("<path>: <what> not found")`` if it is missing,
    ``error("<path>: not valid TOML: ...")`` if it does not parse."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{path}: not valid TOML: nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except IsADirectoryError:
        raise error(f"{path}: {what} is a folder, not a file") from None
