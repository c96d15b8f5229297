"""Maximum (marginal) likelihood for any student model, through the model's own functions.

A *tracer* turns a model into an observer of a logged sequence: from the learner's state it
predicts P(correct) for the next response, then updates the state with the observed
response. Deterministic models (IRT, PFA, HLR, ACT-R, EFC, FSRS) use their own
``p_correct`` and ``learn``; BKT's latent state is replaced by the belief P(known), updated
with the project's observer equations (:mod:`pedagogym.student_models.bkt`).

Every model updates a skill from that skill's own state, so a learner's log is traced as
its (learner, skill) sequences, each with the model's functions applied to the item's own
skills (a local curriculum of ``K`` skills, ``K`` the most any item has): the work per
response is O(K), not O(number of skills). The sequences are laid end to end in lanes of
one length (:class:`Pack`) and traced by one ``lax.scan``; a response to an item with
several skills is predicted after the scan, from the states its skills' sequences saw.
The result is the same likelihood as tracing each learner's whole log with the full state.

Learner-level differences are the population traits of
:class:`~pedagogym.student_models.base.Traits`, applied by the model's own
``apply_traits``. Their distribution (per subgroup, a normal mean and sd on each
estimated trait) is fitted by marginal maximum likelihood, integrating each learner's
likelihood over the traits with Gauss-Hermite quadrature (a product grid). A finer fixed
grid (:func:`prediction_rule`) gives held-out predictions: P(correct_t | the learner's
earlier responses), the posterior-predictive over traits, so a new learner is predicted
online, from their own history only. Per-learner trait estimates use adaptive quadrature
(:func:`adapt_rule`, centred by :func:`laplace_centre`).

Parameters are optimised on an unconstrained scale (``logit`` for probabilities, ``log``
for positive quantities) with L-BFGS (:func:`minimize`) on the mean negative log-likelihood.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.registry import StaticArg
from pedagogym.student_models import bkt as bkt_mod
from pedagogym.student_models import fsrs
from pedagogym.student_models.base import StudentModel, Traits
from pedagogym.schema import SECONDS_PER_DAY

P_CLIP = 1e-6
_KEY = jax.random.PRNGKey(0)  # deterministic models ignore the key of ``learn``
TRAIT_ORDER = ("prior", "speed", "memory", "persistence")

# XLA's CPU backend hands reductions to YNNPACK. Inside the sequential scan of BKT, ACT-R and
# FSRS, one small reduction per step (e.g. ACT-R's 32 presentation slots x 25 nodes x a few
# hundred lanes, 77 steps) made them 25-40% of an evaluation (jax.profiler, 400,000
# responses): ACT-R's population-stage evaluation took 0.97 s with them and 0.73 s without,
# the same value to the bit. The closed-form (count) models make one large reduction, where
# YNNPACK is faster (IRT-2PL's evaluation 0.126 s with it, 0.20 s without), so they keep it.
NO_LIBRARY_FUSIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def _library_fusions_can_be_turned_off() -> bool:
    """Whether this XLA has :data:`NO_LIBRARY_FUSIONS` (an older or newer one may lack the
    option: a tiny program is compiled with it once to see); only on CPU."""
    if jax.default_backend() != "cpu":
        return False
    try:
        jax.jit(lambda x: x + 1.0).lower(jnp.float32(0.0)).compile(compiler_options=NO_LIBRARY_FUSIONS)
    except Exception:  # noqa: BLE001 - "No such compile option" / an invalid value in another XLA
        return False
    return True


def fit_jit(fn, scan: bool = False):
    """``jax.jit(fn)``; for a likelihood traced by a scan (``scan``), without YNNPACK's
    library fusions where they can be turned off (:data:`NO_LIBRARY_FUSIONS`)."""
    if scan and _library_fusions_can_be_turned_off():
        return jax.jit(fn, compiler_options=NO_LIBRARY_FUSIONS)
    return jax.jit(fn)


# ---- data -----------------------------------------------------------------------------
class Pack(NamedTuple):
    """A log's learners as (learner, skill) sequences packed end to end into lanes.

    Every model's ``learn`` updates each skill of an item from that skill's own state (and
    the parameters), so a skill's state depends only on the learner's responses to items
    exercising it: each (learner, skill) sequence is traced on its own, with the model's
    functions applied to a local curriculum of the item's ``K`` skills (``K`` = the most
    skills of any item). The sequences are laid end to end in ``B`` lanes of ``T`` steps
    (``T`` = the longest sequence; a lane's state is reset at each sequence start), so one
    ``lax.scan`` of ``T`` steps traces the whole log with almost no padding, and the work
    per step is ``O(K)``, not ``O(S)``. A response to an item with several skills has a row
    in each of its skills' sequences; its P(correct) needs all their states, so it is
    computed after the scan from the states the rows saw (``multi_*``).

    Rows, time-major [T, B]: item, correct (float32), rating (int32, 0 = none), t (float32
    days since the learner's first response), slot (the traced skill's place among the
    item's skills), start (a sequence starts: reset the state), row_learner (index into the
    pack's learners). Padding rows are starts of a blank response, never counted.
    n_right, n_wrong, t_last: each row's history in its sequence (:func:`sequence_history`),
    computed once here rather than at every evaluation of a likelihood.

    multi_lanes: int32[T, J] at each step, the lanes whose row there belongs to a multi-skill
    response (padded with lane 0; ``J`` the most at any step, 0 without such responses): the
    scan keeps the states of these rows only.
    multi_pos: int32[M, K] positions (``step * J + j`` in ``multi_lanes``) of each
    multi-skill response's rows, in the item's skill order (unused slots repeat the first);
    multi_item/correct/rating/t/learner: [M].
    resp_src: int32[N] where each response's P(correct) is: a flat row position, or
    ``T * B + m`` for the m-th multi-skill response; responses in log order (learner, time).
    resp_learner, resp_step: int32[N] (pack learner, position in the learner's sequence).
    item_skills: int32[I, K] each item's skills (unused slots repeat the first); item_n_skills int32[I].
    group: int32[L] subgroup (-1 = in no subgroup); learner: int32[L] index in the log;
    n_responses: float32[L].
    """

    item: jax.Array
    correct: jax.Array
    rating: jax.Array
    t: jax.Array
    slot: jax.Array
    start: jax.Array
    row_learner: jax.Array
    n_right: jax.Array
    n_wrong: jax.Array
    t_last: jax.Array
    multi_lanes: jax.Array
    multi_pos: jax.Array
    multi_item: jax.Array
    multi_correct: jax.Array
    multi_rating: jax.Array
    multi_t: jax.Array
    multi_learner: jax.Array
    resp_src: jax.Array
    resp_learner: jax.Array
    resp_step: jax.Array
    item_skills: jax.Array
    item_n_skills: jax.Array
    group: jax.Array
    learner: jax.Array
    n_responses: jax.Array


def item_skill_table(q_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32[I, K] each item's skills in skill order, unused slots repeating the first;
    int32[I] how many), ``K`` the most skills of any item (at least 1)."""
    q = np.asarray(q_matrix, bool)
    n = q.sum(1).astype(np.int32)
    K = max(1, int(n.max()) if len(n) else 1)
    idx = np.argsort(~q, axis=1, kind="stable")[:, :K].astype(np.int32)
    idx = np.where(np.arange(K)[None, :] < np.maximum(n, 1)[:, None], idx, idx[:, :1])
    return idx, n


def lay_out(lengths: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Sequences of ``lengths`` (in order) laid end to end in lanes of ``T`` = the longest
    length (next fit: a new lane when the next sequence does not fit). Returns (T, B lanes,
    int64 flat position ``step * B + lane`` of every element, sequence by sequence)."""
    lengths = np.asarray(lengths, np.int64)
    if len(lengths) == 0:
        return 1, 1, np.zeros(0, np.int64)
    T = int(lengths.max())
    lane_of_seq = np.empty(len(lengths), np.int64)
    offset_of_seq = np.empty(len(lengths), np.int64)
    lane, used = 0, 0
    for k, n in enumerate(lengths.tolist()):
        if used + n > T:
            lane, used = lane + 1, 0
        lane_of_seq[k], offset_of_seq[k] = lane, used
        used += n
    B = lane + 1
    seq_of = np.repeat(np.arange(len(lengths)), lengths)
    within = np.arange(len(seq_of)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return T, B, (offset_of_seq[seq_of] + within) * B + lane_of_seq[seq_of]


def on_grid(values, fill, dtype, T: int, B: int, pos: np.ndarray) -> np.ndarray:
    """``values`` (one per element, in :func:`lay_out`'s order) placed at their flat positions
    ``pos`` of a time-major [T, B] grid, ``fill`` elsewhere."""
    out = np.full(T * B, fill, dtype)
    out[pos] = values
    return out.reshape(T, B)


def pack_learners(log, group_of_learner: np.ndarray | None = None) -> Pack:
    """The log's learners as a :class:`Pack` (see there)."""
    N, L = log.n_interactions, log.n_learners
    counts = log.learner_counts()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    gl = np.zeros(L, np.int32) if group_of_learner is None else np.asarray(group_of_learner, np.int32)
    item_skills, item_n = item_skill_table(log.q_matrix)
    K = item_skills.shape[1]
    learner = np.asarray(log.learner, np.int64)
    item = np.asarray(log.item, np.int64)
    t_days = ((log.timestamp - log.timestamp[starts[learner]]) / SECONDS_PER_DAY if N else np.zeros(0))
    rating = log.rating if log.rating is not None else np.zeros(N, np.int8)
    n_sk = np.maximum(item_n[item], 1)
    # rows: one per (response, skill of its item), ordered by learner, skill, time
    resp = np.repeat(np.arange(N), n_sk)
    slot = np.arange(len(resp)) - np.repeat(np.cumsum(n_sk) - n_sk, n_sk)
    skill = item_skills[item[resp], slot].astype(np.int64)
    order = np.lexsort((resp, skill, learner[resp]))
    resp, slot, skill = resp[order], slot[order], skill[order]
    R = len(resp)
    key = learner[resp] * (log.n_skills + 1) + skill
    seq_start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if R else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[seq_start, R])
    T, B, pos = lay_out(lengths)  # flat position in the time-major [T, B] layout

    def grid(values, fill, dtype):
        return on_grid(values, fill, dtype, T, B, pos)

    single = n_sk[resp] == 1
    is_start = np.zeros(R, bool)
    is_start[seq_start] = True
    # multi-skill responses: the positions of their rows, in the item's skill order
    multi_resp = np.flatnonzero(n_sk > 1)
    M = len(multi_resp)
    m_index = np.full(N, -1, np.int64)
    m_index[multi_resp] = np.arange(M)
    multi_pos = np.zeros((M, K), np.int64)
    mrows = np.flatnonzero(~single)
    m_step, m_lane = pos[mrows] // B, pos[mrows] % B
    order_m = np.lexsort((m_lane, m_step))
    per_step = np.bincount(m_step, minlength=T)
    J = int(per_step.max()) if M else 0
    j_of = np.empty(len(mrows), np.int64)
    j_of[order_m] = np.arange(len(mrows)) - np.repeat(np.cumsum(per_step) - per_step, per_step)
    multi_lanes = np.zeros((T, J), np.int64)
    multi_lanes[m_step, j_of] = m_lane
    multi_pos[m_index[resp[mrows]], slot[mrows]] = m_step * J + j_of
    if M:
        multi_pos = np.where(np.arange(K)[None, :] < n_sk[multi_resp][:, None], multi_pos, multi_pos[:, :1])
    resp_src = np.zeros(N, np.int64)
    srows = np.flatnonzero(single)
    resp_src[resp[srows]] = pos[srows]
    resp_src[multi_resp] = T * B + np.arange(M)
    f32, i32 = jnp.float32, jnp.int32
    correct_grid = grid(log.correct[resp], 0, np.float32)
    t_grid = grid(t_days[resp], 0.0, np.float32)
    start_grid = grid(is_start, True, bool)
    n_right, n_wrong, t_last = sequence_history(correct_grid, t_grid, start_grid)
    return Pack(
        item=jnp.asarray(grid(item[resp], 0, np.int32)), correct=jnp.asarray(correct_grid),
        rating=jnp.asarray(grid(rating[resp], 0, np.int32)), t=jnp.asarray(t_grid),
        slot=jnp.asarray(grid(slot, 0, np.int32)), start=jnp.asarray(start_grid),
        row_learner=jnp.asarray(grid(learner[resp], 0, np.int32)),
        n_right=jnp.asarray(n_right), n_wrong=jnp.asarray(n_wrong), t_last=jnp.asarray(t_last),
        multi_lanes=jnp.asarray(multi_lanes, i32), multi_pos=jnp.asarray(multi_pos, i32),
        multi_item=jnp.asarray(item[multi_resp], i32),
        multi_correct=jnp.asarray(log.correct[multi_resp], f32), multi_rating=jnp.asarray(rating[multi_resp], i32),
        multi_t=jnp.asarray(t_days[multi_resp], f32), multi_learner=jnp.asarray(learner[multi_resp], i32),
        resp_src=jnp.asarray(resp_src, i32), resp_learner=jnp.asarray(learner, i32),
        resp_step=jnp.asarray(np.arange(N) - starts[learner], i32),
        item_skills=jnp.asarray(item_skills, i32), item_n_skills=jnp.asarray(item_n, i32),
        group=jnp.asarray(gl, i32), learner=jnp.arange(L, dtype=i32), n_responses=jnp.asarray(counts, f32),
    )


# ---- tracers ----------------------------------------------------------------------------
class ModelTracer(StaticArg):
    """A deterministic model observed through its own ``p_correct`` and ``learn``."""

    def __init__(self, model: StudentModel):
        self.model = model

    def _static_key(self) -> tuple:
        return (self.model,)

    def init(self, params, curr: CurriculumArrays):
        return self.model.init(_KEY, params, curr)

    def step(self, params, state, curr: CurriculumArrays, item, correct, rating, t):
        p = self.model.p_correct(params, state, curr, item, t)
        gate = jnp.ones((curr.n_skills,), jnp.float32)
        new = self.model.learn(_KEY, params, state, curr, item, correct > 0.5, t, gate)
        return p, new


class BKTTracer(ModelTracer):
    """BKT as a platform observes it: the belief P(known) per skill, updated with
    :func:`bkt.posterior` and :func:`bkt.transition`. A multi-skill item is answered
    correctly when every skill is known (the simulator's conjunctive rule, beliefs taken as
    independent); each of its skills is conditioned on the response separately."""

    def init(self, params, curr):
        return jnp.asarray(params.p_init, jnp.float32)

    def step(self, params, belief, curr, item, correct, rating, t):
        skills = curr.q_matrix[item] > 0
        guess, slip = bkt_mod.item_guess_slip(params, curr, item)
        p_all = jnp.prod(jnp.where(skills, belief, 1.0))
        p = bkt_mod.predict(p_all, guess, slip)
        post = bkt_mod.posterior(belief, correct > 0.5, guess, slip)
        new = jnp.where(skills, bkt_mod.transition(post, params.p_learn, params.p_forget), belief)
        return p, new


class ACTRTracer(ModelTracer):
    """ACT-R with every chunk seeded by a negligible presentation (weight 1e-30, a million
    days old; the first real presentation overwrites its slot). Activation is then finite
    (about -75 instead of -inf, recall below 1e-100: the same predictions in float32), so
    gradients stay finite: ``log(0)`` in :func:`actr.activation` would give 0 * inf = NaN."""

    def init(self, params, curr):
        state = self.model.init(_KEY, params, curr)
        return state._replace(times=state.times.at[:, 0].set(-1e6), weights=state.weights.at[:, 0].set(1e-30))

    def step(self, params, state, curr, item, correct, rating, t):  # one activation for both (half the cost)
        return self.model.recall_and_learn(params, state, curr, item, t, jnp.ones((curr.n_skills,), jnp.float32))


class FSRSRatingTracer(ModelTracer):
    """FSRS observed with the log's ratings (1-4) where given, else Good/Again from
    ``correct``: the full review of the FSRS-6 equations in :mod:`pedagogym.student_models.fsrs`."""

    def step(self, params, state, curr, item, correct, rating, t):
        p = self.model.p_correct(params, state, curr, item, t)
        g = jnp.where(rating > 0, rating, jnp.where(correct > 0.5, fsrs.GOOD, fsrs.AGAIN)).astype(jnp.int32)
        skills = curr.q_matrix[item] > 0
        w = params.w
        r = fsrs.trace_recall(params, state, t)
        s_new, d_new = fsrs.review(state.stability, state.difficulty, state.reviewed, g, t - state.last_review, w, r)
        new = fsrs.FSRSState(
            stability=jnp.where(skills, s_new, state.stability).astype(jnp.float32),
            difficulty=jnp.where(skills, d_new, state.difficulty).astype(jnp.float32),
            last_review=jnp.where(skills, t, state.last_review).astype(jnp.float32),
            reviewed=state.reviewed | skills,
        )
        return p, new


class CountTracer(ModelTracer):
    """A model whose state, observed through its own ``learn`` with a full gate, is a closed
    function of the sequence's history: how many responses before this one were right and
    wrong, and when the last was. :func:`trace` then computes every row's state directly
    (elementwise over all rows and quadrature nodes) instead of scanning the sequence: the
    same predictions (up to float32 rounding of the running sums) at a fraction of the cost.
    ``history_state(params, fresh, slot, n_right, n_wrong, t_last)`` returns the traced
    skill's state before the row (``fresh``: its initial state; ``params``: the item's local
    parameters, traits applied; ``t_last``: the previous response's time, 0 for the first).
    ``tests/test_fitting_engine.py`` checks each closed form against the scan."""

    def history_state(self, params, fresh, slot, n_right, n_wrong, t_last):
        raise NotImplementedError


class IRTTracer(CountTracer):
    """Learning IRT: ``theta = theta0 + growth * right + fail_growth * wrong`` (additive factors)."""

    def history_state(self, params, fresh, slot, n_right, n_wrong, t_last):
        return fresh._replace(theta=fresh.theta + _pick(params.growth, slot) * n_right
                              + _pick(params.fail_growth, slot) * n_wrong)


class PFATracer(CountTracer):
    """PFA: the state is the counts of prior successes and failures."""

    def history_state(self, params, fresh, slot, n_right, n_wrong, t_last):
        return fresh._replace(successes=fresh.successes + n_right, failures=fresh.failures + n_wrong)


class HLRTracer(CountTracer):
    """HLR: counts scaled by ``gain``; a full review sets the last review to its own time."""

    def history_state(self, params, fresh, slot, n_right, n_wrong, t_last):
        gain = _pick(params.gain, slot)
        seen = (n_right + n_wrong) > 0
        return fresh._replace(n_right=fresh.n_right + gain * n_right, n_wrong=fresh.n_wrong + gain * n_wrong,
                              last_review=jnp.where(seen, t_last, fresh.last_review))


class EFCTracer(CountTracer):
    """EFC: strength is ``gain`` times the reviews so far; a full review sets the last review
    to its own time."""

    def history_state(self, params, fresh, slot, n_right, n_wrong, t_last):
        n = n_right + n_wrong
        return fresh._replace(strength=fresh.strength + _pick(params.gain, slot) * n,
                              last_review=jnp.where(n > 0, t_last, fresh.last_review))


# ---- parameter specs ------------------------------------------------------------------
TRANSFORMS = {
    "id": (lambda x: x, lambda y: y),
    "log": (jnp.exp, lambda y: jnp.log(jnp.maximum(y, 1e-8))),
    "logit": (jax.nn.sigmoid, lambda y: jnp.log(jnp.clip(y, 1e-6, 1 - 1e-6)) - jnp.log1p(-jnp.clip(y, 1e-6, 1 - 1e-6))),
}


@dataclass(frozen=True)
class FreeField:
    """A field of the model's Params fitted from data: per skill (``indices=None``,
    float32[S]) or selected entries of a global vector (e.g. FSRS weights)."""

    name: str
    transform: str = "id"
    indices: tuple[int, ...] | None = None
    bounds: tuple[float, float] | None = None  # on the natural scale, applied after the transform


@dataclass(frozen=True)
class Spec:
    """What is free in a fit. ``traits``: the traits whose (mean, sd) are estimated;
    ``joint_traits``: those whose sd is estimated jointly with the parameters (MML, e.g. IRT
    ability); ``item_difficulty`` / ``item_discrimination``: per-item IRT parameters (the
    difficulties centred within each item's first skill, the log-discriminations on 0)."""

    fields: tuple[FreeField, ...] = ()
    traits: tuple[str, ...] = ()
    joint_traits: tuple[str, ...] = ()
    item_difficulty: bool = False
    item_discrimination: bool = False
    quadrature: tuple[int, ...] = (1, 15, 5, 4)  # nodes per trait for 0, 1, 2, 3 traits: the fit's grid
    prediction_quadrature: tuple[int, ...] = (1, 121, 9, 5)  # held-out predictions: :func:`prediction_rule`


@dataclass
class Problem:
    """A model, its tracer and spec, bound to a curriculum and the log's sequences."""

    model: StudentModel
    tracer: ModelTracer
    spec: Spec
    base: Any  # Params with fixed values
    curr: CurriculumArrays
    item_primary_skill: np.ndarray
    item_seen: np.ndarray
    extra: dict = field(default_factory=dict)

    # -- parameters
    @property
    def scanned(self) -> bool:
        """Whether the likelihood is traced by a scan over each sequence (not a
        :class:`CountTracer`'s closed form); see :func:`fit_jit`."""
        return not isinstance(self.tracer, CountTracer)

    def initial_theta(self) -> dict:
        theta: dict[str, Any] = {"fields": {}}
        for f in self.spec.fields:
            value = getattr(self.base, f.name)
            if f.indices is not None:
                value = value[jnp.asarray(f.indices)]
            theta["fields"][f.name] = TRANSFORMS[f.transform][1](jnp.asarray(value, jnp.float32))
        if self.spec.item_difficulty:
            theta["item_b"] = jnp.asarray(self.curr.difficulty, jnp.float32)
        if self.spec.item_discrimination:
            theta["item_log_a"] = jnp.log(jnp.asarray(self.curr.discrimination, jnp.float32))
        return theta

    def params(self, theta: dict):
        """(model Params, curriculum arrays) for ``theta``."""
        p = self.base
        for f in self.spec.fields:
            v = TRANSFORMS[f.transform][0](theta["fields"][f.name])
            if f.bounds is not None:
                v = jnp.clip(v, *f.bounds)
            cur = getattr(p, f.name)
            v = v if f.indices is None else cur.at[jnp.asarray(f.indices)].set(v)
            p = p._replace(**{f.name: v.astype(jnp.float32)})
        curr = self.curr
        seen = jnp.asarray(self.item_seen, jnp.float32)
        if "item_b" in theta:
            ps = jnp.asarray(self.item_primary_skill)
            S = self.curr.n_skills
            tot = jax.ops.segment_sum(theta["item_b"] * seen, ps, S)
            cnt = jax.ops.segment_sum(seen, ps, S)
            b = theta["item_b"] - (tot / jnp.maximum(cnt, 1.0))[ps]
            curr = curr._replace(difficulty=jnp.where(self.item_seen, b, curr.difficulty).astype(jnp.float32))
        if "item_log_a" in theta:
            la = theta["item_log_a"]
            la = la - jnp.sum(la * seen) / jnp.maximum(jnp.sum(seen), 1.0)
            curr = curr._replace(discrimination=jnp.where(self.item_seen, jnp.exp(la), curr.discrimination).astype(jnp.float32))
        return p, curr


def quadrature(n_traits: int, nodes_per_trait: int) -> tuple[np.ndarray, np.ndarray]:
    """Product Gauss-Hermite grid for a standard normal in ``n_traits`` dimensions:
    (z float32[Q, d], log-weights float32[Q])."""
    if n_traits == 0:
        return np.zeros((1, 0), np.float32), np.zeros(1, np.float32)
    x, w = np.polynomial.hermite.hermgauss(nodes_per_trait)
    z1, w1 = x * np.sqrt(2.0), w / np.sqrt(np.pi)
    grids = np.meshgrid(*([z1] * n_traits), indexing="ij")
    wg = np.meshgrid(*([w1] * n_traits), indexing="ij")
    z = np.stack([g.ravel() for g in grids], axis=1)
    logw = np.sum(np.log(np.stack([g.ravel() for g in wg], axis=1)), axis=1)
    return z.astype(np.float32), logw.astype(np.float32)


def uniform_grid(n: int, half_width: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """A one-trait rule of ``n`` equally spaced nodes on [-half_width, half_width], weighted by
    the standard normal (the trapezoid rule, normalised): (z float32[n, 1], log-weights
    float32[n]). Unlike Gauss-Hermite's nodes, which spread into the tails as ``n`` grows
    (15 nodes are 0.8 apart at the centre, 61 nodes 0.4), these are ``2 half_width / (n - 1)``
    apart everywhere a learner's ability can be, so a posterior narrowed by hundreds of
    responses still spans several of them (the trapezoid rule's error on a normal of sd
    ``s`` falls as ``exp(-2 pi^2 s^2 / h^2)`` with the spacing ``h``)."""
    z = np.linspace(-half_width, half_width, n)
    logw = -0.5 * z ** 2
    logw -= np.log(np.sum(np.exp(logw)))
    return z[:, None].astype(np.float32), logw.astype(np.float32)


def prediction_rule(n_traits: int, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed rule of held-out predictions (:attr:`Spec.prediction_quadrature`): one
    trait: :func:`uniform_grid`; several: the Gauss-Hermite product grid (an equally fine
    grid in 2-3 dimensions would cost thousands of nodes per response)."""
    return uniform_grid(nodes) if n_traits == 1 else quadrature(n_traits, nodes)


def _traits(shift: jax.Array, names: tuple[str, ...]) -> Traits:
    z = jnp.zeros((), jnp.float32)
    values = {t: z for t in TRAIT_ORDER}
    for k, name in enumerate(names):
        values[name] = shift[k]
    return Traits(prior=values["prior"], speed=values["speed"], memory=values["memory"],
                  persistence=values["persistence"], sessions_per_week=jnp.float32(7.0),
                  subgroup=jnp.zeros((), jnp.int32))


def _skill_axes(problem: Problem, params) -> tuple[Any, Any]:
    """Which leaves of the model's Params and the tracer's state have a leading skill axis
    (pytrees of bools), found by tracing the model at one skill more."""
    curr = problem.curr
    S = curr.n_skills

    def shapes(n):
        c = CurriculumArrays(*(jax.ShapeDtypeStruct(
            (n, n) if f == "prereq" else ((a.shape[0], n) if f == "q_matrix" else a.shape), a.dtype)
            for f, a in zip(CurriculumArrays._fields, curr)))
        p = jax.eval_shape(problem.model.default_params, c)
        return p, jax.eval_shape(problem.tracer.init, p, c)

    (p1, s1), (p2, s2) = shapes(S), shapes(S + 1)
    pmask = jax.tree.map(lambda a, b: a.ndim > 0 and a.shape[0] != b.shape[0], p1, p2)
    smask = jax.tree.map(lambda a, b: a.ndim > 0 and a.shape[0] != b.shape[0], s1, s2)
    if not all(jax.tree.leaves(smask)):
        raise NotImplementedError(f"{problem.model.name}: a state leaf without a skill axis cannot be traced per skill")
    return pmask, smask


def _local_curr(curr: CurriculumArrays, sk: jax.Array, n: jax.Array, item: jax.Array) -> CurriculumArrays:
    """The curriculum seen by responses to ``item`` (any leading shape): the item alone
    (index 0) and its ``K`` skills ``sk`` [..., K] (slots at or past ``n`` unused, q = 0).
    Leaves have the leading shape of ``item``."""
    K = sk.shape[-1]
    one = lambda a: a[item][..., None]  # noqa: E731
    return CurriculumArrays(
        q_matrix=(jnp.arange(K) < jnp.maximum(n, 1)[..., None]).astype(curr.q_matrix.dtype)[..., None, :],
        difficulty=one(curr.difficulty), discrimination=one(curr.discrimination), guess=one(curr.guess),
        slip=one(curr.slip), kind=one(curr.kind), duration=one(curr.duration),
        prereq=curr.prereq[sk[..., :, None], sk[..., None, :]], order=jnp.zeros(item.shape + (1,), curr.order.dtype))


def _pick(a: jax.Array, slot: jax.Array) -> jax.Array:
    """``a[slot][None]`` for a small leading axis, by selects rather than a gather."""
    out = a[0]
    for k in range(1, a.shape[0]):
        out = jnp.where(slot == k, a[k], out)
    return out[None]


def sequence_history(correct: np.ndarray, t: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row of a time-major [T, B] grid of sequences laid end to end in lanes (``start``
    marks each sequence's first row): the responses before it in its sequence that were
    right and wrong (float32 counts), and the previous response's time (0 for a sequence's
    first row). Counts are exact integers in float64 before the cast (a float32 running sum
    over a lane would round past 2^24)."""
    start = np.asarray(start, bool)

    def before(x):  # exclusive running sum, restarted at each sequence start
        c = np.cumsum(x, axis=0) - x  # non-decreasing down a lane (x >= 0): the running max finds the last start's
        return (c - np.maximum.accumulate(np.where(start, c, 0.0), axis=0)).astype(np.float32)

    y = np.asarray(correct, np.float64)
    t = np.asarray(t, np.float32)
    prev_t = np.concatenate([t[:1], t[:-1]], axis=0)
    return before(y), before(1.0 - y), np.where(start, np.float32(0.0), prev_t).astype(np.float32)


def trace(problem: Problem, params, curr, trait_names: tuple[str, ...], mu: jax.Array, sd: jax.Array,
          z: jax.Array, pack: Pack) -> tuple[jax.Array, jax.Array]:
    """Per response and quadrature node: (log P(response) float32[N, Q], P(correct)
    float32[N, Q]), responses in the pack's (log) order; P is clipped to [P_CLIP, 1 - P_CLIP].
    The arguments are :func:`trace_rows`'."""
    lp, p = trace_rows(problem, params, curr, trait_names, mu, sd, z, pack)
    return lp[pack.resp_src], p[pack.resp_src]


def trace_rows(problem: Problem, params, curr, trait_names: tuple[str, ...], mu: jax.Array, sd: jax.Array,
               z: jax.Array, pack: Pack) -> tuple[jax.Array, jax.Array]:
    """:func:`trace` in the pack's row order: (log P(response), P(correct)), float32[T * B + M, Q],
    the [T, B] grid's rows flattened, then the multi-skill responses (:class:`Pack`). Rows
    that are not a response's (padding, and a multi-skill response's rows in its skills'
    sequences) hold values that no response uses: :func:`row_weights` marks the others.

    mu, sd: float32[G, d] per subgroup; a learner in group -1 uses group 0's. z: the nodes
    (standard-normal trait values), float32[Q, d] for every learner or float32[L, Q, d]
    per learner (adaptive quadrature, :func:`adapt_rule`).

    Each row's local parameters and curriculum (its item's skills) are gathered before the
    scan, so the scan's body is elementwise and their gradient is one scatter-add."""
    tracer, model = problem.tracer, problem.model
    pmask, _ = _skill_axes(problem, params)
    treedef = jax.tree.structure(params)
    T, B = pack.item.shape
    K = pack.item_skills.shape[1]
    M = pack.multi_pos.shape[0]
    group = jnp.maximum(pack.group, 0)
    flags = jax.tree.leaves(pmask)

    def shifts_of(learner):  # the trait shifts [..., Q, d] at the nodes of each response's learner
        if z.ndim == 3:  # per learner (adaptive)
            g = group[learner]
            return mu[g][..., None, :] + sd[g][..., None, :] * z[learner]
        table = mu[:, None, :] + sd[:, None, :] * z[None]  # [G, Q, d]: one rule for every learner
        if table.shape[0] == 1:  # one subgroup: a broadcast (its gradient a plain sum over rows)
            return jnp.broadcast_to(table[0], learner.shape + z.shape)
        return table[group[learner]]

    def gather(item):  # local views of every response to ``item`` [...]: (per-skill param leaves, curriculum)
        sk = pack.item_skills[item]
        leaves = [a[sk] for a, per in zip(jax.tree.leaves(params), flags) if per]
        return leaves, _local_curr(curr, sk, pack.item_n_skills[item], item)

    def assemble(local_leaves):
        it = iter(local_leaves)
        return jax.tree.unflatten(treedef, [next(it) if per else a for a, per in zip(jax.tree.leaves(params), flags)])

    def with_traits(lparams, shift):
        if not trait_names:
            return lparams
        return model.apply_traits(lparams, _traits(shift, trait_names))

    def fresh_state(pl, lcurr, slot):  # the traced skill's initial state [1, ...]
        return jax.tree.map(lambda a: _pick(a, slot), tracer.init(pl, lcurr))

    def step_from(pl, state, lcurr, y, r, t, slot):  # (clipped P(correct), the traced skill's next state)
        wide = jax.tree.map(lambda a: jnp.broadcast_to(a, (K,) + a.shape[1:]), state)
        p, new = tracer.step(pl, wide, lcurr, 0, y, r, t)
        return jnp.clip(p, P_CLIP, 1.0 - P_CLIP), jax.tree.map(lambda a: _pick(a, slot), new)

    def row(state, leaves, lcurr, y, r, t, slot, start, shifts):  # state: one skill's, leaves [Q, 1, ...]
        lparams = assemble(leaves)

        def node(state, shift):
            pl = with_traits(lparams, shift)
            state = jax.tree.map(lambda a, b: jnp.where(start, a, b), fresh_state(pl, lcurr, slot), state)
            p, new = step_from(pl, state, lcurr, y, r, t, slot)
            return new, p, state

        return jax.vmap(node)(state, shifts)

    def body(state, x):
        *x, lanes = x
        new, p, before = jax.vmap(row)(state, *x)
        return new, ((p, jax.tree.map(lambda a: a[lanes], before)) if M else (p, None))

    def closed(leaves, lcurr, y, r, t, slot, shifts, n_right, n_wrong, t_last):  # one row, every node, no scan
        lparams = assemble(leaves)

        def node(shift):
            pl = with_traits(lparams, shift)
            state = tracer.history_state(pl, fresh_state(pl, lcurr, slot), slot, n_right, n_wrong, t_last)
            return step_from(pl, state, lcurr, y, r, t, slot)[0], state

        return jax.vmap(node)(shifts)

    leaves, lcurr = gather(pack.item)  # [T, B, K, ...]
    if isinstance(tracer, CountTracer):
        n_right, n_wrong, t_last = pack.n_right, pack.n_wrong, pack.t_last
        rows = jax.vmap(jax.vmap(closed))
        p_rows, states = rows(leaves, lcurr, pack.correct, pack.rating, pack.t, pack.slot, shifts_of(pack.row_learner),
                              n_right, n_wrong, t_last)
        before = jax.tree.map(lambda a: a[jnp.arange(T)[:, None], pack.multi_lanes], states) if M else None
    else:
        leaves0, lcurr0 = gather(jnp.zeros((), jnp.int32))
        one = jax.eval_shape(lambda: jax.tree.map(lambda a: a[:1], tracer.init(assemble(leaves0), lcurr0)))
        state0 = jax.tree.map(lambda s: jnp.zeros((B, z.shape[-2]) + s.shape, s.dtype), one)
        xs = (leaves, lcurr, pack.correct, pack.rating, pack.t, pack.slot, pack.start, shifts_of(pack.row_learner),
              pack.multi_lanes)
        _, (p_rows, before) = jax.lax.scan(body, state0, xs)  # p_rows [T, B, Q]; before [T, J, Q, 1, ...]
    p_all = p_rows.reshape(T * B, -1)
    if M:
        J = pack.multi_lanes.shape[1]
        flat = jax.tree.map(lambda a: a.reshape((T * J,) + a.shape[2:]), before)  # [T*J, Q, 1, ...]

        def multi(leaves, lcurr, pos, y, r, t, shifts):
            lparams = assemble(leaves)
            states = jax.tree.map(lambda a: a[pos][:, :, 0], flat)  # [K, Q, ...]

            def node(st, shift):
                p, _ = tracer.step(with_traits(lparams, shift), st, lcurr, 0, y, r, t)
                return jnp.clip(p, P_CLIP, 1.0 - P_CLIP)

            return jax.vmap(node, in_axes=(jax.tree.map(lambda _: 1, states), 0))(states, shifts)

        m_leaves, m_curr = gather(pack.multi_item)
        p_multi = jax.vmap(multi)(m_leaves, m_curr, pack.multi_pos, pack.multi_correct, pack.multi_rating,
                                  pack.multi_t, shifts_of(pack.multi_learner))  # [M, Q]
        p_all = jnp.concatenate([p_all, p_multi], 0)
    y = jnp.concatenate([pack.correct.reshape(T * B), pack.multi_correct], 0)[:, None]
    lp = y * jnp.log(p_all) + (1.0 - y) * jnp.log1p(-p_all)
    return lp, p_all


def row_weights(pack: Pack) -> tuple[jax.Array, jax.Array]:
    """(float32[T * B + M]: 1 on the rows of :func:`trace_rows` that are a response's, 0
    elsewhere; int32[T * B + M]: each row's learner)."""
    T, B = pack.item.shape
    n_rows = T * B + pack.multi_item.shape[0]
    weight = jnp.zeros(n_rows, jnp.float32).at[pack.resp_src].set(1.0)
    return weight, jnp.concatenate([pack.row_learner.reshape(T * B), pack.multi_learner])


def learner_loglik(problem: Problem, theta: dict, trait_names, mu, log_sd, z, pack: Pack) -> jax.Array:
    """float32[L, Q] each learner's log-likelihood at each quadrature node."""
    params, curr = problem.params(theta)
    lp, _ = trace_rows(problem, params, curr, trait_names, mu, jnp.exp(log_sd), z, pack)
    weight, learner = row_weights(pack)  # summed in row order: a gather of [N, Q] into log order costs 10-30% more
    return jax.ops.segment_sum(lp * weight[:, None], learner, pack.group.shape[0])


def marginal_nll(problem: Problem, theta: dict, trait_names, mu, log_sd, z, logw, pack: Pack) -> jax.Array:
    """Mean negative marginal log-likelihood per response over learners in a subgroup (>= 0)."""
    ll = learner_loglik(problem, theta, trait_names, mu, log_sd, z, pack)
    marg = jax.scipy.special.logsumexp(ll + logw[None, :], axis=1)
    use = pack.group >= 0
    total = jnp.sum(jnp.where(use, marg, 0.0))
    count = jnp.sum(jnp.where(use, pack.n_responses, 0.0))
    return -total / jnp.maximum(count, 1.0)


# ---- adaptive quadrature -------------------------------------------------------------------
MIN_POSTERIOR_SD = 1e-3


def adapt_rule(z: jax.Array, logw: jax.Array, m: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Adaptive Gauss-Hermite quadrature (Naylor & Smith 1982; Liu & Pierce 1994; lme4's
    ``nAGQ``, mirt's and gllamm's adaptive quadrature): the standard rule (``z`` [Q, d],
    ``logw`` [Q], for a standard normal) moved to each learner's posterior mean ``m`` [L, d]
    and scaled by the Cholesky factor ``c`` [L, d, d] of its covariance. Nodes
    ``u = m + c z``; log-weights ``logw + log|c| + |z|^2/2 - |u|^2/2``, so that
    ``sum_q w_q f(u_q)`` still integrates ``f`` against the standard normal (the substitution
    ``u = m + c z``), now with the nodes where the learner's likelihood is. A long sequence's
    posterior is narrow: a fixed rule puts one node or none under it (15 fixed nodes are
    less accurate than 3 adapted ones on 400-response learners); with several traits the
    posterior is correlated (e.g. PFA's prior and speed), hence the full factor.
    Returns (float32[L, Q, d], float32[L, Q])."""
    u = m[:, None, :] + jnp.einsum("lij,qj->lqi", c, z)
    logdet = jnp.sum(jnp.log(jnp.diagonal(c, axis1=-2, axis2=-1)), axis=-1)
    lw = logw[None, :] + logdet[:, None] + 0.5 * (jnp.sum(z * z, -1)[None, :] - jnp.sum(u * u, -1))
    return u, lw


def _cholesky(cov: jax.Array) -> jax.Array:
    """Lower Cholesky factors [L, d, d] of covariances kept within the prior's: eigenvalues
    in [MIN_POSTERIOR_SD^2, 1]."""
    w, v = jnp.linalg.eigh(0.5 * (cov + jnp.swapaxes(cov, -1, -2)))
    w = jnp.clip(w, MIN_POSTERIOR_SD ** 2, 1.0)
    return jnp.linalg.cholesky(jnp.einsum("lij,lj,lkj->lik", v, w, v))


def laplace_centre(loglik, m0: jax.Array, n_iter) -> tuple[jax.Array, jax.Array]:
    """Each learner's posterior mode of the standard-normal traits and the Cholesky factor
    of its Laplace covariance (the negative Hessian's inverse, :func:`_cholesky`), by
    ``n_iter`` Newton steps from ``m0`` [L, d], as lme4 centres its adaptive quadrature on
    the conditional modes. ``loglik(z_l)`` ([L, 1, d] -> [L, 1]) is the learners'
    log-likelihood; learners are independent, so one gradient and ``d`` Hessian-vector
    products give every learner's gradient and Hessian. A step is at most 1 (a prior sd) per
    trait; where the negative Hessian is not positive definite (a non-concave likelihood)
    its diagonal, at least the prior's 1, is used instead."""
    d = m0.shape[1]
    eye = jnp.eye(d, dtype=jnp.float32)

    def grad(m):
        return jax.grad(lambda m: jnp.sum(loglik(m[:, None, :])[:, 0]) - 0.5 * jnp.sum(m * m))(m)

    def curvature(m):  # (gradient [L, d], positive-definite negative Hessian [L, d, d])
        g = grad(m)
        cols = [jax.jvp(grad, (m,), (jnp.broadcast_to(eye[k], m.shape),))[1] for k in range(d)]
        neg_h = -jnp.stack(cols, axis=-1)
        neg_h = 0.5 * (neg_h + jnp.swapaxes(neg_h, -1, -2))
        pd = jnp.all(jnp.linalg.eigvalsh(neg_h) > 1e-3, axis=-1)
        diag = jnp.maximum(jnp.diagonal(neg_h, axis1=-2, axis2=-1), 1.0)
        return g, jnp.where(pd[:, None, None], neg_h, diag[:, :, None] * eye)

    def newton(_, m):
        g, neg_h = curvature(m)
        return m + jnp.clip(jnp.linalg.solve(neg_h, g[..., None])[..., 0], -1.0, 1.0)

    m = jax.lax.fori_loop(0, n_iter, newton, m0)
    _, neg_h = curvature(m)
    return m, _cholesky(jnp.linalg.inv(neg_h))


def predict(problem: Problem, theta: dict, trait_names, mu, log_sd, z, logw,
            pack: Pack) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Online posterior-predictive P(correct) for every response of the pack's learners:
    P(correct_t | the learner's responses before t), averaged over traits.

    ``z``, ``logw``: a fixed rule ([Q, d], [Q]; :func:`prediction_rule`), the same
    for every response. An adaptive rule would have to follow each learner's posterior step
    by step, and that posterior can move far: a learner whom the model does not fit (a BKT
    learner under PFA) drifts by several posterior sds between step 1,024 and 2,048, out of
    a rule centred at step 1,024 (measured: held-out log loss 0.511 with such blocks against
    0.504 with a fixed grid). A fixed grid covers the whole prior at every step.

    Returns (learner index int32[n], step int32[n], p float64[n]) in log order."""

    @functools.partial(fit_jit, scan=problem.scanned)
    def run(theta, mu, log_sd, pack):
        params, curr = problem.params(theta)
        return trace(problem, params, curr, trait_names, mu, jnp.exp(log_sd), z, pack)

    lp, p = (np.asarray(a, np.float64) for a in run(theta, mu, log_sd, pack))
    who = np.asarray(pack.resp_learner)
    if len(who) == 0:
        return who, np.asarray(pack.resp_step), np.zeros(0)
    before = np.cumsum(lp, axis=0) - lp  # exclusive running sum, then restarted per learner
    first = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
    before -= np.repeat(before[first], np.diff(np.r_[first, len(who)]), axis=0)
    a = before + np.asarray(logw, np.float64)[None, :]
    post = np.exp(a - a.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    return who, np.asarray(pack.resp_step), np.sum(post * p, axis=1)


def posterior_mean_traits(problem: Problem, theta: dict, trait_names, mu, log_sd, z, logw,
                          pack: Pack) -> tuple[np.ndarray, np.ndarray]:
    """Each learner's posterior mean trait shifts (opt-in per-learner output), by the
    standard rule (``z``, ``logw``) centred on each learner (:func:`laplace_centre`):
    (learner index int32[n], float32[n, d])."""

    @functools.partial(fit_jit, scan=problem.scanned)
    def run(theta, mu, log_sd, pack):
        loglik = lambda zl: learner_loglik(problem, theta, trait_names, mu, log_sd, zl, pack)  # noqa: E731
        m, c = laplace_centre(loglik, jnp.zeros((pack.group.shape[0], z.shape[1]), jnp.float32), 10)
        zl, lwl = adapt_rule(jnp.asarray(z), jnp.asarray(logw), m, c)
        post = jax.nn.softmax(loglik(zl) + lwl, axis=1)  # [L, Q]
        g = jnp.maximum(pack.group, 0)
        shifts = mu[g][:, None, :] + jnp.exp(log_sd)[g][:, None, :] * zl  # [L, Q, d]
        return jnp.sum(post[:, :, None] * shifts, axis=1)

    return np.asarray(pack.learner), np.asarray(run(theta, mu, log_sd, pack))


# ---- optimisation -------------------------------------------------------------------------
@dataclass
class OptResult:
    x: Any
    value: float
    iterations: int
    converged: bool
    evaluations: int = 0
    history: list = field(default_factory=list)  # the objective after each iteration
    block_converged: np.ndarray | None = None  # per skill, from :func:`fisher_scoring`


def minimize(fun, x0, args: tuple, max_iter: int = 200, tol: float = 1e-7, scale=None, memory: int = 30,
             max_backtracks: int = 10, max_step: float = 2.0, scan: bool = False) -> OptResult:
    """L-BFGS with a backtracking (Armijo) line search on ``fun(x, *args)``.

    Only ``fun``'s value and gradient are compiled (one ``jit``: each evaluation is one call);
    the L-BFGS update runs on the host in float64 (the parameter vector is small), so no
    optimiser code is compiled. Stops when the objective changes by less than ``tol`` on two
    successive iterations, the gradient vanishes (norm < 1e-6), an L-BFGS step promises less
    than ``tol`` even to first order (``-g.d`` times the step length: near the optimum of a
    float32 objective every trial would otherwise tie with the current value and fail the
    line search, 10-25 wasted evaluations per fit), after ``max_iter``
    iterations, or when no step lowers the objective any more (``max_backtracks`` shorter
    trials along steepest descent fail: the float32 limit, counted as converged; after such a
    failure along an L-BFGS direction the memory is dropped and steepest descent tried).
    ``scale`` (a pytree like ``x0`` of positive numbers, e.g. how many responses inform each
    parameter) rescales the variables to ``x * sqrt(scale)``: a diagonal preconditioner, the
    same optimum in fewer iterations when parameters are informed by very different amounts
    of data. Each trial step moves no parameter by more than ``max_step`` (on its
    unconstrained scale, e.g. 2 on a logit), so a long quasi-Newton step cannot jump into a
    flat region (a clipped parameter) that it would never leave. A non-finite objective at
    ``x0`` stops at once (``value`` is then not finite). ``memory``: the (s, y) pairs kept;
    30 rather than the usual 10 (scipy's ``maxcor``) because IRT's thousands of item parameters
    converge in a quarter fewer evaluations with it (100,000 responses: 202 instead of 270 for
    irt1pl, 181 instead of 247 for irt2pl at 60; ACT-R 239 instead of 264), and the host-side
    update stays cheap. ``scan``: ``fun`` traces a scan (:attr:`Problem.scanned`; compiled as
    :func:`fit_jit` says)."""
    from jax.flatten_util import ravel_pytree

    flat0, unravel = ravel_pytree(x0)
    n = int(flat0.shape[0])
    if scale is None:
        root = np.ones(n)
    else:
        full = jax.tree.map(lambda s_, x: jnp.broadcast_to(jnp.asarray(s_, jnp.float32), jnp.shape(x)), scale, x0)
        w = np.asarray(ravel_pytree(full)[0], np.float64)
        w = np.maximum(w, 1e-12)
        root = np.sqrt(w / np.exp(np.mean(np.log(w))))  # geometric mean 1
    root_dev = jnp.asarray(root, jnp.float32)

    @functools.partial(fit_jit, scan=scan)
    def vg(u, args):
        return jax.value_and_grad(lambda u: fun(unravel(u / root_dev), *args))(u)

    def evaluate(u):
        v, g = vg(jnp.asarray(u, jnp.float32), args)
        return float(v), np.asarray(g, np.float64)

    S: list[np.ndarray] = []
    Y: list[np.ndarray] = []

    def direction(g):
        q = g.copy()
        alphas = []
        for s_, y_ in zip(reversed(S), reversed(Y)):
            a = np.dot(s_, q) / np.dot(s_, y_)
            q -= a * y_
            alphas.append(a)
        if S:
            q *= np.dot(S[-1], Y[-1]) / np.dot(Y[-1], Y[-1])
        for (s_, y_), a in zip(zip(S, Y), reversed(alphas)):
            q += s_ * (a - np.dot(y_, q) / np.dot(s_, y_))
        return -q

    u = np.asarray(flat0, np.float64) * root
    f, g = evaluate(u)
    history = [f]
    evals, iters, small, converged = 1, 0, 0, False
    if not (np.isfinite(f) and np.all(np.isfinite(g))):
        return OptResult(x=x0, value=f, iterations=0, converged=False, evaluations=evals, history=history)
    def first_step(d, alpha):  # the step's largest move of a parameter at most max_step
        return min(alpha, max_step / max(float(np.max(np.abs(d / root))), 1e-30))

    def steepest(g):
        return -g, first_step(-g, 1.0 / max(float(np.linalg.norm(g)), 1e-30))

    d, alpha = steepest(g)
    while iters < max_iter:
        if float(np.linalg.norm(g * root)) < 1e-6:
            converged = True
            break
        gd = float(np.dot(g, d))
        if S and -gd * alpha < tol:  # even the first-order decrease of the whole step is below tol
            converged = True
            break
        for _ in range(max_backtracks):
            trial = u + alpha * d
            f_t, g_t = evaluate(trial)
            evals += 1
            finite = np.isfinite(f_t) and np.all(np.isfinite(g_t))
            if finite and f_t <= f + 1e-4 * alpha * gd:
                break
            denom = 2.0 * (f_t - f - gd * alpha)
            step = -gd * alpha ** 2 / denom if finite and denom > 0 else 0.1 * alpha
            alpha = min(max(step, 0.1 * alpha), 0.5 * alpha)
        else:  # no decrease along d
            if S:
                S.clear()
                Y.clear()
                d, alpha = steepest(g)
                continue
            converged = True  # not even along steepest descent: the float32 limit
            break
        s_vec, y_vec = trial - u, g_t - g
        if np.dot(s_vec, y_vec) > 1e-10 * np.dot(y_vec, y_vec):
            S.append(s_vec)
            Y.append(y_vec)
            if len(S) > memory:
                S.pop(0)
                Y.pop(0)
        small = small + 1 if abs(f - f_t) < tol else 0
        u, f, g = trial, f_t, g_t
        iters += 1
        history.append(f)
        if small >= 2:
            converged = True
            break
        d = direction(g)
        if np.dot(d, g) >= 0:
            S.clear()
            Y.clear()
            d, alpha = steepest(g)
        else:
            alpha = first_step(d, 1.0)
    else:
        converged = float(np.linalg.norm(g * root)) < 1e-6
    x = unravel(jnp.asarray(u / root, jnp.float32))
    return OptResult(x=x, value=f, iterations=iters, converged=converged, evaluations=evals, history=history)


def separable_by_skill(problem: Problem, pack: Pack, trait_names: tuple[str, ...] = ()) -> bool:
    """Whether the likelihood is a sum of independent per-skill terms: every free field is
    per skill (no global entries, no item parameters), no trait is integrated out, and every
    item has one skill (a response then depends on its skill's parameters only)."""
    spec = problem.spec
    return (bool(spec.fields) and all(f.indices is None for f in spec.fields) and not trait_names
            and not spec.item_difficulty and not spec.item_discrimination and pack.item_skills.shape[1] == 1)


def fisher_scoring(problem: Problem, theta0: dict, pack: Pack, max_iter: int = 200, tol: float = 1e-7) -> OptResult:
    """Maximum likelihood of a likelihood that separates by skill (:func:`separable_by_skill`)
    by Fisher scoring, one small Newton system per skill, damped per skill as in
    Levenberg-Marquardt: the method of generalised linear models (for a logistic regression
    it is IRLS), here for any model's P(correct).

    The curvature is the expected information (Gauss-Newton): per skill,
    ``sum_n p_n' p_n'^T / (p_n (1 - p_n))`` over its responses, ``p_n'`` the derivative of
    P(correct) with respect to the skill's ``F`` free values, all from ``F`` forward-mode
    derivatives of the trace (one per field, every skill at once). It is positive
    semi-definite, unlike the Hessian of a misspecified model (ACT-R fitted to data it did
    not generate has non-convex stretches where a Newton step climbs). Each skill takes the
    step ``-(H + lam diag H)^-1 g`` (at most 2 on any value, like :func:`minimize`) and keeps
    it only if its own log-likelihood rises (the skills are independent, so one evaluation
    tests every skill's step); ``lam`` falls after a good step and rises after a poor one.

    Why not L-BFGS here: its few hundred stored directions cannot represent one 4x4
    curvature per skill over a hundred skills, and the per-skill parameters of a memory
    model are strongly correlated (ACT-R's decay and threshold). On a 100,000-response log
    ACT-R's L-BFGS stopped at its 200-iteration cap 5e-4 above the optimum (mean NLL per
    response) that Fisher scoring reaches in about 30 iterations (each one evaluation of the
    likelihood, its gradient and the ``F`` forward derivatives: for ACT-R about four times
    the cost of an L-BFGS evaluation; 35 s instead of 60 s at 400,000 responses).

    Not used for HLR: on logs it does not fit, HLR's likelihood keeps falling along flat
    directions (weights of hundreds) that Fisher scoring follows and L-BFGS's step limit
    does not (held-out log loss 1.071 against 1.046 on a simulated BKT log).

    A skill stops when its Newton decrement (the decrease the quadratic model predicts) is
    below its share of ``tol`` (per response, like :func:`minimize`), or when its damping
    reaches 1e7 (no step lowers its likelihood: the float32 limit, counted as converged as
    :func:`minimize` does). The per-skill changes are summed response by response
    (``sum(lp_new - lp_old)``), so they are exact to float32 even where a skill's total is
    not. ``block_converged``: per skill, converged within ``max_iter``."""
    S = problem.curr.n_skills
    names = [f.name for f in problem.spec.fields]
    nF = len(names)
    z0, mu0 = jnp.zeros((1, 0), jnp.float32), jnp.zeros((1, 0), jnp.float32)
    T, B = pack.item.shape
    skill = pack.item_skills[pack.item.reshape(T * B)[pack.resp_src], 0]  # each response's (only) skill
    use = (pack.group[pack.resp_learner] >= 0).astype(jnp.float32)
    count = jnp.maximum(jnp.sum(use), 1.0)

    def lp_and_p(theta, pack, use):
        params, curr = problem.params(theta)
        lp, p = trace(problem, params, curr, (), mu0, jnp.ones((1, 0), jnp.float32), z0, pack)
        return lp[:, 0] * use, p[:, 0]

    def tangent(k, theta):  # field k of every skill: one forward derivative
        return {**theta, "fields": {n: (jnp.ones_like(v) if n == names[k] else jnp.zeros_like(v))
                                    for n, v in theta["fields"].items()}}

    @functools.partial(fit_jit, scan=problem.scanned)
    def evaluate(theta, lp_old, pack, skill, use):  # the log's arrays as arguments: not folded as constants
        count = jnp.maximum(jnp.sum(use), 1.0)

        def nll(th):
            lp, _ = lp_and_p(th, pack, use)
            return -jnp.sum(lp) / count, lp

        (f, lp), g = jax.value_and_grad(nll, has_aux=True)(theta)
        tans = jax.tree.map(lambda *a: jnp.stack(a), *[tangent(k, theta) for k in range(nF)])
        p, dp = jax.vmap(lambda t: jax.jvp(lambda th: lp_and_p(th, pack, use)[1], (theta,), (t,)), out_axes=(None, 0))(tans)
        w = use / jnp.clip(p * (1.0 - p), P_CLIP, None) / count
        info = jax.ops.segment_sum(w[:, None, None] * dp.T[:, :, None] * dp.T[:, None, :], skill, S)
        gain = jax.ops.segment_sum(lp - lp_old, skill, S) / count  # the fall of each skill's NLL
        grad = jnp.stack([g["fields"][n] for n in names], axis=1)
        return f, lp, gain, grad, info

    keep = jax.jit(lambda ok, new, old: jnp.where(ok[skill], new, old))
    shares = np.bincount(np.asarray(skill), weights=np.asarray(use, np.float64), minlength=S) / float(count)

    def moved(theta, d):
        return {**theta, "fields": {n: theta["fields"][n] + jnp.asarray(d[:, k], jnp.float32)
                                    for k, n in enumerate(names)}}

    theta = theta0
    f, lp, _, G, H = evaluate(theta, jnp.zeros_like(pack.resp_src, jnp.float32), pack, skill, use)
    f, G, H = float(f), np.asarray(G, np.float64), np.asarray(H, np.float64)
    history, evals = [f], 1
    if not (np.isfinite(f) and np.all(np.isfinite(G)) and np.all(np.isfinite(H))):
        return OptResult(x=theta0, value=f, iterations=0, converged=False, evaluations=evals, history=history)
    lam = np.full(S, 1e-3)
    eye = np.eye(nF)[None]
    done = np.zeros(S, bool)
    iters = 0
    while iters < max_iter:
        diag = np.maximum(np.diagonal(H, axis1=1, axis2=2), 1e-12)[:, None, :]
        newton = -np.linalg.solve(H + 1e-6 * eye * diag, G[..., None])[..., 0]
        decrement = -0.5 * np.sum(G * newton, axis=1)
        done |= (decrement < tol * shares) | (lam >= 1e7)
        if done.all():
            break
        d = -np.linalg.solve(H + lam[:, None, None] * eye * diag, G[..., None])[..., 0]
        d *= np.minimum(1.0, 2.0 / np.maximum(np.abs(d).max(axis=1), 1e-30))[:, None]
        d[done] = 0.0
        predicted = -(np.sum(G * d, axis=1) + 0.5 * np.einsum("si,sij,sj->s", d, H, d))
        f_t, lp_t, gain, G_t, H_t = evaluate(moved(theta, d), lp, pack, skill, use)
        evals += 1
        gain = np.asarray(gain, np.float64)
        G_t, H_t = np.asarray(G_t, np.float64), np.asarray(H_t, np.float64)
        rho = gain / np.maximum(predicted, 1e-30)
        ok = ~done & (rho > 1e-4) & np.all(np.isfinite(G_t), axis=1) & np.all(np.isfinite(H_t), axis=(1, 2))
        lam = np.clip(np.where(done, lam, np.where(~ok, lam * 10.0, np.where(
            rho > 0.75, lam / 3.0, np.where(rho < 0.25, lam * 2.0, lam)))), 1e-7, 1e7)
        theta = moved(theta, np.where(ok[:, None], d, 0.0))
        lp = keep(jnp.asarray(ok), lp_t, lp)
        f -= float(np.sum(np.where(ok, gain, 0.0)))
        G = np.where(ok[:, None], G_t, G)
        H = np.where(ok[:, None, None], H_t, H)
        iters += 1
        history.append(f)
    return OptResult(x=theta, value=f, iterations=iters, converged=bool(done.all()), evaluations=evals,
                     history=history, block_converged=done.copy())
