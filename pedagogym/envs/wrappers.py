"""Auto-reset for batched rollouts: the one place where finished episodes restart."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.envs.core import EnvParams, EnvState, PedagogyEnv, _select


def auto_reset_step(env: PedagogyEnv, key: Array, state: EnvState, action: Array, params: EnvParams):
    """``env.step``; where the episode ended, the returned obs/state are a fresh learner's
    (drawn from ``key``) and ``info["final_observation"]`` holds the last observation."""
    k_step, k_reset = jax.random.split(key)
    obs, next_state, reward, terminated, truncated, info = env.step(k_step, state, action, params)
    done = terminated | truncated
    obs_reset, state_reset = env.reset(k_reset, params)
    info = dict(info)
    info["final_observation"] = obs
    info["action_mask"] = jnp.where(done, env.action_mask(state_reset, params), info["action_mask"])
    return (jnp.where(done, obs_reset, obs), _select(done, state_reset, next_state), reward, terminated, truncated, info)


def batch_reset(env: PedagogyEnv, keys: Array, params: EnvParams):
    """vmap of ``env.reset`` over keys (float32[N, D], batched EnvState)."""
    return jax.vmap(env.reset, in_axes=(0, None))(keys, params)


def batch_step(env: PedagogyEnv, keys: Array, state: EnvState, actions: Array, params: EnvParams):
    """vmap of :func:`auto_reset_step` over learners."""
    return jax.vmap(lambda k, s, a: auto_reset_step(env, k, s, a, params))(keys, state, actions)
