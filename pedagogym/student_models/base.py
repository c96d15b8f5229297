"""The student-model interface: pure functions over immutable pytrees.

Every model is one implementation in JAX. A model object is a stateless, hashable
singleton (safe as a static argument of ``jax.jit``); its methods are pure functions of
``(key, params, state, curriculum, ...)`` for ONE learner. Batches come from ``jax.vmap``.

Conventions (``S`` skills, ``I`` items, all per learner):

- ``params``: a NamedTuple of float32 arrays, per skill (``[S]``) unless stated.
- ``state``:  a NamedTuple; the learner's hidden state (never shown to a policy unless
  the environment is ``privileged``).
- ``item``:   int32[] index of the presented item.
- ``t``:      float32[] simulation time in days since the learner started.
- ``gate``:   float32[S] in [0, 1], multiplier on learning from this practice
  (prerequisite gating x item kind); 1 = the model's own learning rule unchanged.
- ``correct``: bool[] the learner's response (study-only items pass ``True``).

Models that track memory per skill (``family = "memory"``) treat each skill as one
memory trace (a vocabulary word); items refresh the traces of the skills they exercise.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.registry import StaticArg

Params = Any  # a NamedTuple pytree of arrays
State = Any

EPS = 1e-6


class Traits(NamedTuple):
    """One learner's traits, drawn from a population (scalars, float32[] unless stated).

    All but ``sessions_per_week`` and ``subgroup`` are standardised shifts applied on each
    model's natural unconstrained scale (logit for probabilities, log for rates), so one
    population definition works for every model family.

    prior:             prior knowledge; +1 knows more at the start.
    speed:             learning speed; +1 learns faster from each practice.
    memory:            retention; +1 forgets more slowly.
    persistence:       engagement resilience; +1 drops out less.
    sessions_per_week: how often the learner comes back (float32[] > 0).
    subgroup:          int32[] index of the population subgroup the learner was drawn from.
    """

    prior: Array
    speed: Array
    memory: Array
    persistence: Array
    sessions_per_week: Array
    subgroup: Array

    @classmethod
    def neutral(cls) -> "Traits":
        z = jnp.zeros((), jnp.float32)
        return cls(z, z, z, z, jnp.asarray(7.0, jnp.float32), jnp.zeros((), jnp.int32))


def row_sum(x: Array) -> Array:
    """Sum over the last axis (of bools: a count) as a product with a ones vector. For one
    learner it is the same number; under ``vmap`` it becomes one matrix-vector product, which
    XLA:CPU runs several times faster than a reduction over a short row (16-100 values)."""
    return x.astype(jnp.float32) @ jnp.ones((x.shape[-1],), jnp.float32)


def logit(p: Array) -> Array:
    p = jnp.clip(p, EPS, 1.0 - EPS)
    return jnp.log(p) - jnp.log1p(-p)


def item_skills(curr: CurriculumArrays, item: Array) -> Array:
    """float32[S] 0/1 row of the Q-matrix for ``item``."""
    return curr.q_matrix[item]


def item_default(value: Array, fallback: Array) -> Array:
    """Per-item value where given (not NaN), else the model's fallback."""
    return jnp.where(jnp.isnan(value), fallback, value)


def skill_mean(values: Array, skills: Array) -> Array:
    """Mean of per-skill ``values`` (float32[S]) over the skills an item exercises."""
    return jnp.sum(values * skills) / jnp.maximum(jnp.sum(skills), 1.0)


class StudentModel(StaticArg, ABC):
    """Base class. Subclasses set ``name``, ``family``, ``Params``, ``State`` and implement
    ``default_params``, ``apply_traits``, ``init``, ``p_correct``, ``learn``, ``mastery``
    (abstract: a model missing one fails when it is constructed).
    """

    name: ClassVar[str]
    family: ClassVar[str]  # "skill" or "memory"
    citation: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ---- to implement -------------------------------------------------------------
    def ability(self, params: Params, state: State, curr: CurriculumArrays) -> Array | None:
        """float32[] the latent unidimensional ability an adaptive test estimates, for models
        that have one (IRT); None for the others (the ``ability_rmse`` metric is then NaN)."""
        return None

    @abstractmethod
    def default_params(self, curr: CurriculumArrays) -> Params:
        """Population-average parameters for a curriculum (per skill arrays)."""

    @abstractmethod
    def apply_traits(self, params: Params, traits: Traits) -> Params:
        """Shift ``params`` by one learner's ``traits`` (pure; returns new params)."""

    @abstractmethod
    def init(self, key: Array, params: Params, curr: CurriculumArrays) -> State:
        """The learner's latent state before any practice."""

    @abstractmethod
    def p_correct(self, params: Params, state: State, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        """float32[] probability of a correct response to ``item`` at time ``t``."""

    @abstractmethod
    def learn(
        self, key: Array, params: Params, state: State, curr: CurriculumArrays,
        item: Array, correct: Array, t: Array, gate: Array,
    ) -> State:
        """The learner's state after practising ``item`` at time ``t``."""

    @abstractmethod
    def mastery(self, params: Params, state: State, curr: CurriculumArrays, t: Array) -> Array:
        """float32[S] probability each skill is known (skill models) / recalled (memory) at ``t``."""

    # ---- derived --------------------------------------------------------------------
    def sample_params(self, curr: CurriculumArrays, traits: Traits) -> Params:
        return self.apply_traits(self.default_params(curr), traits)

    def respond(self, key: Array, params: Params, state: State, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        """bool[] a sampled response."""
        return jax.random.bernoulli(key, self.p_correct(params, state, curr, item, t))

    def p_correct_all(self, params: Params, state: State, curr: CurriculumArrays, t: Array) -> Array:
        """float32[I] probability of a correct response to every item at ``t`` (a post-test)."""
        items = jnp.arange(curr.n_items, dtype=jnp.int32)
        return jax.vmap(lambda i: self.p_correct(params, state, curr, i, t))(items)
