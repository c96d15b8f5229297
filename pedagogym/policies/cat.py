"""Computerized adaptive testing (CAT): item selection for an ability test on an IRT bank.

Each decision, the policy estimates the learner's ability by EAP from the logged history,
with the item parameters the platform knows (:mod:`pedagogym.envs.ability`: the curriculum's
discrimination a, difficulty b and guess c, 3PL without the 1.702 constant), then scores
every item it has not given yet:

* ``cat_max_info``: maximum Fisher information at the estimate (Lord 1980; the 3PL item
  information :func:`pedagogym.student_models.irt.fisher_information_3pl`, as catsim's
  ``irt.inf``);
* ``cat_kl``: Kullback-Leibler information integrated over the current posterior (the
  posterior-weighted KL index, Chang & Ying 1996; van der Linden 1998):
  ``sum_g w_g KL(P_i(theta_hat) || P_i(theta_g))``: unlike Fisher information at a point
  estimate, it accounts for the estimate's uncertainty early in the test;
* ``cat_randomesque``: exposure control by the randomesque method (Kingsbury & Zara 1989):
  a uniformly random item among the ``k`` most informative ones, so that no item is given
  to every examinee of a given ability.

Items already given, and items of a kind that records no response, rank below every other
valid item (still valid: the action mask is the env's, and teachers' constraints act
through it). The policy memory (:class:`CATState`) is the current estimate and its
standard error, refreshed from the history at each decision.

Stopping. A policy in this env cannot end an episode; the test's length is the platform's
rule, the same for every policy: at most ``horizon`` items, and, with the env setting
``stop_se > 0``, the episode terminates once the EAP standard error (computed from the
history by the env, with the same estimator) falls below ``stop_se``. The ``ability_rmse``
and ``test_length`` metrics of ``pedagogym run`` score every policy, adaptive or not, with
that estimator.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.envs import ability
from pedagogym.policies.base import Policy
from pedagogym.student_models.irt import fisher_information_3pl, prob_3pl

DEMOTE = 1e6  # score penalty for items already given / unscored: below every fresh item


class CATState(NamedTuple):
    """theta: float32[] the EAP ability estimate at the last decision; se: float32[] its
    standard error (posterior SD)."""

    theta: Array
    se: Array


def item_information(theta: Array, items: ability.KnownItems) -> Array:
    """float32[I] 3PL Fisher information of every item at ``theta``."""
    return jnp.where(items.scored, fisher_information_3pl(theta, items.a, items.b, items.c), 0.0)


def posterior_kl(est: ability.AbilityEstimate, items: ability.KnownItems) -> Array:
    """float32[I] posterior-weighted KL index: ``sum_g w_g KL(Bern(P_i(theta_hat)) || Bern(P_i(theta_g)))``."""
    p_hat = jnp.clip(prob_3pl(est.theta, items.a, items.b, items.c), 1e-6, 1 - 1e-6)
    p = jnp.clip(ability.prob_grid(items), 1e-6, 1 - 1e-6)  # [G, I]
    kl = p_hat * (jnp.log(p_hat) - jnp.log(p)) + (1 - p_hat) * (jnp.log1p(-p_hat) - jnp.log1p(-p))
    return jnp.where(items.scored, est.posterior @ kl, 0.0)


class _CAT(Policy, ABC):
    def init(self, params) -> CATState:
        return CATState(theta=jnp.float32(ability.PRIOR_MEAN), se=jnp.float32(ability.PRIOR_SD))

    @abstractmethod
    def criterion(self, key: Array, est: ability.AbilityEstimate, items: ability.KnownItems, usable: Array) -> Array:
        """float32[I] the selection criterion of every item (higher = better)."""

    def scores(self, key, pstate, view, params, env):
        curr = params.curriculum
        items = ability.known_items(curr)
        est = ability.estimate(view.history, curr)
        usable = items.scored & (view.history.item_attempts == 0) & view.action_mask
        crit = self.criterion(key, est, items, usable)
        return jnp.where(usable, crit, crit - DEMOTE), CATState(theta=est.theta, se=est.se)


class MaxInfo(_CAT):
    name = "cat_max_info"
    description = "adaptive test: maximum 3PL Fisher information at the EAP ability estimate"

    def criterion(self, key, est, items, usable):
        return item_information(est.theta, items)


class KLSelection(_CAT):
    name = "cat_kl"
    description = "adaptive test: posterior-weighted Kullback-Leibler information (Chang & Ying 1996)"

    def criterion(self, key, est, items, usable):
        return posterior_kl(est, items)


class Randomesque(_CAT):
    name = "cat_randomesque"
    description = "adaptive test: random item among the k most informative (exposure control, Kingsbury & Zara 1989)"

    def __init__(self, k: int = 5):
        if k < 1:
            raise PedagogymError(f"cat_randomesque: k must be >= 1, got {k}")
        self.k = int(k)

    def _static_key(self) -> tuple:
        return (self.k,)

    def criterion(self, key, est, items, usable):
        info = item_information(est.theta, items)
        ranked = jnp.sort(jnp.where(usable, info, -jnp.inf))[::-1]
        kth = ranked[jnp.minimum(self.k, info.shape[0]) - 1]
        top = usable & (info >= kth)
        # the top k outrank every other item (information < 1e3 for a < 60); uniform among them
        return jnp.where(top, 1e3 + jax.random.uniform(key, info.shape), info)
