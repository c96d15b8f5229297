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

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pedagogym.student_models.bkt import BKTParams

MIN_P = 1e-4


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
    """Expected counts float32[8, S] and the log-likelihood of one bucket.

    ``params`` float32[5, S]: p_init, p_learn, p_forget, p_guess, p_slip."""
    p0, pl, pf, pg, ps = (params[k][seq.skill] for k in range(5))
    A = jnp.stack([jnp.stack([1 - pl, pl], -1), jnp.stack([pf, 1 - pf], -1)], 1)  # [B, 2(from), 2(to)]

    def emis(y):
        return jnp.stack([jnp.where(y > 0.5, pg, 1 - pg), jnp.where(y > 0.5, 1 - ps, ps)], -1)  # [B, 2]

    def fwd(pred, x):
        y, m = x
        a = pred * emis(y)
        c = jnp.sum(a, -1)
        alpha = jnp.where(m[:, None], a / c[:, None], pred)
        c = jnp.where(m, c, 1.0)
        nxt = jnp.einsum("bj,bjk->bk", alpha, A)
        return nxt, (alpha, c)

    pred0 = jnp.stack([1 - p0, p0], -1)
    _, (alpha, c) = jax.lax.scan(fwd, pred0, (seq.obs, seq.mask))  # [T, B, 2], [T, B]

    def bwd(carry, x):
        v, has_next = carry  # v = e_{t+1} * beta_{t+1} / c_{t+1}
        a, y, m, ct = x
        beta = jnp.where(has_next[:, None], jnp.einsum("bjk,bk->bj", A, v), 1.0)
        gamma = a * beta  # sums to 1
        xi01 = jnp.where(has_next, a[:, 0] * A[:, 0, 1] * v[:, 1], 0.0)
        xi10 = jnp.where(has_next, a[:, 1] * A[:, 1, 0] * v[:, 0], 0.0)
        mm = m.astype(jnp.float32)
        hn = has_next.astype(jnp.float32)
        out = jnp.stack([
            gamma[:, 0] * hn, gamma[:, 1] * hn, xi01, xi10,
            gamma[:, 0] * mm, gamma[:, 0] * y * mm, gamma[:, 1] * mm, gamma[:, 1] * (1 - y) * mm,
        ], 0)  # [8, B]
        v_new = emis(y) * beta / ct[:, None]
        return (v_new, m), (out, gamma[:, 1])

    B = seq.skill.shape[0]
    init = (jnp.ones((B, 2), jnp.float32), jnp.zeros((B,), bool))
    _, (counts, g1) = jax.lax.scan(bwd, init, (alpha, seq.obs, seq.mask, c), reverse=True)
    per_seq = jnp.sum(counts, axis=0)  # [8, B]
    stats = jax.vmap(lambda row: jax.ops.segment_sum(row, seq.skill, n_skills))(per_seq)
    first = jax.ops.segment_sum(g1[0], seq.skill, n_skills)
    n_seq = jax.ops.segment_sum(jnp.ones((B,), jnp.float32), seq.skill, n_skills)
    ll = jnp.sum(jnp.log(c))
    return jnp.concatenate([stats, first[None], n_seq[None]], 0), ll


@dataclass
class EMResult:
    params: BKTParams
    log_likelihood: float  # per response (mean), at the parameters of the last iteration's E-step
    iterations: int
    converged: bool


def fit_bkt_em(log, forgetting: bool = False, max_iter: int = 200, tol: float = 1e-5,
               max_guess_slip: float = 0.5, init: tuple[float, float, float, float, float] = (0.4, 0.1, 0.02, 0.2, 0.1),
               ) -> EMResult:
    """Fit per-skill BKT parameters to ``log`` by EM; stops when no parameter moves by more
    than ``tol`` in an iteration (or after ``max_iter``)."""
    S = log.n_skills
    seqs = pack_skill_sequences(log)
    n_obs = float(sum(float(jnp.sum(s.mask)) for s in seqs))
    p0 = np.tile(np.asarray(init, np.float32)[:, None], (1, S))
    if not forgetting:
        p0[2] = 0.0
    hi = np.array([1 - MIN_P, 1 - MIN_P, 1 - MIN_P, max_guess_slip, max_guess_slip], np.float32)[:, None]

    def mstep(params, seqs):
        total = None
        ll = 0.0
        for s in seqs:
            st, l_ = _stats(params, s, S)
            total = st if total is None else total + st
            ll = ll + l_
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
        return jnp.clip(new, lo, jnp.asarray(hi)), ll

    @jax.jit
    def run(params, seqs):
        def cond(c):
            _, it, delta, _ = c
            return (it < max_iter) & (delta > tol)

        def body(c):
            p, it, _, _ = c
            new, ll = mstep(p, seqs)
            return new, it + 1, jnp.max(jnp.abs(new - p)), ll

        return jax.lax.while_loop(cond, body, (params, jnp.int32(0), jnp.float32(jnp.inf), jnp.float32(0.0)))

    params, iters, delta, ll = run(jnp.asarray(p0), seqs)  # ll: at the last iteration's input parameters
    p = np.asarray(params)
    return EMResult(params=BKTParams(*(jnp.asarray(p[k], jnp.float32) for k in range(5))),
                    log_likelihood=float(ll) / max(n_obs, 1.0), iterations=int(iters), converged=bool(float(delta) <= tol))
