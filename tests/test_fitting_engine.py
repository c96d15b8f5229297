"""The fitting engine's closed-form tracers (``engine.CountTracer``) give the predictions of
the sequential scan through the model's own ``p_correct`` and ``learn``.

IRT with growth, PFA, HLR and EFC keep a state that, under a full gate, is a function of how
many earlier responses of the (learner, skill) sequence were right and wrong and when the
last one was; ``engine.trace`` computes it directly instead of scanning. Each closed form
is checked here against the scan on a log with multi-skill items, several sequences per
lane, traits at several quadrature nodes and random parameters.

Then the integrals over a learner's traits on long sequences, where the posterior is much
narrower than the prior: held-out predictions (a fine fixed grid) and per-learner posterior
means (adaptive quadrature), each against a brute-force integral on 2,001 nodes, and the
population stage's ability sd (a fine grid for one trait)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from pedagogym.fitting import engine, from_frame
from pedagogym.fitting.fit import fitter_for


def _log(seed: int = 0):
    rng = np.random.default_rng(seed)
    items = {"i0": "a", "i1": "a", "i2": "b", "i3": "c", "i4": "a;b", "i5": "b;c", "i6": "c"}
    rows = []
    for learner in range(12):
        t = 1_700_000_000 + rng.integers(0, 10_000)
        for _ in range(rng.integers(3, 25)):
            item = rng.choice(list(items))
            t += int(rng.choice([20, 90, 3_600, 86_400 * 2]))
            rows.append((f"u{learner}", item, items[item], int(rng.random() < 0.6), t))
    df = pd.DataFrame(rows, columns=["learner_id", "item_id", "skill_id", "correct", "timestamp"])
    return from_frame(df, salt="t")


@pytest.mark.parametrize("name", ["irt1pl", "irt2pl", "pfa", "hlr", "efc"])
def test_closed_form_state_matches_the_scan(name):
    fitter = fitter_for(name)
    assert issubclass(fitter.tracer, engine.CountTracer)
    log = _log()
    curr = log.curriculum().arrays()
    model, spec = fitter.make_model({}), fitter.spec({})
    primary = np.asarray([int(np.flatnonzero(r)[0]) for r in log.q_matrix], np.int32)
    seen = np.ones(log.n_items, bool)
    make = lambda tracer: engine.Problem(model=model, tracer=tracer(model), spec=spec,  # noqa: E731
                                         base=model.default_params(curr), curr=curr,
                                         item_primary_skill=primary, item_seen=seen)
    scan, closed = make(engine.ModelTracer), make(fitter.tracer)
    rng = np.random.default_rng(1)
    theta = jax.tree.map(lambda a: a + jnp.asarray(0.3 * rng.standard_normal(np.shape(a)), jnp.float32),
                         scan.initial_theta())
    pack = engine.pack_learners(log, np.zeros(log.n_learners, np.int32))
    assert pack.multi_pos.shape[0] > 0 and int(jnp.sum(pack.start)) > pack.item.shape[1]  # multi-skill rows; lanes shared
    traits = ("prior", "speed", "memory")
    z, _ = engine.quadrature(len(traits), 2)
    mu, sd = jnp.asarray([[0.2, -0.3, 0.4]]), jnp.asarray([[0.5, 0.4, 0.6]])
    lp_scan, p_scan = engine.trace(scan, *scan.params(theta), traits, mu, sd, jnp.asarray(z), pack)
    lp_closed, p_closed = engine.trace(closed, *closed.params(theta), traits, mu, sd, jnp.asarray(z), pack)
    assert p_scan.shape == (log.n_interactions, z.shape[0])
    np.testing.assert_allclose(np.asarray(p_closed), np.asarray(p_scan), rtol=2e-5, atol=1e-6)
    # log(1 - p) for p within float32's reach of 1 amplifies p's last-bit differences: compared elsewhere
    inner = np.minimum(np.asarray(p_scan), 1.0 - np.asarray(p_scan)) > 1e-3
    np.testing.assert_allclose(np.asarray(lp_closed)[inner], np.asarray(lp_scan)[inner], rtol=2e-5, atol=1e-5)


def test_sequence_history_restarts_at_each_sequence():
    T = 5
    right, wrong, last = engine.sequence_history(
        np.asarray([[1, 0], [1, 1], [0, 0], [1, 1], [0, 1]], np.float32),
        np.arange(T * 2, dtype=np.float32).reshape(T, 2),
        np.asarray([[True, True], [False, False], [False, True], [True, False], [False, False]]))
    np.testing.assert_array_equal(right[:, 0], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(wrong[:, 0], [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(right[:, 1], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(wrong[:, 1], [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(last[:, 0], [0, 0, 2, 0, 6])


@pytest.fixture(scope="module")
def long_irt():
    """20 IRT-1PL learners x 300 responses (ability sd 1, no growth), at the true parameters:
    each learner's ability posterior has sd about 0.1, a tenth of the prior's."""
    from pedagogym.fitting import simulate_log
    from pedagogym.fitting.simulate import synthetic_curriculum
    from pedagogym.student_models.irt import IRT
    from pedagogym.student_models.population import Population, Subgroup

    pop = Population("one", (Subgroup("all", prior=(0.0, 1.0), speed=(0.0, 0.0), memory=(0.0, 0.0)),))
    model = IRT(n_pl=1)
    curr = synthetic_curriculum(3, 4)
    true = model.default_params(curr.arrays())._replace(growth=jnp.zeros(3), fail_growth=jnp.zeros(3))
    log = from_frame(simulate_log(model, true, 20, 300, jax.random.PRNGKey(0), curriculum=curr, population=pop), salt="t")
    c = log.curriculum().arrays()
    fitter = fitter_for("irt1pl")
    primary = np.asarray([int(np.flatnonzero(r)[0]) for r in log.q_matrix], np.int32)
    problem = engine.Problem(model=model, tracer=fitter.tracer(model), spec=fitter.spec({}),
                             base=model.default_params(c)._replace(growth=jnp.zeros(3), fail_growth=jnp.zeros(3)),
                             curr=c, item_primary_skill=primary, item_seen=np.ones(log.n_items, bool))
    pack = engine.pack_learners(log, np.zeros(log.n_learners, np.int32))
    args = (problem.initial_theta(), ("prior",), jnp.zeros((1, 1)), jnp.zeros((1, 1)))
    truth = tuple(jnp.asarray(a) for a in engine.uniform_grid(2001))  # nodes 0.006 apart
    return problem, pack, args, truth


def test_held_out_predictions_integrate_a_narrow_posterior(long_irt):
    problem, pack, (theta, traits, mu, log_sd), truth = long_irt
    predict = lambda rule: engine.predict(problem, theta, traits, mu, log_sd,  # noqa: E731
                                          *(jnp.asarray(a) for a in rule), pack)[2]
    exact = predict(truth)
    default = predict(engine.prediction_rule(1, problem.spec.prediction_quadrature[1]))
    assert np.max(np.abs(default - exact)) < 1e-4
    # the former default, 15 Gauss-Hermite nodes 0.8 apart, missed it by up to 0.08
    assert np.max(np.abs(predict(engine.quadrature(1, 15)) - exact)) > 0.02


def test_per_learner_posterior_means_use_adaptive_quadrature(long_irt):
    problem, pack, (theta, traits, mu, log_sd), (zt, lwt) = long_irt
    ll = engine.learner_loglik(problem, theta, traits, mu, log_sd, zt, pack)
    exact = np.asarray(jax.nn.softmax(ll + lwt[None, :], axis=1) @ zt)[:, 0]
    z, logw = (jnp.asarray(a) for a in engine.quadrature(1, problem.spec.quadrature[1]))
    _, est = engine.posterior_mean_traits(problem, theta, traits, mu, log_sd, z, logw, pack)
    assert np.max(np.abs(est[:, 0] - exact)) < 1e-3
    # the same 15 nodes, fixed: every learner's mean snapped towards a node (off by up to 0.3)
    fixed = np.asarray(jax.nn.softmax(engine.learner_loglik(problem, theta, traits, mu, log_sd, z, pack)
                                      + logw[None, :], axis=1) @ z)[:, 0]
    assert np.max(np.abs(fixed - exact)) > 0.05


def test_one_trait_population_stage_integrates_a_narrow_posterior(monkeypatch):
    """The population stage's ability sd on long sequences (20 learners x 300 responses) is
    the optimum of the marginal likelihood, not an artefact of its grid: for one trait it
    integrates on the fine uniform rule of the held-out predictions, and a rule four times
    finer moves the sd by under 0.01, where 15 Gauss-Hermite nodes (the fit's grid, 0.8 apart
    at the centre: what this stage used before) move it by more than 0.05."""
    import importlib

    from pedagogym.fitting import simulate_log
    from pedagogym.fitting.simulate import synthetic_curriculum
    from pedagogym.student_models.irt import IRT
    from pedagogym.student_models.population import Population, Subgroup

    fit_module = importlib.import_module("pedagogym.fitting.fit")
    pop = Population("one", (Subgroup("all", prior=(0.0, 1.0), speed=(0.0, 0.0), memory=(0.0, 0.0)),))
    model = IRT(n_pl=1)
    curr = synthetic_curriculum(3, 4)
    true = model.default_params(curr.arrays())._replace(growth=jnp.zeros(3), fail_growth=jnp.zeros(3))
    log = from_frame(simulate_log(model, true, 20, 300, jax.random.PRNGKey(0), curriculum=curr, population=pop), salt="t")

    def ability_sd(rule=None):
        if rule is not None:
            monkeypatch.setattr(fit_module.engine, "prediction_rule", lambda d, n: rule)
        result = fit_module.fit(log, "irt1pl", holdout=0.0, min_group_size=5)
        monkeypatch.undo()
        return result.subgroups[0].traits["prior"][1]

    default = ability_sd()
    assert abs(ability_sd(engine.uniform_grid(481)) - default) < 0.01
    assert abs(ability_sd(engine.quadrature(1, 15)) - default) > 0.05


def _recall_log(n_learners: int = 30):
    """Three single-item skills whose recall falls with the time since the skill's last review."""
    rng = np.random.default_rng(3)
    rows = []
    for learner in range(n_learners):
        t, last = 1_700_000_000, {}
        for _ in range(30):
            k = int(rng.integers(3))
            t += int(rng.choice([30, 600, 3_600, 86_400]))
            p = 0.15 if k not in last else 0.2 + 0.7 * np.exp(-(t - last[k]) / (5_000.0 * (k + 1)))
            last[k] = t
            rows.append((f"u{learner}", f"i{k}", "abc"[k], int(rng.random() < p), t))
    return from_frame(pd.DataFrame(rows, columns=["learner_id", "item_id", "skill_id", "correct", "timestamp"]), salt="t")


