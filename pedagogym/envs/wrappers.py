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
    """:func:`auto_reset_step` over a batch of learners (leading axis), same results as
    ``vmap(auto_reset_step)``, but the resets are computed only on steps where some
    learner's episode ended (a batch-level ``lax.cond``, which a per-learner ``vmap`` of
    ``auto_reset_step`` cannot do), which halves the cost of most steps."""
    split = jax.vmap(jax.random.split)(keys)
    k_step, k_reset = split[:, 0], split[:, 1]
    obs, next_state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        k_step, state, actions, params)
    done = terminated | truncated

    def with_resets(operand):
        obs, next_state, mask = operand
        obs_r, state_r = jax.vmap(env.reset, in_axes=(0, None))(k_reset, params)
        mask_r = jax.vmap(env.action_mask, in_axes=(0, None))(state_r, params)
        pick = lambda a, b: jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
        return pick(obs_r, obs), jax.tree.map(pick, state_r, next_state), pick(mask_r, mask)

    info = dict(info)
    info["final_observation"] = obs
    obs, next_state, info["action_mask"] = jax.lax.cond(
        jnp.any(done), with_resets, lambda operand: operand, (obs, next_state, info["action_mask"]))
    return obs, next_state, reward, terminated, truncated, info
