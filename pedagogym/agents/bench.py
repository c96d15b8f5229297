"""Training throughput: JAX PPO vs SB3 PPO on the same env id, and N agents at once.

Every figure is wall-clock env steps per second of *training* (rollout + learning), after
compilation / warm-up, best of ``repeats``. Both algorithms use the same settings (hidden
sizes, rollout length, epochs, minibatches, learners per update). SB3 PPO is timed twice:

* ``sb3_ppo``: as SB3 is normally used, ``make_vec_env(env_id, n_envs)``, a ``DummyVecEnv``
  over Gymnasium envs (one jitted step per learner per step). ``jax_over_sb3`` is against it.
* ``sb3_ppo_batched_env``: through pedagogym's batched SB3 VecEnv adapter (one jitted call
  steps every learner). This isolates the training loop: here both sides are bound by the
  same network FLOPs, so the ratio (``jax_over_sb3_batched_env``) is small on a CPU.
"""
from __future__ import annotations

import os
import platform
import time
import tomllib
from typing import Any

import jax
import numpy as np

from pedagogym.errors import UsageError


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``["horizon=150", "reward=mastery_gain"]`` -> typed values (TOML syntax, else a string)."""
    out: dict[str, Any] = {}
    for kv in pairs:
        if "=" not in kv:
            raise UsageError(f"--setting: expected KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        try:
            out[k.strip()] = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            out[k.strip()] = v
    return out


def _config(env_id: str, settings: dict, n_agents: int, num_envs: int, num_steps: int, updates: int, **extra):
    from pedagogym.agents.config import train_config_from_dict

    return train_config_from_dict({"env": {"id": env_id, **settings}, "seeds": list(range(n_agents)),
                                   "num_envs": num_envs, "num_steps": num_steps,
                                   "total_timesteps": num_envs * num_steps * updates, "chunk_updates": updates,
                                   "eval_learners": 1, **extra}, source="bench")


def bench_jax(config, repeats: int = 2) -> dict[str, Any]:
    """Compile time and steady-state env-steps/s of ``config.num_updates`` PPO updates for all
    of the config's agents in one call."""
    from pedagogym.agents.ppo import AgentBatch, PPOTrainer

    batch = AgentBatch(PPOTrainer(config))
    n = config.n_agents
    t0 = time.perf_counter()
    rs = jax.block_until_ready(batch.initial_state())
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rs, _ = jax.block_until_ready(batch.run(rs, config.num_updates))
    first_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        rs, _ = jax.block_until_ready(batch.run(rs, config.num_updates))
        best = min(best, time.perf_counter() - t0)
    steps = n * config.num_updates * config.batch_size
    return {"algo": "jax_ppo", "agents": n, "num_envs": config.num_envs, "num_steps": config.num_steps,
            "updates": config.num_updates, "env_steps": steps, "seconds": best, "env_steps_per_s": steps / best,
            "env_steps_per_s_per_agent": steps / best / n, "compile_s": max(first_s - best, 0.0) + init_s,
            "first_call_s": first_s + init_s}


