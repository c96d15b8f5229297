"""Half-life regression (HLR).

Settles, B. & Meeder, B. (2016). A Trainable Spaced Repetition Model for Language
Learning. Proceedings of ACL 2016, 1848-1858 (Duolingo; reference code
github.com/duolingo/halflife-regression, ``experiment.py``).

Each skill is one memory trace (a lexeme). With ``Δ`` the days since the last review::

    p = 2 ** (-Δ / h),    h = 2 ** (θ · x)

The half-life ``h`` is in days, as in the paper and its code. The features are those of
the reference code: ``x = (sqrt(1 + n_right), sqrt(1 + n_wrong), bias = 1, lexeme tag
= 1)`` with per-skill weights ``w_right``, ``w_wrong``, ``w_bias`` and ``w_lexeme`` (the
lexeme tag's weight: the word's own easiness). As in the reference code, ``h`` is
clipped to [15 minutes, 274 days]. A review adds one to ``n_right`` if it was answered
correctly, else to ``n_wrong``, and resets ``Δ`` to 0.

Unseen traces, gate, items and traits follow the memory-model conventions documented in
:mod:`pedagogym.student_models.efc`:

* recall ``p_unseen + (1 - p_unseen) * p`` (``p = 0`` before the first review);
* gate g: the counts grow by ``g`` (times ``gain``), the trace's present recall moves a
  fraction g of the way to 1, and the last-review time is set to match;
* item ``difficulty`` b acts as one more lexeme-tag feature with weight ``-b``:
  ``log2 h_item = θ · x - b`` (each unit of difficulty halves the half-life);
* traits: ``memory`` multiplies ``h`` by ``exp(memory)`` (``w_bias += memory / ln 2``),
  ``prior`` shifts ``p_unseen`` on the logit scale, ``speed`` scales how much one review
  adds to the counts (``gain = exp(speed)``).

Log-linear form (``form="loglinear"``): the student simulator of Reddy, Levine & Dragan (2017)
(``HLREnv`` of github.com/rddy/deeptutor): natural base, raw counts, no clipping::

    p = exp(-Δ / h),    h = exp(w_bias + w_right * n_right + w_wrong * n_wrong + w_lexeme)

(their ``w = [1, 1, 0]`` on ``[attempts, correct, incorrect]`` is ``w_right = 2, w_wrong = 1``
here, since attempts = correct + incorrect). ``all_seen=True`` counts every trace as seen from
the start (prior exposure at ``last_review``), which their simulator assumes.

Default weights (``w_bias = -1.6``, ``w_right = 1.5``, ``w_wrong = -0.5``) are a
simulator choice, not Duolingo's fitted weights: one correct first review gives a
half-life of about one day (``log2 h = -1.6 + 1.5 sqrt 2 - 0.5 = 0.02``), ten correct
reviews about 7 days, twenty about 27 days; a wrong answer shortens the half-life.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.student_models.base import StudentModel, Traits, item_skills, logit, skill_mean

MIN_HALF_LIFE_DAYS = 15.0 / (24 * 60)  # 15 minutes, as in the reference code
MAX_HALF_LIFE_DAYS = 274.0             # 9 months, as in the reference code
LN2 = math.log(2.0)


class HLRParams(NamedTuple):
    """Per-skill HLR parameters, each float32[S].

    w_bias, w_right, w_wrong, w_lexeme: weights of the features (bias, sqrt(1 + right),
    sqrt(1 + wrong), lexeme tag) in ``log2 h``.
    gain:     count added by one full review (1 = the paper).
    p_unseen: recall probability of a never-reviewed trace, in (0, 1).
    """

    w_bias: Array
    w_right: Array
    w_wrong: Array
    w_lexeme: Array
    gain: Array
    p_unseen: Array


class HLRState(NamedTuple):
    n_right: Array      # float32[S] correct reviews so far
    n_wrong: Array      # float32[S] incorrect reviews so far
    last_review: Array  # float32[S] day of the last review (effective, see efc module doc)


def log2_half_life(params: HLRParams, n_right: Array, n_wrong: Array) -> Array:
    """float32[S] ``θ · x`` (before clipping), the base-2 log of the half-life in days."""
    return (params.w_bias + params.w_right * jnp.sqrt(1.0 + n_right)
            + params.w_wrong * jnp.sqrt(1.0 + n_wrong) + params.w_lexeme)


def half_life(log2_h: Array) -> Array:
    """``2 ** log2_h`` days, clipped to [15 minutes, 274 days] as in the reference code."""
    return jnp.clip(jnp.exp2(log2_h), MIN_HALF_LIFE_DAYS, MAX_HALF_LIFE_DAYS)


def recall(h: Array, elapsed: Array) -> Array:
    """The paper's ``p = 2 ** (-Δ / h)``."""
    return jnp.exp2(-jnp.maximum(elapsed, 0.0) / h)


def _seen(state: HLRState) -> Array:
    return (state.n_right + state.n_wrong) > 0


FORMS = ("settles", "loglinear")


