"""Scale-out figures for ``pedagogym run``; prints JSON. Never a timed assert.

    python benchmarks/scale.py [--learners 65536] [--memory-learners 1000000] [--horizon 50]

- ``devices``: learner-episodes/s of :func:`pedagogym.policies.rollout.evaluate` with
  1 and 2 forced CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=K``, one
  subprocess each; compile excluded: a warm-up call on the same shapes first). On a CPU the
  forced devices share the same cores, so this shows the overhead of sharding, not a speed-up.
- ``ray``: a small grid through ``--backend ray`` with 1 and 2 local workers (a private
  ``ray.init(num_cpus=K)`` in a subprocess each), and the local backend on the same grid.
  ``cold``: the first pass (Ray start-up excluded, worker start and compiles included);
  ``warm``: the same grid into a second directory with the workers already up.
- ``memory``: peak resident memory (``ru_maxrss`` of a subprocess) of a one-cell run of
  ``--memory-learners`` learners, streaming on (chunks of 65,536 learners, tables aggregated
  cell by cell, ``--no-save-episodes``) and off (the whole cell in one call,
  ``--save-episodes``: the per-learner table built in memory and written).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

ENV = "pedagogym/PrereqBKT-v0"

DEVICES = textwrap.dedent("""
    import json, sys, time
    import jax
    from pedagogym.envs import make
    from pedagogym.policies.rollout import evaluate, learner_keys
    from pedagogym.policies import POLICIES
    n, horizon, env_id = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    built = make(env_id, curriculum="tiny", horizon=horizon)
    policy = POLICIES.get("mastery")
    jax.block_until_ready(evaluate(built.env, policy, horizon, built.params, learner_keys(jax.random.PRNGKey(1), n)))
    best = float("inf")
    for rep in range(3):
        keys = learner_keys(jax.random.PRNGKey(2 + rep), n)
        t = time.perf_counter()
        jax.block_until_ready(evaluate(built.env, policy, horizon, built.params, keys))
        best = min(best, time.perf_counter() - t)
    print(json.dumps({"devices": jax.device_count(), "learners": n, "horizon": horizon, "best_of_3_s": best,
                      "learner_episodes_per_s": n / best}))
""")

RAY = textwrap.dedent("""
    import json, sys, time, warnings
    from pedagogym.experiments import experiment_from_dict, run_experiment
    from pedagogym.experiments.backends import LocalBackend, RayBackend
    grid, workers, out = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    config = experiment_from_dict(grid)
    if workers:
        import ray
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter() - t
        backend = RayBackend(workers=workers)
    else:
        start, backend = 0.0, LocalBackend()
    res = {"workers": workers, "backend": "ray" if workers else "local", "ray_init_s": start}
    for phase in ("cold", "warm"):
        m = run_experiment(config, f"{out}/{phase}", progress=False, backend=backend)
        assert m["complete"], m["cells_failed"]
        res[phase] = m["learner_episodes_per_s"]
    print(json.dumps(res))
""")

MEMORY = textwrap.dedent("""
    import json, resource, sys, time
    from pedagogym.experiments import experiment_from_dict, run_experiment
    grid, streaming, out = json.loads(sys.argv[1]), sys.argv[2] == "on", sys.argv[3]
    t = time.perf_counter()
    kw = {"save_episodes": False} if streaming else {"chunk_learners": 0, "save_episodes": True}
    m = run_experiment(experiment_from_dict(grid), out, progress=False, **kw)
    assert m["complete"]
    print(json.dumps({"streaming": streaming, "learners": grid["learners"], "save_episodes": m["save_episodes"],
                      "wall_s": time.perf_counter() - t, "learner_episodes_per_s": m["learner_episodes_per_s"],
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def _child(script: str, args: list[str], env_extra: dict[str, str] | None = None) -> dict:
    env = {**os.environ, **(env_extra or {}), "PEDAGOGYM_JAX_CACHE": "off"}
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _grid(name: str, learners: int, horizon: int, policies: list[str], seeds: list[int]) -> dict:
    return {"name": name, "learners": learners, "seeds": seeds, "policies": policies,
            "envs": [{"id": ENV, "label": "tiny", "settings": {"curriculum": "tiny", "horizon": horizon}}]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--learners", type=int, default=65536, help="learners per call (devices) / per cell (ray)")
    p.add_argument("--memory-learners", type=int, default=1_000_000)
    p.add_argument("--horizon", type=int, default=50)
    p.add_argument("--skip", nargs="*", default=[], choices=["devices", "ray", "memory"])
    args = p.parse_args(argv)
    result: dict = {"env": ENV, "curriculum": "tiny", "horizon": args.horizon, "cpu_count": os.cpu_count(),
                    "load_avg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        if "devices" not in args.skip:
            result["devices"] = [
                _child(DEVICES, [str(args.learners), str(args.horizon), ENV],
                       {"XLA_FLAGS": f"--xla_force_host_platform_device_count={k}", "JAX_PLATFORMS": "cpu"})
                for k in (1, 2)]
        if "ray" not in args.skip:
            grid = _grid("bench_ray", args.learners // 2, args.horizon, ["random", "mastery"], [0, 1, 2, 3])
            result["ray_grid"] = {"cells": 8, "learners_per_cell": grid["learners"]}
            result["ray"] = [_child(RAY, [json.dumps(grid), str(k), f"{tmp}/ray{k}"]) for k in (0, 1, 2)]
        if "memory" not in args.skip:
            grid = _grid("bench_memory", args.memory_learners, args.horizon, ["random"], [0])
            result["memory"] = [_child(MEMORY, [json.dumps(grid), mode, f"{tmp}/mem_{mode}"]) for mode in ("on", "off")]
    result["load_avg_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
