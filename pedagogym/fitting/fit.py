"""``fit(log, model)``: per-skill (and per-item) parameters plus the population of learners.

Two stages, for every model:

1. **Parameters.** BKT: EM (:mod:`pedagogym.fitting.bkt_em`). IRT: marginal maximum
   likelihood, the learner's ability shift integrated out with Gauss-Hermite quadrature
   (item difficulties/discriminations, per-skill initial ability and growth); the item
   parameters carry a prior whose width is estimated from the log (:class:`ItemPrior`). PFA: logistic
   regression by maximum likelihood. HLR, ACT-R, EFC, FSRS: maximum likelihood of the recall
   outcomes through the model's own equations (FSRS keeps its published default weights
   unless ``fsrs_weights="fit"``). Optimiser: L-BFGS (:func:`.engine.minimize`); ACT-R's and EFC's
   per-skill parameters by Fisher scoring (:func:`.engine.fisher_scoring`). See :mod:`.engine`.
2. **Population.** With stage-1 parameters fixed, the mean and sd of each estimated trait
   shift (the model's ``apply_traits`` scale) per subgroup, by marginal maximum likelihood on
   a random subsample of training learners (at most ``max_trait_interactions`` responses),
   the traits integrated out on the held-out predictions' fine uniform rule for one trait (IRT)
   and on the fit's Gauss-Hermite product grid for two or three. Traits estimated: BKT prior,
   speed (+ memory with forgetting); IRT prior (ability); PFA prior, speed; memory models
   prior, memory. The others are written as (0, 0) and the
   report says so; persistence (dropout) is never estimated from a response log.
   Sessions per week come from the timestamps (:func:`sessions_per_week`).

Held-out learners (``holdout`` of them, drawn with ``seed``) are predicted online from their
own earlier responses (posterior-predictive over traits) for the report's metrics.
"""
from __future__ import annotations

import hashlib
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from pedagogym.errors import PedagogymError
import pedagogym.fitting.engine as engine  # not through the package __init__, which imports this module
from pedagogym.fitting.engine import FreeField, Spec
from pedagogym.fitting.log import Log
from pedagogym.fitting.metrics import metrics
from pedagogym.schema import SECONDS_PER_DAY

DEFAULT_SESSIONS_PER_WEEK = 5.0
OTHER_GROUP = "other"


NOT_TIMED = ("not applicable to this log: its format has no timestamps (time is the row order, 1 s apart), and this "
             "model's predictions depend on the time between responses; its metrics are shown for completeness only")


def applicability_notes(fitter: "Fitter", log: Log) -> list[str]:
    """What the report must say before any number: a model of forgetting over time on a log
    whose format has no clock (:data:`NOT_TIMED`)."""
    return [NOT_TIMED] if fitter.uses_time and not log.timed else []


class FitError(PedagogymError):
    """The log cannot support the requested fit (e.g. too few learners)."""


@dataclass(frozen=True)
class Fitter:
    """How one model is fitted. ``make_model(options)`` returns the StudentModel;
    ``spec(options)`` what is free; ``stage1`` is ``"em"`` (BKT), ``"ml"`` (L-BFGS on the
    marginal likelihood) or ``"scoring"`` (per-skill Fisher scoring, :func:`.engine.fisher_scoring`,
    where the likelihood separates by skill; else as ``"ml"``)."""

    name: str
    make_model: Callable[[dict], Any]
    spec: Callable[[dict], Spec]
    stage1: str = "ml"
    tracer: Callable[[Any], engine.ModelTracer] = engine.ModelTracer
    method: str = ""
    uses_time: bool = False  # predictions depend on the time between responses (forgetting)


def _bkt_model(o):
    from pedagogym.student_models.bkt import BKT

    return BKT()


def _bkt_spec(o):
    traits = ("prior", "speed") + (("memory",) if o.get("forgetting") else ())
    return Spec(traits=traits)


def _irt(n_pl):
    def make(o):
        from pedagogym.student_models.irt import IRT

        return IRT(n_pl=n_pl)

    def spec(o):
        return Spec(fields=(FreeField("theta0"), FreeField("growth"), FreeField("fail_growth")),
                    traits=("prior",), joint_traits=("prior",), item_difficulty=True,
                    item_discrimination=n_pl == 2)

    return make, spec


def _pfa_model(o):
    from pedagogym.student_models.pfa import PFA

    return PFA()


def _memory(module: str, cls: str, fields: tuple[FreeField, ...]):
    def make(o):
        import importlib

        return getattr(importlib.import_module(f"pedagogym.student_models.{module}"), cls)()

    return make, (lambda o: Spec(fields=fields, traits=("prior", "memory")))


FSRS_FITTED_WEIGHTS = (0, 1, 2, 3, 8, 11)  # S0(Again..Easy), recall gain, lapse scale (all > 0)


def _fsrs_spec(o):
    fields = (FreeField("p_unseen", "logit"),)
    if o.get("fsrs_weights", "default") == "fit":
        fields += (FreeField("w", "log", FSRS_FITTED_WEIGHTS, bounds=(0.001, 100.0)),)
    return Spec(fields=fields, traits=("prior", "memory"))


SCORING_ITERATIONS = 50  # ACT-R and EFC converge in 20-30 on well-posed logs; else L-BFGS as well
SCORING = ("Fisher scoring per skill, Levenberg-Marquardt damped; L-BFGS where an item has several skills, "
           "and as well where Fisher scoring does not converge, the higher likelihood kept")