def bench_sb3(config, sb3_steps: int, num_envs: int, repeats: int = 1, vec: str = "gymnasium") -> dict[str, Any]:
    """env-steps/s of SB3 PPO (same hyperparameters); ``vec``: "gymnasium" (SB3's
    ``make_vec_env``: a DummyVecEnv of Gymnasium envs, the usual way) or "batched"
    (pedagogym's batched SB3 VecEnv)."""
    import torch
    from stable_baselines3 import PPO

    from pedagogym.agents.sb3_agents import _mapped_kwargs
    from pedagogym.envs.sb3 import PedagogySB3VecEnv

    cfg = config.replace(num_envs=num_envs, seeds=[0], total_timesteps=max(sb3_steps, num_envs * config.num_steps))
    agent = cfg.agents()[0]
    if vec == "batched":
        venv = PedagogySB3VecEnv(cfg.build_env(), cfg.num_envs, seed=0)
    elif vec == "gymnasium":
        from stable_baselines3.common.env_util import make_vec_env

        from pedagogym.envs.gym_env import PedagogyGymEnv

        built = cfg.build_env()  # the same env (id and settings) as the JAX side, once per learner
        venv = make_vec_env(lambda: PedagogyGymEnv(built), n_envs=cfg.num_envs, seed=0)
    else:
        raise UsageError(f"vec: expected 'gymnasium' or 'batched', got {vec!r}")
    model = PPO("MlpPolicy", venv, seed=0, device="cpu", verbose=0, **_mapped_kwargs("sb3_ppo", cfg, agent))
    t0 = time.perf_counter()
    model.learn(cfg.batch_size)  # warm-up: compiles the JAX env step, first torch calls
    warm_s = time.perf_counter() - t0
    best = float("inf")
    steps = max(sb3_steps // cfg.batch_size, 1) * cfg.batch_size
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.learn(steps, reset_num_timesteps=False)
        best = min(best, time.perf_counter() - t0)
    return {"algo": "sb3_ppo" if vec == "gymnasium" else "sb3_ppo_batched_env", "vec_env": type(venv).__name__,
            "agents": 1, "num_envs": cfg.num_envs, "num_steps": cfg.num_steps, "env_steps": steps,
            "seconds": best, "env_steps_per_s": steps / best, "env_steps_per_s_per_agent": steps / best,
            "warmup_s": warm_s, "torch_threads": torch.get_num_threads()}


def bench_train(env_id: str = "pedagogym/PrereqBKT-v0", agents: list[int] = (1, 8, 64), num_envs: int = 64,
                num_steps: int = 64, updates: int = 10, sb3_steps: int = 8192, sb3_num_envs: int | None = None,
                settings: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """The figures of ``pedagogym bench train``, as one JSON-able dict."""
    import sys

    settings = dict(settings or {})
    rows = []
    log = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)  # noqa: E731
    base = _config(env_id, settings, 1, num_envs, num_steps, updates)
    sb3 = bench_sb3(base, sb3_steps, sb3_num_envs or num_envs, vec="gymnasium")
    log(f"sb3_ppo (Gymnasium envs, DummyVecEnv): {sb3['env_steps_per_s']:,.0f} env-steps/s")
    sb3_batched = bench_sb3(base, sb3_steps, sb3_num_envs or num_envs, vec="batched")
    log(f"sb3_ppo (pedagogym batched VecEnv): {sb3_batched['env_steps_per_s']:,.0f} env-steps/s")
    rows += [sb3, sb3_batched]
    for n in agents:
        r = bench_jax(_config(env_id, settings, n, num_envs, num_steps, updates))
        log(f"jax_ppo x{n}: {r['env_steps_per_s']:,.0f} env-steps/s (compile {r['compile_s']:.1f} s)")
        rows.append(r)
    single = next((r for r in rows if r["algo"] == "jax_ppo" and r["agents"] == 1), None)
    for r in rows:
        r["speedup_vs_sb3_ppo"] = r["env_steps_per_s"] / sb3["env_steps_per_s"]
        r["speedup_vs_sb3_ppo_batched_env"] = r["env_steps_per_s"] / sb3_batched["env_steps_per_s"]
        if single is not None and r["algo"] == "jax_ppo":
            r["time_vs_1_agent"] = r["seconds"] / single["seconds"]
    return {"env_id": env_id, "settings": settings, "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(),
            "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(), "jax": jax.__version__,
            "hidden": list(base.hidden), "epochs": base.epochs, "minibatches": base.minibatches,
            "jax_over_sb3": single["env_steps_per_s"] / sb3["env_steps_per_s"] if single else None,
            "jax_over_sb3_batched_env": single["env_steps_per_s"] / sb3_batched["env_steps_per_s"] if single else None,
            "rows": rows, "numpy": np.__version__}
