"""The platform's ability estimate: EAP over a quadrature grid, from the logged history.

A platform that runs an assessment knows each item's calibrated parameters (the
curriculum's ``discrimination`` a, ``difficulty`` b and ``guess`` c; an item without a
``guess`` counts as c = 0, i.e. 2PL) and logs, per item, how often it was presented and
answered correctly (:class:`~pedagogym.envs.observations.History` ``item_attempts`` /
``item_correct``). For an ability that does not change during the test these counts are
sufficient: the log-likelihood of a unidimensional ability ``theta`` is

    sum_i  r_i log P_i(theta) + (n_i - r_i) log(1 - P_i(theta)),
    P_i(theta) = c_i + (1 - c_i) sigmoid(a_i (theta - b_i))       (3PL, no 1.702 constant)

over the items of a kind whose response is recorded (study-only kinds carry no evidence).
The expected a posteriori (EAP) estimate is the posterior mean under a normal prior,
computed on a fixed grid of ``N_POINTS`` points on ``[-GRID_HALF_WIDTH, GRID_HALF_WIDTH]``
(Bock & Mislevy 1982); its standard error is the posterior standard deviation.

Used by the adaptive-testing policies (:mod:`pedagogym.policies.cat`), by the env's
standard-error stopping rule (``EnvParams.stop_se``) and by the ``ability_rmse`` metric, so
that every policy is scored with the same estimator.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.envs.observations import History
from pedagogym.student_models.irt import prob_3pl
from pedagogym.student_models.learner import OBSERVED_KINDS

N_POINTS = 81
GRID_HALF_WIDTH = 4.0
PRIOR_MEAN = 0.0
PRIOR_SD = 1.0


class KnownItems(NamedTuple):
    """The item parameters the platform knows, float32[I] each; ``scored``: bool[I] the
    item's kind records a correct / incorrect response."""

    a: Array
    b: Array
    c: Array
    scored: Array


class AbilityEstimate(NamedTuple):
    """theta: float32[] EAP estimate; se: float32[] posterior SD; posterior: float32[G]
    normalised posterior weights on :func:`grid`."""

    theta: Array
    se: Array
    posterior: Array


def grid() -> Array:
    """float32[G] the quadrature points."""
    return jnp.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, N_POINTS, dtype=jnp.float32)


def known_items(curr: CurriculumArrays) -> KnownItems:
    scored = jnp.any(curr.kind[:, None] == jnp.asarray([int(k) for k in OBSERVED_KINDS])[None, :], axis=1)
    c = jnp.where(jnp.isnan(curr.guess), 0.0, curr.guess)
    return KnownItems(a=curr.discrimination, b=curr.difficulty, c=c, scored=scored)


def prob_grid(items: KnownItems) -> Array:
    """float32[G, I] 3PL P(correct) of every item at every grid point."""
    theta = grid()[:, None]
    return prob_3pl(theta, items.a, items.b, items.c)


def log_prior() -> Array:
    g = grid()
    return -0.5 * ((g - PRIOR_MEAN) / PRIOR_SD) ** 2


def posterior_from_counts(items: KnownItems, attempts: Array, correct: Array) -> AbilityEstimate:
    """EAP from per-item presentation and correct counts (float32[I] each)."""
    p = jnp.clip(prob_grid(items), 1e-7, 1.0 - 1e-7)
    n = jnp.where(items.scored, attempts, 0.0)
    r = jnp.where(items.scored, correct, 0.0)
    loglik = jnp.log(p) @ r + jnp.log1p(-p) @ (n - r)  # [G]
    logpost = loglik + log_prior()
    w = jax.nn.softmax(logpost)
    g = grid()
    mean = jnp.sum(w * g)
    sd = jnp.sqrt(jnp.maximum(jnp.sum(w * (g - mean) ** 2), 0.0))
    return AbilityEstimate(theta=mean, se=sd, posterior=w)


def estimate(history: History, curr: CurriculumArrays) -> AbilityEstimate:
    """The platform's EAP ability estimate from the logged history."""
    return posterior_from_counts(known_items(curr), history.item_attempts, history.item_correct)
