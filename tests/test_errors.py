"""One user-error base (issue 19, item 5): the CLI prints a PedagogymError (and the deploy runtime's
errors, and unreadable files) as one line with exit 2; any other exception keeps its traceback."""
from __future__ import annotations

import pytest

import pedagogym.cli as cli
from pedagogym.deploy.bundle import BundleError
from pedagogym.errors import PedagogymError
from pedagogym.registry import Registry, RegistryError


def _failing(exc: BaseException):
    def cmd(args):
        raise exc
    return cmd


@pytest.mark.parametrize("exc", [PedagogymError("bad.toml: key 'x': expected a number"),
                                 RegistryError("unknown policy 'nope'; known: random"),
                                 BundleError("bundle/: manifest.json is missing"),
                                 FileNotFoundError("no such file: 'x.toml'")])
def test_user_errors_are_one_line(monkeypatch, capsys, exc):
    monkeypatch.setattr(cli, "_cmd_list", _failing(exc))
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pedagogym list: error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("exc", [ValueError("a bug deep inside"), KeyError("missing"), TypeError("bad operand")])
def test_other_exceptions_keep_their_traceback(monkeypatch, exc):
    monkeypatch.setattr(cli, "_cmd_list", _failing(exc))
    with pytest.raises(type(exc)):
        cli.main(["list"])


def test_registry_error_is_a_user_error_and_a_key_error():
    reg = Registry("test_errors_kind")
    with pytest.raises(KeyError, match="unknown test_errors_kind 'x'"):
        reg.get("x")
    assert issubclass(RegistryError, PedagogymError)


def test_python_m_pedagogym_is_the_cli():
    """``python -m pedagogym`` runs the same command line, exit codes included."""
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "pedagogym", "list", "--kind", "policy"], capture_output=True, text=True)
    assert ok.returncode == 0 and "policy random" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "pedagogym", "run", "no-such-config.toml"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no-such-config.toml" in bad.stderr and "Traceback" not in bad.stderr
