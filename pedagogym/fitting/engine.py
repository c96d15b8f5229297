"""Maximum (marginal) likelihood for any student model, through the model's own functions.

A *tracer* turns a model into an observer of a logged sequence: from the learner's state it
predicts P(correct) for the next response, then updates the state with the observed
response. Deterministic models (IRT, PFA, HLR, ACT-R, EFC, FSRS) use their own
``p_correct`` and ``learn``; BKT's latent state is replaced by the belief P(known), updated
with the project's observer equations (:mod:`pedagogym.student_models.bkt`).

Learner-level differences are the population traits of
:class:`~pedagogym.student_models.base.Traits`, applied by the model's own
``apply_traits``. Their distribution (per subgroup, a normal mean and sd on each
estimated trait) is fitted by marginal maximum likelihood, integrating each learner's
likelihood over the traits with Gauss-Hermite quadrature (a product grid). The same
quadrature gives held-out predictions: P(correct_t | the learner's earlier responses),
the posterior-predictive over traits, so a new learner is predicted online, from their
own history only.

Parameters are optimised on an unconstrained scale (``logit`` for probabilities, ``log``
for positive quantities) with L-BFGS (optax) on the mean negative log-likelihood.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.registry import StaticArg
from pedagogym.student_models import bkt as bkt_mod
from pedagogym.student_models import fsrs
from pedagogym.student_models.base import StudentModel, Traits
from pedagogym.schema import SECONDS_PER_DAY

P_CLIP = 1e-6
_KEY = jax.random.PRNGKey(0)  # deterministic models ignore the key of ``learn``
TRAIT_ORDER = ("prior", "speed", "memory", "persistence")


# ---- data -----------------------------------------------------------------------------
class Batch(NamedTuple):
    """Learners of one length bucket (``B`` learners, ``T`` steps, padded at the end).

    item: int32[B, T]; correct: float32[B, T]; rating: int32[B, T] (0 = none);
    t: float32[B, T] days since the learner's first response; mask: bool[B, T];
    group: int32[B] subgroup index (-1 = in no subgroup); learner: int32[B] index in the log.
    """

    item: jax.Array
    correct: jax.Array
    rating: jax.Array
    t: jax.Array
    mask: jax.Array
    group: jax.Array
    learner: jax.Array


def pack_learners(log, group_of_learner: np.ndarray | None = None, min_len: int = 8) -> tuple[Batch, ...]:
    """The log's learners as padded sequences, bucketed by length (powers of four: few
    buckets, so few compilations; padded steps are masked out)."""
    n = log.n_learners
    counts = log.learner_counts()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gl = np.zeros(n, np.int32) if group_of_learner is None else np.asarray(group_of_learner, np.int32)
    size = np.maximum(min_len, 4 ** np.ceil(np.log(np.maximum(counts, 1)) / np.log(4) - 1e-9)).astype(int)
    first_t = log.timestamp[starts[counts > 0]] if n else np.zeros(0)
    t0 = np.zeros(n)
    t0[counts > 0] = first_t
    rating = log.rating if log.rating is not None else np.zeros(log.n_interactions, np.int8)
    out = []
    for bucket in np.unique(size[counts > 0]):
        who = np.flatnonzero((size == bucket) & (counts > 0))
        T = int(counts[who].max())  # the bucket's longest sequence: no padding when lengths are equal
        pos = np.arange(T)[None, :]
        mask = pos < counts[who][:, None]
        idx = np.where(mask, starts[who][:, None] + pos, 0)
        out.append(Batch(
            item=jnp.asarray(np.where(mask, log.item[idx], 0), jnp.int32),
            correct=jnp.asarray(np.where(mask, log.correct[idx], 0), jnp.float32),
            rating=jnp.asarray(np.where(mask, rating[idx], 0), jnp.int32),
            t=jnp.asarray(np.where(mask, (log.timestamp[idx] - t0[who][:, None]) / SECONDS_PER_DAY, 0.0), jnp.float32),
            mask=jnp.asarray(mask),
            group=jnp.asarray(gl[who], jnp.int32),
            learner=jnp.asarray(who, jnp.int32),
        ))
    return tuple(out)


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
    quadrature: tuple[int, ...] = (1, 15, 5, 4)  # nodes per trait for 0, 1, 2, 3 traits


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


def _traits(shift: jax.Array, names: tuple[str, ...]) -> Traits:
    z = jnp.zeros((), jnp.float32)
    values = {t: z for t in TRAIT_ORDER}
    for k, name in enumerate(names):
        values[name] = shift[k]
    return Traits(prior=values["prior"], speed=values["speed"], memory=values["memory"],
                  persistence=values["persistence"], sessions_per_week=jnp.float32(7.0),
                  subgroup=jnp.zeros((), jnp.int32))


def sequence_terms(problem: Problem, params, curr, trait_names: tuple[str, ...], mu: jax.Array, sd: jax.Array,
                   z: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """Per learner, node and step: (log P(response) float32[B, Q, T], P(correct) float32[B, Q, T]).

    mu, sd: float32[G, d] per subgroup; a learner in group -1 uses group 0's (only its
    predictions are used then, never its likelihood)."""
    tracer, model = problem.tracer, problem.model

    def one_learner(item, correct, rating, t, mask, g):
        g = jnp.maximum(g, 0)

        def one_node(zq):
            p_l = model.apply_traits(params, _traits(mu[g] + sd[g] * zq, trait_names)) if trait_names else params
            state = tracer.init(p_l, curr)

            def body(state, x):
                it, y, r, tt, m = x
                p, new = tracer.step(p_l, state, curr, it, y, r, tt)
                p = jnp.clip(p, P_CLIP, 1.0 - P_CLIP)
                lp = jnp.where(m, y * jnp.log(p) + (1.0 - y) * jnp.log1p(-p), 0.0)
                state = jax.tree.map(lambda a, b: jnp.where(m, a, b), new, state)
                return state, (lp, p)

            _, (lp, p) = jax.lax.scan(body, state, (item, correct, rating, t, mask))
            return lp, p

        return jax.vmap(one_node)(z)

    return jax.vmap(one_learner)(batch.item, batch.correct, batch.rating, batch.t, batch.mask, batch.group)


def marginal_nll(problem: Problem, theta: dict, trait_names, mu, log_sd, z, logw, batches) -> jax.Array:
    """Mean negative marginal log-likelihood per response over learners in a subgroup (>= 0)."""
    params, curr = problem.params(theta)
    sd = jnp.exp(log_sd)
    total, count = 0.0, 0.0
    for b in batches:
        lp, _ = sequence_terms(problem, params, curr, trait_names, mu, sd, z, b)
        ll = jnp.sum(lp, axis=-1)  # [B, Q]
        marg = jax.scipy.special.logsumexp(ll + logw[None, :], axis=1)
        use = b.group >= 0
        total = total + jnp.sum(jnp.where(use, marg, 0.0))
        count = count + jnp.sum(jnp.where(use[:, None], b.mask, False))
    return -total / jnp.maximum(count, 1.0)


def predict(problem: Problem, theta: dict, trait_names, mu, log_sd, z, logw, batches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Online posterior-predictive P(correct) for every response of the batches' learners.

    Returns (learner index int32[n], step int32[n], p float32[n]) for the unpadded steps."""

    @jax.jit
    def run(theta, mu, log_sd, b):
        params, curr = problem.params(theta)
        lp, p = sequence_terms(problem, params, curr, trait_names, mu, jnp.exp(log_sd), z, b)  # [B, Q, T]
        before = jnp.cumsum(lp, axis=-1) - lp
        post = jax.nn.softmax(before + logw[None, :, None], axis=1)
        return jnp.sum(post * p, axis=1)  # [B, T]

    who, step, prob = [], [], []
    for b in batches:
        pb = np.asarray(run(theta, mu, log_sd, b))
        m = np.asarray(b.mask)
        bi, ti = np.nonzero(m)
        who.append(np.asarray(b.learner)[bi])
        step.append(ti)
        prob.append(pb[bi, ti])
    return np.concatenate(who), np.concatenate(step), np.concatenate(prob)


