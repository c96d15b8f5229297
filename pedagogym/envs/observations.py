"""What a policy sees: the observable history a platform logs, and featurizers over it.

The history holds only loggable facts (which item, correct or not, response time, when) and
a knowledge-tracer belief computed from them with fixed, public observer parameters. The
featurizer turns it into a flat float32 vector with named features (``feature_names``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import jax.numpy as jnp
from jax import Array

from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.registry import StaticArg
from pedagogym.schema import RT_SCALE_S, SECONDS_PER_DAY, feature_names
from pedagogym.student_models import bkt



class ObserverParams(NamedTuple):
    """The knowledge tracer a platform runs (BKT forward pass), float32[S] each."""

    p_init: Array
    p_learn: Array
    p_forget: Array
    p_guess: Array
    p_slip: Array

    @classmethod
    def default(cls, n_skills: int, p_init=0.2, p_learn=0.15, p_forget=0.0, p_guess=0.2, p_slip=0.1) -> "ObserverParams":
        ones = jnp.ones((n_skills,), jnp.float32)
        return cls(p_init * ones, p_learn * ones, p_forget * ones, p_guess * ones, p_slip * ones)


class History(NamedTuple):
    """Everything a platform could log about one learner (``S`` skills, ``I`` items).

    item_attempts:  float32[I]  times each item was presented
    item_correct:   float32[I]  correct responses per item
    item_last_t:    float32[I]  day of the last presentation (-1 = never)
    skill_attempts: float32[S]  presentations of items exercising each skill
    skill_correct:  float32[S]  correct responses on items exercising each skill
    belief:         float32[S]  knowledge-tracer P(known) per skill
    last_item:      int32[]     last presented item (-1 = none)
    last_correct:   float32[]   1 correct, 0 incorrect or not observed
    last_rt:        float32[]   last response time in seconds
    step:           int32[]     items presented so far
    session:        int32[]     sessions started so far minus one
    t:              float32[]   days since the learner started
    session_start:  float32[]   day the current session started
    """

    item_attempts: Array
    item_correct: Array
    item_last_t: Array
    skill_attempts: Array
    skill_correct: Array
    belief: Array
    last_item: Array
    last_correct: Array
    last_rt: Array
    step: Array
    session: Array
    t: Array
    session_start: Array

    @classmethod
    def initial(cls, curr: CurriculumArrays, observer: ObserverParams) -> "History":
        n_i, n_s = curr.n_items, curr.n_skills
        zi, zs = jnp.zeros((n_i,), jnp.float32), jnp.zeros((n_s,), jnp.float32)
        f0, i0 = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        return cls(zi, zi, -jnp.ones((n_i,), jnp.float32), zs, zs, observer.p_init, -jnp.ones((), jnp.int32),
                   f0, f0, i0, i0, f0, f0)

    def record(self, curr: CurriculumArrays, observer: ObserverParams, item: Array, correct: Array,
               observed: Array, rt_s: Array, t_presented: Array) -> "History":
        """Log one presentation at day ``t_presented``; the clock itself is advanced elsewhere."""
        skills = curr.q_matrix[item]
        got = (correct & observed).astype(jnp.float32)
        onehot = jnp.arange(curr.n_items) == item
        new_belief = bkt.observe(self.belief, correct, observed, observer.p_learn, observer.p_forget,
                                 observer.p_guess, observer.p_slip)
        return self._replace(
            item_attempts=self.item_attempts + onehot,
            item_correct=self.item_correct + onehot * got,
            item_last_t=jnp.where(onehot, t_presented, self.item_last_t),
            skill_attempts=self.skill_attempts + skills,
            skill_correct=self.skill_correct + skills * got,
            belief=jnp.where(skills > 0, new_belief, self.belief),
            last_item=item.astype(jnp.int32),
            last_correct=got,
            last_rt=rt_s,
            step=self.step + 1,
        )


class Featurizer(StaticArg, ABC):
    """History -> float32 observation vector. Subclasses define names and ``__call__``."""

    name: ClassVar[str]

    @abstractmethod
    def feature_names(self, skill_ids: tuple[str, ...], item_ids: tuple[str, ...]) -> list[str]:
        """The name of every entry of the vector, in order."""

    @abstractmethod
    def __call__(self, h: History, curr: CurriculumArrays, horizon: Array, session_s: Array) -> Array:
        """float32[D] the observation of history ``h``."""


class PlatformFeatures(Featurizer):
    """The default featurizer; every feature is computable from an event log
    (item, correct, response time, timestamp) and the curriculum.

    ======================  ======  =====================================================
    name                    size    definition
    ======================  ======  =====================================================
    belief[s]               S       BKT forward-pass P(known) with the observer params
    skill_attempts[s]       S       log1p(presentations of items exercising s)
    skill_accuracy[s]       S       (correct + 1) / (attempts + 2) on those items
    item_attempts[i]        I       log1p(presentations of i)
    item_accuracy[i]        I       (correct + 1) / (attempts + 2) on i
    item_recency[i]         I       1 / (1 + days since i was last presented); 0 if never
    last_correct            1       1 if the last response was correct
    last_rt                 1       log1p(last response seconds) / log1p(600), clipped to [0, 1]
    progress                1       items presented / horizon
    session                 1       log1p(session index)
    session_time            1       minutes into the current session / session length, clipped
    ======================  ======  =====================================================
    """

    name = "platform"

    def feature_names(self, skill_ids: tuple[str, ...], item_ids: tuple[str, ...]) -> list[str]:
        return feature_names(skill_ids, item_ids)  # the layout: pedagogym.schema

    def __call__(self, h: History, curr: CurriculumArrays, horizon: Array, session_s: Array) -> Array:
        seen = h.item_last_t >= 0
        recency = jnp.where(seen, 1.0 / (1.0 + jnp.maximum(h.t - h.item_last_t, 0.0)), 0.0)
        scalars = jnp.stack([
            h.last_correct,
            jnp.clip(jnp.log1p(h.last_rt) / jnp.log1p(RT_SCALE_S), 0.0, 1.0),
            h.step / horizon,
            jnp.log1p(h.session.astype(jnp.float32)),
            jnp.clip((h.t - h.session_start) * SECONDS_PER_DAY / session_s, 0.0, 1.0),
        ])
        return jnp.concatenate([
            h.belief,
            jnp.log1p(h.skill_attempts),
            (h.skill_correct + 1.0) / (h.skill_attempts + 2.0),
            jnp.log1p(h.item_attempts),
            (h.item_correct + 1.0) / (h.item_attempts + 2.0),
            recency,
            scalars,
        ]).astype(jnp.float32)


class TeacherFeatures(PlatformFeatures):
    """``platform``'s features (same layout, first), then what the hand-written teachers
    compute from them, so a network does not have to rediscover it (all from the event log
    and the curriculum):

    ======================  ======  =====================================================
    name                    size    definition
    ======================  ======  =====================================================
    prereq_belief[s]        S       prod over s's prerequisites of (0.1 + 0.9 belief[p])
    learnable[i]            I       mean over i's skills of (1 - belief) x prereq_belief
    item_days[i]            I       log1p(days since i was last presented); 0 if never
    item_seen[i]            I       1 if i was ever presented
    ======================  ======  =====================================================

    Not exportable yet (the bundle's event-log runtime implements ``platform`` only).
    """

    name = "teacher"
    FLOOR: ClassVar[float] = 0.1

    def feature_names(self, skill_ids: tuple[str, ...], item_ids: tuple[str, ...]) -> list[str]:
        names = super().feature_names(skill_ids, item_ids)
        names += [f"prereq_belief[{s}]" for s in skill_ids]
        for group in ("learnable", "item_days", "item_seen"):
            names += [f"{group}[{i}]" for i in item_ids]
        return names

    def __call__(self, h: History, curr: CurriculumArrays, horizon: Array, session_s: Array) -> Array:
        base = super().__call__(h, curr, horizon, session_s)
        factor = self.FLOOR + (1.0 - self.FLOOR) * h.belief
        gate = jnp.exp(jnp.log(factor) @ (curr.prereq > 0).astype(jnp.float32).T)
        q = (curr.q_matrix > 0).astype(jnp.float32)
        learnable = q @ ((1.0 - h.belief) * gate) / jnp.maximum(q @ jnp.ones_like(h.belief), 1.0)
        seen = h.item_last_t >= 0
        days = jnp.where(seen, jnp.log1p(jnp.maximum(h.t - h.item_last_t, 0.0)), 0.0)
        return jnp.concatenate([base, gate, learnable, days, seen.astype(jnp.float32)]).astype(jnp.float32)
