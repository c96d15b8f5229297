"""BKT by expectation-maximisation (Baum-Welch), batched in JAX over every skill at once.

Each (learner, skill) pair is one hidden-Markov sequence: the skill's responses in time
order, a response counting for each skill its item exercises (as pyBKT does). The
forward-backward pass runs over all sequences of a length bucket together (``lax.scan``
over time, vectorised over sequences); expected counts are summed per skill with
``segment_sum``; the M-step is closed form (Baum 1970; pyBKT's ``EM_fit``):

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

from pedagogym.student_models.bkt import BKTParams

MIN_P = 1e-4
LOG_FLOOR = 1e-30  # probabilities below this are taken as this inside logs (float32-safe)


class SkillSequences(NamedTuple):
    """One length bucket, time-major: obs float32[T, B]; mask bool[T, B]; skill int32[B]."""

    obs: jax.Array
    mask: jax.Array
    skill: jax.Array


def pack_skill_sequences(log, min_len: int = 4) -> tuple[SkillSequences, ...]:
    """(learner, skill) sequences of ``log``, bucketed by length (powers of four: few
    buckets, so few compilations, at the cost of some padding)."""
    rows, skills = np.nonzero(log.q_matrix[log.item])  # a row for each (response, skill)
    learner = log.learner[rows]
    order = np.lexsort((rows, learner, skills))  # skill, learner, time (log rows are time-sorted per learner)
    rows, skills, learner = rows[order], skills[order], learner[order]
    key = skills.astype(np.int64) * (log.n_learners + 1) + learner
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    lengths = np.diff(np.r_[starts, len(key)])
    size = np.maximum(min_len, 4 ** np.ceil(np.log(lengths) / np.log(4) - 1e-9)).astype(int)
    obs_all = log.correct[rows].astype(np.float32)
    out = []
    for bucket in np.unique(size):
        who = np.flatnonzero(size == bucket)
        T = int(lengths[who].max())
        pos = np.arange(T)[:, None]
        mask = pos < lengths[who][None, :]
        idx = np.where(mask, starts[who][None, :] + pos, 0)
        out.append(SkillSequences(obs=jnp.asarray(np.where(mask, obs_all[idx], 0.0)), mask=jnp.asarray(mask),
                                  skill=jnp.asarray(skills[starts[who]], jnp.int32)))
    return tuple(out)


def _stats(params: jax.Array, seq: SkillSequences, n_skills: int) -> tuple[jax.Array, jax.Array]:
    """Expected counts float32[10, S] and the log-likelihood float32[S] of one bucket, per skill.

    ``params`` float32[5, S]: p_init, p_learn, p_forget, p_guess, p_slip.

    The forward-backward pass runs in log space: the filtered log posterior ``la`` (each
    step normalised by its log predictive ``lc``) and the scaled log backward message. A
    plain per-step normalisation still underflows when a long run of right answers drives
    P(unknown) below float32's range and a later run of errors needs it back (beta then
    overflows: inf * 0 = NaN); in log space every response string a learner can produce has
    a finite likelihood."""
    p0, pl, pf, pg, ps = (params[k][seq.skill] for k in range(5))
    A = jnp.stack([jnp.stack([1 - pl, pl], -1), jnp.stack([pf, 1 - pf], -1)], 1)  # [B, 2(from), 2(to)]
    logA = jnp.log(jnp.maximum(A, LOG_FLOOR))  # p_forget = 0 -> a negligible, finite log

    def log_emis(y):
        e = jnp.stack([jnp.where(y > 0.5, pg, 1 - pg), jnp.where(y > 0.5, 1 - ps, ps)], -1)  # [B, 2]
        return jnp.log(jnp.maximum(e, LOG_FLOOR))

    def fwd(lpred, x):
        y, m = x
        lu = lpred + log_emis(y)
        lc = jax.nn.logsumexp(lu, axis=-1)
        la = jnp.where(m[:, None], lu - lc[:, None], lpred)
        lc = jnp.where(m, lc, 0.0)
        nxt = jax.nn.logsumexp(la[:, :, None] + logA, axis=1)  # [B, 2(to)]
        return nxt, (la, lc)

    lpred0 = jnp.log(jnp.maximum(jnp.stack([1 - p0, p0], -1), LOG_FLOOR))
    _, (la, lc) = jax.lax.scan(fwd, lpred0, (seq.obs, seq.mask))  # [T, B, 2], [T, B]

    def bwd(carry, x):
        lv, has_next = carry  # lv = log(e_{t+1} * beta_{t+1} / c_{t+1})
        a, y, m, lct = x
        lbeta = jnp.where(has_next[:, None], jax.nn.logsumexp(logA + lv[:, None, :], axis=2), 0.0)
        gamma = jax.nn.softmax(a + lbeta, axis=-1)  # sums to 1 (exactly, up to rounding)
        xi01 = jnp.where(has_next, jnp.exp(jnp.minimum(a[:, 0] + logA[:, 0, 1] + lv[:, 1], 0.0)), 0.0)
        xi10 = jnp.where(has_next, jnp.exp(jnp.minimum(a[:, 1] + logA[:, 1, 0] + lv[:, 0], 0.0)), 0.0)
        mm = m.astype(jnp.float32)
        hn = has_next.astype(jnp.float32)
        out = jnp.stack([
            gamma[:, 0] * hn, gamma[:, 1] * hn, xi01, xi10,
            gamma[:, 0] * mm, gamma[:, 0] * y * mm, gamma[:, 1] * mm, gamma[:, 1] * (1 - y) * mm,
        ], 0)  # [8, B]
        lv_new = log_emis(y) + lbeta - lct[:, None]
        return (lv_new, m), (out, gamma[:, 1])

    B = seq.skill.shape[0]
    init = (jnp.zeros((B, 2), jnp.float32), jnp.zeros((B,), bool))
    _, (counts, g1) = jax.lax.scan(bwd, init, (la, seq.obs, seq.mask, lc), reverse=True)
    per_seq = jnp.sum(counts, axis=0)  # [8, B]
    stats = jax.vmap(lambda row: jax.ops.segment_sum(row, seq.skill, n_skills))(per_seq)
    first = jax.ops.segment_sum(g1[0], seq.skill, n_skills)
    n_seq = jax.ops.segment_sum(jnp.ones((B,), jnp.float32), seq.skill, n_skills)
    ll = jax.ops.segment_sum(jnp.sum(lc, axis=0), seq.skill, n_skills)
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


def starting_points(n_skills: int, num_fits: int, init, forgetting: bool, max_guess_slip: float,
                    seed: int) -> np.ndarray:
    """float32[R, 5, S]: ``init`` for every skill, then ``num_fits - 1`` random starts
    (pyBKT's ``num_fits``): p_init, p_learn uniform on (0.05, 0.95) and (0.01, 0.5),
    p_forget on (0, 0.1) with forgetting (else 0), p_guess and p_slip on (0.05, 0.9 *
    max_guess_slip)."""
    rng = np.random.default_rng(seed)
    out = np.empty((num_fits, 5, n_skills), np.float32)
    out[0] = np.asarray(init, np.float32)[:, None]
    g_hi = 0.9 * max_guess_slip
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
    hi = np.array([1 - MIN_P, 1 - MIN_P, 1 - MIN_P, max_guess_slip, max_guess_slip], np.float32)[:, None]

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
        sk = np.asarray(s.skill)
        np.add.at(n_obs, sk, np.asarray(s.mask).sum(0))
        np.add.at(n_seq, sk, 1)
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
        skill_n_obs=n_obs, skill_restart=best, failed=failed, num_fits=int(num_fits))
