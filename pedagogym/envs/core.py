"""The functional JAX environment (gymnax / Gymnasium FuncEnv style).

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

One implementation for every student model: the env composes a :class:`Learner` (the
hidden student), a :class:`Reward` and a :class:`Featurizer` (what the policy sees).
``PedagogyEnv`` is a frozen dataclass (hashable, a static ``jit`` argument); everything
numeric lives in the ``EnvParams`` pytree, so one compiled step serves many settings.

Time: each item takes the learner's sampled response time. When a session has lasted
``session_s`` seconds the learner leaves and comes back ``7 / sessions_per_week`` days
(+/- 25%) after the session started, so spacing matters for memory models.

A step on a finished episode (``state.done``) is a no-op with reward 0, so fixed-length
``lax.scan`` rollouts need no reset; :mod:`pedagogym.envs.wrappers` auto-resets instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.curriculum.spec import CurriculumArrays
import pedagogym.envs.ability as ability  # the module itself, not through the package __init__ (which imports this one)
from pedagogym.envs.constraints import Constraints, allowed_items
from pedagogym.envs.observations import Featurizer, History, ObserverParams, PlatformFeatures
from pedagogym.envs.rewards import Outcome, PostTest, Reward
from pedagogym.schema import SECONDS_PER_DAY
from pedagogym.student_models.base import row_sum
from pedagogym.student_models.learner import PREREQUISITES, Learner, LearnerParams, LearnerState
from pedagogym.student_models.population import PopulationArrays


class EnvParams(NamedTuple):
    """Numeric settings (a pytree; may be batched or swapped without recompiling).

    curriculum:        the curriculum as arrays
    population:        the learner population as arrays
    observer:          knowledge-tracer parameters the platform uses for ``belief``
    item_available:    bool[I] items that may be presented at all
    horizon:           int32[] items per episode before truncation
    session_s:         float32[] session length in seconds
    mastery_threshold: float32[] true mastery counted as "mastered" (termination, metrics)
    unlock_threshold:  float32[] observer belief every prerequisite needs before an item unlocks (0 = none locked)
    test_delay_days:   float32[] delay between the last item and the final test
    dropout_penalty:   float32[] penalty used by engagement-aware rewards
    invalid_action_s:  float32[] seconds wasted when a locked item is chosen (nothing is presented)
    terminate_on_mastery: bool[] end the episode once every skill is mastered (off for flashcards,
                       where recall right after a review is momentarily ~1)
    model_params:      the student model's population-average params (defaults, or fitted from
                       logs by ``pedagogym fit``); each learner's traits shift them
    stop_se:           float32[] adaptive-test stopping rule: the episode terminates once the
                       platform's EAP ability estimate (:mod:`pedagogym.envs.ability`) has a
                       standard error below this (read only by envs built with ``stop_on_se``;
                       ``horizon`` is the maximum test length)
    constraints:       a teacher's constraints (pin, forbidden items / skills, review skills,
                       daily time cap), :mod:`pedagogym.envs.constraints`; ``build`` sets
                       ``Constraints.none`` (the one way to say "no constraints")
    """

    curriculum: CurriculumArrays
    population: PopulationArrays
    observer: ObserverParams
    item_available: Array
    horizon: Array
    session_s: Array
    mastery_threshold: Array
    unlock_threshold: Array
    test_delay_days: Array
    dropout_penalty: Array
    invalid_action_s: Array
    terminate_on_mastery: Array
    model_params: Any  # the model's own params pytree (e.g. ``BKTParams``)
    stop_se: Array
    constraints: Constraints  # ``Constraints.none(I, S)`` = no constraints


class EnvState(NamedTuple):
    """learner: the sampled learner's parameters (hidden); student: its latent state (hidden);
    history: what a platform logs; dropped / done: bool[]; mastered_at: int32[] step at which
    every skill was first mastered (-1 = not yet); day / day_time_s: the day of the last item
    and the time on task that day (the daily cap of the teacher constraints)."""

    learner: LearnerParams
    student: LearnerState
    history: History
    dropped: Array
    done: Array
    mastered_at: Array
    day: Array = 0  # int32[] the simulator day (floor of the clock) of the last presented item
    day_time_s: Array = 0.0  # float32[] seconds on task during that day (for the daily time cap)


class FinalTest(NamedTuple):
    """float32[] scores of one learner's final test (see :meth:`PedagogyEnv.final_test`)."""

    post_test: Array  # the learner model's post-test score
    mean_recall: Array  # mean P(correct) over every item
    log_recall: Array  # mean log P(correct) over every item (P clipped at 1e-6)


