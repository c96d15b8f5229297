"""BKT on every GLOPs problem set: pedagogym vs pyBKT 1.4.3, parameters and held-out AUC.

The GLOPs data (Pardos & Heffernan 2010, "Modeling Individualization in a Bayesian Networks
Implementation of Knowledge Tracing", UMAP; ASSISTments 2008-2010, distributed with pyBKT's
examples) are read from ``/work/shared/data/glops`` (or ``--data``) when that folder exists;
nothing is copied anywhere. For every problem set the students are split 80/20 (seed 0);
both tools fit BKT without forgetting on the training students and predict each test
student's responses online (from that student's earlier responses, no refit).

pyBKT runs in its own virtualenv (see ``benchmarks/pybkt_agreement.py`` for the pins)::

    python -m venv /tmp/pybkt_venv
    /tmp/pybkt_venv/bin/pip install pyBKT==1.4.3 numpy==1.26.4 "pandas<2.3" "scipy<1.15" scikit-learn==1.6.1 setuptools wheel
    /tmp/pybkt_venv/bin/pip install --no-build-isolation --no-deps --force-reinstall --no-binary pyBKT pyBKT==1.4.3
    python benchmarks/glops_pybkt.py --pybkt-python /tmp/pybkt_venv/bin/python > glops.json

The second install builds pyBKT's C++ E-step against the venv's numpy 1.26 (under pip's
build isolation it is built against numpy 2, fails, and pyBKT silently installs its pure-Python
E-step instead, which is ~1000x slower: 190-370 s a set). The JSON says which one ran.

pyBKT is fitted twice per set: as shipped (``pybkt_default_stop``: its EM stops once the total
log-likelihood changes by less than 1e-3, or after 100 iterations) and run to convergence
(``pybkt``: the same ``EM_fit`` with ``tol=1e-7, maxiter=10000``). Parameters are compared with
the converged fit: a difference there is a difference between the two implementations, not
an early stop.

The script writes the splits to a temporary folder, calls itself with ``--pybkt-worker``
under the venv's Python (no pedagogym import on that path), fits with pedagogym, and
prints one JSON object: per set the parameters of both, their largest absolute
difference, each tool's training log-likelihood per response evaluated by pedagogym's
forward pass at both parameter sets (a difference with equal likelihoods is a flat ridge:
the set does not identify the parameters), and both held-out AUCs; then a summary.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path("/work/shared/data/glops")
NAMES = {"prior": "p_init", "learns": "p_learn", "guesses": "p_guess", "slips": "p_slip"}
PYBKT_SEED, NUM_FITS, TEST_FRACTION, SPLIT_SEED = 42, 5, 0.2, 0
AGREE, IDENTIFIED_LL = 0.02, 1e-4  # parameter tolerance; equal-likelihood threshold (nats per response)
CONVERGED = {"tol": 1e-7, "maxiter": 10_000}  # pyBKT's EM_fit run to convergence (its defaults: 1e-3, 100)


def pybkt_worker(manifest: str) -> None:
    """(pyBKT venv) Fit each training CSV, predict its test CSV; JSON to stdout. Two fits per
    set: pyBKT as shipped (its EM stops when the total log-likelihood changes by less than
    1e-3, at most 100 iterations) and the same EM run to convergence (``CONVERGED``: the
    tolerance and iteration cap passed to pyBKT's own ``EM_fit``)."""
    import functools

    import numpy as np
    import pandas as pd
    import pyBKT.fit.EM_fit as em_module
    from pyBKT.fit import E_step
    from pyBKT.models import Model

    shipped = em_module.EM_fit
    backend = "compiled C++ E-step" if str(getattr(E_step, "__file__", "")).endswith(".so") else "pure Python"
    out = {"_backend": backend}
    for name, train, test in json.loads(Path(manifest).read_text()):
        out[name] = {}
        for variant, em in (("default", shipped), ("converged", functools.partial(shipped, **CONVERGED))):
            em_module.EM_fit = em
            t = time.perf_counter()
            model = Model(seed=PYBKT_SEED, num_fits=NUM_FITS, parallel=False)
            model.fit(data_path=train, forgets=False)
            skill = next(iter(model.coef_))
            p = model.coef_[skill]
            pred = model.predict(data=pd.read_csv(test))
            out[name][variant] = {"params": {k: float(np.ravel(p[k])[0]) for k in NAMES},
                                  "y": pred["correct"].astype(int).tolist(),
                                  "p": pred["correct_predictions"].astype(float).tolist(),
                                  "seconds": round(time.perf_counter() - t, 2)}
            print(name, variant, out[name][variant]["params"], out[name][variant]["seconds"], "s", file=sys.stderr,
                  flush=True)
        em_module.EM_fit = shipped
    json.dump(out, sys.stdout)


def split(path: Path, tmp: Path) -> tuple[str, str]:
    import numpy as np
    import pandas as pd

    df = pd.read_csv(path, dtype={"user_id": str, "skill_name": str})
    df.insert(0, "order_id", np.arange(len(df)))  # the file's order (chronological per student)
    users = df["user_id"].unique()
    rng = np.random.default_rng(SPLIT_SEED)
    test_users = set(rng.permutation(users)[: max(1, int(round(TEST_FRACTION * len(users))))])
    is_test = df["user_id"].isin(test_users)
    train, test = tmp / f"{path.stem}.train.csv", tmp / f"{path.stem}.test.csv"
    df[~is_test].to_csv(train, index=False)
    df[is_test].to_csv(test, index=False)
    return str(train), str(test)


def ours(train: str, test: str) -> dict:
    from pedagogym.fitting import concat_logs, fit, read_log
    from pedagogym.fitting.bkt_em import fit_bkt_em
    from pedagogym.fitting.metrics import auc

    t = time.perf_counter()
    log, is_test = concat_logs(read_log(train, salt="glops"), read_log(test, salt="glops"))
    r = fit(log, "bkt", test_learners=is_test, num_fits=NUM_FITS, min_group_size=1)
    seconds = time.perf_counter() - t
    params = {k: float(r.skill_params[v][0]) for k, v in NAMES.items()}
    train_log = log.select_learners(~is_test)

    def ll(p):  # pedagogym's log-likelihood per response at parameters p (no EM step taken)
        init = (p["prior"], p["learns"], 0.0, p["guesses"], p["slips"])
        return fit_bkt_em(train_log, max_iter=0, num_fits=1, init=init, max_guess_slip=1.0).log_likelihood

    return {"params": params, "auc": auc(r.heldout_y, r.heldout_p), "n_test": int(len(r.heldout_y)), "ll": ll,
            "seconds": round(seconds, 2), "converged": bool(all(r.skill_converged.values()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--pybkt-python", default="/tmp/pybkt_venv/bin/python")
    ap.add_argument("--pybkt-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, default=0, help="only the first N problem sets (0 = all)")
    args = ap.parse_args()
    if args.pybkt_worker:
        pybkt_worker(args.pybkt_worker)
        return
    if not args.data.is_dir():
        print(json.dumps({"skipped": f"{args.data} does not exist"}))
        return
    import numpy as np

    from pedagogym.fitting.metrics import auc

    files = sorted(args.data.glob("*.csv"))[: args.limit or None]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        sets = [(f.stem, *split(f, tmp)) for f in files]
        (tmp / "manifest.json").write_text(json.dumps(sets))
        t0 = time.perf_counter()
        with open(tmp / "pybkt.json", "w") as fh:  # pyBKT runs alongside pedagogym's fits
            proc = subprocess.Popen([args.pybkt_python, __file__, "--pybkt-worker", str(tmp / "manifest.json")],
                                    stdout=fh, text=True)
            mine_all = {}
            for name, train, test in sets:
                mine_all[name] = ours(train, test)
                print("pedagogym", name, mine_all[name]["params"], round(mine_all[name]["auc"], 4),
                      file=sys.stderr, flush=True)
            if proc.wait() != 0:
                raise SystemExit(f"the pyBKT worker failed (exit {proc.returncode})")
        pybkt_seconds = time.perf_counter() - t0
        theirs_all = json.loads((tmp / "pybkt.json").read_text())
        backend = theirs_all.pop("_backend")
        rows = {}
        for name, train, test in sets:
            mine, fits = mine_all[name], theirs_all[name]
            theirs, shipped = fits["converged"], fits["default"]
            diff = max(abs(mine["params"][k] - theirs["params"][k]) for k in NAMES)
            ll_ours, ll_theirs = mine["ll"](mine["params"]), mine["ll"](theirs["params"])
            rows[name] = {
                "pedagogym": {k: round(v, 4) for k, v in mine["params"].items()},
                "pybkt": {k: round(v, 4) for k, v in theirs["params"].items()},
                "pybkt_default_stop": {k: round(v, 4) for k, v in shipped["params"].items()},
                "max_abs_param_diff": round(diff, 4),
                "max_abs_param_diff_default_stop": round(max(abs(mine["params"][k] - shipped["params"][k])
                                                             for k in NAMES), 4),
                "train_ll_per_response": {"pedagogym": round(ll_ours, 5), "pybkt": round(ll_theirs, 5),
                                          "pybkt_default_stop": round(mine["ll"](shipped["params"]), 5)},
                "identified": bool(diff <= AGREE or abs(ll_ours - ll_theirs) > IDENTIFIED_LL),
                "heldout_auc": {"pedagogym": round(mine["auc"], 4),
                                "pybkt": round(auc(np.asarray(theirs["y"]), np.asarray(theirs["p"])), 4),
                                "pybkt_default_stop": round(auc(np.asarray(shipped["y"]), np.asarray(shipped["p"])), 4)},
                "n_test": mine["n_test"], "n_test_pybkt": len(theirs["y"]),
                "seconds": {"pedagogym": mine["seconds"], "pybkt": theirs["seconds"],
                            "pybkt_default_stop": shipped["seconds"]},
            }
            print(name, rows[name]["max_abs_param_diff"], rows[name]["heldout_auc"], file=sys.stderr, flush=True)
    a_ours = np.array([r["heldout_auc"]["pedagogym"] for r in rows.values()])
    a_theirs = np.array([r["heldout_auc"]["pybkt"] for r in rows.values()])
    a_shipped = np.array([r["heldout_auc"]["pybkt_default_stop"] for r in rows.values()])
    ok = np.isfinite(a_ours) & np.isfinite(a_theirs) & np.isfinite(a_shipped)
    agree = [r["max_abs_param_diff"] <= AGREE for r in rows.values()]
    ll_gap = [r["train_ll_per_response"]["pedagogym"] - r["train_ll_per_response"]["pybkt"] for r in rows.values()]
    summary = {
        "sets": len(rows), "pybkt_backend": backend, "pybkt_converged_em": CONVERGED,
        "mean_heldout_auc": {"pedagogym": round(float(a_ours[ok].mean()), 4),
                             "pybkt": round(float(a_theirs[ok].mean()), 4),
                             "pybkt_default_stop": round(float(a_shipped[ok].mean()), 4)},
        "sets_pedagogym_auc_at_least_pybkt": int(sum(a_ours[ok] >= a_theirs[ok])),
        "mean_abs_param_diff_default_stop": round(float(np.mean([r["max_abs_param_diff_default_stop"]
                                                                 for r in rows.values()])), 4),
        "sets_params_within_0.02": int(sum(agree)),
        "sets_differing_on_a_flat_ridge (equal likelihood)": int(sum(not a and abs(g) <= IDENTIFIED_LL
                                                                      for a, g in zip(agree, ll_gap))),
        "sets_pedagogym_higher_likelihood": int(sum(g > IDENTIFIED_LL for g in ll_gap)),
        "sets_pybkt_higher_likelihood": int(sum(g < -IDENTIFIED_LL for g in ll_gap)),
        "identified_sets_within_0.02": f"{sum(a for a, r in zip(agree, rows.values()) if r['identified'])} of "
                                       f"{sum(r['identified'] for r in rows.values())}",
        "seconds": {"pedagogym": round(sum(r["seconds"]["pedagogym"] for r in rows.values()), 1),
                    "pybkt": round(sum(r["seconds"]["pybkt"] for r in rows.values()), 1),
                    "pybkt_default_stop": round(sum(r["seconds"]["pybkt_default_stop"] for r in rows.values()), 1),
                    "wall_both_concurrently": round(pybkt_seconds, 1)},
        "citation": "Pardos & Heffernan (2010), UMAP; ASSISTments 2008-2010",
    }
    print(json.dumps({"summary": summary, "sets": rows}, indent=1))


if __name__ == "__main__":
    main()