_irt1 = _irt(1)
_irt2 = _irt(2)
IRT_METHOD = ("marginal ML, ability integrated out (15 Gauss-Hermite nodes for the parameters, 121 equally spaced "
              "for the population); item parameters by MAP with an empirical-Bayes prior (L-BFGS)")
FITTERS: dict[str, Fitter] = {
    "bkt": Fitter("bkt", _bkt_model, _bkt_spec, stage1="em", tracer=engine.BKTTracer,
                  method="EM (Baum-Welch), forward-backward batched in JAX over skills"),
    "irt1pl": Fitter("irt1pl", *_irt1, tracer=engine.IRTTracer, method=IRT_METHOD),
    "irt2pl": Fitter("irt2pl", *_irt2, tracer=engine.IRTTracer, method=IRT_METHOD),
    "pfa": Fitter("pfa", _pfa_model, lambda o: Spec(fields=(FreeField("beta"), FreeField("gamma"), FreeField("rho")),
                                                   traits=("prior", "speed")), tracer=engine.PFATracer,
                  method="logistic regression, maximum likelihood (L-BFGS)"),
    "hlr": Fitter("hlr", *_memory("hlr", "HLR", (FreeField("w_bias"), FreeField("w_right"), FreeField("w_wrong"),
                                                  FreeField("p_unseen", "logit"))), tracer=engine.HLRTracer,
                  method="maximum likelihood on recall outcomes (L-BFGS)", uses_time=True),
    "efc": Fitter("efc", *_memory("efc", "EFC", (FreeField("theta", "log"), FreeField("p_unseen", "logit"))),
                  stage1="scoring", tracer=engine.EFCTracer, method=f"maximum likelihood on recall outcomes ({SCORING})",
                  uses_time=True),
    "actr": Fitter("actr", *_memory("actr", "ACTR", (FreeField("a", "log"), FreeField("tau"), FreeField("s", "log"),
                                                     FreeField("p_unseen", "logit"))),
                   stage1="scoring", tracer=engine.ACTRTracer,
                   method=f"maximum likelihood on recall outcomes ({SCORING}); c and h kept at Pavlik & Anderson's values",
                   uses_time=True),
    "fsrs": Fitter("fsrs", _memory("fsrs", "FSRS", ())[0], _fsrs_spec, tracer=engine.FSRSRatingTracer,
                   method="FSRS-6 (default weights unless fsrs_weights='fit'); p_unseen and traits by maximum "
                          "likelihood (L-BFGS); log ratings used where given", uses_time=True),
}
ALIASES = {"irt": "irt2pl"}


def fitter_for(name: str) -> Fitter:
    key = ALIASES.get(name, name)
    if key not in FITTERS:
        raise FitError(f"unknown model {name!r} for fitting; known: {', '.join(sorted(FITTERS) + sorted(ALIASES))}")
    return FITTERS[key]


# ---- subgroups and schedules -------------------------------------------------------------
@dataclass(frozen=True)
class Groups:
    """Subgroups kept for the population. ``of_learner``: int32[L] index into ``names``,
    -1 for a learner in a suppressed group that could not be merged."""

    names: tuple[str, ...]
    of_learner: np.ndarray
    n_learners: tuple[int, ...]
    n_suppressed: int  # groups below min_group_size
    merged: bool  # suppressed groups were merged into OTHER_GROUP
    n_omitted_learners: int


def make_groups(log: Log, min_group_size: int) -> Groups:
    """Subgroups from the log's group column: those with at least ``min_group_size`` learners
    are kept; the smaller ones are merged into ``'other'`` when together they reach the
    threshold, else omitted from the population (their responses still inform per-skill
    parameters)."""
    if not log.has_groups:
        return Groups(("all",), np.zeros(log.n_learners, np.int32), (log.n_learners,), 0, False, 0)
    sizes = np.bincount(log.learner_group, minlength=len(log.group_names))
    keep = [g for g in range(len(sizes)) if sizes[g] >= min_group_size]
    small = [g for g in range(len(sizes)) if 0 < sizes[g] < min_group_size]
    names = [log.group_names[g] for g in keep]
    index = np.full(len(sizes), -1, np.int32)
    for k, g in enumerate(keep):
        index[g] = k
    merged = False
    if small and sum(sizes[g] for g in small) >= min_group_size:
        other = OTHER_GROUP
        while other in names:
            other = "_" + other
        names.append(other)
        index[small] = len(names) - 1
        merged = True
    of_learner = index[log.learner_group]
    counts = tuple(int(np.sum(of_learner == k)) for k in range(len(names)))
    omitted = int(np.sum(of_learner < 0))
    if not names:
        raise FitError(f"no subgroup has {min_group_size} or more learners (min_group_size); "
                       "nothing can be reported without risking re-identification")
    return Groups(tuple(names), of_learner, counts, len(small), merged, omitted)


