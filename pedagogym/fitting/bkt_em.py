"""BKT by expectation-maximisation (Baum-Welch), batched in JAX over every skill at once.

Each (learner, skill) pair is one hidden-Markov sequence: the skill's responses in time
order, a response counting for each skill its item exercises (as pyBKT does). The
sequences are laid end to end in lanes of the longest one's length (little padding, one
compilation); the forward-backward pass runs over all lanes together (``lax.scan`` over
time, vectorised over lanes, restarting at each sequence's start and end); expected counts
are summed per skill with ``segment_sum``; the M-step is closed form (Baum 1970; pyBKT's ``EM_fit``):

    p_init   = E[known at the first opportunity]
    p_learn  = E[unknown -> known] / E[unknown before an opportunity with a successor]
    p_forget = E[known -> unknown] / E[known ...]            (0 unless ``forgetting``)
    p_guess  = E[correct while unknown] / E[unknown]
    p_slip   = E[wrong while known] / E[known]

``p_guess`` and ``p_slip`` are kept at or below ``max_guess_slip`` (0.5 by default): the
known state must be the one that answers better, which rules out the mirror-image solution
of the likelihood. Each bound is the exact constrained M-step (the expected complete-data
log-likelihood is concave and separable in each parameter).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pedagogym.fitting.engine import lay_out, on_grid
from pedagogym.student_models.bkt import BKTParams

MIN_P = 1e-4
LOG_FLOOR = 1e-30  # probabilities below this are taken as this inside logs (float32-safe)


class SkillSequences(NamedTuple):
    """(learner, skill) sequences in lanes, time-major: obs float32[T, B]; mask bool[T, B]
    (padding False); skill int32[T, B] the sequence's skill per row (or int32[B], one
    sequence per lane); start bool[T, B] a sequence starts at this row (None: only row 0).
    A lane holds sequences end to end (:func:`pedagogym.fitting.engine.lay_out`): the
    forward pass restarts from the prior at each start, the backward pass at each end."""

    obs: jax.Array
    mask: jax.Array
    skill: jax.Array
    start: jax.Array | None = None


def pack_skill_sequences(log) -> tuple[SkillSequences, ...]:
    """The (learner, skill) sequences of ``log`` (a row for each response and skill of its
    item, as pyBKT counts them), laid end to end in lanes of the longest one's length: one
    layout, little padding, one compilation."""
    rows, skills = np.nonzero(log.q_matrix[log.item])  # a row for each (response, skill)
    learner = log.learner[rows]
    order = np.lexsort((rows, learner, skills))  # skill, learner, time (log rows are time-sorted per learner)
    rows, skills, learner = rows[order], skills[order], learner[order]
    key = skills.astype(np.int64) * (log.n_learners + 1) + learner
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[starts, len(key)])
    T, B, pos = lay_out(lengths)
    is_start = np.zeros(len(key), bool)
    is_start[starts] = True

    def grid(values, fill, dtype):
        return jnp.asarray(on_grid(values, fill, dtype, T, B, pos))

    return (SkillSequences(obs=grid(log.correct[rows], 0.0, np.float32), mask=grid(True, False, bool),
                           skill=grid(skills, 0, np.int32), start=grid(is_start, False, bool)),)


def _lse2(a: jax.Array, b: jax.Array) -> jax.Array:
    """log(exp(a) + exp(b)) for finite a, b (one exp, one log1p)."""
    return jnp.maximum(a, b) + jnp.log1p(jnp.exp(-jnp.abs(a - b)))


def _stats(params: jax.Array, seq: SkillSequences, n_skills: int) -> tuple[jax.Array, jax.Array]:
    """Expected counts float32[10, S] and the log-likelihood float32[S] of the sequences, per skill.

    ``params`` float32[5, S]: p_init, p_learn, p_forget, p_guess, p_slip.

    The forward-backward pass runs in log space: the filtered log posterior ``la`` (each
    step normalised by its log predictive ``lc``) and the scaled log backward message. A
    plain per-step normalisation still underflows when a long run of right answers drives
    P(unknown) below float32's range and a later run of errors needs it back (beta then
    overflows: inf * 0 = NaN); in log space every response string a learner can produce has
    a finite likelihood. Every log of a parameter is taken once per row, before the scans
    (probabilities floored at ``LOG_FLOOR``), so the scans only add, compare and use
    :func:`_lse2`."""
    T, B = seq.obs.shape
    skill = seq.skill if seq.skill.ndim == 2 else jnp.broadcast_to(seq.skill[None, :], (T, B))
    start = seq.start if seq.start is not None else jnp.broadcast_to((jnp.arange(T) == 0)[:, None], (T, B))
    p0, pl, pf, pg, ps = (params[k][skill] for k in range(5))  # [T, B]
    L = lambda x: jnp.log(jnp.maximum(x, LOG_FLOOR))  # noqa: E731  (p_forget = 0: a negligible, finite log)
    a00, a01, a10, a11 = L(1 - pl), L(pl), L(pf), L(1 - pf)  # log A[from, to]; 0 = unknown, 1 = known
    y = seq.obs > 0.5
    e0 = jnp.where(y, L(pg), L(1 - pg))  # log P(response | unknown)
    e1 = jnp.where(y, L(1 - ps), L(ps))  # log P(response | known)
    q0, q1 = L(1 - p0), L(p0)
    mask = seq.mask

    def fwd(carry, x):
        n0, n1 = carry  # log P(state) predicted for this row from the previous one
        st, m, e0, e1, q0, q1, a00, a01, a10, a11 = x
        n0, n1 = jnp.where(st, q0, n0), jnp.where(st, q1, n1)
        u0, u1 = n0 + e0, n1 + e1
        lc = _lse2(u0, u1)
        la0, la1 = jnp.where(m, u0 - lc, n0), jnp.where(m, u1 - lc, n1)
        return (_lse2(la0 + a00, la1 + a10), _lse2(la0 + a01, la1 + a11)), (la0, la1, jnp.where(m, lc, 0.0))

    zero = jnp.zeros((B,), jnp.float32)
    _, (la0, la1, lc) = jax.lax.scan(fwd, (zero, zero), (start, mask, e0, e1, q0, q1, a00, a01, a10, a11))

    def bwd(carry, x):
        lv0, lv1, has_next = carry  # lv = log(e_{t+1} * beta_{t+1} / c_{t+1})
        la0, la1, y, m, st, lct, e0, e1, a00, a01, a10, a11 = x
        lb0 = jnp.where(has_next, _lse2(a00 + lv0, a01 + lv1), 0.0)
        lb1 = jnp.where(has_next, _lse2(a10 + lv0, a11 + lv1), 0.0)
        d = (la1 + lb1) - (la0 + lb0)
        g0, g1 = jax.nn.sigmoid(-d), jax.nn.sigmoid(d)  # gamma: the posterior of the row's state
        xi01 = jnp.where(has_next, jnp.exp(jnp.minimum(la0 + a01 + lv1, 0.0)), 0.0)
        xi10 = jnp.where(has_next, jnp.exp(jnp.minimum(la1 + a10 + lv0, 0.0)), 0.0)
        mm, hn, yf = m.astype(jnp.float32), has_next.astype(jnp.float32), y.astype(jnp.float32)
        out = jnp.stack([g0 * hn, g1 * hn, xi01, xi10, g0 * mm, g0 * yf * mm, g1 * mm, g1 * (1 - yf) * mm], 0)
        return (e0 + lb0 - lct, e1 + lb1 - lct, m & ~st), (out, g1)

    init = (zero, zero, jnp.zeros((B,), bool))
    _, (counts, g1) = jax.lax.scan(bwd, init, (la0, la1, y, mask, start, lc, e0, e1, a00, a01, a10, a11),
                                   reverse=True)  # counts [T, 8, B]
    flat_skill = skill.reshape(-1)
    stats = jax.ops.segment_sum(jnp.moveaxis(counts, 1, 0).reshape(8, -1).T, flat_skill, n_skills).T  # [8, S]
    first_row = start & mask
    first = jax.ops.segment_sum(jnp.where(first_row, g1, 0.0).reshape(-1), flat_skill, n_skills)
    n_seq = jax.ops.segment_sum(first_row.astype(jnp.float32).reshape(-1), flat_skill, n_skills)
    ll = jax.ops.segment_sum(lc.reshape(-1), flat_skill, n_skills)
    return jnp.concatenate([stats, first[None], n_seq[None]], 0), ll


@dataclass
class EMResult:
    """The best of ``num_fits`` EM runs, chosen per skill by likelihood.

    ``skill_*`` arrays are per skill (float/int/bool[S]); ``failed`` maps a skill index to
    the reason it could not be fitted (its parameters are then the starting values, finite)."""

    params: BKTParams
    log_likelihood: float  # per response (mean) over the fitted skills, at the returned parameters
    iterations: int  # the most any skill took (of the chosen runs)
    converged: bool  # every fitted skill converged
    skill_log_likelihood: np.ndarray = field(default_factory=lambda: np.zeros(0))
    skill_iterations: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    skill_converged: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    skill_n_obs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    skill_restart: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # which starting point won
    failed: dict[int, str] = field(default_factory=dict)
    num_fits: int = 1
    run_iterations: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), int))  # [R, S] every run's


def starting_points(n_skills: int, num_fits: int, init, forgetting: bool, max_guess_slip: float,
                    seed: int) -> np.ndarray:
    """float32[R, 5, S]: ``init`` for every skill, then ``num_fits - 1`` random starts
    (pyBKT's ``num_fits``): p_init, p_learn uniform on (0.05, 0.95) and (0.01, 0.5),
    p_forget on (0, 0.1) with forgetting (else 0), p_guess and p_slip on (0.05, 0.9 *
    min(max_guess_slip, 0.5)): every start has the known state answering better, also when
    the bound is lifted (EM may still move past 0.5 then, if the likelihood does)."""
    rng = np.random.default_rng(seed)
    out = np.empty((num_fits, 5, n_skills), np.float32)
    out[0] = np.asarray(init, np.float32)[:, None]
    g_hi = 0.9 * min(max_guess_slip, 0.5)
    for r in range(1, num_fits):
        out[r, 0] = rng.uniform(0.05, 0.95, n_skills)
        out[r, 1] = rng.uniform(0.01, 0.5, n_skills)
        out[r, 2] = rng.uniform(0.0, 0.1, n_skills)
        out[r, 3] = rng.uniform(0.05, g_hi, n_skills)
        out[r, 4] = rng.uniform(0.05, g_hi, n_skills)
    out[:, 3:] = np.minimum(out[:, 3:], max_guess_slip)
    if not forgetting:
        out[:, 2] = 0.0
    return out


def fit_bkt_em(log, forgetting: bool = False, max_iter: int = 200, tol: float = 1e-5,
               max_guess_slip: float = 0.5, init: tuple[float, float, float, float, float] = (0.4, 0.1, 0.02, 0.2, 0.1),
               num_fits: int = 5, seed: int = 0) -> EMResult:
    """Fit per-skill BKT parameters to ``log`` by EM from ``num_fits`` starting points
    (``init`` and random ones, see :func:`starting_points`), keeping per skill the run with
    the highest likelihood. Each run of each skill stops when none of its parameters moves by
    more than ``tol`` in an iteration (or after ``max_iter``); an update that would leave a
    parameter non-finite is not taken and ends that run (the skill fails if every run does)."""
    if int(num_fits) < 1:
        raise ValueError(f"num_fits must be >= 1, got {num_fits}")
    S = log.n_skills
    seqs = pack_skill_sequences(log)
    p0 = starting_points(S, int(num_fits), init, forgetting, max_guess_slip, seed)
    gs = min(float(max_guess_slip), 1 - MIN_P)
    hi = np.array([1 - MIN_P, 1 - MIN_P, 1 - MIN_P, gs, gs], np.float32)[:, None]

    def estep(params, seqs):  # params [5, S]
        total, ll = None, 0.0
        for s in seqs:
            st, l_ = _stats(params, s, S)
            total = st if total is None else total + st
            ll = ll + l_
        return total, ll

    def mstep(params, total):
        g0t, g1t, x01, x10, g0, g0c, g1, g1w, first, nseq = total
        ratio = lambda a, b, old: jnp.where(b > 0, a / jnp.maximum(b, 1e-12), old)  # noqa: E731
        new = jnp.stack([
            ratio(first, nseq, params[0]),
            ratio(x01, g0t, params[1]),
            ratio(x10, g1t, params[2]) if forgetting else jnp.zeros_like(params[2]),
            ratio(g0c, g0, params[3]),
            ratio(g1w, g1, params[4]),
        ])
        lo = jnp.full_like(new, MIN_P).at[2].set(0.0 if not forgetting else MIN_P)
        return jnp.clip(new, lo, jnp.asarray(hi))

    @jax.jit
    def run(params, seqs):  # params [R, 5, S]
        R = params.shape[0]

        def one(p):
            total, _ = estep(p, seqs)
            return mstep(p, total)

        def cond(c):
            _, it, active, _, _ = c
            return (it < max_iter) & jnp.any(active)

        def body(c):
            p, it, active, iters, bad = c
            new = jax.vmap(one)(p)  # [R, 5, S]
            finite = jnp.all(jnp.isfinite(new), axis=1)  # [R, S]
            step_ok = active & finite
            delta = jnp.max(jnp.abs(new - p), axis=1)
            p = jnp.where(step_ok[:, None, :], new, p)
            bad = bad | (active & ~finite)
            iters = iters + step_ok.astype(jnp.int32)
            active = step_ok & (delta > tol)
            return p, it + 1, active, iters, bad

        shape = (R, S)
        c0 = (params, jnp.int32(0), jnp.ones(shape, bool), jnp.zeros(shape, jnp.int32), jnp.zeros(shape, bool))
        p, _, active, iters, bad = jax.lax.while_loop(cond, body, c0)
        _, ll = jax.vmap(lambda q: estep(q, seqs))(p)  # [R, S] at the returned parameters
        return p, active, iters, bad, ll

    p, active, iters, bad, ll = (np.asarray(a) for a in run(jnp.asarray(p0), seqs))
    n_obs = np.zeros(S)
    n_seq = np.zeros(S)
    for s in seqs:
        mask = np.asarray(s.mask)
        sk = np.broadcast_to(np.asarray(s.skill), mask.shape)
        first = mask & (np.asarray(s.start) if s.start is not None else (np.arange(mask.shape[0]) == 0)[:, None])
        n_obs += np.bincount(sk[mask], minlength=S)
        n_seq += np.bincount(sk[first], minlength=S)
    usable = np.isfinite(ll) & ~bad & np.all(np.isfinite(p), axis=1)
    score = np.where(usable, ll, -np.inf)
    best = np.argmax(score, axis=0)  # [S]
    cols = np.arange(S)
    failed: dict[int, str] = {}
    for k in range(S):
        if n_seq[k] == 0:
            failed[k] = "no responses from the training learners"
        elif not usable[best[k], k]:
            failed[k] = (f"the likelihood is not finite at any of {num_fits} starting point(s)"
                         if not np.isfinite(ll[:, k]).any() else
                         f"every EM run ({num_fits}) stopped on a non-finite update")
    chosen = p[best, :, cols].T  # [5, S]
    for k in failed:
        chosen[:, k] = p0[0, :, k]
    ok = np.array([k not in failed for k in range(S)])
    skill_ll = np.where(ok, ll[best, cols], np.nan)
    skill_conv = ok & ~active[best, cols]
    skill_iters = iters[best, cols]
    total_obs = float(n_obs[ok].sum())
    return EMResult(
        params=BKTParams(*(jnp.asarray(chosen[k], jnp.float32) for k in range(5))),
        log_likelihood=float(skill_ll[ok].sum()) / max(total_obs, 1.0) if ok.any() else float("nan"),
        iterations=int(skill_iters[ok].max()) if ok.any() else 0, converged=bool(skill_conv[ok].all()),
        skill_log_likelihood=skill_ll, skill_iterations=skill_iters, skill_converged=skill_conv,
        skill_n_obs=n_obs, skill_restart=best, failed=failed, num_fits=int(num_fits), run_iterations=iters)
