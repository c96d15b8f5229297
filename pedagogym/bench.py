"""Throughput benchmarks (print JSON; never timed asserts in tests)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pedagogym.envs import make
from pedagogym.envs.wrappers import batch_step


def _batched_runner(built, batch: int, n_steps: int, auto_reset: bool):
    """``n_steps`` of ``batch`` learners with random actions in one jitted scan; with
    ``auto_reset`` finished learners restart (the RL training path), without it they stay
    finished (the fixed-horizon evaluation path)."""
    env, params = built.env, built.params
    n_items = built.curriculum.n_items
    vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    step = (lambda k, s, a: batch_step(env, k, s, a, params)) if auto_reset else (lambda k, s, a: vstep(k, s, a, params))

    def run(key):
        keys = jax.random.split(key, batch)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

        def body(carry, _):
            key, state, _ = carry
            key, k_a, k_s = jax.random.split(key, 3)
            actions = jax.random.randint(k_a, (batch,), 0, n_items)
            obs, state, reward, term, trunc, _ = step(jax.random.split(k_s, batch), state, actions)
            # the observation is carried, so it is written out every step as a policy would
            # read it (not fused away into the reward sum)
            return (key, state, obs), reward.sum()

        (_, _, obs), out = jax.lax.scan(body, (key, state, obs), None, length=n_steps)
        return out.sum() + obs.sum()

    return jax.jit(run)


def import_time() -> dict[str, Any]:
    """Seconds of ``import pedagogym`` in a fresh interpreter (which imports Gymnasium to
    register the ids), the part after ``import gymnasium``, and whether it imported JAX."""
    code = ("import sys, time; t0 = time.perf_counter(); import gymnasium; t1 = time.perf_counter(); "
            "import pedagogym; t2 = time.perf_counter(); print(t2 - t0, t2 - t1, 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ))
    total, after, jax_loaded = out.stdout.split()
    return {"import_pedagogym_s": float(total), "import_pedagogym_after_gymnasium_s": float(after),
            "import_pedagogym_loads_jax": jax_loaded == "True"}


def bench_gym_step(env_id: str, gym_steps: int) -> dict[str, Any]:
    """Latency of one ``step`` of ``gymnasium.make(env_id)`` (wrappers included) with random
    actions, p50/p99 in microseconds, and steps/s of the loop (resets included)."""
    import gymnasium as gym

    genv = gym.make(env_id)
    genv.reset(seed=0)
    genv.step(0)  # compile
    rng = np.random.default_rng(0)
    actions = rng.integers(genv.action_space.n, size=gym_steps).tolist()
    lat = np.empty(gym_steps)
    t0 = time.perf_counter()
    for i, a in enumerate(actions):
        s = time.perf_counter_ns()
        _, _, term, trunc, _ = genv.step(a)
        lat[i] = time.perf_counter_ns() - s
        if term or trunc:
            genv.reset()
    dt = time.perf_counter() - t0
    genv.close()
    return {"steps_per_s": gym_steps / dt, "step_p50_us": float(np.percentile(lat, 50)) / 1e3,
            "step_p99_us": float(np.percentile(lat, 99)) / 1e3}


def bench_env(env_ids: list[str], batches: list[int], n_steps: int = 100, gym_steps: int = 2000,
              repeats: int = 3) -> list[dict[str, Any]]:
    """env-steps/s of the Gymnasium single-env loop (and its step latency, and the import
    time of ``pedagogym``) and of the batched JAX env."""
    rows = []
    imported = import_time()
    for env_id in env_ids:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        rows.append({"env_id": env_id, "mode": "gymnasium", "batch": 1, **bench_gym_step(env_id, gym_steps),
                     **imported, "load_avg_1min": load})
        built = make(env_id)
        for mode, auto_reset in (("jax_batched", False), ("jax_batched_autoreset", True)):
            for batch in batches:
                steps = max(10, min(n_steps, (4_000_000 // batch)))
                run = _batched_runner(built, batch, steps, auto_reset)
                t0 = time.perf_counter()
                run(jax.random.PRNGKey(0)).block_until_ready()
                compile_s = time.perf_counter() - t0
                best = float("inf")
                for r in range(repeats):
                    t0 = time.perf_counter()
                    run(jax.random.PRNGKey(r + 1)).block_until_ready()
                    best = min(best, time.perf_counter() - t0)
                rows.append({"env_id": env_id, "mode": mode, "batch": batch, "steps_per_s": batch * steps / best,
                             "compile_s": compile_s, "steps_per_call": steps, "device": str(jax.devices()[0].platform)})
    base = {r["env_id"]: r["steps_per_s"] for r in rows if r["mode"] == "gymnasium"}
    for r in rows:
        r["speedup_vs_gymnasium"] = r["steps_per_s"] / base[r["env_id"]]
    return rows
