"""Learner components usable with any student model: prerequisite gating, engagement and
dropout, response times. Each is a small object of pure functions over NamedTuples.
"""
from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.registry import StaticArg
from pedagogym.student_models.base import Traits, logit


class Component(StaticArg):
    name: ClassVar[str]
    citation: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ---- prerequisites ---------------------------------------------------------------------
class PrerequisiteParams(NamedTuple):
    floor: Array  # float32[]: learning multiplier while every prerequisite is unknown (0 = blocked)


class Prerequisites(Component):
    """Knowledge-space style prerequisite gating (Doignon & Falmagne 1985; Falmagne et al. 2006,
    ALEKS): practice on a skill teaches little until its prerequisites are known.

    gate[s] = prod_{p in prereq(s)} (floor + (1 - floor) * mastery[p]), where ``mastery`` is the
    learner's TRUE latent mastery (hidden from policies). floor = 0 blocks learning entirely.
    """

    name = "prerequisite"
    citation = "Doignon & Falmagne (1985); Falmagne et al. (2006)"

    def default_params(self, floor: float = 0.1) -> PrerequisiteParams:
        return PrerequisiteParams(floor=jnp.asarray(floor, jnp.float32))

    def gate(self, params: PrerequisiteParams, curr: CurriculumArrays, mastery: Array) -> Array:
        """float32[S] learning multiplier per skill given float32[S] true mastery."""
        factor = params.floor + (1.0 - params.floor) * mastery
        # the product over prerequisites in the log domain: one (batched) matrix product instead
        # of a reduction over an S x S array per learner; a zero factor (floor 0) gives gate 0
        pre = (curr.prereq > 0).astype(jnp.float32)
        log_gate = jnp.log(jnp.maximum(factor, 1e-30)) @ pre.T
        blocked = (factor <= 0.0).astype(jnp.float32) @ pre.T > 0.5
        return jnp.where(blocked, 0.0, jnp.exp(log_gate))

    def met(self, curr: CurriculumArrays, belief: Array, threshold: Array) -> Array:
        """bool[S]: every prerequisite of the skill has (observable) belief >= threshold
        (counted as a matrix product, which batches into one GEMM over learners)."""
        below = (belief < threshold).astype(jnp.float32)
        return below @ (curr.prereq > 0).astype(jnp.float32).T < 0.5  # batch axis first under vmap


# ---- engagement and dropout ------------------------------------------------------------
class EngagementParams(NamedTuple):
    """All float32[]. Thresholds are on the probability of answering correctly."""

    e0: Array  # initial engagement in (0, 1)
    easy: Array  # p_correct above this is boring
    hard: Array  # p_correct below this is frustrating (when failed)
    boredom: Array  # engagement lost per too-easy item
    frustration: Array  # engagement lost per failed too-hard item
    flow: Array  # fraction of the gap to 1 regained per item in the zone of proximal development
    recovery: Array  # fraction of the gap to e0 regained over a break between sessions
    hazard_logit: Array  # dropout hazard per item (logit) at full engagement
    hazard_slope: Array  # added to the hazard logit per unit of disengagement (1 - e)
    effort: Array  # at engagement 0, P(correct) is scaled by (1 - effort): careless slips


class EngagementState(NamedTuple):
    engagement: Array  # float32[] in [0, 1]


class Engagement(Component):
    """Latent engagement that falls with boredom (items far too easy) and frustration (failed
    items far too hard) and rises in flow (the zone of proximal development), with a per-item
    dropout hazard logistic in disengagement.

    Grounded in the affect dynamics of D'Mello & Graesser (2012, "Dynamics of affective states
    during complex learning") and flow theory (Csikszentmihalyi 1990); the dropout hazard form
    follows discrete-time survival models of MOOC attrition (e.g. Xing et al. 2016).
    """

    name = "engagement"
    citation = "D'Mello & Graesser (2012); Csikszentmihalyi (1990); discrete-time hazard (Singer & Willett 1993)"

    def default_params(self) -> EngagementParams:
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return EngagementParams(e0=f(0.8), easy=f(0.9), hard=f(0.4), boredom=f(0.04), frustration=f(0.08),
                                flow=f(0.05), recovery=f(0.7), hazard_logit=f(-7.0), hazard_slope=f(6.0),
                                effort=f(0.2))

    def apply_traits(self, params: EngagementParams, traits: Traits) -> EngagementParams:
        return params._replace(
            e0=jax.nn.sigmoid(logit(params.e0) + 0.5 * traits.persistence),
            hazard_logit=params.hazard_logit - traits.persistence,
            frustration=params.frustration * jnp.exp(-0.5 * traits.persistence),
        )

    def init(self, params: EngagementParams) -> EngagementState:
        return EngagementState(engagement=params.e0)

    def effective_p(self, params: EngagementParams, state: EngagementState, p: Array) -> Array:
        """P(correct) after careless slips from disengagement."""
        return p * (1.0 - params.effort * (1.0 - state.engagement))

    def update(self, params: EngagementParams, state: EngagementState, p: Array, correct: Array) -> EngagementState:
        e = state.engagement
        bored = p > params.easy
        frustrated = (p < params.hard) & ~correct
        e = jnp.where(bored, e - params.boredom, jnp.where(frustrated, e - params.frustration, e + params.flow * (1.0 - e)))
        return EngagementState(engagement=jnp.clip(e, 0.0, 1.0))

    def hazard(self, params: EngagementParams, state: EngagementState) -> Array:
        """float32[] probability of dropping out after this item."""
        return jax.nn.sigmoid(params.hazard_logit + params.hazard_slope * (1.0 - state.engagement))

    def rest(self, params: EngagementParams, state: EngagementState) -> EngagementState:
        e = state.engagement + params.recovery * (params.e0 - state.engagement)
        return EngagementState(engagement=e)


# ---- response time ---------------------------------------------------------------------
class ResponseTimeParams(NamedTuple):
    """All float32[]."""

    speed: Array  # learner speed tau (log scale): + = faster
    sigma: Array  # sd of log response time
    ability_slope: Array  # log-time change per unit of logit P(correct): easier -> faster
    disengaged_slowdown: Array  # log-time added at engagement 0 (mind wandering)


class ResponseTime(Component):
    """Log-normal response times (van der Linden 2006, "A lognormal model for response times
    on test items", JEBS 31): log T = beta_i - tau_j + eps, eps ~ N(0, sigma^2), with the time
    intensity beta_i = log(expected duration of item i) and the learner's speed tau_j, plus a
    dependence on ability vs. difficulty (-slope * logit P(correct), as in the hierarchical
    models of van der Linden 2007 where harder-for-you items take longer) and on engagement.
    """

    name = "response_time"
    citation = "van der Linden (2006, 2007)"

    def default_params(self) -> ResponseTimeParams:
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return ResponseTimeParams(speed=f(0.0), sigma=f(0.35), ability_slope=f(0.15), disengaged_slowdown=f(0.4))

    def apply_traits(self, params: ResponseTimeParams, traits: Traits) -> ResponseTimeParams:
        return params._replace(speed=params.speed + 0.2 * traits.speed)

    def log_mean(self, params: ResponseTimeParams, duration: Array, p: Array, engagement: Array) -> Array:
        return (jnp.log(duration) - params.speed - params.ability_slope * logit(p)
                + params.disengaged_slowdown * (1.0 - engagement))

    def sample(self, z: Array, params: ResponseTimeParams, duration: Array, p: Array, engagement: Array) -> Array:
        """float32[] seconds spent on the item, given a standard normal draw ``z``."""
        return jnp.exp(self.log_mean(params, duration, p, engagement) + params.sigma * z)
