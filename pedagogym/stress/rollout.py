"""The stress-test rollout: N learners through a curriculum in one jitted ``lax.scan``,
recording what the designer report needs and :class:`~pedagogym.policies.rollout.EpisodeResult`
does not: per-skill mastery crossing times, first practice, prerequisite gaps, per-item
attempts and failure streaks, the dropout step and item, and the statistics behind the
missing-prerequisite detector.

It reuses ``env.step`` / ``policy.act`` (no second copy of the dynamics) and derives every
learner's randomness exactly as :func:`pedagogym.policies.rollout.evaluate` does, so the
same key gives the same learner with the same luck in both.

Two sets of params: ``sim`` drives the simulated learners (their "true" curriculum), ``plan``
is what the policy sees (the designer's file: order, declared prerequisites). They must have
the same shapes; usually they are the same object. The declared prerequisites (``plan``) are
the ones prerequisite gaps and "declared prerequisites mastered" refer to.

The time loop is outside the learner batch (``scan`` over steps of a ``vmap``-ed step), so
statistics that need every learner (e.g. skill x skill counts) are summed across learners
at each step with one matrix product instead of being carried per learner.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.envs.core import EnvParams, PedagogyEnv
from pedagogym.policies.rollout import view_of
from pedagogym.policies.base import Policy

PAIR_LIMIT = 48  # skill x skill statistics only for curricula with at most this many skills


class StressResult(NamedTuple):
    """Per learner (leading axis N; ``S`` skills, ``I`` items, ``T`` horizon) unless marked
    *aggregate* (summed over learners). Steps count items presented: ``0`` = before any item.

    mastered_at:      int32[N]     items until every skill was mastered at once (-1 = never)
    dropped:          bool[N]
    steps:            int32[N]     items presented (the dropout step for dropped learners)
    last_item:        int32[N]     the last item presented (-1 = none); for dropouts, where they left
    time_min:         float32[N]   minutes on task
    post_test:        float32[N]   expected post-test score at the end
    final_mastery:    float32[N]   mean true mastery at the end
    subgroup:         int32[N]
    cross_step:       int32[N, S]  items until the skill's true mastery first reached the threshold (-1 = never)
    cross_min:        float32[N, S] minutes on task at that moment (NaN = never)
    cross_practice:   int32[N, S]  items exercising the skill presented by then (-1 = never)
    first_practice:   int32[N, S]  step (1-based) of the first item exercising the skill (-1 = never)
    gap:              bool[N, S]   at first practice, some declared prerequisite was not mastered
    item_first:       int32[N, I]  step (1-based) of the item's first presentation (-1 = never)
    item_attempts:    int32[N, I]
    item_correct:     int32[N, I]  correct observed responses
    item_streak:      int32[N, I]  longest run of consecutive failures on the item
    skill_streak:     int32[N, S]  longest run of consecutive failures on items of the skill
    items:            int32[N, T]  item presented at each step (-1 once the episode is over)
    correct:          bool[N, T]   observed correct response at each step
    skill_curve:      float32[T+1, S] *aggregate*: learners with the skill mastered after each step (finished learners keep their last state)
    gap_pairs:        float32[S, S] *aggregate*: [s, p] learners whose first practice of s came with declared prerequisite p unmastered
    mastered_tries:   float32[I]   *aggregate*: attempts by learners who had mastered all the item's skills
    mastered_fails:   float32[I]   *aggregate*: failed observed responses among those
    ready_opp:        float32[S]   *aggregate*: practice of s while unmastered, all declared prerequisites mastered
    ready_learn:      float32[S]   *aggregate*: ... that ended with s mastered
    pair_opp:         float32[S, S] *aggregate*: [s, p] ``ready_opp`` events when skill p was also mastered
    pair_learn:       float32[S, S] *aggregate*: [s, p] ``ready_learn`` events when skill p was also mastered
    """

    mastered_at: Array
    dropped: Array
    steps: Array
    last_item: Array
    time_min: Array
    post_test: Array
    final_mastery: Array
    subgroup: Array
    cross_step: Array
    cross_min: Array
    cross_practice: Array
    first_practice: Array
    gap: Array
    item_first: Array
    item_attempts: Array
    item_correct: Array
    item_streak: Array
    skill_streak: Array
    items: Array
    correct: Array
    skill_curve: Array
    gap_pairs: Array
    mastered_tries: Array
    mastered_fails: Array
    ready_opp: Array
    ready_learn: Array
    pair_opp: Array
    pair_learn: Array


class Outcomes(NamedTuple):
    """The per-learner outcomes a what-if run needs (a subset of :class:`StressResult`)."""

    mastered_at: Array  # int32[N]
    dropped: Array  # bool[N]
    steps: Array  # int32[N]
    post_test: Array  # float32[N]
    cross_step: Array  # int32[N, S]


def _learner_streams(key: Array) -> tuple[Array, Array, Array]:
    """(reset, env, policy) keys of one learner, as in ``experiments.rollout._episode``."""
    k_reset, k_env, k_policy = jax.random.split(key, 3)
    return k_reset, k_env, k_policy


def _rollout(env: PedagogyEnv, policy: Policy, horizon: int, full: bool, sim: EnvParams, plan: EnvParams,
             keys: Array) -> StressResult | Outcomes:
    n = keys.shape[0]
    n_s, n_i = sim.curriculum.n_skills, sim.curriculum.n_items
    pairs = full and n_s <= PAIR_LIMIT
    thr = sim.mastery_threshold
    declared = plan.curriculum.prereq > 0  # bool[S, S]: [s, p] p is a declared prerequisite of s
    q = sim.curriculum.q_matrix > 0  # bool[I, S]

    k_reset, k_env, k_policy = jax.vmap(_learner_streams)(keys)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(k_reset, sim)
    pstate = jax.vmap(lambda _: policy.init(plan))(jnp.arange(n))
    mastery = jax.vmap(env.true_mastery, in_axes=(0, None))(state, sim)  # [N, S]
    mastered0 = mastery >= thr

    i32 = lambda shape, v=0: jnp.full(shape, v, jnp.int32)  # noqa: E731
    f32 = lambda shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
    per = dict(
        mastery=mastery, time_s=f32((n,)),
        cross_step=jnp.where(mastered0, 0, -1).astype(jnp.int32),
        cross_min=jnp.where(mastered0, 0.0, jnp.nan).astype(jnp.float32),
    )
    if full:
        per.update(cross_practice=jnp.where(mastered0, 0, -1).astype(jnp.int32), first_practice=i32((n, n_s), -1), gap=jnp.zeros((n, n_s), bool), item_first=i32((n, n_i), -1),
                   item_run=i32((n, n_i)), item_streak=i32((n, n_i)), skill_run=i32((n, n_s)),
                   skill_streak=i32((n, n_s)))
    agg = {}
    if full:
        agg = dict(gap_pairs=f32((n_s, n_s)), mastered_tries=f32((n_i,)), mastered_fails=f32((n_i,)),
                   ready_opp=f32((n_s,)), ready_learn=f32((n_s,)))
        if pairs:
            agg.update(pair_opp=f32((n_s, n_s)), pair_learn=f32((n_s, n_s)))

    def act(kp, ps, st):
        view = view_of(policy, env, st, plan)
        return policy.act(kp, ps, view, plan, env)

    def step(ke, st, a):
        _, new, _, _, _, info = env.step(ke, st, a, sim)
        return new, info["correct"], info["observed"], info["response_time"]

    def body(carry, t):
        state, pstate, per, agg = carry
        kp = jax.vmap(jax.random.fold_in, in_axes=(0, None))(k_policy, t)
        ke = jax.vmap(jax.random.fold_in, in_axes=(0, None))(k_env, t)
        action, pstate2 = jax.vmap(act)(kp, pstate, state)
        new_state, correct, observed, rt = jax.vmap(step)(ke, state, action)
        active = ~state.done  # bool[N]: this step presented an item
        pstate2 = jax.tree.map(lambda a, b: jnp.where(active.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), pstate2, pstate)
        mastery = jax.vmap(env.true_mastery, in_axes=(0, None))(new_state, sim)
        was = per["mastery"] >= thr  # [N, S] before this step
        now = mastery >= thr
        n_step = state.history.step + 1  # [N] 1-based index of this item
        time_s = per["time_s"] + jnp.where(active, rt, 0.0)
        newly = active[:, None] & (per["cross_step"] < 0) & now
        out = dict(
            mastery=jnp.where(active[:, None], mastery, per["mastery"]), time_s=time_s,
            cross_step=jnp.where(newly, n_step[:, None], per["cross_step"]),
            cross_min=jnp.where(newly, time_s[:, None] / 60.0, per["cross_min"]),
        )
        new_agg = dict(agg)
        ys = {}
        if full:
            item_hot = (jnp.arange(n_i)[None, :] == action[:, None]) & active[:, None]  # [N, I]
            skills = q[action] & active[:, None]  # [N, S] skills practised now
            failed = observed & ~correct & active  # [N]
            succeeded = observed & correct & active
            first = skills & (per["first_practice"] < 0)
            # declared prerequisites not yet mastered: [N, S] how many, per skill
            unmastered = (~was).astype(jnp.float32)
            n_unmet = unmastered @ declared.T.astype(jnp.float32)
            prereq_ok = n_unmet < 0.5  # all declared prerequisites mastered
            item_run = jnp.where(item_hot & failed[:, None], per["item_run"] + 1,
                                 jnp.where(item_hot & succeeded[:, None], 0, per["item_run"]))
            skill_run = jnp.where(skills & failed[:, None], per["skill_run"] + 1,
                                  jnp.where(skills & succeeded[:, None], 0, per["skill_run"]))
            out.update(
                cross_practice=jnp.where(newly, new_state.history.skill_attempts.astype(jnp.int32),
                                         per["cross_practice"]),
                first_practice=jnp.where(first, n_step[:, None], per["first_practice"]),
                gap=per["gap"] | (first & ~prereq_ok),
                item_first=jnp.where(item_hot & (per["item_first"] < 0), n_step[:, None], per["item_first"]),
                item_run=item_run, item_streak=jnp.maximum(per["item_streak"], item_run),
                skill_run=skill_run, skill_streak=jnp.maximum(per["skill_streak"], skill_run),
            )
            item_mastered = jnp.all(~q[action] | was, axis=1) & active & observed  # all its skills mastered
            ready = skills & ~was & prereq_ok  # [N, S]
            learnt = ready & now
            fr, ln, wf = ready.astype(jnp.float32), learnt.astype(jnp.float32), was.astype(jnp.float32)
            new_agg.update(
                gap_pairs=agg["gap_pairs"] + (first.astype(jnp.float32).T @ unmastered) * declared,
                mastered_tries=agg["mastered_tries"] + jnp.sum(item_hot & item_mastered[:, None], 0, dtype=jnp.float32),
                mastered_fails=agg["mastered_fails"] + jnp.sum(item_hot & (item_mastered & ~correct)[:, None], 0,
                                                               dtype=jnp.float32),
                ready_opp=agg["ready_opp"] + fr.sum(0), ready_learn=agg["ready_learn"] + ln.sum(0),
            )
            if pairs:
                new_agg.update(pair_opp=agg["pair_opp"] + fr.T @ wf, pair_learn=agg["pair_learn"] + ln.T @ wf)
            ys = dict(item=jnp.where(active, action, -1), correct=correct & observed & active,
                      curve=jnp.sum(out["mastery"] >= thr, axis=0, dtype=jnp.float32))
        return (new_state, pstate2, out, new_agg), ys

    (state, _, per, agg), ys = jax.lax.scan(body, (state, pstate, per, agg), jnp.arange(horizon))
    h, lp, ls = state.history, state.learner, state.student
    post = jax.vmap(lambda lp, ls, t: env.final_test(lp, ls, sim, t).post_test)(lp, ls, h.t)
    if not full:
        return Outcomes(mastered_at=state.mastered_at, dropped=state.dropped, steps=h.step, post_test=post,
                        cross_step=per["cross_step"])
    zeros_ss = jnp.zeros((n_s, n_s), jnp.float32)
    curve0 = jnp.sum(mastered0, axis=0, dtype=jnp.float32)
    return StressResult(
        mastered_at=state.mastered_at, dropped=state.dropped, steps=h.step, last_item=h.last_item,
        time_min=per["time_s"] / 60.0, post_test=post, final_mastery=jnp.mean(per["mastery"], axis=1),
        subgroup=lp.traits.subgroup, cross_step=per["cross_step"], cross_min=per["cross_min"],
        cross_practice=per["cross_practice"], first_practice=per["first_practice"], gap=per["gap"], item_first=per["item_first"],
        item_attempts=h.item_attempts.astype(jnp.int32), item_correct=h.item_correct.astype(jnp.int32),
        item_streak=per["item_streak"], skill_streak=per["skill_streak"],
        items=ys["item"].T, correct=ys["correct"].T,
        skill_curve=jnp.concatenate([curve0[None], ys["curve"]]),
        gap_pairs=agg["gap_pairs"], mastered_tries=agg["mastered_tries"], mastered_fails=agg["mastered_fails"],
        ready_opp=agg["ready_opp"], ready_learn=agg["ready_learn"],
        pair_opp=agg.get("pair_opp", zeros_ss), pair_learn=agg.get("pair_learn", zeros_ss),
    )


@partial(jax.jit, static_argnums=(0, 1, 2))
def stress_rollout(env: PedagogyEnv, policy: Policy, horizon: int, sim: EnvParams, plan: EnvParams,
                   keys: Array) -> StressResult:
    """Every learner in ``keys`` (uint32[N, 2]) through ``horizon`` items; see :class:`StressResult`."""
    return _rollout(env, policy, horizon, True, sim, plan, keys)


@partial(jax.jit, static_argnums=(0, 1, 2))
def whatif_rollout(env: PedagogyEnv, policy: Policy, horizon: int, sim: EnvParams, plan: EnvParams,
                   keys: Array) -> Outcomes:
    """Many curriculum variants at once: ``sim`` / ``plan`` stacked along a leading variant
    axis V (same shapes), each with its own learners ``keys`` (uint32[V, M, 2]; pass the same
    keys in every slot for common random numbers). Returns :class:`Outcomes` with leading axes [V, M]."""
    return jax.vmap(lambda s, p, k: _rollout(env, policy, horizon, False, s, p, k))(sim, plan, keys)