def posterior_mean_traits(problem: Problem, theta: dict, trait_names, mu, log_sd, z, logw, batches) -> tuple[np.ndarray, np.ndarray]:
    """Each learner's posterior mean trait shifts (opt-in per-learner output):
    (learner index int32[n], float32[n, d])."""

    @jax.jit
    def run(theta, mu, log_sd, b):
        params, curr = problem.params(theta)
        sd = jnp.exp(log_sd)
        lp, _ = sequence_terms(problem, params, curr, trait_names, mu, sd, z, b)
        post = jax.nn.softmax(jnp.sum(lp, axis=-1) + logw[None, :], axis=1)  # [B, Q]
        g = jnp.maximum(b.group, 0)
        shifts = mu[g][:, None, :] + sd[g][:, None, :] * z[None, :, :]  # [B, Q, d]
        return jnp.sum(post[:, :, None] * shifts, axis=1)

    who, est = [], []
    for b in batches:
        who.append(np.asarray(b.learner))
        est.append(np.asarray(run(theta, mu, log_sd, b)))
    return np.concatenate(who), np.concatenate(est)


# ---- optimisation -------------------------------------------------------------------------
@dataclass
class OptResult:
    x: Any
    value: float
    iterations: int
    converged: bool


def minimize(fun, x0, args: tuple, max_iter: int = 200, tol: float = 1e-7) -> OptResult:
    """L-BFGS (optax, zoom line search) on ``fun(x, *args)``, the whole loop in one
    ``lax.while_loop`` (one compilation); stops when the objective changes by less than
    ``tol`` on two successive iterations, the gradient vanishes, or after ``max_iter``."""
    opt = optax.lbfgs()
    norm = optax.tree.norm if hasattr(optax, "tree") and hasattr(optax.tree, "norm") else optax.global_norm

    @jax.jit
    def run(x0, args):
        f = lambda y: fun(y, *args)  # noqa: E731
        vg = optax.value_and_grad_from_state(f)

        def cond(c):
            _, _, _, small, it, gnorm, ok = c
            return (it < max_iter) & (small < 2) & (gnorm >= 1e-6) & ok

        def body(c):
            x, state, prev, small, it, _, _ = c
            value, grad = vg(x, state=state)
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
            x_new = optax.apply_updates(x, updates)
            ok = jnp.isfinite(value) & jnp.all(jnp.asarray([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(x_new)]))
            x = jax.tree.map(lambda a, b: jnp.where(ok, a, b), x_new, x)
            small = jnp.where(jnp.abs(prev - value) < tol, small + 1, 0)
            return x, state, value, small, it + 1, norm(grad), ok

        init = (x0, opt.init(x0), jnp.float32(jnp.inf), jnp.int32(0), jnp.int32(0), jnp.float32(jnp.inf), jnp.bool_(True))
        x, _, value, small, it, gnorm, ok = jax.lax.while_loop(cond, body, init)
        return x, value, small, it, gnorm, ok

    x, value, small, it, gnorm, ok = run(x0, args)
    converged = bool(ok) and (int(small) >= 2 or float(gnorm) < 1e-6)
    return OptResult(x=x, value=float(value), iterations=int(it), converged=converged)