def sessions_per_week(log: Log, of_learner: np.ndarray, n_groups: int, gap_minutes: float = 30.0) -> list[float | None]:
    """Per subgroup, sessions per week from the timestamps: a new session starts after a
    pause of more than ``gap_minutes``; the rate is (sessions after a learner's first) /
    (time from their first to their last session start), pooled over the group's learners.
    None where no learner came back for a second session."""
    ts, who = log.timestamp, log.learner
    new_learner = np.r_[True, who[1:] != who[:-1]]
    gap = np.r_[np.inf, np.diff(ts)]
    start = new_learner | (gap > gap_minutes * 60.0)
    s_who, s_ts = who[start], ts[start]
    first = np.full(log.n_learners, np.nan)
    last = np.full(log.n_learners, np.nan)
    np.fmin.at(first, s_who, s_ts)
    np.fmax.at(last, s_who, s_ts)
    n_sessions = np.bincount(s_who, minlength=log.n_learners)
    out: list[float | None] = []
    for g in range(n_groups):
        m = of_learner == g
        returns = float(np.sum(n_sessions[m] - 1))
        span_days = float(np.nansum(last[m] - first[m])) / SECONDS_PER_DAY
        out.append(float(np.clip(7.0 * returns / span_days, 0.01, 50.0)) if returns > 0 and span_days > 0 else None)
    return out


# ---- results -------------------------------------------------------------------------------
@dataclass
class SubgroupFit:
    name: str
    weight: float
    n_learners: int
    sessions_per_week: float
    sessions_estimated: bool
    traits: dict[str, tuple[float, float]]  # every trait of TRAIT_ORDER: (mean, sd)


@dataclass
class FitResult:
    """What ``fit`` learnt (aggregates only: no learner ids, no per-learner values unless
    ``per_learner`` was asked for)."""

    model: str
    method: str
    skill_ids: tuple[str, ...]
    skill_params: dict[str, np.ndarray]  # field -> float[S]
    global_params: dict[str, np.ndarray]  # field -> float[...] (not per skill, e.g. FSRS weights)
    item_ids: tuple[str, ...]
    item_params: dict[str, np.ndarray]  # "difficulty"/"discrimination" -> float[I] (IRT)
    subgroups: list[SubgroupFit]
    estimated_traits: tuple[str, ...]
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]  # predicting the training correct rate for every response
    train_nll: float
    n_parameters: int
    iterations: dict[str, int]
    converged: dict[str, bool]
    fit_seconds: float
    counts: dict[str, int]
    notes: list[str]
    heldout_y: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    heldout_p: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    per_learner: dict[str, np.ndarray] | None = field(repr=False, default=None)  # opt-in only
    failed_skills: dict[str, str] = field(default_factory=dict)  # skill id -> why it was not fitted
    skill_converged: dict[str, bool] = field(default_factory=dict)  # per fitted skill
    heldout_learner: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int32))  # per held-out response
    baseline_rate: float = float("nan")  # the training correct rate (the baseline's prediction)


def _split(log: Log, holdout: float, seed: int) -> np.ndarray:
    """bool[L]: True for the held-out learners."""
    L = log.n_learners
    n_test = int(round(holdout * L))
    if holdout > 0:
        n_test = min(max(n_test, 1), L - 1)
    rng = np.random.default_rng(seed)
    test = np.zeros(L, bool)
    test[rng.permutation(L)[:n_test]] = True
    return test


_PACKS: "weakref.WeakKeyDictionary[Log, dict]" = weakref.WeakKeyDictionary()


def _packed(log: Log, keep: np.ndarray, group_of_learner: np.ndarray | None, part: Log) -> engine.Pack:
    """``engine.pack_learners(part, group_of_learner)``, ``part`` being the learners of ``log``
    where ``keep``; remembered while ``log`` lives, so the models fitted to one log (``fit
    --model all``) pack each split once."""
    key = hashlib.blake2b(np.asarray(keep, bool).tobytes() + b"|" + (
        b"" if group_of_learner is None else np.asarray(group_of_learner, np.int32).tobytes()), digest_size=16).digest()
    packs = _PACKS.setdefault(log, {})
    if key not in packs:
        packs[key] = engine.pack_learners(part, group_of_learner)
    return packs[key]


def _subsample(log: Log, eligible: np.ndarray, max_interactions: int, seed: int) -> np.ndarray:
    """bool[L]: a random subset of eligible learners with at most ``max_interactions`` responses."""
    counts = log.learner_counts()
    order = np.random.default_rng(seed + 1).permutation(np.flatnonzero(eligible))
    keep = np.zeros(log.n_learners, bool)
    keep[order[np.cumsum(counts[order]) <= max_interactions]] = True
    if not keep.any() and len(order):
        keep[order[0]] = True
    return keep