def test_fisher_scoring_reaches_the_optimum_skill_by_skill():
    """EFC's per-skill parameters by Fisher scoring (the fit's method for EFC and ACT-R)
    reach at least the optimum that L-BFGS reaches in more iterations, and report
    convergence per skill; a log with a multi-skill item is not separable by skill."""
    log = _recall_log()
    fitter = fitter_for("efc")
    assert fitter.stage1 == "scoring" and fitter_for("actr").stage1 == "scoring"
    model, curr = fitter.make_model({}), log.curriculum().arrays()
    problem = engine.Problem(model=model, tracer=fitter.tracer(model), spec=fitter.spec({}), base=model.default_params(curr),
                             curr=curr, item_primary_skill=np.argmax(log.q_matrix, 1).astype(np.int32),
                             item_seen=np.ones(log.n_items, bool))
    pack = engine.pack_learners(log)
    assert engine.separable_by_skill(problem, pack)
    assert not engine.separable_by_skill(problem, engine.pack_learners(_log()))  # items with two skills
    assert not engine.separable_by_skill(problem, pack, ("prior",))  # a trait integrated out couples the skills
    none = jnp.zeros((1, 0), jnp.float32)

    def nll(theta):
        return engine.marginal_nll(problem, theta, (), none, none, none, jnp.zeros(1), pack)

    theta0 = problem.initial_theta()
    scoring = engine.fisher_scoring(problem, theta0, pack, max_iter=100)
    lbfgs = engine.minimize(lambda th, p: nll(th), theta0, (pack,), max_iter=600, tol=1e-9)
    assert scoring.converged and scoring.block_converged.tolist() == [True] * 3
    assert scoring.iterations < lbfgs.iterations
    assert abs(scoring.value - float(nll(scoring.x))) < 1e-6  # the running value is the objective's
    assert scoring.value <= lbfgs.value + 2e-6


