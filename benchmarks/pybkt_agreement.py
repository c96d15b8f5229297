"""pyBKT agreement: fit the same synthetic BKT log with pyBKT, in its own virtualenv.

pyBKT is not a dependency of pedagogym (it brings its own numpy/scikit-learn pins), so the
comparison runs in two halves, in two environments:

1. In the project's environment, write the log (simulated by pedagogym's own BKT, seeded,
   so the test regenerates the identical log) as CSV in pyBKT's column format::

       python benchmarks/pybkt_agreement.py write /tmp/pybkt_log.csv

2. In a virtualenv with pyBKT (nothing from pedagogym is imported on this path)::

       python -m venv /tmp/pybkt_venv
       /tmp/pybkt_venv/bin/pip install pyBKT==1.4.3 numpy==1.26.4 "pandas<2.3" "scipy<1.15" scikit-learn==1.6.1
       /tmp/pybkt_venv/bin/python benchmarks/pybkt_agreement.py pybkt /tmp/pybkt_log.csv [--forgets]

   (A plain ``pip install pyBKT`` resolves to numpy 2 and scikit-learn 1.9, and neither
   works with pyBKT 1.4.3: scikit-learn >= 1.7 breaks ``import pyBKT.models`` (its metric
   discovery calls ``log_loss`` with Python lists: ``AttributeError: 'list' object has no
   attribute 'dtype'``), and numpy 2 breaks its EM (``ValueError: setting an array element
   with a sequence`` in ``EM_fit``). pyBKT's E-step is pure Python here (no compiled
   extension): about 2 minutes without forgetting and 10 with, on 2 busy cores.)

   It prints one JSON object: pyBKT's version, the CSV's SHA-256, and for each skill the
   fitted prior, learns, guesses, slips and forgets; ``forgets=False`` (pedagogym's default;
   the truth has no forgetting) unless ``--forgets`` is given. Those figures are recorded
   in ``tests/test_fitting.py::test_bkt_em_agrees_with_pybkt``, which refits the same log
   with pedagogym's EM.

3. (Optional) ``python benchmarks/pybkt_agreement.py compare pybkt.json`` fits the log
   with pedagogym and prints both side by side with the largest difference.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

# The synthetic log: pedagogym's BKT with these per-skill parameters (no forgetting),
# 2,000 learners x 25 uniformly random items over 4 skills x 4 items = 50,000 responses,
# about 6 per (learner, skill) sequence. (pyBKT 1.4.3's E-step is pure Python, about a
# second per skill per iteration here, so the log is no bigger than the issue asks.)
SKILLS = ("s0", "s1", "s2", "s3")
TRUTH = {
    "p_init": (0.2, 0.35, 0.1, 0.5),
    "p_learn": (0.15, 0.1, 0.25, 0.05),
    "p_forget": (0.0, 0.0, 0.0, 0.0),
    "p_guess": (0.2, 0.25, 0.15, 0.3),
    "p_slip": (0.1, 0.08, 0.12, 0.05),
}
N_LEARNERS = 2000
N_STEPS = 25
SEED = 7
PYBKT_SEED = 42
PYBKT_NUM_FITS = 5


def simulate():
    """The synthetic log as a frame in pedagogym's log format (deterministic)."""
    import jax
    import jax.numpy as jnp

    from pedagogym.fitting import simulate_log
    from pedagogym.student_models.bkt import BKT, BKTParams

    params = BKTParams(**{k: jnp.asarray(v, jnp.float32) for k, v in TRUTH.items()})
    return simulate_log(BKT(), params, N_LEARNERS, N_STEPS, jax.random.PRNGKey(SEED))


def pybkt_csv(df) -> str:
    """The log in pyBKT's default (ASSISTments) columns: order_id (the row: learner-major,
    time order within a learner), user_id, skill_name, correct."""
    import pandas as pd

    out = pd.DataFrame({"order_id": range(len(df)), "user_id": df["learner_id"].to_numpy(),
                        "skill_name": df["skill_id"].to_numpy(), "correct": df["correct"].to_numpy()})
    return out.to_csv(index=False, lineterminator="\n")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run_pybkt(path: str, forgets: bool) -> dict:
    """pyBKT's fit of every skill: ``Model(seed, num_fits)`` (its default 5 random starts,
    best likelihood kept; EM to its default tolerance), ``forgets`` as given."""
    from importlib.metadata import version

    import numpy as np
    from pyBKT.models import Model

    with open(path) as f:
        digest = sha256(f.read())
    fitted, seconds = {}, {}
    for skill in SKILLS:
        t = time.perf_counter()
        model = Model(seed=PYBKT_SEED, num_fits=PYBKT_NUM_FITS, parallel=True)
        model.fit(data_path=path, skills=skill, forgets=forgets)
        p = model.coef_[skill]
        fitted[skill] = {k: round(float(np.ravel(p[k])[0]), 6)
                         for k in ("prior", "learns", "guesses", "slips", "forgets")}
        seconds[skill] = round(time.perf_counter() - t, 1)
        print(skill, fitted[skill], seconds[skill], "s", file=sys.stderr, flush=True)
    return {"pybkt_version": version("pyBKT"), "numpy_version": np.__version__, "csv_sha256": digest,
            "num_fits": PYBKT_NUM_FITS, "seed": PYBKT_SEED, "forgets": forgets, "seconds": seconds, "params": fitted}


def ours(forgetting: bool) -> dict:
    from pedagogym.fitting import fit, from_frame

    log = from_frame(simulate(), salt="pybkt")
    res = fit(log, "bkt", holdout=0.0, estimate_traits=False, forgetting=forgetting)
    names = {"prior": "p_init", "learns": "p_learn", "guesses": "p_guess", "slips": "p_slip", "forgets": "p_forget"}
    return {s: {k: round(float(res.skill_params[v][log.skill_ids.index(s)]), 6) for k, v in names.items()}
            for s in SKILLS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="simulate the log (pedagogym env) and write it in pyBKT's format")
    w.add_argument("csv")
    p = sub.add_parser("pybkt", help="fit the CSV with pyBKT (pyBKT venv); print JSON")
    p.add_argument("csv")
    p.add_argument("--forgets", action="store_true", help="let pyBKT fit forgetting (pedagogym: forgetting=True)")
    c = sub.add_parser("compare", help="fit with pedagogym and compare with pyBKT's JSON")
    c.add_argument("json")
    args = ap.parse_args()
    if args.cmd == "write":
        text = pybkt_csv(simulate())
        with open(args.csv, "w") as f:
            f.write(text)
        print(json.dumps({"csv": args.csv, "rows": text.count("\n") - 1, "csv_sha256": sha256(text)}))
    elif args.cmd == "pybkt":
        print(json.dumps(run_pybkt(args.csv, args.forgets), indent=1))
    else:
        with open(args.json) as f:
            ref = json.load(f)
        mine, theirs = ours(ref["forgets"]), ref["params"]
        diff = max(abs(mine[s][k] - theirs[s][k]) for s in SKILLS for k in mine[s])
        json.dump({"forgets": ref["forgets"], "pedagogym": mine, "pybkt": theirs, "max_abs_diff": round(diff, 4)},
                  sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
