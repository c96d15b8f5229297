"""FSRS-6: the DSR (difficulty, stability, retrievability) memory model of the Free Spaced
Repetition Scheduler.

Ye, J., Su, J. & Cao, Y. (2022). A Stochastic Shortest Path Algorithm for Optimizing Spaced
Repetition Scheduling. KDD 2022; the FSRS-6 equations and default weights as implemented by
the open-source ``fsrs`` Python package 6.3.x (``fsrs.scheduler``; github.com/open-spaced-
repetition/py-fsrs). ``tests/test_memory_models.py`` checks these functions against that
package review by review.

Each skill is one card (a vocabulary word) with stability ``S`` (days until retrievability
falls to 90 %), difficulty ``D`` in [1, 10] and the time of its last review. With ratings
``G`` in {1 Again, 2 Hard, 3 Good, 4 Easy} and weights ``w[0..20]``:

* retrievability  ``R(t, S) = (1 + factor * t / S) ** -w20``, ``factor = 0.9 ** (-1/w20) - 1``;
* first review    ``S0(G) = w[G-1]``, ``D0(G) = w4 - exp(w5 (G - 1)) + 1`` clamped to [1, 10];
* difficulty      ``D' = D + (10 - D) * (-w6 (G - 3)) / 9`` (linear damping), then mean
  reversion ``w7 D0(4) + (1 - w7) D'`` (``D0(4)`` unclamped), clamped to [1, 10];
* recall (G >= 2) ``S' = S (1 + e^w8 (11 - D) S^-w9 (e^(w10 (1 - R)) - 1) * hard * easy)``
  with ``hard = w15`` if G = 2, ``easy = w16`` if G = 4;
* lapse (G = 1)   ``S' = min(w11 D^-w12 ((S + 1)^w13 - 1) e^(w14 (1 - R)), S / e^(w17 w18))``;
* same day        (less than one day since the last review)
  ``S' = S e^(w17 (G - 3 + w18)) S^-w19``, the factor floored at 1 when G >= 2;
* stabilities are floored at 0.001 (``STABILITY_MIN``).

As in the package, the difficulty update is the same for every review after the first,
and the same-day / long-term split depends only on the time since the last review (the
package's Learning/Review/Relearning states only change its *scheduling*, not S or D).
The package measures elapsed time in whole days (``timedelta.days``); these functions take
real-valued days, which is identical for reviews a whole number of days apart.

The simulated learner's response is the rating: Good (3) if correct, Again (1) if wrong.
Hard/Easy (e.g. from response time) are out of scope; the pure helpers take any rating.

Unseen traces, gate, items and traits follow the memory-model conventions documented in
:mod:`pedagogym.student_models.efc`:

* recall ``p_unseen + (1 - p_unseen) * R`` (``R = 0`` before the first review);
* gate g: stability and difficulty move a fraction g of the way to their reviewed values
  (from stability 0 for a first review), the card's present retrievability moves a
  fraction g of the way to 1, and the last-review time is set to match;
* FSRS has no item term: an item's difficulty does not change its recall;
* traits: ``memory`` divides elapsed time by ``exp(memory)`` in ``R`` (``time_scale``;
  equivalently multiplies every stability by ``exp(memory)`` when computing ``R``; the
  same-day rule still uses real days), ``prior`` shifts ``p_unseen`` on the logit scale,
  ``speed`` adds to ``w8`` (multiplies the stability gain of a successful review by
  ``exp(speed)``).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.student_models.base import StudentModel, Traits, item_skills, logit, skill_mean

# fsrs 6.3.x, fsrs.scheduler.DEFAULT_PARAMETERS (FSRS-6; w20 = FSRS_DEFAULT_DECAY).
DEFAULT_PARAMETERS: tuple[float, ...] = (
    0.212, 1.2931, 2.3065, 8.2956, 6.4133, 0.8334, 3.0194, 0.001, 1.8722, 0.1666, 0.796,
    1.4835, 0.0614, 0.2629, 1.6483, 0.6014, 1.8729, 0.5425, 0.0912, 0.0658, 0.1542,
)
N_WEIGHTS = 21
STABILITY_MIN = 0.001
MIN_DIFFICULTY, MAX_DIFFICULTY = 1.0, 10.0
AGAIN, HARD, GOOD, EASY = 1, 2, 3, 4


def _weights(w: Array | None) -> Array:
    return jnp.asarray(DEFAULT_PARAMETERS if w is None else w, jnp.float32)


def _rating(rating: Array) -> Array:
    return jnp.asarray(rating, jnp.float32)


# ---- the FSRS-6 equations (pure; ``w`` float32[21], default: DEFAULT_PARAMETERS) -------
def retrievability(elapsed_days: Array, stability: Array, w: Array | None = None) -> Array:
    """``R = (1 + factor * t / S) ** -w20``, ``factor = 0.9 ** (-1 / w20) - 1``."""
    w = _weights(w)
    decay = w[20]
    factor = 0.9 ** (-1.0 / decay) - 1.0
    t = jnp.maximum(elapsed_days, 0.0)
    return jnp.exp(-decay * jnp.log1p(factor * t / stability))


def init_stability(rating: Array, w: Array | None = None) -> Array:
    """``S0(G) = w[G - 1]`` (floored at ``STABILITY_MIN``)."""
    w = _weights(w)
    return jnp.maximum(w[jnp.asarray(rating, jnp.int32) - 1], STABILITY_MIN)


def init_difficulty(rating: Array, w: Array | None = None, clamp: bool = True) -> Array:
    """``D0(G) = w4 - exp(w5 (G - 1)) + 1``, clamped to [1, 10] unless ``clamp=False``."""
    w = _weights(w)
    d = w[4] - jnp.exp(w[5] * (_rating(rating) - 1.0)) + 1.0
    return jnp.clip(d, MIN_DIFFICULTY, MAX_DIFFICULTY) if clamp else d


def next_difficulty(difficulty: Array, rating: Array, w: Array | None = None) -> Array:
    """Linear damping toward 10, then mean reversion toward ``D0(4)``; clamped to [1, 10]."""
    w = _weights(w)
    delta = -w[6] * (_rating(rating) - 3.0)
    damped = difficulty + (10.0 - difficulty) * delta / 9.0
    reverted = w[7] * init_difficulty(EASY, w, clamp=False) + (1.0 - w[7]) * damped
    return jnp.clip(reverted, MIN_DIFFICULTY, MAX_DIFFICULTY)


def short_term_stability(stability: Array, rating: Array, w: Array | None = None) -> Array:
    """Same-day review: ``S e^(w17 (G - 3 + w18)) S^-w19`` (increase >= 1 unless Again)."""
    w = _weights(w)
    g = _rating(rating)
    inc = jnp.exp(w[17] * (g - 3.0 + w[18])) * stability ** (-w[19])
    inc = jnp.where(g >= HARD, jnp.maximum(inc, 1.0), inc)
    return jnp.maximum(stability * inc, STABILITY_MIN)


def recall_stability(difficulty: Array, stability: Array, r: Array, rating: Array, w: Array | None = None) -> Array:
    """Stability after a successful review (Hard, Good or Easy) a day or more later."""
    w = _weights(w)
    g = _rating(rating)
    hard = jnp.where(g == HARD, w[15], 1.0)
    easy = jnp.where(g == EASY, w[16], 1.0)
    gain = (jnp.exp(w[8]) * (11.0 - difficulty) * stability ** (-w[9])
            * jnp.expm1((1.0 - r) * w[10]) * hard * easy)
    return stability * (1.0 + gain)


def forget_stability(difficulty: Array, stability: Array, r: Array, w: Array | None = None) -> Array:
    """Stability after a lapse (Again) a day or more later."""
    w = _weights(w)
    long_term = (w[11] * difficulty ** (-w[12]) * ((stability + 1.0) ** w[13] - 1.0)
                 * jnp.exp((1.0 - r) * w[14]))
    return jnp.minimum(long_term, stability / jnp.exp(w[17] * w[18]))


def next_state(stability: Array, difficulty: Array, r: Array, rating: Array, elapsed_days: Array,
               w: Array | None = None) -> tuple[Array, Array]:
    """(S', D') after reviewing a card already reviewed before.

    ``r`` is the card's retrievability at the review; ``elapsed_days`` (real days since the
    last review) only selects the same-day rule (< 1 day), as in the package.
    """
    w = _weights(w)
    rating = jnp.asarray(rating, jnp.int32)
    long_term = jnp.where(rating == AGAIN, forget_stability(difficulty, stability, r, w),
                          recall_stability(difficulty, stability, r, rating, w))
    s_next = jnp.where(elapsed_days < 1.0, short_term_stability(stability, rating, w),
                       jnp.maximum(long_term, STABILITY_MIN))
    return s_next, next_difficulty(difficulty, rating, w)


def review(stability: Array, difficulty: Array, reviewed: Array, rating: Array, elapsed_days: Array,
           w: Array | None = None, r: Array | None = None) -> tuple[Array, Array]:
    """(S', D') after one review of a card: the package's ``review_card`` (memory state only).

    A first review (``reviewed`` False) gives ``(S0(G), D0(G))``; a later one :func:`next_state`
    at retrievability ``r`` (default ``retrievability(elapsed_days, stability)``; the learner
    model passes its own, with time scaled by its trait). Unreviewed cards' stored stability and
    difficulty are ignored (safe defaults 1 and 5 keep the unused branch finite), so the caller
    needs no ``where`` of its own.
    """
    w = _weights(w)
    safe_s = jnp.where(reviewed, stability, 1.0)
    safe_d = jnp.where(reviewed, difficulty, 5.0)
    if r is None:
        r = retrievability(elapsed_days, safe_s, w)
    s_rev, d_rev = next_state(safe_s, safe_d, r, rating, elapsed_days, w)
    return (jnp.where(reviewed, s_rev, init_stability(rating, w)),
            jnp.where(reviewed, d_rev, init_difficulty(rating, w)))


# ---- the simulated learner ----------------------------------------------------------
class FSRSParams(NamedTuple):
    """w: float32[21] FSRS-6 weights (one learner). Per skill, float32[S]:
    p_unseen (recall of a never-reviewed card) and time_scale (elapsed time is divided by
    it in ``R``; 1 = the package)."""

    w: Array
    p_unseen: Array
    time_scale: Array


class FSRSState(NamedTuple):
    stability: Array    # float32[S] days (0 before the first review)
    difficulty: Array   # float32[S] in [1, 10] (0 before the first review)
    last_review: Array  # float32[S] day of the last review (effective, see module doc)
    reviewed: Array     # bool[S]


def trace_recall(params: FSRSParams, state: FSRSState, t: Array) -> Array:
    """float32[S] each card's retrievability at day ``t``, elapsed time divided by ``time_scale`` (0 if never reviewed)."""
    elapsed = (t - state.last_review) / params.time_scale
    safe_s = jnp.where(state.reviewed, state.stability, 1.0)
    return jnp.where(state.reviewed, retrievability(elapsed, safe_s, params.w), 0.0)


