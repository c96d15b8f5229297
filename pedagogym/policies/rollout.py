"""Batched evaluation rollouts: a policy meets N simulated learners for a whole episode,
in one jitted ``lax.scan`` over steps and ``vmap`` over learners.

Common random numbers: learner ``n`` of a cell is drawn from ``fold_in(key, n)`` and its
step noise from a stream that does not depend on the policy, so every policy meets the
same learners with the same luck; comparisons between policies are paired.

Many devices: :func:`evaluate` splits the learner axis over every visible device
(:func:`pedagogym.sharding.split_over_devices`: a 1-D ``Mesh`` named ``"learners"`` and
``jax.shard_map``; each device runs the single-device program on its block of learners), so
the learners, their items and outcomes are the same for the same keys whatever the device
count (floats up to the last bits). On a CPU-only machine,
``XLA_FLAGS=--xla_force_host_platform_device_count=K`` (set before JAX is imported) makes K
CPU devices.
"""
from __future__ import annotations

from functools import lru_cache, partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pedagogym.envs import ability
from pedagogym.envs.core import EnvParams, EnvState, PedagogyEnv
from pedagogym.policies.base import Policy, PolicyView
from pedagogym.sharding import split_over_devices


class EpisodeResult(NamedTuple):
    """Per learner (leading axis N); curves have shape [N, T+1] (index 0 = before any item)."""

    final_mastery: Array  # float32[N] mean true mastery at the end
    post_test: Array  # float32[N] expected post-test score at the end (+ test delay)
    mean_recall: Array  # float32[N] mean P(correct) over all items at the end (+ test delay)
    log_recall: Array  # float32[N] mean log P(correct) over all items at the end (+ test delay)
    steps_to_mastery: Array  # int32[N] items until every skill was mastered (-1 = never)
    dropped: Array  # bool[N]
    steps: Array  # int32[N] items presented
    time_spent_min: Array  # float32[N] minutes on task
    days: Array  # float32[N] calendar days from first to last item
    subgroup: Array  # int32[N]
    total_reward: Array  # float32[N]
    mastery_curve: Array  # float32[N, T+1] mean true mastery after each step
    valid_actions: Array  # float32[N] fraction of chosen items that were unlocked
    ability_error: Array  # float32[N] platform's EAP ability estimate at the end minus the true ability (NaN: no ability)
    ability_se: Array  # float32[N] standard error of that estimate (posterior SD)


def view_of(policy: Policy, env: PedagogyEnv, state: EnvState, params: EnvParams) -> PolicyView:
    return PolicyView(history=state.history, action_mask=env.action_mask(state, params),
                      obs=env.observation(state, params), latent=state if policy.privileged else None)


def learner_keys(key: Array, n: int) -> Array:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))


class Step(NamedTuple):
    """One decision of :func:`play_episode`, as its ``emit`` sees it: the policy's ``key``,
    its memory ``pstate`` and ``view`` before acting, the ``action``, the env ``state`` before
    and ``new_state`` after the step, its ``reward`` and ``info``, and ``active`` (the
    episode had not ended before this step; after the end the env and memory stand still)."""

    t: Array
    key: Array
    state: EnvState
    pstate: Any
    view: PolicyView
    action: Array
    new_state: EnvState
    reward: Array
    info: dict
    active: Array


def play_episode(env: PedagogyEnv, policy: Policy, params: EnvParams, key: Array, horizon: int,
                 emit: Callable[[Step], Any]) -> tuple[EnvState, Any]:
    """One learner taught by ``policy`` for ``horizon`` decisions (traced: jit/vmap it), with
    the key schedule of :func:`evaluate` (reset, env and policy keys split from ``key``, folded
    with the step). Returns the final ``EnvState`` and ``emit``'s per-step pytrees stacked over
    the steps: the one episode loop that recording (export parity), imitation data (agents)
    and the like share."""
    k_reset, k_env, k_policy = jax.random.split(key, 3)
    _, state = env.reset(k_reset, params)
    pstate = policy.init(params)

    def body(carry, t):
        state, pstate = carry
        view = view_of(policy, env, state, params)
        kp = jax.random.fold_in(k_policy, t)
        action, pstate2 = policy.act(kp, pstate, view, params, env)
        _, new_state, reward, _, _, info = env.step(jax.random.fold_in(k_env, t), state, action, params)
        active = ~state.done
        pstate2 = jax.tree.map(lambda a, b: jnp.where(active, a, b), pstate2, pstate)
        out = emit(Step(t, kp, state, pstate, view, action, new_state, reward, info, active))
        return (new_state, pstate2), out

    (state, _), out = jax.lax.scan(body, (state, pstate), jnp.arange(horizon))
    return state, out


