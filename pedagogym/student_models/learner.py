"""A simulated learner: one student model composed with the learner components.

``Learner`` is a frozen (hashable) description used as a static argument under ``jit``.
Its methods are pure functions for ONE learner; environments ``vmap`` them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special  # noqa: F401
from jax import Array

from pedagogym.curriculum.spec import CurriculumArrays, ItemKind
from pedagogym.student_models.base import Params, State, StudentModel, Traits
from pedagogym.student_models.components import (
    Engagement, EngagementParams, EngagementState, Prerequisites, PrerequisiteParams, ResponseTime,
    ResponseTimeParams,
)
from pedagogym.student_models.population import PopulationArrays, sample_traits

PREREQUISITES = Prerequisites()
ENGAGEMENT = Engagement()
RESPONSE_TIME = ResponseTime()

# Learning multiplier by item kind (index = ItemKind): a hint teaches a little, an
# assessment item barely (testing effect without feedback), a video less than doing.
DEFAULT_KIND_GATE = {ItemKind.PRACTICE: 1.0, ItemKind.HINT: 0.5, ItemKind.WORKED_EXAMPLE: 1.0,
                     ItemKind.VIDEO: 0.7, ItemKind.ASSESSMENT: 0.2}
# Kinds whose response a platform records as correct / incorrect.
OBSERVED_KINDS = (ItemKind.PRACTICE, ItemKind.HINT, ItemKind.ASSESSMENT)


class LearnerParams(NamedTuple):
    model: Params
    prereq: PrerequisiteParams
    engagement: EngagementParams
    rt: ResponseTimeParams
    traits: Traits


class LearnerState(NamedTuple):
    model: State
    engagement: EngagementState


class Attempt(NamedTuple):
    correct: Array  # bool[]: the response (True for study-only kinds)
    observed: Array  # bool[]: a platform records correct/incorrect for this kind
    response_time: Array  # float32[] seconds
    p_correct: Array  # float32[] probability the learner had of answering correctly
    dropped: Array  # bool[] the learner quit after this item
    state: LearnerState


@dataclass(frozen=True)
class Learner:
    """A student model plus prerequisite gating, engagement/dropout and response times."""

    model: StudentModel
    prerequisites: bool = True
    engagement: bool = False
    prereq_floor: float = 0.1
    kind_gate: tuple[float, ...] = tuple(DEFAULT_KIND_GATE[k] for k in ItemKind)

    def sample(self, key: Array, curr: CurriculumArrays, pop: PopulationArrays, base: Params | None = None) -> LearnerParams:
        """Draw one learner from a population (same key, same learner). ``base``: the model's
        population-average params (e.g. fitted from logs); default ``model.default_params``."""
        traits = sample_traits(key, pop)
        base = self.model.default_params(curr) if base is None else base
        return LearnerParams(
            model=self.model.apply_traits(base, traits),
            prereq=PREREQUISITES.default_params(self.prereq_floor),
            engagement=ENGAGEMENT.apply_traits(ENGAGEMENT.default_params(), traits),
            rt=RESPONSE_TIME.apply_traits(RESPONSE_TIME.default_params(), traits),
            traits=traits,
        )

    def init(self, key: Array, lp: LearnerParams, curr: CurriculumArrays) -> LearnerState:
        return LearnerState(model=self.model.init(key, lp.model, curr), engagement=ENGAGEMENT.init(lp.engagement))

    def _engaged(self, ls: LearnerState) -> EngagementState:
        return ls.engagement if self.engagement else EngagementState(engagement=jnp.ones((), jnp.float32))

    def p_correct(self, lp: LearnerParams, ls: LearnerState, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        p = self.model.p_correct(lp.model, ls.model, curr, item, t)
        return ENGAGEMENT.effective_p(lp.engagement, self._engaged(ls), p) if self.engagement else p

    def gate(self, lp: LearnerParams, ls: LearnerState, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        """float32[S] learning multiplier for practising ``item`` now."""
        g = jnp.asarray(self.kind_gate, jnp.float32)[curr.kind[item]] * jnp.ones((curr.n_skills,), jnp.float32)
        if self.prerequisites:
            g = g * PREREQUISITES.gate(lp.prereq, curr, self.model.mastery(lp.model, ls.model, curr, t))
        return g

    def attempt(self, key: Array, lp: LearnerParams, ls: LearnerState, curr: CurriculumArrays,
                item: Array, t: Array) -> Attempt:
        """The learner meets ``item`` at time ``t``: responds, takes time, learns, may drop out."""
        k_learn, k_noise = jax.random.split(key)
        # response, dropout and response-time noise from one draw (randomness dominates step cost)
        u = jnp.clip(jax.random.uniform(k_noise, (3,)), 1e-7, 1.0 - 1e-7)
        kind = curr.kind[item]
        observed = jnp.any(kind == jnp.asarray([int(k) for k in OBSERVED_KINDS]))
        p = self.p_correct(lp, ls, curr, item, t)
        correct = jnp.where(observed, u[0] < p, True)
        eng = self._engaged(ls)
        rt = RESPONSE_TIME.sample(jax.scipy.special.ndtri(u[2]), lp.rt, curr.duration[item], p, eng.engagement)
        gate = self.gate(lp, ls, curr, item, t)
        model_state = self.model.learn(k_learn, lp.model, ls.model, curr, item, correct, t, gate)
        if self.engagement:
            new_eng = ENGAGEMENT.update(lp.engagement, ls.engagement, p, correct)
            dropped = u[1] < ENGAGEMENT.hazard(lp.engagement, new_eng)
        else:
            new_eng, dropped = ls.engagement, jnp.zeros((), bool)
        return Attempt(correct=correct, observed=observed, response_time=rt, p_correct=p, dropped=dropped,
                       state=LearnerState(model=model_state, engagement=new_eng))

    def rest(self, lp: LearnerParams, ls: LearnerState) -> LearnerState:
        """Between sessions: engagement recovers toward its baseline."""
        if not self.engagement:
            return ls
        return ls._replace(engagement=ENGAGEMENT.rest(lp.engagement, ls.engagement))

    def mastery(self, lp: LearnerParams, ls: LearnerState, curr: CurriculumArrays, t: Array) -> Array:
        """float32[S] true probability each skill is known / recalled at ``t``."""
        return self.model.mastery(lp.model, ls.model, curr, t)

    def post_test(self, lp: LearnerParams, ls: LearnerState, curr: CurriculumArrays, t: Array) -> Array:
        """float32[] expected score on a post-test at ``t``: the assessment items if the
        curriculum has any, else every item (no engagement slips: it measures knowledge)."""
        p = self.model.p_correct_all(lp.model, ls.model, curr, t)
        is_test = curr.kind == int(ItemKind.ASSESSMENT)
        w = jnp.where(jnp.any(is_test), is_test, True).astype(jnp.float32)
        return p @ w / jnp.sum(w)  # a matrix-vector product under vmap (see base.row_sum)
