"""Throughput benchmarks (print JSON; never timed asserts in tests)."""
from __future__ import annotations

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


def bench_env(env_ids: list[str], batches: list[int], n_steps: int = 100, gym_steps: int = 2000,
              repeats: int = 3) -> list[dict[str, Any]]:
    """env-steps/s of the Gymnasium single-env loop and of the batched JAX env."""
    import gymnasium as gym

    rows = []
    for env_id in env_ids:
        genv = gym.make(env_id)
        genv.reset(seed=0)
        genv.step(0)  # compile
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        for _ in range(gym_steps):
            _, _, term, trunc, _ = genv.step(int(rng.integers(genv.action_space.n)))
            if term or trunc:
                genv.reset()
        dt = time.perf_counter() - t0
        rows.append({"env_id": env_id, "mode": "gymnasium", "batch": 1, "steps_per_s": gym_steps / dt})
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