def _episode(env: PedagogyEnv, policy: Policy, horizon: int, params: EnvParams, key: Array) -> EpisodeResult:
    k_reset, k_env, k_policy = jax.random.split(key, 3)
    obs, state = env.reset(k_reset, params)
    pstate = policy.init(params)

    def body(carry, t):
        state, pstate, time_s, total, n_valid = carry
        view = view_of(policy, env, state, params)
        action, pstate2 = policy.act(jax.random.fold_in(k_policy, t), pstate, view, params, env)
        _, new_state, reward, _, _, info = env.step(jax.random.fold_in(k_env, t), state, action, params)
        active = ~state.done
        pstate2 = jax.tree.map(lambda a, b: jnp.where(active, a, b), pstate2, pstate)
        time_s = time_s + jnp.where(active, info["response_time"], 0.0)
        n_valid = n_valid + (active & info["valid_action"])
        return (new_state, pstate2, time_s, total + reward, n_valid), env.true_mastery(new_state, params).mean()

    zero = jnp.zeros((), jnp.float32)
    m0 = env.true_mastery(state, params).mean()
    (state, _, time_s, total, n_valid), curve = jax.lax.scan(
        body, (state, pstate, zero, zero, jnp.zeros((), jnp.int32)), jnp.arange(horizon))
    h = state.history
    lp, ls = state.learner, state.student
    final = env.final_test(lp, ls, params, h.t)
    est = ability.estimate(h, params.curriculum)  # the same estimator for every policy
    true_ability = env.learner.model.ability(lp.model, ls.model, params.curriculum)
    ability_error = est.theta - true_ability if true_ability is not None else jnp.full((), jnp.nan, jnp.float32)
    return EpisodeResult(
        final_mastery=env.true_mastery(state, params).mean(),
        post_test=final.post_test,
        mean_recall=final.mean_recall,
        log_recall=final.log_recall,
        steps_to_mastery=state.mastered_at,
        dropped=state.dropped,
        steps=h.step,
        time_spent_min=time_s / 60.0,
        days=h.t,  # the clock starts at 0 at the first item
        subgroup=lp.traits.subgroup,
        total_reward=total,
        mastery_curve=jnp.concatenate([m0[None], curve]),
        valid_actions=n_valid / jnp.maximum(h.step, 1),
        ability_error=ability_error,
        ability_se=est.se,
    )


def _evaluate_body(env: PedagogyEnv, policy: Policy, horizon: int, params: EnvParams, keys: Array) -> EpisodeResult:
    return jax.vmap(lambda k: _episode(env, policy, horizon, params, k))(keys)


_evaluate_one_device = partial(jax.jit, static_argnums=(0, 1, 2))(_evaluate_body)

LEARNER_AXIS = "learners"


@lru_cache(maxsize=64)
def _evaluate_sharded(env: PedagogyEnv, policy: Policy, horizon: int, devices: tuple):
    """(params, keys) -> EpisodeResult, params replicated, keys and outputs split by learner."""
    return split_over_devices(partial(_evaluate_body, env, policy, horizon), (False, True), LEARNER_AXIS, devices)


def evaluate(env: PedagogyEnv, policy: Policy, horizon: int, params: EnvParams, keys: Array,
             devices=None) -> EpisodeResult:
    """Run one episode per key (learner); ``keys``: uint32[N, 2]. Deterministic in the keys.

    The learners are split over ``devices`` (default: all visible devices; N is padded up to
    a multiple of their number and the padding dropped). One device, or a call inside a
    trace (``keys`` a tracer), runs the plain jitted ``vmap``. Each learner's episode does not
    depend on the device count (floats up to the last bits)."""
    devs = tuple(jax.devices() if devices is None else devices)
    if len(devs) == 1 or isinstance(keys, jax.core.Tracer):
        if devices is not None and not isinstance(keys, jax.core.Tracer):
            keys = jax.device_put(keys, devs[0])
        return _evaluate_one_device(env, policy, horizon, params, keys)
    return _evaluate_sharded(env, policy, horizon, devs)(params, np.asarray(keys))
