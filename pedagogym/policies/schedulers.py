"""Spaced-repetition schedulers: Leitner boxes, SuperMemo-2 and FSRS.

Each keeps a per-item memory (boxes / easiness factors / FSRS states) that it updates from
the logged response to the item it presented last, then reviews the most urgent due item,
else introduces a new item (designer order), else reviews the item closest to being due.
Study-only kinds (videos, worked examples), whose response a platform does not record,
count as successful reviews. Times are in days (``History.t``).

Scores are tiered: due items > (SM-2's same-day repeats) > new items > not yet due items.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
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


# ---- event tutors: the schedulers of Reddy, Levine & Dragan (2017) ------------------------------
# These see one logged review at a time (:class:`ReviewEvent`: the item just shown, its outcome,
# the time it was shown and the delay since), as the tutors of github.com/rddy/deeptutor do,
# and are tuned on a grid by ``pedagogym.replicate``. ``act(key, state, event, knob, oracle)``
# returns (next item, state); ``knob`` is the tuned value (float32[]), ``oracle`` the privileged
# view of the simulator for tutors that read true recall (None for the others).
class ReviewEvent(NamedTuple):
    item: Array     # int32[] the item just shown
    correct: Array  # bool[] its outcome
    t: Array        # float32[] when it was shown
    delay: Array    # float32[] time since (the constant step delay)


class LeitnerQueueState(NamedTuple):
    queue: Array    # int32[I] queue of each item (0 = not yet shown; k >= 1 the k-th Leitner queue)
    stamp: Array    # int32[I] insertion counter: a queue serves its smallest stamp first (FIFO)
    counter: Array  # int32[] next stamp
    current_q: Array  # int32[] queue the item being shown was taken from
    started: Array  # bool[] the first event (the env's random first item) has been folded in


class LeitnerQueueNetwork:
    """The infinite Leitner queue network of Reddy, Labutov, Banerjee & Joachims (2016), as the
    ``LeitnerTutor`` of Reddy, Levine & Dragan (2017): queue 0 holds unseen items (in index
    order); a correct answer moves the item up one queue, a wrong one down one (never below 1);
    each non-empty queue k >= 1 is served at rate ``1 / sqrt(k)`` and queue 0 with probability
    ``knob`` (the arrival probability, tuned on a grid); within a queue, first in, first out."""

    name = "leitner_queue"
    tuned = "arrival_prob"
    persistent = False  # fresh queues every episode

    def __init__(self, n_items: int, n_steps: int):
        self.n_items, self.n_queues = int(n_items), int(n_steps) + 2

    def init(self, key: Array, oracle=None, knob=None) -> LeitnerQueueState:
        n = self.n_items
        z = jnp.zeros((), jnp.int32)
        return LeitnerQueueState(queue=jnp.zeros((n,), jnp.int32), stamp=jnp.arange(n, dtype=jnp.int32),
                                 counter=jnp.asarray(n, jnp.int32), current_q=z, started=jnp.zeros((), bool))

    def probabilities(self, queue: Array, arrival_prob: Array) -> Array:
        """float32[K] probability of serving each queue (the reference's ``q_sampling_rates``)."""
        nonempty = jnp.zeros((self.n_queues,), bool).at[queue].set(True)
        k = jnp.arange(self.n_queues, dtype=jnp.float32)
        rates = jnp.where(nonempty & (k > 0), 1.0 / jnp.sqrt(jnp.maximum(k, 1.0)), 0.0)
        a = jnp.where(nonempty[0], arrival_prob, 0.0)
        p = jnp.where(k > 0, rates / jnp.sum(rates) * (1.0 - a), a)
        return p / jnp.sum(p)

    def act(self, key: Array, s: LeitnerQueueState, ev: ReviewEvent, knob: Array, oracle=None):
        item = ev.item
        next_q = jnp.maximum(1, s.current_q + 2 * ev.correct.astype(jnp.int32) - 1)
        queue = s.queue.at[item].set(next_q)
        stamp = s.stamp.at[item].set(s.counter)
        q = jax.random.choice(key, self.n_queues, p=self.probabilities(queue, knob))
        chosen = jnp.argmin(jnp.where(queue == q, stamp, jnp.iinfo(jnp.int32).max)).astype(jnp.int32)
        return chosen, LeitnerQueueState(queue=queue, stamp=stamp, counter=s.counter + 1, current_q=q.astype(jnp.int32),
                                         started=jnp.ones((), bool))


class SM2MnemosyneState(NamedTuple):
    grade: Array     # int32[I] last grade (0 fail, 2 pass); cards start at grade 0
    interval: Array  # int32[I] scheduled interval in days (next_rep - last_rep)
    ret_reps_since_lapse: Array  # int32[I]
    order: Array     # int32[I] the queue built at the last rebuild (cards, longest interval first)
    pos: Array       # int32[] cards already popped from it (I = empty)
    last: Array      # int32[] the card shown last (-1 = none this episode)


class SM2Mnemosyne:
    """SuperMemo-2 in the Mnemosyne variant as the ``SuperMnemoTutor`` of Reddy, Levine & Dragan
    (2017) runs it on their simulator (pass grade 2, fail grade 0). Their time unit (5 per step)
    is far below the scheduler's day, so every review is "early", easiness never leaves its
    initial 0, and the schedule reduces to: a fail sets the interval to 0; a first pass sets it to
    1 day (+0 or 1 day of noise); the first pass in retention to 6 days (+0 or 1), later passes to
    1 day (+0 or 1). The queue is rebuilt, when empty, as every card sorted by interval, longest
    first (their stage 1, which lists every card), never the last card twice in a row. As in the
    reference, the cards' grades persist across episodes (one tutor per environment sample);
    the queue does not."""

    name = "sm2_mnemosyne"
    tuned = None
    persistent = True

    def __init__(self, n_items: int, n_steps: int):
        self.n_items = int(n_items)

    def init(self, key: Array, oracle=None, knob=None) -> SM2MnemosyneState:
        n = self.n_items
        z = jnp.zeros((n,), jnp.int32)
        return SM2MnemosyneState(grade=z, interval=z, ret_reps_since_lapse=z, order=jnp.arange(n, dtype=jnp.int32),
                                 pos=jnp.asarray(n, jnp.int32), last=jnp.asarray(-1, jnp.int32))

    def new_episode(self, s: SM2MnemosyneState) -> SM2MnemosyneState:
        """The reference's ``reset``: an empty queue and no last card; the cards persist."""
        return s._replace(pos=jnp.asarray(self.n_items, jnp.int32), last=jnp.asarray(-1, jnp.int32))

    def grade(self, key: Array, s: SM2MnemosyneState, item: Array, correct: Array) -> SM2MnemosyneState:
        noise = jax.random.bernoulli(key).astype(jnp.int32)  # random.choice([0, DAY]) for 0 < interval <= 10 days
        g, rrsl = s.grade[item], s.ret_reps_since_lapse[item]
        rrsl_pass = rrsl + 1
        passed_interval = jnp.where(g == 0, 1, jnp.where(rrsl_pass == 1, 6, 1)) + noise
        interval = jnp.where(correct, passed_interval, 0)
        new_rrsl = jnp.where(correct, jnp.where(g == 0, rrsl, rrsl_pass), jnp.where(g == 0, rrsl, 0))
        return s._replace(grade=s.grade.at[item].set(jnp.where(correct, 2, 0)),
                          interval=s.interval.at[item].set(interval),
                          ret_reps_since_lapse=s.ret_reps_since_lapse.at[item].set(new_rrsl))

    def _pop(self, s: SM2MnemosyneState) -> tuple[Array, SM2MnemosyneState]:
        empty = s.pos >= self.n_items
        order = jnp.where(empty, jnp.argsort(-s.interval, stable=True).astype(jnp.int32), s.order)
        pos = jnp.where(empty, 0, s.pos)
        return order[pos], s._replace(order=order, pos=pos + 1)

    def act(self, key: Array, s: SM2MnemosyneState, ev: ReviewEvent, knob: Array = None, oracle=None):
        s = self.grade(key, s, ev.item, ev.correct)
        card, s2 = self._pop(s)
        again, s3 = self._pop(s2)  # the same card twice in a row: take the next one instead
        repeat = (card == s.last) & (s.last != 0)  # the reference's `if self._card_id_last:` skips card 0
        s = jax.tree.map(lambda a, b: jnp.where(repeat, a, b), s3, s2)
        card = jnp.where(repeat, again, card).astype(jnp.int32)
        return card, s._replace(last=card)


class ThresholdTutorState(NamedTuple):
    memory: Any  # the memory model's state as the tutor tracks it
    t: Array     # float32[] the tutor's clock


class ThresholdTutor:
    """Reddy et al.'s ``ThresholdTutor`` (privileged): show the item whose recall, read from the
    simulator's memory model, is closest to a threshold (``knob``, tuned on a grid).

    ``notebook_clock=True`` reproduces the reference exactly: the tutor tracks a copy of the
    simulator that is reset with its own random first review (at time ``delay``), logs each
    review at the time it was shown (not after the delay, as the simulator does) and advances
    its clock by the delay after each, so it reads recall one delay ahead of the simulator with
    review times one delay early. ``False`` reads the simulator's true recall."""

    name = "threshold"
    tuned = "threshold"
    persistent = False

    def __init__(self, model, curr, n_items: int, delay: float, notebook_clock: bool = True):
        self.model, self.curr, self.n_items, self.delay = model, curr, int(n_items), float(delay)
        self.notebook_clock = bool(notebook_clock)

    def init(self, key: Array, oracle, knob=None) -> ThresholdTutorState:
        params, memory = oracle[0], oracle[1]
        t = jnp.zeros((), jnp.float32)
        if self.notebook_clock:  # the copy's own reset step: a random item at time 0, logged at time `delay`
            k_item, k_out = jax.random.split(key)
            item = jax.random.randint(k_item, (), 0, self.n_items)
            p = self.model.p_correct(params, memory, self.curr, item, t)
            correct = jax.random.uniform(k_out) < p
            t = t + self.delay
            memory = self.model.learn(key, params, memory, self.curr, item, correct, t, jnp.ones((), jnp.float32))
        return ThresholdTutorState(memory=memory, t=t)

    def act(self, key: Array, s: ThresholdTutorState, ev: ReviewEvent, knob: Array, oracle):
        params = oracle[0]
        logged_at = ev.t if self.notebook_clock else ev.t + ev.delay
        memory = self.model.learn(key, params, s.memory, self.curr, ev.item, ev.correct, logged_at,
                                  jnp.ones((), jnp.float32))
        t = s.t + ev.delay if self.notebook_clock else ev.t + ev.delay
        recall = self.model.mastery(params, memory, self.curr, t)
        return jnp.argmin(jnp.abs(recall - knob)).astype(jnp.int32), ThresholdTutorState(memory=memory, t=t)
