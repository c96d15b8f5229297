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

pyBKT is fitted twice per set: as shipped (``pybkt_default_stop``) and run to convergence
(``pybkt``). As shipped, its EM stops early, whatever ``tol`` is passed: the compiled E-step
returns the total log-likelihood truncated to an integer (pyBKT 1.4.3,
``source-cpp/pyBKT/fit/E_step.cpp``: ``PyLong_FromLong(*total_loglike)``), so ``EM_fit``'s
test ``|ll[i] - ll[i-1]| < tol`` holds as soon as an iteration gains less than about one nat
on the whole set, typically after 4-11 iterations. The converged fit runs pyBKT's own
``E_step.run`` / ``M_step.run`` in ``EM_fit``'s loop until no parameter moves by more than
1e-7 in an iteration (at most 10,000). Parameters are compared with the converged fit: a
difference there is a difference between the two implementations, not an early stop.

pedagogym is fitted three times: with its default bound guess, slip <= 0.5 (``pedagogym``:
the known state answers better), without it (``pedagogym_unbounded``, ``max_guess_slip=1``:
the same model class pyBKT fits), both predicting test students as ``pedagogym fit`` does
(posterior-predictive over the fitted population's learner traits), and unbounded without
the population stage (``pedagogym_unbounded_plain``, ``estimate_traits=False``: BKT's own
prediction from the fitted parameters, as pyBKT's ``predict``). On a set where the bound
binds, the bounded and unbounded models differ, and only the unbounded fits are comparable
with pyBKT's; the plain one compares the two fitters alone.

A set's parameters are *identified* (to the 0.02 the comparison asks for) when the 95%
profile-likelihood interval of every parameter at pedagogym's unbounded optimum lies within
+-0.02: moving any one parameter by 0.02, the others re-optimised, lowers the total training
log-likelihood by more than 1.92 (chi-square(1) 95% / 2; quadratic approximation from a
float64 Hessian; see :func:`identified`). Training likelihoods of all four fits are
evaluated by one float64 forward pass (:func:`loglik`), independent of either tool.

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
AGREE, PROFILE_DROP = 0.02, 1.92  # parameter tolerance; chi-square(1) 95% quantile / 2 (nats, whole set)
CONVERGED = {"param_tol": 1e-7, "maxiter": 10_000}  # pyBKT's E/M steps to convergence (see the module doc)


def pybkt_worker(manifest: str) -> None:
    """(pyBKT venv) Fit each training CSV, predict its test CSV; JSON to stdout. Two fits per
    set: pyBKT as shipped (its EM stops when the total log-likelihood changes by less than
    1e-3, at most 100 iterations) and the same EM run to convergence (``CONVERGED``: the
    tolerance and iteration cap passed to pyBKT's own ``EM_fit``)."""
    import numpy as np
    import pandas as pd
    import pyBKT.fit.EM_fit as em_module
    from pyBKT.fit import E_step
    from pyBKT.models import Model

    shipped = em_module.EM_fit
    from pyBKT.fit import M_step

    def em_to_convergence(model, data, tol=None, maxiter=None, parallel=True, fixed={}):  # noqa: B006 (pyBKT's signature)
        """EM_fit's loop (pyBKT's own E and M steps), stopped when no parameter moves by more
        than CONVERGED["param_tol"] (its likelihood test sees an integer, see the module doc)."""
        flat = lambda m: np.concatenate([np.ravel(m[k]) for k in ("pi_0", "As", "emissions")])  # noqa: E731
        lls = []
        for _ in range(CONVERGED["maxiter"]):
            before = flat(model).copy()
            result = E_step.run(data, model, 1, int(parallel), fixed)
            for j in range(len(model["learns"])):
                result["all_trans_softcounts"][j] = result["all_trans_softcounts"][j].transpose()
            for j in range(data["data"].shape[0]):
                result["all_emission_softcounts"][j] = result["all_emission_softcounts"][j].transpose()
            lls.append(result["total_loglike"])
            model = M_step.run(model, result["all_trans_softcounts"], result["all_emission_softcounts"],
                               result["all_initial_softcounts"], fixed)
            if np.max(np.abs(flat(model) - before)) < CONVERGED["param_tol"]:
                break
        return model, np.asarray(lls, float)[:, None]

    backend = "compiled C++ E-step" if str(getattr(E_step, "__file__", "")).endswith(".so") else "pure Python"
    out = {"_backend": backend}
    for name, train, test in json.loads(Path(manifest).read_text()):
        out[name] = {}
        for variant, em in (("default", shipped), ("converged", em_to_convergence)):
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


def sequences(train_log):
    """(obs float64[T, B], mask bool[T, B]): the training log's (learner, skill) sequences
    (each GLOPs set has one skill), padded at the end."""
    import numpy as np

    key = train_log.learner.astype(np.int64) * (train_log.n_skills + 1) + np.argmax(train_log.q_matrix[train_log.item], 1)
    order = np.lexsort((np.arange(len(key)), key))
    key, y = key[order], train_log.correct[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    lengths = np.diff(np.r_[starts, len(key)])
    T, B = int(lengths.max()), len(lengths)
    pos = np.arange(len(key)) - np.repeat(starts, lengths)
    seq = np.repeat(np.arange(B), lengths)
    obs, mask = np.zeros((T, B)), np.zeros((T, B), bool)
    obs[pos, seq], mask[pos, seq] = y, True
    return obs, mask


def loglik(p: dict, obs, mask) -> float:
    """BKT's log-likelihood per response (no forgetting) at ``p`` (pyBKT's names), by the
    scaled forward pass in float64 (a reference independent of either tool's fitter)."""
    import numpy as np

    p0, pl, pg, ps = (min(max(p[k], 1e-12), 1 - 1e-12) for k in ("prior", "learns", "guesses", "slips"))
    known = np.full(obs.shape[1], p0)
    total = 0.0
    for y, m in zip(obs, mask):
        like_k = np.where(y > 0.5, 1 - ps, ps)
        like_u = np.where(y > 0.5, pg, 1 - pg)
        c = known * like_k + (1 - known) * like_u
        total += float(np.sum(np.log(c[m])))
        post = known * like_k / c
        known = np.where(m, post + (1 - post) * pl, known)
    return total / max(int(mask.sum()), 1)


def identified(p: dict, obs, mask, step: float = AGREE, h: float = 1e-4) -> bool:
    """Whether the training log determines each parameter to +-``step`` near its optimum ``p``:
    moving any one parameter by ``step`` (the others re-optimised) lowers the total
    log-likelihood by more than PROFILE_DROP (the 95% profile-likelihood interval lies inside
    +-step). Quadratic approximation: n step^2 / (2 [H^-1]_ii), H the negative Hessian of
    the log-likelihood per response over the parameters not at a bound of (0, 1) (central
    differences, float64); a parameter at a bound is held there and counts as determined
    when its slope alone gives that fall over ``step``."""
    import numpy as np

    names = ("prior", "learns", "guesses", "slips")
    n = int(mask.sum())
    x = np.array([p[k] for k in names], np.float64)
    f = lambda v: loglik(dict(zip(names, v)), obs, mask)  # noqa: E731
    f0 = f(x)
    at_bound = (x < 1e-3) | (x > 1 - 1e-3)
    for i in np.flatnonzero(at_bound):
        e = np.zeros(4)
        e[i] = step if x[i] < 0.5 else -step
        if n * (f0 - f(x + e)) <= PROFILE_DROP:
            return False
    free = np.flatnonzero(~at_bound)
    if not len(free):
        return True
    H = np.zeros((len(free), len(free)))
    for a, i in enumerate(free):
        for b, j in enumerate(free):
            if b < a:
                continue
            ei, ej = np.zeros(4), np.zeros(4)
            ei[i], ej[j] = h, h
            if i == j:
                H[a, a] = -(f(x + ei) - 2 * f0 + f(x - ei)) / h ** 2
            else:
                H[a, b] = H[b, a] = -(f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h * h)
    if not np.all(np.linalg.eigvalsh(H) > 0):
        return False  # not a strict maximum: a ridge
    var = np.diag(np.linalg.inv(H))
    return bool(np.all(n * step ** 2 / (2 * var) > PROFILE_DROP))


def ours(train: str, test: str) -> dict:
    """pedagogym's fits of one set: with the default guess/slip bound and without it."""
    from pedagogym.fitting import concat_logs, fit, read_log
    from pedagogym.fitting.metrics import auc

    log, is_test = concat_logs(read_log(train, salt="glops"), read_log(test, salt="glops"))
    obs, mask = sequences(log.select_learners(~is_test))
    out = {"obs": obs, "mask": mask}
    for variant, bound, traits in (("default", 0.5, True), ("unbounded", 1.0, True), ("unbounded_plain", 1.0, False)):
        t = time.perf_counter()
        r = fit(log, "bkt", test_learners=is_test, num_fits=NUM_FITS, min_group_size=1, max_guess_slip=bound,
                estimate_traits=traits)
        out[variant] = {"params": {k: float(r.skill_params[v][0]) for k, v in NAMES.items()},
                        "auc": auc(r.heldout_y, r.heldout_p), "n_test": int(len(r.heldout_y)),
                        "seconds": round(time.perf_counter() - t, 2),
                        "converged": bool(all(r.skill_converged.values()))}
    return out


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
                print("pedagogym", name, mine_all[name]["default"]["params"], round(mine_all[name]["default"]["auc"], 4),
                      file=sys.stderr, flush=True)
            if proc.wait() != 0:
                raise SystemExit(f"the pyBKT worker failed (exit {proc.returncode})")
        pybkt_seconds = time.perf_counter() - t0
        theirs_all = json.loads((tmp / "pybkt.json").read_text())
        backend = theirs_all.pop("_backend")
        rows = {}
        for name, train, test in sets:
            mine, fits = mine_all[name], theirs_all[name]
            obs, mask = mine["obs"], mine["mask"]
            fitted = {"pedagogym": mine["default"], "pedagogym_unbounded": mine["unbounded"],
                      "pedagogym_unbounded_plain": mine["unbounded_plain"],
                      "pybkt": fits["converged"], "pybkt_default_stop": fits["default"]}
            for v in ("pybkt", "pybkt_default_stop"):
                fitted[v]["auc"] = auc(np.asarray(fitted[v]["y"]), np.asarray(fitted[v]["p"]))
            ref = mine["unbounded"]["params"]
            diff = lambda v: max(abs(ref[k] - fitted[v]["params"][k]) for k in NAMES)  # noqa: E731
            rows[name] = {
                **{v: {k: round(x, 4) for k, x in f["params"].items()} for v, f in fitted.items()},
                "max_abs_param_diff": round(diff("pybkt"), 4),
                "max_abs_param_diff_default_stop": round(diff("pybkt_default_stop"), 4),
                "max_abs_param_diff_bounded": round(max(abs(mine["default"]["params"][k] - fitted["pybkt"]["params"][k])
                                                        for k in NAMES), 4),
                "bound_binds": bool(max(mine["default"]["params"]["guesses"], mine["default"]["params"]["slips"])
                                    >= 0.5 - 1e-4),
                "train_ll_per_response": {v: round(loglik(f["params"], obs, mask), 6) for v, f in fitted.items()},
                "identified": identified(ref, obs, mask),
                "heldout_auc": {v: round(f["auc"], 4) for v, f in fitted.items()},
                "n_test": mine["default"]["n_test"], "n_test_pybkt": len(fits["converged"]["y"]),
                "seconds": {v: f["seconds"] for v, f in fitted.items()},
            }
            print(name, rows[name]["max_abs_param_diff"], rows[name]["identified"], rows[name]["heldout_auc"],
                  file=sys.stderr, flush=True)
    variants = ("pedagogym", "pedagogym_unbounded", "pedagogym_unbounded_plain", "pybkt", "pybkt_default_stop")
    A = {v: np.array([r["heldout_auc"][v] for r in rows.values()]) for v in variants}
    ok = np.all([np.isfinite(a) for a in A.values()], axis=0)
    ll_gap = [r["train_ll_per_response"]["pedagogym_unbounded"] - r["train_ll_per_response"]["pybkt"]
              for r in rows.values()]
    ident = [r["identified"] for r in rows.values()]
    agree = [r["max_abs_param_diff"] <= AGREE for r in rows.values()]
    summary = {
        "sets": len(rows), "pybkt_backend": backend, "pybkt_converged_em": CONVERGED,
        "mean_heldout_auc": {v: round(float(A[v][ok].mean()), 4) for v in variants},
        "mean_heldout_auc_where_the_bound_does_not_bind": {
            v: round(float(A[v][ok & ~np.array([r["bound_binds"] for r in rows.values()])].mean()), 4)
            for v in variants},
        "sets_bound_binds": [k for k, r in rows.items() if r["bound_binds"]],
        "sets_pedagogym_auc_at_least_pybkt": int(sum(A["pedagogym"][ok] >= A["pybkt"][ok])),
        "sets_pedagogym_unbounded_auc_at_least_pybkt": int(sum(A["pedagogym_unbounded"][ok] >= A["pybkt"][ok])),
        "sets_pedagogym_unbounded_plain_auc_at_least_pybkt": int(sum(A["pedagogym_unbounded_plain"][ok] >= A["pybkt"][ok])),
        "sets_identified": int(sum(ident)),
        "identified_sets_params_within_0.02 (unbounded vs pyBKT converged)": f"{sum(a and i for a, i in zip(agree, ident))} of {sum(ident)}",
        "identified_sets_params_not_within_0.02": [k for (k, r), a, i in zip(rows.items(), agree, ident) if i and not a],
        "all_sets_params_within_0.02": int(sum(agree)),
        "all_sets_params_within_0.02_default_stop": int(sum(r["max_abs_param_diff_default_stop"] <= AGREE
                                                            for r in rows.values())),
        "sets_pedagogym_unbounded_higher_likelihood": int(sum(g > 1e-6 for g in ll_gap)),
        "sets_pybkt_converged_higher_likelihood": int(sum(g < -1e-6 for g in ll_gap)),
        "max_abs_train_ll_gap_unbounded_vs_pybkt_converged": round(float(np.max(np.abs(ll_gap))), 6),
        "seconds": {**{v: round(sum(r["seconds"][v] for r in rows.values()), 1) for v in variants},
                    "wall_both_concurrently": round(pybkt_seconds, 1)},
        "citation": "Pardos & Heffernan (2010), UMAP; ASSISTments 2008-2010",
    }
    print(json.dumps({"summary": summary, "sets": rows}, indent=1))


if __name__ == "__main__":
    main()