def fit(log: Log, model: str, *, holdout: float = 0.2, seed: int = 0, min_group_size: int = 10,
        forgetting: bool = False, fsrs_weights: str = "default", max_trait_interactions: int = 20_000,
        quadrature_nodes: int | None = None, session_gap_minutes: float = 30.0, max_iter: int = 200,
        per_learner: bool = False, estimate_traits: bool = True, num_fits: int = 5, allow_partial: bool = False,
        test_learners: np.ndarray | None = None, max_guess_slip: float = 0.5) -> FitResult:
    """Fit ``model`` (``bkt``, ``irt1pl``, ``irt2pl`` (``irt``), ``pfa``, ``hlr``, ``efc``,
    ``actr``, ``fsrs``) to ``log``; see the module doc for the method.

    ``estimate_traits=False`` skips the population stage: only traits estimated jointly with
    the parameters (IRT ability) get an sd, the same for every subgroup.

    ``num_fits``: EM starting points for BKT (the best likelihood is kept per skill, as
    pyBKT's ``num_fits``). ``max_guess_slip``: BKT's bound on guess and slip (0.5 by default,
    so that the known state answers better; 1 lifts it, the unconstrained model pyBKT fits).
    ``test_learners`` (bool[L]): evaluate on exactly these learners
    (e.g. those of a separate test file) instead of a random ``holdout``. A skill that
    cannot be fitted (no training responses, a non-finite likelihood or estimate) raises
    :class:`FitError` naming it, unless ``allow_partial``: it then keeps the model's
    default parameters and is listed in ``failed_skills``. No result ever holds NaN/inf
    parameters."""
    t_start = time.perf_counter()
    fitter = fitter_for(model)
    options = {"forgetting": forgetting, "fsrs_weights": fsrs_weights}
    if fsrs_weights not in ("default", "fit"):
        raise FitError(f"fsrs_weights must be 'default' or 'fit', got {fsrs_weights!r}")
    if not (isinstance(holdout, (int, float)) and 0.0 <= holdout < 1.0):
        raise FitError(f"holdout must be in [0, 1), got {holdout}")
    _check_number("session_gap_minutes", session_gap_minutes, low=0.0, low_open=True)
    _check_int("min_group_size", min_group_size, 1)
    _check_int("max_trait_interactions", max_trait_interactions, 1)
    _check_int("max_iter", max_iter, 1)
    _check_int("num_fits", num_fits, 1)
    if not (isinstance(max_guess_slip, (int, float)) and 0.0 < max_guess_slip <= 1.0):
        raise FitError(f"max_guess_slip must be in (0, 1], got {max_guess_slip!r}")
    if quadrature_nodes is not None:
        _check_int("quadrature_nodes", quadrature_nodes, 1)
    if log.n_learners < max(min_group_size, 2):
        raise FitError(f"the log has {log.n_learners} learner(s), fewer than min_group_size={min_group_size}: "
                       "a population fitted from so few learners could identify them")
    groups = make_groups(log, min_group_size)
    if test_learners is not None:
        test = np.asarray(test_learners, bool)
        if test.shape != (log.n_learners,):
            raise FitError(f"test_learners must be bool[{log.n_learners}], got shape {test.shape}")
        if test.all():
            raise FitError("every learner is a test learner: nothing is left to fit")
    else:
        test = _split(log, holdout, seed)
    train_log = log.select_learners(~test)
    test_log = log.select_learners(test)
    notes: list[str] = applicability_notes(fitter, log)

    st_model = fitter.make_model(options)
    spec = fitter.spec(options)
    curr = log.curriculum().arrays()
    primary = np.asarray([int(np.flatnonzero(r)[0]) for r in log.q_matrix], np.int32)
    seen = np.zeros(log.n_items, bool)
    seen[np.unique(train_log.item)] = True
    base = st_model.default_params(curr)
    if fitter.name == "bkt" and not forgetting:
        base = base._replace(p_forget=jnp.zeros_like(base.p_forget))
    problem = engine.Problem(model=st_model, tracer=fitter.tracer(st_model), spec=spec, base=base, curr=curr,
                             item_primary_skill=primary, item_seen=seen)
    nodes = quadrature_nodes
    iterations: dict[str, int] = {}
    converged: dict[str, bool] = {}

    # ---- stage 1: parameters
    if fitter.stage1 == "em":
        from pedagogym.fitting.bkt_em import fit_bkt_em

        em = fit_bkt_em(train_log, forgetting=forgetting, max_iter=max_iter * 5, num_fits=num_fits, seed=seed,
                        max_guess_slip=float(max_guess_slip))
        problem.base = em.params
        theta = problem.initial_theta()
        iterations["em"], converged["em"] = em.iterations, em.converged
        failed = {log.skill_ids[k]: why for k, why in em.failed.items()}
        skill_converged = {log.skill_ids[k]: bool(em.skill_converged[k]) for k in range(log.n_skills)
                           if k not in em.failed}
        if num_fits > 1:
            notes.append(f"EM from {num_fits} starting points per skill; the highest likelihood kept")
        if max_guess_slip < 1.0:
            at_bound = [log.skill_ids[k] for k in range(log.n_skills) if k not in em.failed and max(
                float(em.params.p_guess[k]), float(em.params.p_slip[k])) >= max_guess_slip - 1e-4]
            if at_bound:
                shown = ", ".join(at_bound[:10]) + (f" and {len(at_bound) - 10} more" if len(at_bound) > 10 else "")
                notes.append(f"guess or slip at its bound {max_guess_slip:g} (a boundary fit: the likelihood "
                             f"rises past it; --max-guess-slip 1 lifts the bound) for {len(at_bound)} skill(s): {shown}")
    else:
        train_batches = _packed(log, ~test, None, train_log)
        theta = problem.initial_theta()
        jt = spec.joint_traits
        zj, lwj = (jnp.asarray(a) for a in engine.quadrature(len(jt), nodes or spec.quadrature[len(jt)]))
        x0 = {"theta": theta, "log_sd": jnp.zeros((1, len(jt)), jnp.float32)}

        prior = ItemPrior.estimate(train_log, primary, spec) if spec.item_difficulty else None
        if prior is not None:
            notes.append(prior.note())

        def loss1(x, batches):
            nll = engine.marginal_nll(problem, x["theta"], jt, jnp.zeros((1, len(jt))), x["log_sd"], zj, lwj, batches)
            return nll if prior is None else nll + prior.penalty(x["theta"])

        def lbfgs():
            return engine.minimize(loss1, x0, (train_batches,), max_iter=max_iter,
                                   scale=_data_scale(problem, x0, train_log, prior), scan=problem.scanned)

        if fitter.stage1 == "scoring" and engine.separable_by_skill(problem, train_batches, jt):
            res = engine.fisher_scoring(problem, theta, train_batches, max_iter=min(max_iter, SCORING_ITERATIONS))
            res.x = {"theta": res.x, "log_sd": x0["log_sd"]}
            if not res.converged:  # e.g. parameters drifting along a flat direction: L-BFGS too, the better kept
                alt = lbfgs()
                unconverged = int(np.sum(~res.block_converged))
                if np.isfinite(alt.value) and alt.value <= res.value:
                    res = alt
                notes.append(f"Fisher scoring left {unconverged} skill(s) unconverged after "
                             f"{SCORING_ITERATIONS} iterations; L-BFGS from the same start was run too and "
                             f"{'its' if res is alt else 'the Fisher-scoring'} fit kept (the higher likelihood)")
        else:
            res = lbfgs()
        if not np.isfinite(res.value):
            raise FitError(f"{fitter.name}: the likelihood is not finite at the starting parameters; nothing was fitted")
        theta = res.x["theta"]
        if prior is not None:  # the reported training NLL is the likelihood's, without the prior
            res.value -= float(prior.penalty(theta))
        iterations["parameters"], converged["parameters"] = res.iterations, res.converged
        failed, theta = _unfitted_skills(problem, theta, train_log)
        if spec.item_difficulty:
            notes += _one_sided_items(train_log)
        per_skill = res.block_converged if res.block_converged is not None else np.full(log.n_skills, res.converged)
        skill_converged = {s: bool(per_skill[k]) for k, s in enumerate(log.skill_ids) if s not in failed}
    if len(failed) == log.n_skills:
        raise FitError(f"{fitter.name}: no skill could be fitted: "
                       + "; ".join(f"{_show_id(k)} ({why})" for k, why in list(failed.items())[:10]))
    if failed and not allow_partial:
        raise FitError(f"{fitter.name}: {len(failed)} of {log.n_skills} skill(s) could not be fitted: "
                       + "; ".join(f"{_show_id(k)} ({why})" for k, why in list(failed.items())[:10])
                       + (f"; ... and {len(failed) - 10} more" if len(failed) > 10 else "")
                       + " (allow partial fits to keep the others: --allow-partial)")
    n_conv = sum(skill_converged.values())
    notes.append(f"convergence per skill: {n_conv} of {len(skill_converged)} fitted skill(s) converged"
                 + ("" if n_conv == len(skill_converged) else ": not " + ", ".join(
                     k for k, v in skill_converged.items() if not v)[:400]))
    if failed:
        notes.append(f"{len(failed)} skill(s) not fitted (model defaults kept): "
                     + ", ".join(f"{k} ({why})" for k, why in failed.items()))

    # ---- stage 2: the population (trait mean and sd per subgroup)
    G = len(groups.names)
    if estimate_traits:
        traits = spec.traits
    else:
        traits = spec.joint_traits if fitter.stage1 == "ml" else ()
    d = len(traits)
    z, logw = (jnp.asarray(a) for a in engine.quadrature(d, nodes or spec.quadrature[d]))
    g_train = groups.of_learner[~test]
    mu = jnp.zeros((G, d), jnp.float32)
    log_sd = jnp.full((G, d), np.log(0.3), jnp.float32)
    if d and not estimate_traits:
        log_sd = jnp.broadcast_to(jnp.clip(res.x["log_sd"], -7.0, 2.0), (G, d))
        notes.append("population stage skipped (estimate_traits=False): trait sds from the parameter stage, "
                     "the same for every subgroup")
    elif d:
        sub = _subsample(train_log, g_train >= 0, max_trait_interactions, seed)
        sub_log = train_log.select_learners(sub)
        in_sub = np.zeros(log.n_learners, bool)
        in_sub[np.flatnonzero(~test)[sub]] = True
        sub_batches = _packed(log, in_sub, g_train[sub], sub_log)

        # one trait: the fine uniform rule of the held-out predictions (a long sequence's narrow
        # posterior spans several of its nodes; the fit's 15 Gauss-Hermite nodes are 0.8 apart
        # at the centre, and the sd then came out too small); several: the fit's product grid
        zs, lws = ((jnp.asarray(a) for a in engine.prediction_rule(1, spec.prediction_quadrature[1]))
                   if d == 1 and nodes is None else (z, logw))

        def loss2(x, theta, batches):
            return engine.marginal_nll(problem, theta, traits, x["mu"], jnp.clip(x["log_sd"], -7.0, 2.0), zs, lws, batches)

        n_sub = max(sub_log.n_interactions, 1)  # the preconditioner: each subgroup's share of the responses
        group_share = np.bincount(g_train[sub], weights=sub_log.learner_counts(), minlength=G) / n_sub
        share = jnp.asarray(np.maximum(group_share, 1.0 / n_sub), jnp.float32)[:, None]
        res2 = engine.minimize(loss2, {"mu": mu, "log_sd": log_sd}, (theta, sub_batches), max_iter=max_iter,
                               scale={"mu": share, "log_sd": share}, scan=problem.scanned)
        mu, log_sd = res2.x["mu"], jnp.clip(res2.x["log_sd"], -7.0, 2.0)
        if not (np.isfinite(res2.value) and np.all(np.isfinite(np.asarray(mu))) and np.all(np.isfinite(np.asarray(log_sd)))):
            raise FitError(f"{fitter.name}: the population stage gave a non-finite likelihood or trait estimate")
        iterations["population"], converged["population"] = res2.iterations, res2.converged
        if sub_log.n_learners < train_log.n_learners:
            notes.append(f"population traits estimated on a random {sub_log.n_learners} of {train_log.n_learners} "
                         f"training learners ({sub_log.n_interactions} responses; max_trait_interactions)")

    # ---- train fit (mean negative log-likelihood per response, at the optimum) and held-out predictions
    if d and estimate_traits:
        train_nll = res2.value
    elif fitter.stage1 == "em":
        train_nll = -em.log_likelihood
    else:
        train_nll = res.value
    big = int(np.argmax(groups.n_learners))
    g_test = groups.of_learner[test]
    g_pred = np.where(g_test >= 0, g_test, big)
    y_test = np.zeros(0)
    p_test = np.zeros(0)
    heldout_learner = np.zeros(0, np.int32)
    if test_log.n_learners:
        test_batches = _packed(log, test, g_pred, test_log)
        zp, lwp = (jnp.asarray(a) for a in engine.prediction_rule(d, spec.prediction_quadrature[d]))
        who, step, p_test = engine.predict(problem, theta, traits, mu, log_sd, zp, lwp, test_batches)
        starts = np.concatenate([[0], np.cumsum(test_log.learner_counts())[:-1]])
        y_test = test_log.correct[starts[who] + step].astype(np.float64)
        order = np.lexsort((step, who))  # learner, then time: the same order for every model
        who, y_test, p_test = who[order], y_test[order], np.asarray(p_test, np.float64)[order]
        heldout_learner = who.astype(np.int32)
    m = metrics(y_test, p_test)
    baseline = metrics(y_test, np.full(len(y_test), float(np.mean(train_log.correct))))

    # ---- per-learner estimates: only on request
    per_learner_out = None
    if per_learner and d:
        all_batches = _packed(log, np.ones(log.n_learners, bool),
                              np.where(groups.of_learner >= 0, groups.of_learner, big), log)
        who, est = engine.posterior_mean_traits(problem, theta, traits, mu, log_sd, z, logw, all_batches)
        per_learner_out = {"learner_id": np.asarray(log.learner_ids, dtype=object)[who],
                           **{t: est[:, k] for k, t in enumerate(traits)}}

    # ---- assemble
    params, curr_fit = problem.params(theta)
    skill_params, global_params = {}, {}
    for f in params._fields:
        v = np.asarray(getattr(params, f), np.float64)
        if v.ndim == 1 and v.shape[0] == log.n_skills and f != "w":
            skill_params[f] = v
        else:
            global_params[f] = v
    item_params = {}
    if spec.item_difficulty:
        item_params["difficulty"] = np.asarray(curr_fit.difficulty, np.float64)
    if spec.item_discrimination:
        item_params["discrimination"] = np.asarray(curr_fit.discrimination, np.float64)
    spw = sessions_per_week(log, groups.of_learner, G, session_gap_minutes)
    subgroups = []
    mu_np, sd_np = np.asarray(mu, np.float64), np.exp(np.asarray(log_sd, np.float64))
    total = sum(groups.n_learners)
    for g, name in enumerate(groups.names):
        tr = {t: (0.0, 0.0) for t in engine.TRAIT_ORDER}
        for k, t in enumerate(traits):
            tr[t] = (float(mu_np[g, k]), float(sd_np[g, k]))
        subgroups.append(SubgroupFit(name=name, weight=groups.n_learners[g] / total, n_learners=groups.n_learners[g],
                                     sessions_per_week=spw[g] if spw[g] is not None else DEFAULT_SESSIONS_PER_WEEK,
                                     sessions_estimated=spw[g] is not None, traits=tr))
        if spw[g] is None:
            notes.append(f"subgroup {name!r}: no learner came back for a second session; sessions_per_week "
                         f"is the default {DEFAULT_SESSIONS_PER_WEEK}, not an estimate")
    not_est = [t for t in engine.TRAIT_ORDER if t not in traits]
    notes.append(f"traits not estimated for {fitter.name} (written as mean 0, sd 0): {', '.join(not_est)}")
    if groups.n_suppressed:
        fate = (f"merged into {OTHER_GROUP!r}" if groups.merged else
                f"omitted from the population ({groups.n_omitted_learners} learners; their responses still inform "
                "the per-skill parameters)")
        notes.append(f"{groups.n_suppressed} group(s) with fewer than {min_group_size} learners suppressed: {fate}")
    if (log.q_matrix.sum(1) > 1).any() and fitter.name == "bkt":
        notes.append("items with several skills: EM counts each response once per skill (as pyBKT does)")
    n_par = sum(int(np.size(v)) for k, v in theta["fields"].items()) + sum(
        int(np.size(theta[k])) for k in ("item_b", "item_log_a") if k in theta)
    if fitter.stage1 == "em":
        n_par = 4 * log.n_skills + (log.n_skills if forgetting else 0)
    n_par += 2 * G * d
    counts = {"learners": log.n_learners, "interactions": log.n_interactions, "items": log.n_items,
              "skills": log.n_skills, "train_learners": train_log.n_learners, "heldout_learners": test_log.n_learners,
              "heldout_interactions": test_log.n_interactions, "subgroups": G}
    _check_finite(fitter.name, skill_params, global_params, item_params, subgroups)
    if len(p_test) and not np.all(np.isfinite(p_test)):
        raise FitError(f"{fitter.name}: non-finite held-out predictions for {int(np.sum(~np.isfinite(p_test)))} response(s)")
    return FitResult(
        model=fitter.name, method=fitter.method, skill_ids=log.skill_ids, skill_params=skill_params,
        global_params=global_params, item_ids=log.item_ids, item_params=item_params, subgroups=subgroups,
        estimated_traits=traits, metrics=m, baseline_metrics=baseline, train_nll=train_nll, n_parameters=n_par, iterations=iterations,
        converged=converged, fit_seconds=time.perf_counter() - t_start, counts=counts, notes=notes,
        heldout_y=y_test, heldout_p=p_test, per_learner=per_learner_out, failed_skills=failed,
        skill_converged=skill_converged, heldout_learner=heldout_learner,
        baseline_rate=float(np.mean(train_log.correct)),
    )


