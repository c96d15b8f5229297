"""Spaced-repetition schedulers: Leitner boxes, SuperMemo-2 and FSRS.

Each keeps a per-item memory (boxes / easiness factors / FSRS states) that it updates from
the logged response to the item it presented last, then reviews the most urgent due item,
else introduces a new item (designer order), else reviews the item closest to being due.
Study-only kinds (videos, worked examples), whose response a platform does not record,
count as successful reviews. Times are in days (``History.t``).

Scores are tiered: due items > (SM-2's same-day repeats) > new items > not yet due items.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.policies.base import Policy
from pedagogym.policies.common import last_response, new_item_preference, update_at
from pedagogym.student_models import fsrs

DUE, REPEAT, NEW = 3000.0, 2000.0, 1000.0  # score tiers
SPAN = 999.0  # scores within a tier stay within +-SPAN of its base


def _not_due(days_until_due: Array) -> Array:
    """Score of an item not yet due: the sooner it is due, the higher (all < NEW)."""
    return -jnp.clip(days_until_due, 0.0, SPAN)


# ---- Leitner ----------------------------------------------------------------------------
class LeitnerState(NamedTuple):
    box: Array  # int32[I] box of each card (0 .. n_boxes - 1); meaningful once introduced
    due: Array  # float32[I] day the card is next due
    introduced: Array  # bool[I]
    n_seen: Array  # float32[] presentations already folded in


class Leitner(Policy):
    """Leitner boxes (Leitner 1972; the Leitner queue of Reddy, Labutov, Banerjee & Joachims
    2016/2017, "Unbounded human learning: optimal scheduling for spaced repetition", KDD).

    ``n_boxes`` boxes; a new card is introduced (one at a time, designer order) when no card
    is due and its first answer moves it from box 0: correct -> box + 1 (capped at the last
    box), wrong -> box 0 (``demote_to_zero``) or box - 1. A card in box k is due
    ``base_days * 2**k`` days after its last review. The most overdue card is reviewed
    first (ties: lower box)."""

    name = "leitner"
    description = "Leitner boxes: correct -> next box, wrong -> box 0; box k due after 2^k days"

    def __init__(self, n_boxes: int = 5, base_days: float = 1.0, demote_to_zero: bool = True):
        if n_boxes < 2:
            raise PedagogymError(f"leitner: n_boxes must be >= 2, got {n_boxes}")
        if base_days <= 0:
            raise PedagogymError(f"leitner: base_days must be > 0, got {base_days}")
        self.n_boxes, self.base_days, self.demote_to_zero = int(n_boxes), float(base_days), bool(demote_to_zero)

    def _static_key(self) -> tuple:
        return (self.n_boxes, self.base_days, self.demote_to_zero)

    def interval(self, box: Array) -> Array:
        """float32 days between reviews of a card in ``box``."""
        return self.base_days * jnp.exp2(box.astype(jnp.float32))

    def init(self, params):
        n = params.curriculum.n_items
        return LeitnerState(box=jnp.zeros((n,), jnp.int32), due=jnp.zeros((n,), jnp.float32),
                            introduced=jnp.zeros((n,), bool), n_seen=jnp.zeros((), jnp.float32))

    def move(self, box: Array, correct: Array) -> Array:
        """The box after an answer: correct -> up one (capped), wrong -> box 0 or down one."""
        wrong = 0 if self.demote_to_zero else jnp.maximum(box - 1, 0)
        return jnp.where(correct, jnp.minimum(box + 1, self.n_boxes - 1), wrong).astype(jnp.int32)

    def update(self, ps: LeitnerState, view, params) -> LeitnerState:
        r = last_response(ps.n_seen, view.history, params.curriculum)
        box = self.move(ps.box[r.item], r.correct)
        return LeitnerState(box=update_at(r.new, ps.box, r.item, box),
                            due=update_at(r.new, ps.due, r.item, r.t + self.interval(box)),
                            introduced=ps.introduced | (r.new & (jnp.arange(ps.box.shape[0]) == r.item)),
                            n_seen=r.n_total)

    def scores(self, key, pstate, view, params, env):
        ps = self.update(pstate, view, params)
        overdue = view.history.t - ps.due
        low_box = -1e-3 * ps.box.astype(jnp.float32)
        due = DUE + jnp.clip(overdue, 0.0, SPAN - 1.0) + low_box
        s = jnp.where(~ps.introduced, NEW + new_item_preference(params.curriculum),
                      jnp.where(overdue >= 0.0, due, _not_due(-overdue) + low_box))
        return s, ps


# ---- SuperMemo-2 -------------------------------------------------------------------------
EF_INIT, EF_MIN = 2.5, 1.3


def sm2_easiness(ef: Array, q: Array) -> Array:
    """SM-2 easiness update (Wozniak 1990): ``EF' = EF + (0.1 - (5-q)(0.08 + (5-q)0.02))``,
    floored at 1.3."""
    d = 5.0 - jnp.asarray(q, jnp.float32)
    return jnp.maximum(ef + (0.1 - d * (0.08 + d * 0.02)), EF_MIN)


def sm2_review(ef: Array, reps: Array, interval: Array, q: Array) -> tuple[Array, Array, Array]:
    """One SM-2 repetition with quality ``q`` in 0..5: (EF', n', I' days).

    q >= 3: n' = n + 1 and I(1) = 1, I(2) = 6, I(n) = ceil(I(n-1) * EF) (the EF before this
    response, as in the usual statement of the algorithm); q < 3: n' = 0, I' = 1 (start the
    repetitions again). EF is updated after every repetition."""
    q = jnp.asarray(q, jnp.float32)
    ok = q >= 3.0
    reps_ok = reps + 1
    i_ok = jnp.where(reps_ok == 1, 1.0, jnp.where(reps_ok == 2, 6.0, jnp.ceil(interval * ef)))
    return (sm2_easiness(ef, q), jnp.where(ok, reps_ok, 0).astype(jnp.int32),
            jnp.where(ok, i_ok, 1.0).astype(jnp.float32))


class SM2State(NamedTuple):
    ef: Array  # float32[I] easiness factor
    reps: Array  # int32[I] successful repetitions in a row
    interval: Array  # float32[I] days until the next review
    due: Array  # float32[I] day of the next review
    repeat: Array  # bool[I] scored below 4: repeat today (step 7 of SM-2)
    introduced: Array  # bool[I]
    n_seen: Array  # float32[]


class SM2(Policy):
    """SuperMemo-2 (Wozniak, P. A. 1990, "Optimization of learning", Master's thesis, Poznan
    University of Technology; the SM-2 algorithm as published by SuperMemo World).

    Quality from the logged response: correct -> ``q_correct`` (4), or ``q_fast`` (5) when
    answered within ``fast_fraction`` of the item's expected duration; wrong -> ``q_wrong``
    (1). The most overdue item (days past its due date) is reviewed first; items that
    scored below 4 are repeated the same day (not right after themselves); else a new item
    (designer order); else the item due soonest."""

    name = "sm2"
    description = "SuperMemo-2: easiness factors, intervals 1, 6, I*EF days"

    def __init__(self, q_correct: int = 4, q_fast: int = 5, q_wrong: int = 1, fast_fraction: float = 0.5):
        for nm, q in (("q_correct", q_correct), ("q_fast", q_fast), ("q_wrong", q_wrong)):
            if not 0 <= q <= 5:
                raise PedagogymError(f"sm2: {nm} must be a quality in 0..5, got {q}")
        self.q_correct, self.q_fast, self.q_wrong = int(q_correct), int(q_fast), int(q_wrong)
        self.fast_fraction = float(fast_fraction)

    def _static_key(self) -> tuple:
        return (self.q_correct, self.q_fast, self.q_wrong, self.fast_fraction)

    def init(self, params):
        n = params.curriculum.n_items
        f = jnp.zeros((n,), jnp.float32)
        return SM2State(ef=f + EF_INIT, reps=jnp.zeros((n,), jnp.int32), interval=f, due=f,
                        repeat=jnp.zeros((n,), bool), introduced=jnp.zeros((n,), bool), n_seen=jnp.zeros((), jnp.float32))

    def quality(self, correct: Array, rt: Array, duration: Array) -> Array:
        fast = rt <= self.fast_fraction * duration
        return jnp.where(correct, jnp.where(fast, self.q_fast, self.q_correct), self.q_wrong).astype(jnp.float32)

    def update(self, ps: SM2State, view, params) -> SM2State:
        curr = params.curriculum
        r = last_response(ps.n_seen, view.history, curr)
        i = r.item
        q = self.quality(r.correct, r.rt, curr.duration[i])
        ef, reps, interval = sm2_review(ps.ef[i], ps.reps[i], ps.interval[i], q)
        return SM2State(ef=update_at(r.new, ps.ef, i, ef), reps=update_at(r.new, ps.reps, i, reps),
                        interval=update_at(r.new, ps.interval, i, interval),
                        due=update_at(r.new, ps.due, i, r.t + interval),
                        repeat=update_at(r.new, ps.repeat, i, q < 4.0),
                        introduced=update_at(r.new, ps.introduced, i, True), n_seen=r.n_total)

    def scores(self, key, pstate, view, params, env):
        ps = self.update(pstate, view, params)
        h = view.history
        overdue = h.t - ps.due
        is_last = jnp.arange(ps.ef.shape[0]) == h.last_item
        # same-day repeats: least recently seen first; the item just answered waits one turn
        since = jnp.clip(h.t - h.item_last_t, 0.0, 1.0)
        repeat = jnp.where(is_last, NEW - 100.0, REPEAT) + since
        s = jnp.where(~ps.introduced, NEW + new_item_preference(params.curriculum),
                      jnp.where(overdue >= 0.0, DUE + jnp.clip(overdue, 0.0, SPAN - 1.0),
                                jnp.where(ps.repeat, repeat, _not_due(-overdue))))
        return s, ps


# ---- FSRS ---------------------------------------------------------------------------------
class FSRSSchedState(NamedTuple):
    stability: Array  # float32[I] days
    difficulty: Array  # float32[I] in [1, 10]
    last_review: Array  # float32[I] day of the last review
    reviewed: Array  # bool[I]
    n_seen: Array  # float32[]


class FSRSScheduler(Policy):
    """FSRS-style scheduling (FSRS-6 memory states as in the open-source ``fsrs`` package;
    Ye, Su & Cao 2022, KDD): keep each item's stability and difficulty from the observed
    ratings (Good if correct, Again if wrong; :mod:`pedagogym.student_models.fsrs`), review
    the due item (retrievability below ``desired_retention``) with the lowest
    retrievability, else introduce a new item, else review the item with the lowest
    retrievability."""

    name = "fsrs_scheduler"
    description = "FSRS-6 memory states; review the lowest-retrievability due item (R < 0.9)"

    def __init__(self, desired_retention: float = 0.9, weights: tuple[float, ...] = fsrs.DEFAULT_PARAMETERS):
        if not 0.0 < desired_retention < 1.0:
            raise PedagogymError(f"fsrs_scheduler: desired_retention must be in (0, 1), got {desired_retention}")
        if len(weights) != fsrs.N_WEIGHTS:
            raise PedagogymError(f"fsrs_scheduler: FSRS-6 needs {fsrs.N_WEIGHTS} weights, got {len(weights)}")
        self.desired_retention = float(desired_retention)
        self.weights = tuple(float(w) for w in weights)

    def _static_key(self) -> tuple:
        return (self.desired_retention, *self.weights)

    def init(self, params):
        n = params.curriculum.n_items
        f = jnp.zeros((n,), jnp.float32)
        return FSRSSchedState(stability=f + 1.0, difficulty=f + 5.0, last_review=f,
                              reviewed=jnp.zeros((n,), bool), n_seen=jnp.zeros((), jnp.float32))

    def update(self, ps: FSRSSchedState, view, params) -> FSRSSchedState:
        w = jnp.asarray(self.weights, jnp.float32)
        r = last_response(ps.n_seen, view.history, params.curriculum)
        i = r.item
        rating = jnp.where(r.correct, fsrs.GOOD, fsrs.AGAIN).astype(jnp.int32)
        s, d = fsrs.review(ps.stability[i], ps.difficulty[i], ps.reviewed[i], rating, r.t - ps.last_review[i], w)
        return FSRSSchedState(stability=update_at(r.new, ps.stability, i, s),
                              difficulty=update_at(r.new, ps.difficulty, i, d),
                              last_review=update_at(r.new, ps.last_review, i, r.t),
                              reviewed=update_at(r.new, ps.reviewed, i, True), n_seen=r.n_total)

    def retrievability(self, ps: FSRSSchedState, t: Array) -> Array:
        """float32[I] each item's retrievability at day ``t`` (1 for items never reviewed)."""
        r = fsrs.retrievability(t - ps.last_review, ps.stability, jnp.asarray(self.weights, jnp.float32))
        return jnp.where(ps.reviewed, r, 1.0)

    def scores(self, key, pstate, view, params, env):
        ps = self.update(pstate, view, params)
        r = self.retrievability(ps, view.history.t)
        due = ps.reviewed & (r < self.desired_retention)
        s = jnp.where(~ps.reviewed, NEW + new_item_preference(params.curriculum),
                      jnp.where(due, DUE + 1.0 - r, 1.0 - r))
        return s, ps