class FSRS(StudentModel):
    name = "fsrs"
    family = "memory"
    citation = "FSRS-6 (open-spaced-repetition, py-fsrs 6.3); Ye, Su & Cao (2022), KDD"

    def __init__(self, weights: tuple[float, ...] = DEFAULT_PARAMETERS, p_unseen: float = 0.05):
        weights = tuple(float(x) for x in weights)
        if len(weights) != N_WEIGHTS:
            raise PedagogymError(f"fsrs: FSRS-6 needs {N_WEIGHTS} weights, got {len(weights)}")
        if not 0.0 < weights[20] <= 1.0:
            raise PedagogymError(f"fsrs: w20 (the decay) must be in (0, 1], got {weights[20]}")
        if not 0.0 < p_unseen < 1.0:
            raise PedagogymError(f"fsrs: p_unseen must be in (0, 1), got {p_unseen}")
        self.weights = weights
        self.p_unseen = float(p_unseen)

    def _static_key(self) -> tuple:
        return (*self.weights, self.p_unseen)

    def default_params(self, curr: CurriculumArrays) -> FSRSParams:
        ones = jnp.ones((curr.n_skills,), jnp.float32)
        return FSRSParams(w=jnp.asarray(self.weights, jnp.float32), p_unseen=self.p_unseen * ones, time_scale=ones)

    def apply_traits(self, params: FSRSParams, traits: Traits) -> FSRSParams:
        return params._replace(
            w=params.w.at[..., 8].add(traits.speed),
            p_unseen=jax.nn.sigmoid(logit(params.p_unseen) + traits.prior),
            time_scale=params.time_scale * jnp.exp(traits.memory),
        )

    def init(self, key: Array, params: FSRSParams, curr: CurriculumArrays) -> FSRSState:
        zeros = jnp.zeros((curr.n_skills,), jnp.float32)
        return FSRSState(stability=zeros, difficulty=zeros, last_review=zeros,
                         reviewed=jnp.zeros((curr.n_skills,), bool))

    def p_correct(self, params: FSRSParams, state: FSRSState, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        return skill_mean(self.mastery(params, state, curr, t), item_skills(curr, item))

    def learn(self, key: Array, params: FSRSParams, state: FSRSState, curr: CurriculumArrays,
              item: Array, correct: Array, t: Array, gate: Array) -> FSRSState:
        t = jnp.asarray(t, jnp.float32)
        w = params.w
        g = jnp.clip(gate * item_skills(curr, item), 0.0, 1.0)
        rating = jnp.where(correct, GOOD, AGAIN).astype(jnp.int32)
        r = trace_recall(params, state, t)
        seen = state.reviewed
        s_full, d_full = review(state.stability, state.difficulty, seen, rating, t - state.last_review, w, r)
        s_g = jnp.maximum(state.stability + g * (s_full - state.stability), STABILITY_MIN)
        d_g = jnp.where(seen, state.difficulty + g * (d_full - state.difficulty), d_full)
        r_g = jnp.clip(1.0 - (1.0 - g) * (1.0 - r), 1e-4, 1.0)
        # effective elapsed days at which a card of stability s_g has retrievability r_g
        decay = w[20]
        factor = 0.9 ** (-1.0 / decay) - 1.0
        age = s_g / factor * jnp.expm1(-jnp.log(r_g) / decay) * params.time_scale
        upd = g > 0
        return FSRSState(
            stability=jnp.where(upd, s_g, state.stability).astype(jnp.float32),
            difficulty=jnp.where(upd, d_g, state.difficulty).astype(jnp.float32),
            last_review=jnp.where(upd, t - age, state.last_review).astype(jnp.float32),
            reviewed=state.reviewed | upd,
        )

    def mastery(self, params: FSRSParams, state: FSRSState, curr: CurriculumArrays, t: Array) -> Array:
        """float32[S] recall of each word at ``t`` (FSRS has no item term)."""
        return params.p_unseen + (1.0 - params.p_unseen) * trace_recall(params, state, t)
