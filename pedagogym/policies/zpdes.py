"""ZPDES: a multi-armed bandit over the zone of proximal development.

Clement, B., Roy, D., Oudeyer, P.-Y. & Lopes, M. (2015). Multi-Armed Bandits for
Intelligent Tutoring Systems. Journal of Educational Data Mining 7(2), 20-48.

Activities are items. Per item the policy keeps its last ``window`` outcomes (a fixed-size
array, most recent first) and a bandit weight.

* ZPD: an item is in the zone when every prerequisite skill of its skills (its own skills
  excepted) has a recent success rate >= ``enter_threshold`` over at least ``window // 2``
  outcomes (the success rate of a skill pools its items' windows), and the item is not
  mastered: a full window with success rate >= ``leave_threshold``.
* Reward after each outcome on an item: its learning progress, the success rate of the
  recent half of its window minus that of the older half (0 with fewer than 2 outcomes).
* Weight update (the practised item only): ``w <- beta * w + eta * r``, floored at
  ``w_min`` (the paper's update; the floor keeps every ZPD item sampleable).
* Sampling: ``P(a) = (1 - gamma) w_a / sum_ZPD w + gamma / |ZPD|`` over valid ZPD items;
  when none is valid, uniformly over valid items whose prerequisites are met (review),
  else over valid items.

Study-only kinds count as successes in their own item's window (so they leave the ZPD
after ``window`` views) but not in the skill success rates.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.policies.base import Policy
from pedagogym.policies.common import last_response
from pedagogym.student_models.learner import OBSERVED_KINDS


class ZPDESState(NamedTuple):
    outcomes: Array  # float32[I, W] recent outcomes (1 correct, 0 wrong), most recent first
    count: Array  # int32[I] outcomes held in the window (<= W)
    weight: Array  # float32[I] bandit weights
    n_seen: Array  # float32[]


class ZPDES(Policy):
    name = "zpdes"
    description = "ZPDES bandit on learning progress in the zone of proximal development (Clement et al. 2015)"

    def __init__(self, window: int = 6, enter_threshold: float = 0.7, leave_threshold: float = 0.8,
                 gamma: float = 0.1, beta: float = 0.8, eta: float = 1.0, w_init: float = 1.0, w_min: float = 0.05):
        if window < 2:
            raise PedagogymError(f"zpdes: window must be >= 2, got {window}")
        if not 0.0 <= gamma <= 1.0:
            raise PedagogymError(f"zpdes: gamma must be in [0, 1], got {gamma}")
        if not (w_init > 0 and w_min > 0):
            raise PedagogymError("zpdes: w_init and w_min must be > 0")
        self.window, self.enter_threshold, self.leave_threshold = int(window), float(enter_threshold), float(leave_threshold)
        self.gamma, self.beta, self.eta, self.w_init, self.w_min = float(gamma), float(beta), float(eta), float(w_init), float(w_min)

    def _static_key(self) -> tuple:
        return (self.window, self.enter_threshold, self.leave_threshold, self.gamma, self.beta, self.eta,
                self.w_init, self.w_min)

    def init(self, params):
        n = params.curriculum.n_items
        return ZPDESState(outcomes=jnp.zeros((n, self.window), jnp.float32), count=jnp.zeros((n,), jnp.int32),
                          weight=jnp.full((n,), self.w_init, jnp.float32), n_seen=jnp.zeros((), jnp.float32))

    def progress(self, outcomes: Array, count: Array) -> Array:
        """float32[] learning progress of one window: recent half's success rate minus the older half's."""
        idx = jnp.arange(self.window)
        n_recent = (count + 1) // 2
        recent = idx < n_recent
        older = (idx >= n_recent) & (idx < count)
        rate = lambda m: jnp.sum(outcomes * m) / jnp.maximum(jnp.sum(m), 1)  # noqa: E731
        return jnp.where(count >= 2, rate(recent) - rate(older), 0.0)

    def update(self, ps: ZPDESState, view, params) -> ZPDESState:
        r = last_response(ps.n_seen, view.history, params.curriculum)
        i = r.item
        row = jnp.concatenate([r.correct.astype(jnp.float32)[None], ps.outcomes[i, :-1]])
        count = jnp.minimum(ps.count[i] + 1, self.window)
        w = jnp.maximum(self.beta * ps.weight[i] + self.eta * self.progress(row, count), self.w_min)
        new = r.new
        return ZPDESState(outcomes=ps.outcomes.at[i].set(jnp.where(new, row, ps.outcomes[i])),
                          count=ps.count.at[i].set(jnp.where(new, count, ps.count[i])),
                          weight=ps.weight.at[i].set(jnp.where(new, w, ps.weight[i])), n_seen=r.n_total)

    def prerequisites_met(self, ps: ZPDESState, params) -> Array:
        """bool[I] every prerequisite skill of the item's skills (own skills excepted) is succeeded at."""
        curr = params.curriculum
        observed = jnp.any(curr.kind[:, None] == jnp.asarray([int(k) for k in OBSERVED_KINDS])[None, :], axis=1)
        q = curr.q_matrix * observed[:, None]
        succ = jnp.sum(ps.outcomes, axis=1)
        n = ps.count.astype(jnp.float32)
        skill_n = q.T @ n
        skill_rate = (q.T @ succ) / jnp.maximum(skill_n, 1.0)
        skill_ok = (skill_n >= self.window // 2) & (skill_rate >= self.enter_threshold)
        needs = (curr.q_matrix @ curr.prereq > 0) & (curr.q_matrix <= 0)  # [I, S] prerequisite, not own skill
        return jnp.all(~needs | skill_ok[None, :], axis=1)

    def mastered(self, ps: ZPDESState) -> Array:
        """bool[I] a full window with success rate >= leave_threshold."""
        rate = jnp.sum(ps.outcomes, axis=1) / self.window
        return (ps.count >= self.window) & (rate >= self.leave_threshold)

    def zpd(self, ps: ZPDESState, params) -> Array:
        """bool[I] the items in the zone of proximal development."""
        return self.prerequisites_met(ps, params) & ~self.mastered(ps)

    def probabilities(self, ps: ZPDESState, params, mask: Array) -> Array:
        """float32[I] the sampling distribution over valid ZPD items (zeros if there are none)."""
        zone = self.zpd(ps, params) & mask
        n = jnp.maximum(jnp.sum(zone), 1)
        w = jnp.where(zone, ps.weight, 0.0)
        p = (1.0 - self.gamma) * w / jnp.maximum(jnp.sum(w), 1e-12) + self.gamma / n
        return jnp.where(zone, p, 0.0)

    def scores(self, key, pstate, view, params, env):
        ps = self.update(pstate, view, params)
        mask = view.action_mask
        p = self.probabilities(ps, params, mask)
        gumbel = jax.random.gumbel(key, p.shape)
        review = self.prerequisites_met(ps, params)
        fallback = jnp.where(review, -1000.0, -2000.0)
        # categorical sample by the Gumbel-max trick; zero-probability items only as fallback
        s = jnp.where(p > 0, jnp.log(jnp.maximum(p, 1e-30)) + gumbel, fallback + gumbel)
        return s, ps