def _show_id(s: str) -> str:
    return repr(s) if len(s) <= 40 else repr(s[:37] + "...")


def _check_number(name: str, value, low: float | None = None, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if not ok:
        bound = "" if low is None else f" {'>' if low_open else '>='} {low:g}"
        raise FitError(f"{name} must be a finite number{bound}, got {value!r}")


def _check_int(name: str, value, low: int) -> None:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low):
        raise FitError(f"{name} must be an integer >= {low}, got {value!r}")


def _data_scale(problem, x0: dict, train_log: Log, prior: "ItemPrior | None" = None) -> dict:
    """The optimiser's diagonal preconditioner: per free parameter, the share of training
    responses that inform it. A per-skill field: the responses exercising the skill (floored
    at one); anything else 1 (all responses). An item parameter: its responses plus the
    prior's weight (:class:`ItemPrior`, in responses: ``1 / sd**2``)."""
    N = max(train_log.n_interactions, 1)
    per_skill = train_log.q_matrix[train_log.item].sum(0) if train_log.n_interactions else np.zeros(train_log.n_skills)
    share = lambda c: jnp.asarray(np.maximum(c, 1.0) / N, jnp.float32)  # noqa: E731
    fields = {}
    for f in problem.spec.fields:
        v = x0["theta"]["fields"][f.name]
        fields[f.name] = share(per_skill) if f.indices is None and v.shape == (train_log.n_skills,) else jnp.ones_like(v)
    theta = {**x0["theta"], "fields": fields}
    per_item = np.bincount(train_log.item, minlength=train_log.n_items).astype(np.float64)
    for key, sd in (("item_b", None if prior is None else prior.difficulty_sd),
                    ("item_log_a", None if prior is None else prior.log_discrimination_sd)):
        if key in theta:
            theta[key] = jnp.ones_like(theta[key]) if sd is None else share(per_item + 1.0 / sd ** 2)
    return {"theta": theta, "log_sd": jnp.ones_like(x0["log_sd"])}


