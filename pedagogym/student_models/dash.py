"""DASH, the generalized power-law memory model (Lindsey, Shroyer, Pashler & Mozer 2014).

Lindsey, R. V., Shroyer, J. D., Pashler, H. & Mozer, M. C. (2014). Improving Students'
Long-Term Knowledge Retention Through Personalized Review. Psychological Science 25(3).
This is the parameterisation of Reddy, Levine & Dragan (2017) (``DASHEnv`` of
github.com/rddy/deeptutor), per skill ``s`` (one word)::

    history_s = sum_{w < W_now} c_w log(1 + n_correct[s, w]) + a_w log(1 + n_attempts[s, w])
    m_s       = sigmoid(ability - difficulty_s + history_s)
    P(recall) = m_s / (1 + delay_coef_s * (t - last_review_s)) ** decay_s

Time is cut into ``n_windows`` windows of ``window_size`` reviews each (windows count the
learner's reviews of any word, the simulator's step counter); ``W_now = min(n_windows - 1,
reviews // window_size)`` is the current window and only the windows before it enter the
history, each with its own weight (``c_w``, ``a_w``; Reddy et al. use ``1 / k**2`` for the
k-th most recent of the ``n_windows`` weights, indexed from the oldest window). A review
adds one attempt (and one correct answer if right) to the current window and sets
``last_review``. ``decay_s = exp(student_decay - item_decay_exp_s)`` is stored directly.

As in the reference simulator, a ``last_review`` later than ``t`` is not clipped: the base
``1 + delay_coef * (t - last_review)`` may be below 1 (recall above ``m``) or negative (NaN,
which a Bernoulli draw ``u < p`` reads as a wrong answer). With ``init`` (last review at 0)
and ``t >= 0`` neither happens.

Items: ``p_correct(item)`` is the mean over the item's skills; item ``difficulty`` b adds to
the skill's difficulty. Traits: ``prior`` adds to ``ability``, ``memory`` divides ``decay``
by ``exp(memory)`` (slower forgetting), ``speed`` scales the counts a review adds.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.student_models.base import StudentModel, Traits, item_skills, skill_mean


class DASHParams(NamedTuple):
    """ability, difficulty, decay, delay_coef, gain: float32[S]; window_cw, window_nw: float32[W]
    (weights of the windows' log correct counts and log attempt counts, oldest window first)."""

    ability: Array
    difficulty: Array
    decay: Array
    delay_coef: Array
    gain: Array
    window_cw: Array
    window_nw: Array


class DASHState(NamedTuple):
    n_correct: Array    # float32[S, W] correct answers per window
    n_attempts: Array   # float32[S, W] attempts per window
    last_review: Array  # float32[S] time of the last review
    reviews: Array      # int32[] reviews so far (of any skill): the window clock


def default_window_weights(n_windows: int) -> Array:
    """float32[W] ``1 / k**2`` for k = n_windows .. 1 (Reddy et al. 2017's ``sample_window_cw``)."""
    k = jnp.arange(1, n_windows + 1, dtype=jnp.float32)
    return (1.0 / k**2)[::-1]


def recall(params: DASHParams, state: DASHState, t: Array, window_size: int, difficulty: Array = 0.0) -> Array:
    """float32[S] the DASH recall probability of every skill at ``t`` (module docstring)."""
    n_windows = state.n_correct.shape[-1]
    now = jnp.minimum(n_windows - 1, state.reviews // window_size)
    past = (jnp.arange(n_windows) < now).astype(jnp.float32)
    history = (past * (params.window_cw * jnp.log1p(state.n_correct)
                       + params.window_nw * jnp.log1p(state.n_attempts))).sum(-1)
    m = jax.nn.sigmoid(params.ability - (params.difficulty + difficulty) + history)
    return m / (1.0 + params.delay_coef * (t - state.last_review)) ** params.decay


class DASH(StudentModel):
    name = "dash"
    family = "memory"
    citation = "Lindsey, Shroyer, Pashler & Mozer (2014), Psychological Science; Reddy, Levine & Dragan (2017)"

    def __init__(self, n_windows: int = 5, window_size: int = 40, difficulty: float = 1.0,
                 decay: float = 0.0660, delay_coef: float = 1.0):
        """Defaults: Reddy et al.'s means (difficulty 1, item decay exponent e**1 so
        ``decay = exp(-e) = 0.066``, delay coefficient 1, 5 windows of 40 reviews)."""
        if n_windows < 1 or window_size < 1:
            raise PedagogymError(f"dash: n_windows and window_size must be >= 1, got {n_windows}, {window_size}")
        if not decay > 0 or not delay_coef > 0:
            raise PedagogymError(f"dash: decay and delay_coef must be > 0, got {decay}, {delay_coef}")
        self.n_windows, self.window_size = int(n_windows), int(window_size)
        self.defaults = (float(difficulty), float(decay), float(delay_coef))

    def _static_key(self) -> tuple:
        return (self.n_windows, self.window_size) + self.defaults

    def default_params(self, curr: CurriculumArrays) -> DASHParams:
        ones = jnp.ones((curr.n_skills,), jnp.float32)
        difficulty, decay, delay_coef = self.defaults
        w = default_window_weights(self.n_windows)
        return DASHParams(ability=0.0 * ones, difficulty=difficulty * ones, decay=decay * ones,
                          delay_coef=delay_coef * ones, gain=ones, window_cw=w, window_nw=w)

    def apply_traits(self, params: DASHParams, traits: Traits) -> DASHParams:
        return params._replace(ability=params.ability + traits.prior, decay=params.decay * jnp.exp(-traits.memory),
                               gain=params.gain * jnp.exp(traits.speed))

    def init(self, key: Array, params: DASHParams, curr: CurriculumArrays) -> DASHState:
        zeros = jnp.zeros((curr.n_skills, self.n_windows), jnp.float32)
        return DASHState(n_correct=zeros, n_attempts=zeros, last_review=jnp.zeros((curr.n_skills,), jnp.float32),
                         reviews=jnp.zeros((), jnp.int32))

    def p_correct(self, params: DASHParams, state: DASHState, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        r = recall(params, state, t, self.window_size, curr.difficulty[item])
        return skill_mean(r, item_skills(curr, item))

    def learn(self, key: Array, params: DASHParams, state: DASHState, curr: CurriculumArrays,
              item: Array, correct: Array, t: Array, gate: Array) -> DASHState:
        g = jnp.clip(gate * item_skills(curr, item), 0.0, 1.0)
        reviews = state.reviews + 1
        window = jnp.minimum(self.n_windows - 1, reviews // self.window_size)
        add = (g * params.gain)[:, None] * jax.nn.one_hot(window, self.n_windows, dtype=jnp.float32)
        ok = jnp.asarray(correct, jnp.float32)
        return DASHState(n_correct=state.n_correct + add * ok, n_attempts=state.n_attempts + add,
                         last_review=jnp.where(g > 0, jnp.asarray(t, jnp.float32), state.last_review),
                         reviews=reviews.astype(jnp.int32))

    def mastery(self, params: DASHParams, state: DASHState, curr: CurriculumArrays, t: Array) -> Array:
        """float32[S] recall of each word at ``t`` on an average item."""
        return recall(params, state, t, self.window_size)
