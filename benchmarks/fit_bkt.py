"""Time to fit BKT on 1,000,000 simulated interactions (target: < 60 s on 2 CPU cores).

Prints one JSON object: the sizes, the seconds to read/validate the CSV, to run EM alone,
and the whole ``fit`` (EM + population stage + held-out predictions), plus the recovery
error of the per-skill parameters. Usage: ``python benchmarks/fit_bkt.py [--interactions N]``.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--interactions", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=100, help="responses per learner")
    ap.add_argument("--skills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from pedagogym.fitting import fit, read_log, simulate_log
    from pedagogym.fitting.bkt_em import fit_bkt_em
    from pedagogym.student_models.bkt import BKT, BKTParams

    rng = np.random.default_rng(args.seed)
    S = args.skills
    truth = BKTParams(p_init=jnp.asarray(rng.uniform(0.1, 0.4, S), jnp.float32),
                      p_learn=jnp.asarray(rng.uniform(0.05, 0.3, S), jnp.float32),
                      p_forget=jnp.zeros(S, jnp.float32),
                      p_guess=jnp.asarray(rng.uniform(0.1, 0.3, S), jnp.float32),
                      p_slip=jnp.asarray(rng.uniform(0.05, 0.15, S), jnp.float32))
    n_learners = args.interactions // args.steps
    t = time.perf_counter()
    df = simulate_log(BKT(), truth, n_learners, args.steps, jax.random.PRNGKey(args.seed))
    simulate_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "log.csv")
        df.to_csv(path, index=False)
        del df
        t = time.perf_counter()
        log = read_log(path)
        read_s = time.perf_counter() - t
    t = time.perf_counter()
    em = fit_bkt_em(log)
    em_s = time.perf_counter() - t
    t = time.perf_counter()
    result = fit(log, "bkt")
    fit_s = time.perf_counter() - t
    order = [int(s[1:]) for s in log.skill_ids]
    err = {f: float(np.max(np.abs(result.skill_params[f] - np.asarray(getattr(truth, f))[order])))
           for f in ("p_init", "p_learn", "p_guess", "p_slip")}
    print(json.dumps({
        "benchmark": "fit_bkt", "interactions": log.n_interactions, "learners": log.n_learners, "skills": S,
        "cpu_count": os.cpu_count(), "device": str(jax.devices()[0]),
        "simulate_s": round(simulate_s, 2), "read_log_s": round(read_s, 2),
        "em_only_s": round(em_s, 2), "em_iterations": em.iterations,
        "fit_total_s": round(fit_s, 2), "fit_breakdown_iterations": result.iterations,
        "max_abs_error": {k: round(v, 4) for k, v in err.items()},
        "heldout_auc": round(result.metrics["auc"], 4),
    }))


if __name__ == "__main__":
    main()
