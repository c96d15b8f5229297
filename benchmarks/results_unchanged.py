"""Do two commits give the same results? Runs an experiment config at a base commit and at the
working tree, each in its own process with its own empty JAX compilation cache, and compares
every table byte for byte (the check a refactor must pass: ``summary.csv`` byte-identical).

    python benchmarks/results_unchanged.py --base e538eaa [--config experiments/quickstart.toml]

The base commit is checked out with ``git worktree`` into a temporary folder and imported from
there (``PYTHONPATH``); the same config file (the working tree's) is run in both. Prints one
JSON object: per table its sha256 at both and whether they are identical, the wall time of
each run, and ``identical`` (every table the same). Exit code 0 if ``summary.csv`` is
identical, else 1.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("summary.csv", "episodes.csv", "matrix.csv", "subgroups.csv", "curves.csv", "time_to_mastery.csv",
          "summary.md")
RUN = "import sys; from pedagogym.cli import main; sys.exit(main())"  # works where __main__.py does not exist yet


def run(tree: Path, config: Path, out: Path, cache: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "PEDAGOGYM_JAX_CACHE": str(cache), "JAX_PLATFORMS": "cpu"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUN, "run", str(config), "--out", str(out)], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the commit to compare against (e.g. the one before a refactor)")
    ap.add_argument("--config", type=Path, default=ROOT / "experiments" / "quickstart.toml")
    args = ap.parse_args()
    config = args.config.resolve()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="pedagogym-unchanged-") as tmp:
        tmp = Path(tmp)
        base_tree = tmp / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(base_tree), args.base], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            # the config's relative paths (curricula) resolve the same in both trees
            rel = config.relative_to(ROOT) if config.is_relative_to(ROOT) else Path(config.name)
            (base_tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(config, base_tree / rel)
            seconds = {"base": run(base_tree, base_tree / rel, tmp / "out_base", tmp / "cache_base"),
                       "head": run(ROOT, config, tmp / "out_head", tmp / "cache_head")}
            tables = {name: {"base": sha(tmp / "out_base" / name), "head": sha(tmp / "out_head" / name)}
                      for name in TABLES}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, capture_output=True)
    for t in tables.values():
        t["identical"] = t["base"] is not None and t["base"] == t["head"]
    print(json.dumps({"config": str(config), "base": args.base, "head": head + ("+uncommitted" if dirty else ""),
                      "seconds": {k: round(v, 1) for k, v in seconds.items()}, "tables": tables,
                      "identical": all(t["identical"] for t in tables.values())}, indent=1))
    return 0 if tables["summary.csv"]["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