@dataclass(frozen=True)
class ItemPrior:
    """Normal priors on IRT's per-item parameters (maximum a posteriori, "Bayes modal"
    estimation: Mislevy 1986): the difficulty centred within its skill ~ N(0, difficulty_sd²)
    and, for the 2PL, log discrimination ~ N(0, 0.5²).

    Without a prior an item answered only right (or only wrong) has no finite maximum-likelihood
    difficulty (it drifts for as long as the optimiser runs), and on sparse logs a quarter of
    the items are such. The difficulty prior's width is estimated from the log (empirical
    Bayes, method of moments as DerSimonian & Laird 1986 do for between-study variance): each
    item's empirical logit ``log((r + 0.5) / (n - r + 0.5))``, centred within its skill, has
    variance about ``sd² + v`` with ``v = 1/(r + 0.5) + 1/(n - r + 0.5)`` its sampling
    variance, so ``sd² = mean of squared centred logits (per degree of freedom) - mean v``.
    These logits average over learners of different ability, which shrinks them towards 0
    (by about ``1 / sqrt(1 + pi sd_ability² / 8)``, the logistic-normal approximation), so the
    width is scaled back by that factor, with ``sd_ability`` estimated the same way from the
    learners' empirical logits. Floored at ``MIN_SD`` (items without an effect of their own)
    and capped at ``MAX_SD``."""

    difficulty_sd: float
    log_discrimination_sd: float | None  # None: 1PL (no discriminations)
    n_items: int  # items with training responses
    n_train: int  # training responses (the loss is a mean per response)

    MIN_SD = 0.1
    MAX_SD = 5.0
    LOG_A_SD = 0.5

    @classmethod
    def estimate(cls, train_log: Log, primary_skill: np.ndarray, spec: Spec) -> "ItemPrior":
        y = train_log.correct.astype(np.float64)
        used = np.bincount(train_log.item, minlength=train_log.n_items) > 0
        item_sd = _between_sd(train_log.item, y, np.asarray(primary_skill), train_log.n_items)
        ability_sd = _between_sd(np.asarray(train_log.learner), y, np.zeros(train_log.n_learners, np.int64),
                                 train_log.n_learners)
        if item_sd is None:  # one item per skill: every centred difficulty is 0, the prior is moot
            sd = 1.0
        else:
            sd = float(np.clip(item_sd * np.sqrt(1.0 + np.pi * (ability_sd or 0.0) ** 2 / 8.0), cls.MIN_SD, cls.MAX_SD))
        return cls(sd, cls.LOG_A_SD if spec.item_discrimination else None, int(used.sum()),
                   max(int(train_log.n_interactions), 1))

    def penalty(self, theta: dict) -> jax.Array:
        """The negative log prior (up to a constant), per training response: added to the
        mean negative log-likelihood. On the free item parameters; the difficulties' mean
        within a skill is not identified (the model centres it), the prior pins it at 0."""
        out = 0.5 * jnp.sum(jnp.square(theta["item_b"])) / self.difficulty_sd ** 2
        if self.log_discrimination_sd is not None and "item_log_a" in theta:
            out = out + 0.5 * jnp.sum(jnp.square(theta["item_log_a"])) / self.log_discrimination_sd ** 2
        return out / self.n_train

    def note(self) -> str:
        a = ("" if self.log_discrimination_sd is None else
             f" and log discrimination ~ N(0, {self.log_discrimination_sd:g}^2)")
        floor = " (at its floor: the items show no effect of their own)" if self.difficulty_sd <= self.MIN_SD else ""
        return (f"item parameters by maximum a posteriori: difficulty (centred within its skill) ~ N(0, "
                f"{self.difficulty_sd:.3f}^2), the width estimated from the log's {self.n_items} items (empirical "
                f"Bayes, method of moments){floor}{a}")


