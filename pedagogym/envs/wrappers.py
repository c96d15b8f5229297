"""Auto-reset for batched rollouts: the one place where finished episodes restart.

Gymnasium 1.x "same-step" semantics (``gymnasium.vector.AutoresetMode.SAME_STEP``): the
observation returned with ``terminated | truncated`` is already the fresh learner's; the
finished episode's last observation is ``info["final_obs"]``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.envs.core import EnvParams, EnvState, PedagogyEnv, _select


def auto_reset_step(env: PedagogyEnv, key: Array, state: EnvState, action: Array, params: EnvParams):
    """``env.step``; where the episode ended, the returned obs/state are a fresh learner's
    (drawn from ``key``) and ``info["final_obs"]`` holds the last observation."""
    k_step, k_reset = jax.random.split(key)
    obs, next_state, reward, terminated, truncated, info = env.step(k_step, state, action, params)
    done = terminated | truncated
    obs_reset, state_reset = env.reset(k_reset, params)
    info = dict(info)
    info["final_obs"] = obs
    info["action_mask"] = jnp.where(done, env.action_mask(state_reset, params), info["action_mask"])
    return (jnp.where(done, obs_reset, obs), _select(done, state_reset, next_state), reward, terminated, truncated, info)


def batch_reset(env: PedagogyEnv, keys: Array, params: EnvParams):
    """vmap of ``env.reset`` over keys (float32[N, D], batched EnvState)."""
    return jax.vmap(env.reset, in_axes=(0, None))(keys, params)


def reset_finished(env: PedagogyEnv, done: Array, keys: Array, obs: Array, state: EnvState, mask: Array,
                   params: EnvParams):
    """Where ``done`` (bool[N]), a fresh learner drawn from ``keys[i]`` replaces learner ``i``:
    returns (obs float32[N, D], state, action mask bool[N, I]), the others unchanged.

    Fresh learners are drawn only on steps where some learner's episode ended (a batch-level
    ``lax.cond``, which a per-learner ``vmap`` cannot do), and then only for the learners that
    ended, ``chunk`` at a time (a while loop over their indices): with many learners some
    episode ends on most steps, and re-sampling every learner each time would cost more than
    the step itself. Same keys, same learners as ``env.reset(keys[i])``."""
    n = done.shape[0]
    chunk = max(1, min(64, n // 8))  # learners re-sampled per pass (static)

    def with_resets(operand):
        def body(carry):
            obs, st, mask, left = carry
            idx = jnp.nonzero(left, size=chunk, fill_value=n)[0]  # n: no learner (dropped below)
            safe = jnp.minimum(idx, n - 1)
            obs_r, st_r = jax.vmap(env.reset, in_axes=(0, None))(keys[safe], params)
            mask_r = jax.vmap(env.action_mask, in_axes=(0, None))(st_r, params)
            put = lambda a, b: a.at[idx].set(b, mode="drop")  # noqa: E731
            return put(obs, obs_r), jax.tree.map(put, st, st_r), put(mask, mask_r), put(left, jnp.zeros_like(idx, bool))

        obs, st, mask = operand
        obs, st, mask, _ = jax.lax.while_loop(lambda c: jnp.any(c[3]), body, (obs, st, mask, done))
        return obs, st, mask

    return jax.lax.cond(jnp.any(done), with_resets, lambda operand: operand, (obs, state, mask))


def batch_step(env: PedagogyEnv, keys: Array, state: EnvState, actions: Array, params: EnvParams):
    """:func:`auto_reset_step` over a batch of learners (leading axis), same results as
    ``vmap(auto_reset_step)``, with the resets of :func:`reset_finished`."""
    split = jax.vmap(jax.random.split)(keys)
    k_step, k_reset = split[:, 0], split[:, 1]
    obs, next_state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        k_step, state, actions, params)
    info = dict(info)
    info["final_obs"] = obs
    obs, next_state, info["action_mask"] = reset_finished(
        env, terminated | truncated, k_reset, obs, next_state, info["action_mask"], params)
    return obs, next_state, reward, terminated, truncated, info
