"""Bayesian Knowledge Tracing with forgetting.

Corbett, A. T. & Anderson, J. R. (1995). Knowledge tracing: Modeling the acquisition of
procedural knowledge. User Modeling and User-Adapted Interaction 4, 253-278.
Parameter names and the forgetting extension follow pyBKT (Badrinath, Wang & Pardos 2021):
prior, learns, forgets, guesses, slips.

Two uses of one set of equations:

* the simulated learner (:class:`BKT`) holds a binary latent ``known`` per skill;
* the observer (:func:`observe`) is the forward pass a platform runs on logged
  responses to keep a belief P(known) per skill. Environments use it for the
  knowledge-tracer belief in observations.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.student_models.base import EPS, StudentModel, Traits, item_default, item_skills, logit, skill_mean


class BKTParams(NamedTuple):
    """Per-skill BKT parameters, each float32[S] in (0, 1)."""

    p_init: Array
    p_learn: Array
    p_forget: Array
    p_guess: Array
    p_slip: Array


class BKTState(NamedTuple):
    known: Array  # bool[S]; hidden from the policy


# ---- the observer: pyBKT's forward equations, for beliefs and golden tests -------------
def predict(p_known: Array, p_guess: Array, p_slip: Array) -> Array:
    """P(correct) given belief P(known): known*(1-slip) + (1-known)*guess."""
    return p_known * (1.0 - p_slip) + (1.0 - p_known) * p_guess


def posterior(p_known: Array, correct: Array, p_guess: Array, p_slip: Array) -> Array:
    """P(known | response), Bayes' rule on one observed response."""
    like_known = jnp.where(correct, 1.0 - p_slip, p_slip)
    like_unknown = jnp.where(correct, p_guess, 1.0 - p_guess)
    num = p_known * like_known
    return num / (num + (1.0 - p_known) * like_unknown)


def transition(p_known: Array, p_learn: Array, p_forget: Array) -> Array:
    """Belief after one practice opportunity: learn if unknown, forget if known."""
    return p_known * (1.0 - p_forget) + (1.0 - p_known) * p_learn


def observe(p_known: Array, correct: Array, observed: Array, p_learn: Array, p_forget: Array,
            p_guess: Array, p_slip: Array) -> Array:
    """One observer step: condition on the response (when ``observed``) then transition."""
    cond = jnp.where(observed, posterior(p_known, correct, p_guess, p_slip), p_known)
    return transition(cond, p_learn, p_forget)


# ---- the simulated learner ----------------------------------------------------------
def _shift(p: Array, d: Array) -> Array:
    """``sigmoid(logit(p) + d)`` (``logit`` clips p to [EPS, 1 - EPS]) written as
    ``p / (p + (1 - p) exp(-d))``: the same number, but the only transcendental is ``exp`` of
    the item's difficulty (a curriculum constant), so a post-test over every item costs no
    per-learner log or exp."""
    p = jnp.clip(p, EPS, 1.0 - EPS)
    return p / (p + (1.0 - p) * jnp.exp(-d))


def item_guess_slip(params: BKTParams, curr: CurriculumArrays, item: Array) -> tuple[Array, Array]:
    """Item guess/slip: the item's own if given, else the mean of its skills', shifted by
    difficulty on the logit scale (harder items: fewer lucky guesses, more slips)."""
    skills = item_skills(curr, item)
    b = curr.difficulty[item]
    guess = item_default(curr.guess[item], _shift(skill_mean(params.p_guess, skills), -b))
    slip = item_default(curr.slip[item], _shift(skill_mean(params.p_slip, skills), b))
    return guess, slip


class BKT(StudentModel):
    name = "bkt"
    family = "skill"
    citation = "Corbett & Anderson (1995); forgetting as in pyBKT (Badrinath et al. 2021)"

    def __init__(self, p_init: float = 0.2, p_learn: float = 0.15, p_forget: float = 0.01,
                 p_guess: float = 0.2, p_slip: float = 0.1):
        self.defaults = (p_init, p_learn, p_forget, p_guess, p_slip)

    def _static_key(self) -> tuple:
        return self.defaults

    def default_params(self, curr: CurriculumArrays) -> BKTParams:
        ones = jnp.ones((curr.n_skills,), jnp.float32)
        return BKTParams(*(v * ones for v in self.defaults))

    def apply_traits(self, params: BKTParams, traits: Traits) -> BKTParams:
        shift = lambda p, d: jax.nn.sigmoid(logit(p) + d)  # noqa: E731
        return params._replace(
            p_init=shift(params.p_init, traits.prior),
            p_learn=shift(params.p_learn, traits.speed),
            p_forget=shift(params.p_forget, -traits.memory),
        )

    def init(self, key: Array, params: BKTParams, curr: CurriculumArrays) -> BKTState:
        return BKTState(known=jax.random.bernoulli(key, params.p_init))

    def p_correct(self, params: BKTParams, state: BKTState, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        skills = item_skills(curr, item)
        all_known = jnp.all(jnp.where(skills > 0, state.known, True))  # conjunctive Q-matrix
        guess, slip = item_guess_slip(params, curr, item)
        return jnp.where(all_known, 1.0 - slip, guess)

    def learn(self, key: Array, params: BKTParams, state: BKTState, curr: CurriculumArrays,
              item: Array, correct: Array, t: Array, gate: Array) -> BKTState:
        practiced = item_skills(curr, item) > 0
        # one uniform per skill: an unknown skill is learnt if u < learn, a known one forgotten
        # if u < forget (only one of the two events applies to each skill)
        u = jax.random.uniform(key, state.known.shape)
        new_known = jnp.where(state.known, u >= params.p_forget, u < params.p_learn * gate)
        return BKTState(known=jnp.where(practiced, new_known, state.known))

    def p_correct_all(self, params: BKTParams, state: BKTState, curr: CurriculumArrays, t: Array) -> Array:
        """``p_correct`` for every item at once (a post-test, computed every step by the
        post-test rewards): the conjunctive "all skills known" test and the skill means are
        matrix products over the Q-matrix, which batch into one GEMM over learners."""
        q = (curr.q_matrix > 0).astype(jnp.float32)
        n_skills = jnp.maximum(q.sum(axis=1), 1.0)
        # vector @ matrix.T (not matrix @ vector): under vmap the batch axis stays first and
        # the product needs no transpose
        guess = item_default(curr.guess, _shift(params.p_guess @ q.T / n_skills, -curr.difficulty))
        slip = item_default(curr.slip, _shift(params.p_slip @ q.T / n_skills, curr.difficulty))
        missing = (1.0 - state.known.astype(jnp.float32)) @ q.T  # required skills not known
        return jnp.where(missing < 0.5, 1.0 - slip, guess)

    def mastery(self, params: BKTParams, state: BKTState, curr: CurriculumArrays, t: Array) -> Array:
        return state.known.astype(jnp.float32)
