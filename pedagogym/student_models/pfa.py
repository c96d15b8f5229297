"""Performance Factors Analysis.

Pavlik, P. I., Cen, H. & Koedinger, K. R. (2009). Performance Factors Analysis - A New
Alternative to Knowledge Tracing. Proceedings of AIED 2009, 531-538.

For an item exercising the skills ``j`` (a row of the Q-matrix)::

    m = sum_j (beta_j + gamma_j * s_j + rho_j * f_j) - difficulty_i
    P(correct) = sigmoid(m)

``s_j`` / ``f_j`` count the learner's prior successes / failures on skill ``j``;
``beta_j`` is the skill's easiness, ``gamma_j`` / ``rho_j`` the weights of a success / a
failure. The paper's per-skill easiness is kept; in place of its optional item
parameter the curriculum's item ``difficulty`` (IRT ``b``) enters as an item-level
easiness offset, ``-difficulty_i`` (0 for an average item), so the same curriculum
drives every model. Multi-skill items sum the terms of their skills (PFA's
conjunctive-additive treatment of multiple knowledge components).

Defaults (beta = -1.0, gamma = 0.25, rho = 0.05) are of the size reported for fitted PFA
models (Pavlik et al. 2009; Gong, Beck & Heffernan 2010, IJAIED 20(3)): a skill that
starts well below 50 % correct, successes worth several times as much as failures, and
a small failure weight. Fitted ``rho`` can be negative, in which case a failed attempt
lowers the predicted probability; the defaults and the trait shift keep it positive.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.student_models.base import StudentModel, Traits, item_skills


class PFAParams(NamedTuple):
    """Per-skill PFA parameters, each float32[S] (logit scale).

    beta:  skill easiness.
    gamma: weight of each prior success.
    rho:   weight of each prior failure.
    """

    beta: Array
    gamma: Array
    rho: Array


class PFAState(NamedTuple):
    successes: Array  # float32[S] prior correct practice opportunities per skill
    failures: Array   # float32[S] prior incorrect practice opportunities per skill


def skill_logits(params: PFAParams, state: PFAState) -> Array:
    """float32[S] each skill's term ``beta_j + gamma_j s_j + rho_j f_j``."""
    return params.beta + params.gamma * state.successes + params.rho * state.failures


class PFA(StudentModel):
    name = "pfa"
    family = "skill"
    citation = "Pavlik, Cen & Koedinger (2009), AIED"

    def __init__(self, beta: float = -1.0, gamma: float = 0.25, rho: float = 0.05):
        self.defaults = (float(beta), float(gamma), float(rho))

    def _static_key(self) -> tuple:
        return self.defaults

    def default_params(self, curr: CurriculumArrays) -> PFAParams:
        ones = jnp.ones((curr.n_skills,), jnp.float32)
        return PFAParams(*(v * ones for v in self.defaults))

    def apply_traits(self, params: PFAParams, traits: Traits) -> PFAParams:
        rate = jnp.exp(traits.speed)
        return params._replace(beta=params.beta + traits.prior, gamma=params.gamma * rate, rho=params.rho * rate)

    def init(self, key: Array, params: PFAParams, curr: CurriculumArrays) -> PFAState:
        zeros = jnp.zeros((curr.n_skills,), jnp.float32)
        return PFAState(successes=zeros, failures=zeros)

    def p_correct(self, params: PFAParams, state: PFAState, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        m = jnp.sum(item_skills(curr, item) * skill_logits(params, state)) - curr.difficulty[item]
        return jax.nn.sigmoid(m)

    def learn(self, key: Array, params: PFAParams, state: PFAState, curr: CurriculumArrays,
              item: Array, correct: Array, t: Array, gate: Array) -> PFAState:
        step = item_skills(curr, item) * gate
        ok = jnp.asarray(correct, jnp.float32)
        return PFAState(
            successes=(state.successes + step * ok).astype(jnp.float32),
            failures=(state.failures + step * (1.0 - ok)).astype(jnp.float32),
        )

    def mastery(self, params: PFAParams, state: PFAState, curr: CurriculumArrays, t: Array) -> Array:
        """float32[S] ``sigmoid(beta_j + gamma_j s_j + rho_j f_j)``, the skill alone on an average item."""
        return jax.nn.sigmoid(skill_logits(params, state))