def _select(pred: Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


@dataclass(frozen=True)
class PedagogyEnv:
    learner: Learner
    reward: Reward = PostTest()
    featurizer: Featurizer = PlatformFeatures()
    privileged: bool = False
    stop_on_se: bool = False  # end an episode when the EAP standard error < params.stop_se (adaptive tests)

    # ---- spaces -------------------------------------------------------------------------
    def n_actions(self, params: EnvParams) -> int:
        return params.curriculum.n_items

    def feature_names(self, skill_ids: tuple[str, ...], item_ids: tuple[str, ...]) -> list[str]:
        names = self.featurizer.feature_names(skill_ids, item_ids)
        if self.privileged:
            names += [f"true_mastery[{s}]" for s in skill_ids] + ["true_engagement"]
        return names

    def obs_size(self, params: EnvParams) -> int:
        n_s, n_i = params.curriculum.n_skills, params.curriculum.n_items
        return len(self.feature_names(tuple(map(str, range(n_s))), tuple(map(str, range(n_i)))))

    # ---- core -----------------------------------------------------------------------------
    def reset(self, key: Array, params: EnvParams) -> tuple[Array, EnvState]:
        k_learner, k_init = jax.random.split(key)
        curr = params.curriculum
        lp = self.learner.sample(k_learner, curr, params.population, params.model_params)
        ls = self.learner.init(k_init, lp, curr)
        state = EnvState(learner=lp, student=ls, history=History.initial(curr, params.observer),
                         dropped=jnp.zeros((), bool), done=jnp.zeros((), bool),
                         mastered_at=jnp.full((), -1, jnp.int32), day=jnp.zeros((), jnp.int32),
                         day_time_s=jnp.zeros((), jnp.float32))
        return self.observation(state, params), state

    def step(self, key: Array, state: EnvState, action: Array, params: EnvParams
             ) -> tuple[Array, EnvState, Array, Array, Array, dict[str, Array]]:
        k_attempt, k_gap = jax.random.split(key)
        curr, h, lp = params.curriculum, state.history, state.learner
        item = jnp.asarray(action, jnp.int32)
        valid = self.action_mask(state, params)[item]

        att = self.learner.attempt(k_attempt, lp, state.student, curr, item, h.t)
        rt = jnp.where(valid, att.response_time, params.invalid_action_s)
        student = _select(valid, att.state, state.student)
        recorded = h.record(curr, params.observer, item, att.correct, att.observed, rt, h.t)
        history = _select(valid, recorded, h._replace(step=h.step + 1))

        # clock: the item's time, then a break if the session is over (or the day's time cap is reached)
        t = h.t + rt / SECONDS_PER_DAY
        today = jnp.floor(h.t).astype(jnp.int32)
        day_time = jnp.where(today == state.day, state.day_time_s, 0.0) + rt
        capped = day_time >= params.constraints.daily_cap_s
        session_over = ((t - h.session_start) * SECONDS_PER_DAY >= params.session_s) | capped
        gap = 7.0 / lp.traits.sessions_per_week * jax.random.uniform(k_gap, minval=0.75, maxval=1.25)
        next_start = jnp.maximum(h.session_start + gap, t)
        next_start = jnp.where(capped, jnp.maximum(next_start, (today + 1).astype(jnp.float32)), next_start)
        history = history._replace(
            t=jnp.where(session_over, next_start, t),
            session_start=jnp.where(session_over, next_start, h.session_start),
            session=h.session + session_over.astype(jnp.int32),
        )
        student = _select(session_over, self.learner.rest(lp, student), student)

        mastery_before = self.learner.mastery(lp, state.student, curr, h.t)
        mastery_after = self.learner.mastery(lp, student, curr, history.t)
        all_mastered = row_sum(mastery_after < params.mastery_threshold) < 0.5
        dropped = valid & att.dropped
        terminated = (all_mastered & params.terminate_on_mastery) | dropped | self.precise_enough(history, params)
        truncated = (history.step >= params.horizon) & ~terminated
        done = terminated | truncated
        if self.reward.needs_final:
            final = self.final_test(lp, student, params, history.t)
            final_score, final_log = final.post_test, final.log_recall
        else:
            final_score = final_log = jnp.zeros((), jnp.float32)
        n_skills = mastery_after.shape[-1]  # means as row sums: see student_models.base.row_sum
        outcome = Outcome(mastery_before=row_sum(mastery_before) / n_skills,
                          mastery_after=row_sum(mastery_after) / n_skills, all_mastered=all_mastered,
                          done=done, dropped=dropped, final_score=final_score, final_log_recall=final_log)
        reward = self.reward(outcome, params).astype(jnp.float32)

        new_state = EnvState(
            learner=lp, student=student, history=history, dropped=dropped, done=done,
            mastered_at=jnp.where((state.mastered_at < 0) & all_mastered, history.step, state.mastered_at),
            day=today, day_time_s=day_time.astype(jnp.float32),
        )
        # a finished episode stays finished: no-op, zero reward
        new_state = _select(state.done, state, new_state)
        was_done = state.done
        reward = jnp.where(was_done, 0.0, reward)
        terminated = jnp.where(was_done, state.dropped | ((state.mastered_at >= 0) & params.terminate_on_mastery)
                               | self.precise_enough(state.history, params), terminated)
        truncated = jnp.where(was_done, ~terminated, truncated)
        info = {
            "action_mask": self.action_mask(new_state, params),
            "valid_action": valid,
            "correct": att.correct & att.observed & valid,
            "observed": att.observed & valid,
            "response_time": rt,
            "dropped": new_state.dropped,
            "mastery": outcome.mastery_after,
        }
        return self.observation(new_state, params), new_state, reward, terminated, truncated, info

    def precise_enough(self, history: History, params: EnvParams) -> Array:
        """bool[] the adaptive-test stopping rule: at least one item presented and the
        platform's EAP ability estimate has a standard error below ``params.stop_se``
        (always False unless the env was built with ``stop_on_se``)."""
        if not self.stop_on_se:
            return jnp.zeros((), bool)
        se = ability.estimate(history, params.curriculum).se
        return (history.step > 0) & (se < params.stop_se)

    # ---- views --------------------------------------------------------------------------
    def final_test(self, lp: LearnerParams, ls: LearnerState, params: EnvParams, t: Array) -> "FinalTest":
        """The final test at ``t + test_delay_days``: post-test score and mean (log) P(correct) over
        every item (the one computation behind rewards, evaluation rollouts and stress tests)."""
        t_test = t + params.test_delay_days
        p = self.learner.model.p_correct_all(lp.model, ls.model, params.curriculum, t_test)
        return FinalTest(post_test=self.learner.post_test(lp, ls, params.curriculum, t_test), mean_recall=jnp.mean(p),
                         log_recall=jnp.mean(jnp.log(jnp.clip(p, 1e-6, 1.0))))

    def action_mask(self, state: EnvState, params: EnvParams) -> Array:
        """bool[I]: items available, allowed by the teacher constraints (``params.constraints``)
        and whose skills' prerequisites all have observable belief >= ``unlock_threshold``.
        Never all False: falls back to the available allowed items (ignoring locks), then to
        every available item (:func:`~pedagogym.envs.constraints.build_constraints` refuses
        constraint sets that allow no available item)."""
        curr = params.curriculum
        met = PREREQUISITES.met(curr, state.history.belief, params.unlock_threshold)
        unlocked = (~met).astype(jnp.float32) @ (curr.q_matrix > 0).astype(jnp.float32).T < 0.5  # no locked skill
        available = params.item_available
        allowed = available & allowed_items(params.constraints, curr)
        available = jnp.where(jnp.any(allowed), allowed, available)
        mask = available & unlocked
        return jnp.where(row_sum(mask) > 0.5, mask, available)

    def observation(self, state: EnvState, params: EnvParams) -> Array:
        obs = self.featurizer(state.history, params.curriculum, params.horizon.astype(jnp.float32), params.session_s)
        if self.privileged:
            mastery = self.learner.mastery(state.learner, state.student, params.curriculum, state.history.t)
            obs = jnp.concatenate([obs, mastery, state.student.engagement.engagement[None]])
        return obs

    def true_mastery(self, state: EnvState, params: EnvParams) -> Array:
        """float32[S] latent mastery (for oracles and metrics, never for deployed policies)."""
        return self.learner.mastery(state.learner, state.student, params.curriculum, state.history.t)