def _between_sd(unit: np.ndarray, y: np.ndarray, block_of_unit: np.ndarray, n_units: int) -> float | None:
    """Method-of-moments sd of the units' (items', learners') true logits within their blocks
    (skills; one block for learners), from the responses ``y`` of each ``unit``: the
    squared empirical logits centred within their block, per degree of freedom, less their
    mean sampling variance (:class:`ItemPrior`). None without a degree of freedom."""
    n = np.bincount(unit, minlength=n_units).astype(np.float64)
    r = np.bincount(unit, weights=y, minlength=n_units)
    used = n > 0
    ell = np.log((r[used] + 0.5) / (n[used] - r[used] + 0.5))
    v = 1.0 / (r[used] + 0.5) + 1.0 / (n[used] - r[used] + 0.5)
    blk = block_of_unit[used]
    k = np.bincount(blk, minlength=int(blk.max()) + 1 if len(blk) else 1)
    dof = float(np.sum(np.maximum(k - 1, 0)))
    if dof < 1:
        return None
    centred = ell - (np.bincount(blk, weights=ell, minlength=len(k)) / np.maximum(k, 1))[blk]
    return float(np.sqrt(max(float(np.sum(centred ** 2) / dof - np.mean(v[k[blk] >= 2])), 0.0)))


