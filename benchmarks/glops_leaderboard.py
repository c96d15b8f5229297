"""The model leaderboard of ``pedagogym fit --model all`` on the GLOPs data (real responses).

The GLOPs data (Pardos & Heffernan 2010, "Modeling Individualization in a Bayesian Networks
Implementation of Knowledge Tracing", UMAP; ASSISTments 2008-2010, distributed with pyBKT's
examples) are 41 problem sets, one CSV each in pyBKT's layout (``user_id, skill_name,
correct``, rows in chronological order per student), every set's skill named ``1``. This
script reads them from ``/work/shared/data/glops`` (or ``--data``) when that folder exists,
writes one combined file to a temporary folder (nothing is copied into the project): the
skill renamed after its set, ``user_id`` kept (a student who worked several sets is one
learner, so a learner-level trait such as IRT ability spans sets), rows in set order
(sorted file names) then the file's order, so a student's responses are in time order
within a set; the order between sets is unknown (GLOPs has no timestamps), so models of
forgetting over time (HLR, EFC, ACT-R, FSRS) see row order as time and are shown for
completeness, not as a test of forgetting.

Then it runs ``fit_command`` with ``--model all`` (20% of learners held out, seed 0,
``--allow-partial`` off) and prints one JSON object: the log's shape, the leaderboard rows
(log loss, AUC, RMSE, ECE with 95% bootstrap intervals over test learners), wall time and the
load average::

    python benchmarks/glops_leaderboard.py [--out DIR] [--models all]

With ``--out`` the fit's files (``leaderboard.md``, ``calibration.png``, ``report.md``, ...)
are kept there.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

DATA = Path("/work/shared/data/glops")


def combine(data: Path, path: Path) -> dict:
    """Write the combined pyBKT-format CSV of every set in ``data`` to ``path``."""
    files = sorted(data.glob("*.csv"))
    rows = 0
    with open(path, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["order_id", "user_id", "skill_name", "correct"])
        for f in files:
            skill = f.stem.removesuffix("-exact")
            with open(f, newline="") as fh:
                for rec in csv.DictReader(fh):
                    w.writerow([rows, rec["user_id"], skill, rec["correct"]])
                    rows += 1
    return {"sets": len(files), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=None, help="keep the fit's files here")
    ap.add_argument("--models", default="all")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(json.dumps({"skipped": f"{args.data} does not exist"}))
        return
    from pedagogym.fitting.cli import fit_command
    from pedagogym.fitting.formats import read_log

    result: dict = {"cpu_count": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()],
                    "citation": "Pardos & Heffernan (2010), UMAP; ASSISTments 2008-2010"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "glops_all.csv"
        result["data"] = combine(args.data, path)
        log = read_log(path, salt="glops")
        result["data"].update(learners=log.n_learners, responses=log.n_interactions, items=log.n_items,
                              skills=log.n_skills)
        out = args.out or Path(tmp) / "fit"
        t0 = time.perf_counter()
        fit_command([path], args.models, out, quiet=True, salt="glops", format="pybkt")
        result["wall_seconds"] = round(time.perf_counter() - t0, 1)
        lb = out / "leaderboard.csv"
        if lb.exists():
            with open(lb, newline="") as fh:
                result["leaderboard"] = [{k: (float(v) if k != "model" and v else v) for k, v in r.items()}
                                         for r in csv.DictReader(fh)]
        else:  # one model: its metrics
            result["metrics"] = json.loads((out / "manifest.json").read_text())["metrics"]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
