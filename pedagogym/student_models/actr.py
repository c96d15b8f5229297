"""ACT-R declarative memory with the spacing effect.

Pavlik, P. I. Jr. & Anderson, J. R. (2005). Practice and forgetting effects on vocabulary
memory: An activation-based model of the spacing effect. Cognitive Science 29(4),
559-586.

Each skill is one memory chunk (a vocabulary pair). Every presentation ``j`` leaves a
trace that decays as a power of its age ``t_j``; the chunk's activation after ``n``
presentations and its recall probability are (the paper's equations)::

    m_n = ln( sum_{j<=n} t_j ** (-d_j) )
    d_j = c * exp(m_{j-1}) + a          (m_{j-1}: activation when presentation j occurs;
                                          m_0 = -inf, so d_1 = a)
    p(m) = 1 / (1 + exp((tau - m) / s))

A presentation made while the chunk is highly active (massed practice) decays fast; a
spaced one decays slowly: the spacing effect.

Parameters. ``a = 0.177``, ``c = 0.217``, ``tau = -0.704``, ``s = 0.255`` are the values
Pavlik & Anderson (2005) report for their fit (the same values, rounded, are used by
third-party re-implementations, e.g. ``pyrbit``'s ``ACTR_Pavlik2005``).

Time. Ages in the equations are in **seconds**, as in the paper. Simulation time is in
days, so an age is ``86400 * dt_days`` seconds. The paper also scales the time *between
sessions* by a factor ``h`` ("psychological time": forgetting over a day away is far less
than over a day of continued interference). The simulator has no explicit session
boundaries, so it uses this approximation: the first ``window`` days of a trace's age
count in full, the rest is multiplied by ``h``. Defaults: ``h = 0.025`` (the between-session
scaling we take from Pavlik & Anderson 2005; check against the paper before relying on
its exact value) and ``window = 1 / 24`` day (one hour, a study session). Ages are floored
at ``MIN_AGE_S = 1`` second so that a trace tested at the moment it was studied has a
finite activation (a presentation's own contribution is then at most 1).

State. A fixed-size ring buffer of the last ``K = 32`` presentations per chunk:
``times`` (day of each presentation), ``decays`` (its ``d_j``) and ``weights``; a slot
with weight 0 is empty (``state.mask``). When the buffer is full the oldest presentation
is overwritten (its ``t ** -d`` term is the smallest by then; the truncation is an
approximation of the paper's unbounded sum).

Unseen traces, gate, items and traits follow the memory-model conventions documented in
:mod:`pedagogym.student_models.efc`, adapted to activation:

* recall ``p_unseen + (1 - p_unseen) * p(m)`` (``m = -inf``, ``p = 0`` before the first
  presentation);
* gate g: the presentation enters the sum with weight ``g`` (times ``gain``),
  ``m = ln(sum_j w_j t_j ** -d_j)``; g = 1 is the paper; g = 0 leaves the state unchanged;
* item ``difficulty`` b (logit scale) lowers the logit: ``p_item = sigmoid((m - tau)/s - b)``
  (an item intercept ``beta_i = -b s`` on activation, as in Pavlik & Anderson 2008);
* traits: ``memory`` divides every age by ``exp(memory)`` (``time_scale``), ``prior``
  shifts ``p_unseen`` on the logit scale, ``speed`` scales each presentation's weight
  (``gain = exp(speed)``; an activation bonus of ``speed``).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.schema import SECONDS_PER_DAY
from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.student_models.base import StudentModel, Traits, item_skills, logit, skill_mean

MIN_AGE_S = 1.0
BUFFER = 32


class ACTRParams(NamedTuple):
    """Per-skill ACT-R parameters, each float32[S].

    a, c:       decay intercept and scale, ``d = c exp(m) + a``.
    tau, s:     retrieval threshold and noise of ``p(m)``.
    h:          psychological-time factor for ages beyond ``window`` days.
    time_scale: ages are divided by this (``exp(memory)``; 1 = the paper).
    gain:       weight of one full presentation (1 = the paper).
    p_unseen:   recall probability of a never-presented chunk, in (0, 1).
    """

    a: Array
    c: Array
    tau: Array
    s: Array
    h: Array
    time_scale: Array
    gain: Array
    p_unseen: Array


class ACTRState(NamedTuple):
    times: Array    # float32[S, K] day of each buffered presentation
    decays: Array   # float32[S, K] its decay rate d_j
    weights: Array  # float32[S, K] its weight (gate x gain); 0 = empty slot
    count: Array    # int32[S] presentations so far (the next slot is count % K)

    @property
    def mask(self) -> Array:
        """bool[S, K] the slots that hold a presentation."""
        return self.weights > 0


# ---- the paper's equations (pure, for tests and fitting) -------------------------------
def activation(ages_s: Array, decays: Array, weights: Array) -> Array:
    """``ln(sum_j w_j * age_j ** -d_j)`` over the last axis; ``-inf`` if every weight is 0.

    ages_s: float32[..., K] ages in seconds (floored at ``MIN_AGE_S``).
    """
    ages = jnp.maximum(ages_s, MIN_AGE_S)
    present = weights > 0
    terms = jnp.where(present, jnp.log(jnp.where(present, weights, 1.0)) - decays * jnp.log(ages), -jnp.inf)
    top = jnp.max(terms, axis=-1, keepdims=True)
    safe_top = jnp.where(jnp.isfinite(top), top, 0.0)
    total = jnp.sum(jnp.exp(terms - safe_top), axis=-1)
    return jnp.where(jnp.any(present, axis=-1), jnp.log(total) + safe_top[..., 0], -jnp.inf)


def decay_rate(m_prev: Array, a: Array, c: Array) -> Array:
    """``d = c * exp(m_prev) + a`` (``m_prev = -inf`` gives ``a``)."""
    return c * jnp.exp(m_prev) + a


def recall_probability(m: Array, tau: Array, s: Array) -> Array:
    """``1 / (1 + exp((tau - m) / s))``."""
    return jax.nn.sigmoid((m - tau) / s)


def psychological_age_s(dt_days: Array, h: Array, window: float, time_scale: Array = 1.0) -> Array:
    """Seconds of model time for ``dt_days`` of real time: the first ``window`` days in full,
    the rest times ``h``; then divided by ``time_scale``."""
    dt = jnp.maximum(dt_days, 0.0)
    inside = jnp.minimum(dt, window)
    return SECONDS_PER_DAY * (inside + h * (dt - inside)) / time_scale


class ACTR(StudentModel):
    name = "actr"
    family = "memory"
    citation = "Pavlik & Anderson (2005), Cognitive Science 29"

    def __init__(self, a: float = 0.177, c: float = 0.217, tau: float = -0.704, s: float = 0.255,
                 h: float = 0.025, window: float = 1.0 / 24.0, buffer: int = BUFFER,
                 p_unseen: float = 0.05):
        if not (isinstance(buffer, int) and buffer >= 1):
            raise PedagogymError(f"actr: buffer must be a positive int (presentations kept per skill), got {buffer!r}")
        if not s > 0:
            raise PedagogymError(f"actr: s must be > 0, got {s}")
        if not 0.0 < h <= 1.0:
            raise PedagogymError(f"actr: h must be in (0, 1], got {h}")
        if not window >= 0.0:
            raise PedagogymError(f"actr: window must be >= 0 days, got {window}")
        if not 0.0 < p_unseen < 1.0:
            raise PedagogymError(f"actr: p_unseen must be in (0, 1), got {p_unseen}")
        self.defaults = (float(a), float(c), float(tau), float(s), float(h), float(p_unseen))
        self.window = float(window)
        self.buffer = buffer

    def _static_key(self) -> tuple:
        return (*self.defaults, self.window, self.buffer)

    def default_params(self, curr: CurriculumArrays) -> ACTRParams:
        ones = jnp.ones((curr.n_skills,), jnp.float32)
        a, c, tau, s, h, p_unseen = self.defaults
        return ACTRParams(a=a * ones, c=c * ones, tau=tau * ones, s=s * ones, h=h * ones,
                          time_scale=ones, gain=ones, p_unseen=p_unseen * ones)

    def apply_traits(self, params: ACTRParams, traits: Traits) -> ACTRParams:
        return params._replace(
            time_scale=params.time_scale * jnp.exp(traits.memory),
            gain=params.gain * jnp.exp(traits.speed),
            p_unseen=jax.nn.sigmoid(logit(params.p_unseen) + traits.prior),
        )

    def init(self, key: Array, params: ACTRParams, curr: CurriculumArrays) -> ACTRState:
        zeros = jnp.zeros((curr.n_skills, self.buffer), jnp.float32)
        return ACTRState(times=zeros, decays=zeros, weights=zeros, count=jnp.zeros((curr.n_skills,), jnp.int32))

    def _activation(self, params: ACTRParams, state: ACTRState, t: Array) -> Array:
        """float32[S] activation of each chunk at day ``t``."""
        ages = psychological_age_s(t - state.times, params.h[:, None], self.window, params.time_scale[:, None])
        return activation(ages, state.decays, state.weights)

    def _recall(self, params: ACTRParams, m: Array, difficulty: Array = 0.0) -> Array:
        p = jax.nn.sigmoid((m - params.tau) / params.s - difficulty)
        return params.p_unseen + (1.0 - params.p_unseen) * p

    def _recall_item(self, params: ACTRParams, m: Array, curr: CurriculumArrays, item: Array) -> Array:
        """P(correct) on ``item`` when its chunks' activations are ``m`` [S]."""
        return skill_mean(self._recall(params, m, curr.difficulty[item]), item_skills(curr, item))

    def p_correct(self, params: ACTRParams, state: ACTRState, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        return self._recall_item(params, self._activation(params, state, t), curr, item)

    def learn(self, key: Array, params: ACTRParams, state: ACTRState, curr: CurriculumArrays,
              item: Array, correct: Array, t: Array, gate: Array) -> ACTRState:
        t = jnp.asarray(t, jnp.float32)
        g = jnp.clip(gate * item_skills(curr, item), 0.0, 1.0)
        return self._present(params, state, self._activation(params, state, t), g, t)

    def recall_and_learn(self, params: ACTRParams, state: ACTRState, curr: CurriculumArrays, item: Array,
                         t: Array, gate: Array) -> tuple[Array, ACTRState]:
        """``(p_correct(...), learn(..., gate))`` at the same time ``t``, the activation
        computed once (the two share it: the decay of a presentation is set by the activation
        it is recalled at). The same numbers as the two calls, in about half the time: the
        sum over the buffer is the model's whole cost (fitting's scan uses this)."""
        t = jnp.asarray(t, jnp.float32)
        m = self._activation(params, state, t)
        g = jnp.clip(gate * item_skills(curr, item), 0.0, 1.0)
        return self._recall_item(params, m, curr, item), self._present(params, state, m, g, t)

    def _present(self, params: ACTRParams, state: ACTRState, m: Array, g: Array, t: Array) -> ACTRState:
        """A presentation with weight ``g`` [S] at day ``t`` to chunks at activation ``m``."""
        d_new = decay_rate(m, params.a, params.c)
        upd = g > 0
        slot = jax.nn.one_hot(state.count % self.buffer, self.buffer, dtype=jnp.bool_) & upd[:, None]
        return ACTRState(
            times=jnp.where(slot, t, state.times).astype(jnp.float32),
            decays=jnp.where(slot, d_new[:, None], state.decays).astype(jnp.float32),
            weights=jnp.where(slot, (g * params.gain)[:, None], state.weights).astype(jnp.float32),
            count=(state.count + upd.astype(jnp.int32)).astype(jnp.int32),
        )

    def mastery(self, params: ACTRParams, state: ACTRState, curr: CurriculumArrays, t: Array) -> Array:
        """float32[S] recall of each word at ``t`` on an average item."""
        return self._recall(params, self._activation(params, state, t))