def test_fit_falls_back_to_lbfgs_when_fisher_scoring_does_not_converge(monkeypatch):
    """Where Fisher scoring leaves a skill unconverged (here: one iteration allowed), ``fit``
    runs L-BFGS from the same start too, keeps the higher likelihood and says so."""
    import importlib

    fit_module = importlib.import_module("pedagogym.fitting.fit")  # the module (the package exports the function)
    monkeypatch.setattr(fit_module, "SCORING_ITERATIONS", 1)
    short = fit_module.fit(_recall_log(), "efc", holdout=0.0, estimate_traits=False)
    assert any("Fisher scoring left" in n and "its fit kept" in n for n in short.notes)
    assert short.iterations["parameters"] > 1 and short.converged["parameters"]  # L-BFGS's fit, converged


def test_minimize_stops_at_the_float32_floor():
    """Near the optimum of a float32 objective every trial ties with the current value; the
    optimiser stops there (its step promises less than ``tol``) instead of spending its
    line-search trials and a steepest-descent restart on ties."""
    w = jnp.asarray(np.linspace(0.5, 5.0, 20), jnp.float32)

    def f(x, c):
        return 0.5 + 1e-3 * jnp.sum(w * (x - c) ** 2)

    res = engine.minimize(f, jnp.zeros(20, jnp.float32), (jnp.ones(20, jnp.float32),), tol=1e-7)
    assert res.converged and abs(res.value - 0.5) < 1e-6
    assert res.evaluations <= res.iterations + 2


def test_scanned_likelihoods_compile_without_library_fusions():
    """BKT, ACT-R and FSRS trace each sequence with a scan, whose small per-step reductions
    YNNPACK made slow (ACT-R's population-stage evaluation 0.97 s against 0.73 s); their
    likelihoods are compiled without library fusions, the count models' with them."""
    from pedagogym.fitting.fit import FITTERS

    scanned = {name for name, f in FITTERS.items()
               if engine.Problem(model=None, tracer=f.tracer(None), spec=None, base=None, curr=None,
                                 item_primary_skill=None, item_seen=None).scanned}
    assert scanned == {"bkt", "actr", "fsrs"}

    def slots(x):  # a reduction over 32 slots per lane and node, as in ACT-R's activation
        return jnp.log(jnp.sum(jnp.exp(-0.5 * x) * x, axis=-1))

    x = jnp.ones((300, 25, 32), jnp.float32)
    assert engine._library_fusions_can_be_turned_off()  # this XLA has the option
    assert "__ynn_fusion" not in engine.fit_jit(slots, scan=True).lower(x).compile().as_text()
    np.testing.assert_allclose(engine.fit_jit(slots, scan=True)(x), engine.fit_jit(slots)(x), rtol=1e-6)  # summed in another order
