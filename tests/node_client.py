"""Running the Node client's tests (clients/node, ``node --test``) from pytest: shared by the
export, constraint and explanation tests. Node.js >= 18 is required; ``npm ci`` runs once
(offline first) when clients/node/node_modules is missing."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "clients" / "node"


def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("Node.js (>= 18) is required by the Node client parity test and was not found on PATH; "
                    "install Node.js, then run `npm ci` in clients/node")
    return exe


def npm_ci() -> None:
    if (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("clients/node/node_modules is missing and npm was not found: run `npm ci` in clients/node")
    for extra in (["--offline"], []):
        res = subprocess.run([npm, "ci", "--no-audit", "--no-fund", *extra], cwd=NODE_DIR, capture_output=True,
                             text=True, timeout=600)
        if res.returncode == 0:
            return
    pytest.fail(f"`npm ci` in clients/node failed; install the client's dependencies by hand:\n{res.stderr[-2000:]}")


def n_tests(files: list[str]) -> int:
    """The number of top-level ``test(...)`` calls in the given test files."""
    return sum(len(re.findall(r"^test\(", (NODE_DIR / f).read_text(), re.M)) for f in files)


def node_test(files: list[str] | None = None, fixture: Path | None = None) -> str:
    """``node --test`` on ``files`` (default: every test/*.test.js); every test must pass (none skipped)."""
    files = files or sorted(str(p.relative_to(NODE_DIR)) for p in (NODE_DIR / "test").glob("*.test.js"))
    exe = node()
    npm_ci()
    env = {**os.environ, **({"PEDAGOGYM_PARITY_FIXTURE": str(fixture)} if fixture else {})}
    env.pop("NODE_OPTIONS", None)
    res = subprocess.run([exe, "--test", *files], cwd=NODE_DIR, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, f"node --test failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}"
    want = n_tests(files)
    assert want > 0 and "# fail 0" in res.stdout and f"# pass {want}\n" in res.stdout and "# skipped 0" in res.stdout, \
        res.stdout[-3000:]
    return res.stdout
