"""Timing of ``pedagogym fit --model all`` on about 400,000 responses (issue 21's budget: at
most 2 minutes on the project machine).

With ``--log FILE`` (any format ``pedagogym fit`` reads) the real file is used; otherwise a
synthetic log of the same size is simulated by pedagogym's BKT (8,000 learners x 50
responses over 20 skills, seeded), written to a temporary CSV and read back like a user's
file. Prints one JSON object: responses, learners, wall seconds per model (fit + held-out
prediction), the read time and the total, and the leaderboard's log losses::

    python benchmarks/glops_fit_all_timing.py [--log FILE] [--models all]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def synthetic(path: Path, learners: int = 8000, steps: int = 50, skills: int = 20) -> None:
    import jax
    import jax.numpy as jnp

    from pedagogym.fitting import simulate_log
    from pedagogym.student_models.bkt import BKT, BKTParams

    rng = __import__("numpy").random.default_rng(0)
    params = BKTParams(*(jnp.asarray(rng.uniform(lo, hi, skills), jnp.float32)
                         for lo, hi in ((0.1, 0.6), (0.05, 0.3), (0.0, 0.0), (0.1, 0.3), (0.05, 0.15))))
    simulate_log(BKT(), params, learners, steps, jax.random.PRNGKey(0)).to_csv(path, index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument("--models", default="all")
    args = ap.parse_args()
    import pandas as pd

    from pedagogym.fitting.cli import fit_command

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log = args.log
        if log is None:
            log = tmp / "synthetic.csv"
            synthetic(log)
        t0 = time.perf_counter()
        fit_command([log], args.models, tmp / "out", quiet=True)
        total = time.perf_counter() - t0
        metrics = pd.read_csv(tmp / "out" / "metrics.csv")
        manifest = json.loads((tmp / "out" / "manifest.json").read_text())
        board = pd.read_csv(tmp / "out" / "leaderboard.csv") if (tmp / "out" / "leaderboard.csv").exists() else None
    print(json.dumps({
        "log": str(args.log) if args.log else "synthetic BKT, 8000 learners x 50 responses, 20 skills",
        "responses": manifest["log"]["interactions"], "learners": manifest["log"]["learners"],
        "total_seconds": round(total, 1),
        "fit_seconds": {m: s for m, s in zip(metrics["model"], metrics["fit_seconds"]) if m != "baseline"},
        "leaderboard_log_loss": None if board is None else dict(zip(board["model"], board["log_loss"].round(4))),
    }, indent=1))


if __name__ == "__main__":
    main()
