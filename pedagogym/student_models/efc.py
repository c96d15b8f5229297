"""Exponential forgetting curve (EFC).

Reddy, S., Labutov, I., Banerjee, S. & Joachims, T. (2016). Unbounded Human Learning:
Optimal Scheduling for Spaced Repetition. KDD 2016.
Reddy, S., Levine, S. & Dragan, A. (2017). Accelerating Human Learning with Deep
Reinforcement Learning. NeurIPS 2017 Workshop on Teaching Machines, Robots, and Humans
(the ``EFCEnv`` student simulator of github.com/rddy/deeptutor).

Each skill is one memory trace (a vocabulary word) with a memory strength ``n`` (the
number of reviews so far) and the time of its last review. Recall of a reviewed trace::

    P(recall) = exp(-theta * d / n)

``theta`` is the skill's decay rate (the papers' item difficulty, per day here), ``d`` the
days since the last review. A review adds one to ``n`` and resets ``d`` to 0, whether the
answer was right or wrong (EFC strength counts attempts; ``correct`` is not used).

Conventions shared by the memory models (``efc``, ``hlr``, ``actr``, ``fsrs``):

* **Unseen traces.** ``p_unseen`` (float32[S]) is the chance of recalling a word that
  was never reviewed in the simulation (prior knowledge or a lucky guess), independent
  of the trace. A skill's recall is ``p_unseen + (1 - p_unseen) * r`` where ``r`` is the
  paper's recall probability of the trace (``r = 0`` before the first review). With
  ``p_unseen = 0`` the model is the paper's formula exactly.
* **Gate.** ``gate`` g in [0, 1] scales a review. g = 1 is the paper's update; g = 0
  leaves the state untouched; in between, the strength moves a fraction g of the way
  (``n + g``) and the trace's recall *right now* moves a fraction g of the way to 1
  (``r_g = 1 - (1 - g)(1 - r)``): the last-review time is set to the "effective" time
  at which the new trace would have recall ``r_g``. A weak review therefore neither
  resets the clock nor leaves it alone.
* **Items.** ``p_correct(item)`` is the mean over the item's skills of recall at ``t``;
  the item's ``difficulty`` b (logit scale, 0 = average) multiplies the decay rate by
  ``exp(b)`` (EFC's item term is its decay rate), so harder items are forgotten faster.
  ``mastery`` is recall on an average item (b = 0).
* **Traits.** ``memory`` divides ``theta`` by ``exp(memory)`` (retains longer);
  ``prior`` shifts ``p_unseen`` on the logit scale; ``speed`` multiplies the strength a
  review adds (``gain = exp(speed)``).

Defaults: ``theta = 0.3`` per day (one review: 74 % recall a day later, 12 % a week
later; five reviews: 66 % a week later) is a simulator default, not a fitted value;
Reddy et al. (2017) sample per-item rates from a log-normal; vary it per curriculum.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.student_models.base import StudentModel, Traits, item_skills, logit, skill_mean


class EFCParams(NamedTuple):
    """Per-skill EFC parameters, each float32[S].

    theta:    decay rate per day (> 0).
    gain:     strength added by one full review (1 = the paper).
    p_unseen: recall probability of a never-reviewed trace, in (0, 1).
    """

    theta: Array
    gain: Array
    p_unseen: Array


class EFCState(NamedTuple):
    strength: Array     # float32[S] n, reviews so far (0 = never reviewed)
    last_review: Array  # float32[S] day of the last review (effective, see module doc)


def recall(theta: Array, strength: Array, elapsed: Array) -> Array:
    """The paper's P(recall) = exp(-theta * elapsed / n) of a reviewed trace (n > 0)."""
    return jnp.exp(-theta * jnp.maximum(elapsed, 0.0) / jnp.maximum(strength, 1e-12))


def _trace_recall(theta: Array, state: EFCState, t: Array) -> Array:
    """float32[S] recall of each trace at ``t``; 0 for a never-reviewed trace."""
    seen = state.strength > 0
    return jnp.where(seen, recall(theta, state.strength, t - state.last_review), 0.0)


class EFC(StudentModel):
    name = "efc"
    family = "memory"
    citation = "Reddy, Labutov, Banerjee & Joachims (2016), KDD; Reddy, Levine & Dragan (2017)"

    def __init__(self, theta: float = 0.3, p_unseen: float = 0.05):
        if not theta > 0:
            raise PedagogymError(f"efc: theta must be > 0 (a decay rate per day), got {theta}")
        if not 0.0 <= p_unseen < 1.0:
            raise PedagogymError(f"efc: p_unseen must be in [0, 1) (0: the paper's formula exactly), got {p_unseen}")
        self.defaults = (float(theta), float(p_unseen))

    def _static_key(self) -> tuple:
        return self.defaults

    def default_params(self, curr: CurriculumArrays) -> EFCParams:
        ones = jnp.ones((curr.n_skills,), jnp.float32)
        theta, p_unseen = self.defaults
        return EFCParams(theta=theta * ones, gain=ones, p_unseen=p_unseen * ones)

    def apply_traits(self, params: EFCParams, traits: Traits) -> EFCParams:
        return params._replace(
            theta=params.theta * jnp.exp(-traits.memory),
            gain=params.gain * jnp.exp(traits.speed),
            p_unseen=jax.nn.sigmoid(logit(params.p_unseen) + traits.prior),
        )

    def init(self, key: Array, params: EFCParams, curr: CurriculumArrays) -> EFCState:
        zeros = jnp.zeros((curr.n_skills,), jnp.float32)
        return EFCState(strength=zeros, last_review=zeros)

    def p_correct(self, params: EFCParams, state: EFCState, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        theta = params.theta * jnp.exp(curr.difficulty[item])
        r = _trace_recall(theta, state, t)
        return skill_mean(params.p_unseen + (1.0 - params.p_unseen) * r, item_skills(curr, item))

    def learn(self, key: Array, params: EFCParams, state: EFCState, curr: CurriculumArrays,
              item: Array, correct: Array, t: Array, gate: Array) -> EFCState:
        t = jnp.asarray(t, jnp.float32)
        g = jnp.clip(gate * item_skills(curr, item), 0.0, 1.0)
        r = _trace_recall(params.theta, state, t)
        n_g = state.strength + g * params.gain
        r_g = jnp.clip(1.0 - (1.0 - g) * (1.0 - r), 1e-30, 1.0)
        # effective age of the partly refreshed trace: exp(-theta d / n_g) = r_g
        age = -n_g * jnp.log(r_g) / params.theta
        upd = g > 0
        return EFCState(
            strength=jnp.where(upd, n_g, state.strength).astype(jnp.float32),
            last_review=jnp.where(upd, t - age, state.last_review).astype(jnp.float32),
        )

    def mastery(self, params: EFCParams, state: EFCState, curr: CurriculumArrays, t: Array) -> Array:
        """float32[S] recall of each word at ``t`` on an average item."""
        return params.p_unseen + (1.0 - params.p_unseen) * _trace_recall(params.theta, state, t)