def _one_sided_items(train_log: Log) -> list[str]:
    """A note when items were answered only right (or only wrong) in training: their
    difficulties have no finite maximum-likelihood estimate; the prior (:class:`ItemPrior`)
    is what keeps them finite, so they sit where it and the item's few responses put them."""
    n = np.bincount(train_log.item, minlength=train_log.n_items)
    right = np.bincount(train_log.item, weights=train_log.correct, minlength=train_log.n_items)
    used = n > 0
    one_sided = int(np.sum(used & ((right == 0) | (right == n))))
    if not one_sided:
        return []
    return [f"{one_sided} of {int(used.sum())} items ({one_sided / used.sum():.0%}) were answered only right or only "
            "wrong in training: their difficulties have no finite maximum-likelihood estimate and are set by the "
            "prior with the item's few responses"]


def _unfitted_skills(problem, theta: dict, train_log: Log) -> tuple[dict[str, str], dict]:
    """Skills an ML fit could not estimate: no training responses, or a non-finite estimate
    (reset to the model's default so nothing non-finite is written)."""
    n_resp = train_log.q_matrix[train_log.item].sum(0) if train_log.n_interactions else np.zeros(train_log.n_skills)
    failed: dict[str, str] = {}
    for k, s in enumerate(train_log.skill_ids):
        if n_resp[k] == 0:
            failed[s] = "no responses from the training learners"
    fields = dict(theta["fields"])
    init = problem.initial_theta()["fields"]
    for f in problem.spec.fields:
        v = np.asarray(fields[f.name])
        if f.indices is None and v.ndim == 1 and v.shape[0] == train_log.n_skills:
            bad = ~np.isfinite(v)
            for k in np.flatnonzero(bad):
                failed.setdefault(train_log.skill_ids[k], f"non-finite estimate of {f.name}")
            if bad.any():
                fields[f.name] = jnp.where(jnp.asarray(bad), init[f.name], fields[f.name])
        elif not np.all(np.isfinite(v)):
            raise FitError(f"{problem.model.name}: non-finite estimate of {f.name}")
    for key in ("item_b", "item_log_a"):
        if key in theta and not np.all(np.isfinite(np.asarray(theta[key]))):
            raise FitError(f"{problem.model.name}: non-finite item parameter estimates ({key})")
    return failed, {**theta, "fields": fields}


def _check_finite(model: str, skill_params: dict, global_params: dict, item_params: dict, subgroups) -> None:
    """The last guard: a FitResult never carries NaN/inf."""
    bad = [f"skill parameter {f}" for f, v in skill_params.items() if not np.all(np.isfinite(v))]
    bad += [f"parameter {f}" for f, v in global_params.items() if not np.all(np.isfinite(v))]
    bad += [f"item parameter {f}" for f, v in item_params.items() if not np.all(np.isfinite(v))]
    bad += [f"subgroup {g.name!r} trait {t}" for g in subgroups for t, ms in g.traits.items()
            if not np.all(np.isfinite(ms))]
    bad += [f"subgroup {g.name!r} sessions_per_week" for g in subgroups if not np.isfinite(g.sessions_per_week)]
    if bad:
        raise FitError(f"{model}: the fit produced non-finite values ({', '.join(bad)}); nothing was written")