def _trace_recall(params: HLRParams, state: HLRState, t: Array, difficulty: Array = 0.0,
                  form: str = "settles", all_seen: bool = False) -> Array:
    seen = True if all_seen else _seen(state)
    if form == "loglinear":
        h = _loglinear_h(params, state.n_right, state.n_wrong, difficulty)
        return jnp.where(seen, jnp.exp(-jnp.maximum(t - state.last_review, 0.0) / h), 0.0)
    h = half_life(log2_half_life(params, state.n_right, state.n_wrong) - difficulty)
    return jnp.where(seen, recall(h, t - state.last_review), 0.0)


def _loglinear_h(params: HLRParams, n_right: Array, n_wrong: Array, difficulty: Array = 0.0) -> Array:
    """float32[S] ``h = exp(w_bias + w_right n_right + w_wrong n_wrong + w_lexeme - difficulty)``."""
    return jnp.exp(params.w_bias + params.w_right * n_right + params.w_wrong * n_wrong + params.w_lexeme - difficulty)


class HLR(StudentModel):
    name = "hlr"
    family = "memory"
    citation = "Settles & Meeder (2016), ACL"

    def __init__(self, w_bias: float = -1.6, w_right: float = 1.5, w_wrong: float = -0.5,
                 p_unseen: float = 0.05, form: str = "settles", all_seen: bool = False):
        if not 0.0 <= p_unseen < 1.0:
            raise PedagogymError(f"hlr: p_unseen must be in [0, 1), got {p_unseen}")
        if form not in FORMS:
            raise PedagogymError(f"hlr: form must be one of {FORMS}, got {form!r}")
        self.defaults = (float(w_bias), float(w_right), float(w_wrong), float(p_unseen))
        self.form, self.all_seen = form, bool(all_seen)

    def _static_key(self) -> tuple:
        return self.defaults + (self.form, self.all_seen)

    def _recall(self, params: HLRParams, state: HLRState, t: Array, difficulty: Array = 0.0) -> Array:
        return _trace_recall(params, state, t, difficulty, self.form, self.all_seen)

    def default_params(self, curr: CurriculumArrays) -> HLRParams:
        ones = jnp.ones((curr.n_skills,), jnp.float32)
        w_bias, w_right, w_wrong, p_unseen = self.defaults
        return HLRParams(w_bias=w_bias * ones, w_right=w_right * ones, w_wrong=w_wrong * ones,
                         w_lexeme=0.0 * ones, gain=ones, p_unseen=p_unseen * ones)

    def apply_traits(self, params: HLRParams, traits: Traits) -> HLRParams:
        return params._replace(
            w_bias=params.w_bias + traits.memory / LN2,
            gain=params.gain * jnp.exp(traits.speed),
            p_unseen=jax.nn.sigmoid(logit(params.p_unseen) + traits.prior),
        )

    def init(self, key: Array, params: HLRParams, curr: CurriculumArrays) -> HLRState:
        zeros = jnp.zeros((curr.n_skills,), jnp.float32)
        return HLRState(n_right=zeros, n_wrong=zeros, last_review=zeros)

    def p_correct(self, params: HLRParams, state: HLRState, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        r = self._recall(params, state, t, curr.difficulty[item])
        return skill_mean(params.p_unseen + (1.0 - params.p_unseen) * r, item_skills(curr, item))

    def learn(self, key: Array, params: HLRParams, state: HLRState, curr: CurriculumArrays,
              item: Array, correct: Array, t: Array, gate: Array) -> HLRState:
        t = jnp.asarray(t, jnp.float32)
        g = jnp.clip(gate * item_skills(curr, item), 0.0, 1.0)
        ok = jnp.asarray(correct, jnp.float32)
        r = self._recall(params, state, t)
        step = g * params.gain
        n_right = state.n_right + step * ok
        n_wrong = state.n_wrong + step * (1.0 - ok)
        r_g = jnp.clip(1.0 - (1.0 - g) * (1.0 - r), 1e-30, 1.0)
        if self.form == "loglinear":
            # exp(-age / h_g) = r_g; a full review (r_g = 1) has age 0 even when h_g overflows
            age = jnp.where(r_g >= 1.0, 0.0, -_loglinear_h(params, n_right, n_wrong) * jnp.log(r_g))
        else:
            h_g = half_life(log2_half_life(params, n_right, n_wrong))
            age = -h_g * jnp.log2(r_g)  # 2 ** (-age / h_g) = r_g
        upd = g > 0
        return HLRState(
            n_right=jnp.where(upd, n_right, state.n_right).astype(jnp.float32),
            n_wrong=jnp.where(upd, n_wrong, state.n_wrong).astype(jnp.float32),
            last_review=jnp.where(upd, t - age, state.last_review).astype(jnp.float32),
        )

    def mastery(self, params: HLRParams, state: HLRState, curr: CurriculumArrays, t: Array) -> Array:
        """float32[S] recall of each word at ``t`` on an average item."""
        return params.p_unseen + (1.0 - params.p_unseen) * self._recall(params, state, t)
