"""Adaptive testing: 3PL item information against catsim, the EAP estimator, the CAT
policies' selection rules, the standard-error stopping rule, and the acceptance check
(max-information beats random at equal test length on the 200-item bank)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from pedagogym.curriculum import resolve_curriculum
from pedagogym.curriculum.item_bank import BANK_PATH, item_bank, to_toml
from pedagogym.envs import ability, make
from pedagogym.experiments.report import summary_table
from pedagogym.policies.rollout import evaluate, learner_keys
from pedagogym.policies import POLICIES, PolicyView
from pedagogym.policies.cat import item_information, posterior_kl
from pedagogym.student_models.irt import fisher_information_3pl, prob_3pl

# catsim 0.21.0 (pip install catsim), catsim.irt.inf(theta, a, b, c, d=1) and catsim.irt.icc(...):
# 3PL without the 1.702 constant, inf = a^2 (P - c)^2 (d - P) / ((d - c)^2 P). Computed 2025 with
#   from catsim import irt; irt.inf(theta, a, b, c, 1.0), irt.icc(theta, a, b, c, 1.0)
CATSIM = [  # theta, a, b, c, information, P(correct)
    (0.0, 1.0, 0.0, 0.0, 0.25, 0.5),
    (0.0, 1.5, 0.5, 0.2, 0.27554516499631637, 0.45665704065968565),
    (1.0, 2.0, 0.0, 0.25, 0.30467252073838424, 0.9105978084834118),
    (-2.0, 0.8, 1.0, 0.1, 0.020892599033850854, 0.17485542684453012),
    (0.5, 1.2, -1.0, 0.15, 0.1453917483573824, 0.8794265948345853),
    (3.0, 1.7, 2.5, 0.3, 0.37614005482948565, 0.790396999731781),
]

BANK = make("pedagogym/AdaptiveTest-v0", horizon=20)
CURR = BANK.params.curriculum


@pytest.mark.parametrize("theta,a,b,c,info,p", CATSIM)
def test_3pl_information_matches_catsim(theta, a, b, c, info, p):
    f = lambda x: jnp.float32(x)  # noqa: E731
    assert float(fisher_information_3pl(f(theta), f(a), f(b), f(c))) == pytest.approx(info, rel=1e-5)
    assert float(prob_3pl(f(theta), f(a), f(b), f(c))) == pytest.approx(p, rel=1e-6)


def test_item_bank_file_is_the_generator_output():
    assert BANK_PATH.read_text() == to_toml(item_bank())
    bank = resolve_curriculum("item_bank_200")
    assert bank == item_bank() and bank.n_items == 200 and bank.n_skills == 1
    a = np.array([i.discrimination for i in bank.items])
    assert 0.4 <= a.min() and a.max() <= 2.5 and len(set(a)) > 150


def _numpy_eap(a, b, c, n, r, points=20001):
    """Reference: posterior mean / SD under N(0, 1) restricted to [-4, 4], fine trapezoid grid."""
    g = np.linspace(-4.0, 4.0, points)
    p = c + (1 - c) / (1 + np.exp(-a * (g[:, None] - b)))
    logpost = (np.log(p) @ r + np.log1p(-p) @ (n - r)) - 0.5 * g ** 2
    w = np.exp(logpost - logpost.max())
    m = np.trapezoid(w * g, g) / np.trapezoid(w, g)
    return m, math.sqrt(np.trapezoid(w * (g - m) ** 2, g) / np.trapezoid(w, g))


def test_eap_matches_numerical_integration():
    items = ability.known_items(CURR)
    a, b, c = (np.asarray(x, np.float64) for x in (items.a, items.b, items.c))
    rng = np.random.default_rng(3)
    n = np.zeros(200)
    n[rng.choice(200, 12, replace=False)] = 1.0
    r = n * (rng.uniform(size=200) < 0.6)
    est = ability.posterior_from_counts(items, jnp.asarray(n, jnp.float32), jnp.asarray(r, jnp.float32))
    m, sd = _numpy_eap(a, b, c, n, r)
    assert float(est.theta) == pytest.approx(m, abs=2e-3)
    assert float(est.se) == pytest.approx(sd, abs=2e-3)
    # no responses: the prior (SD slightly under 1: truncated at +-4)
    empty = ability.posterior_from_counts(items, jnp.zeros(200), jnp.zeros(200))
    assert abs(float(empty.theta)) < 1e-5 and float(empty.se) == pytest.approx(0.9993, abs=2e-3)
    # all correct pushes the estimate up, all wrong down
    up = ability.posterior_from_counts(items, jnp.asarray(n, jnp.float32), jnp.asarray(n, jnp.float32))
    down = ability.posterior_from_counts(items, jnp.asarray(n, jnp.float32), jnp.zeros(200))
    assert float(down.theta) < float(est.theta) < float(up.theta)


def _view(attempts, correct, mask=None):
    from pedagogym.envs.observations import History

    h = History.initial(CURR, BANK.params.observer)._replace(item_attempts=jnp.asarray(attempts, jnp.float32),
                                                              item_correct=jnp.asarray(correct, jnp.float32))
    mask = jnp.ones(200, bool) if mask is None else jnp.asarray(mask)
    return PolicyView(history=h, action_mask=mask, obs=jnp.zeros((1,), jnp.float32))


def _act(name, view, key=0):
    pol = POLICIES.get(name)
    return pol.act(jax.random.PRNGKey(key), pol.init(BANK.params), view, BANK.params, BANK.env)


def _numpy_info_ranking(n, r):
    """Items by 3PL information at the EAP estimate, best first, given items excluded."""
    items = ability.known_items(CURR)
    theta = float(ability.posterior_from_counts(items, jnp.asarray(n, jnp.float32), jnp.asarray(r, jnp.float32)).theta)
    a, b, c = (np.asarray(x, np.float64) for x in (items.a, items.b, items.c))
    s = 1 / (1 + np.exp(-a * (theta - b)))
    info = a ** 2 * (1 - c) * s ** 2 * (1 - s) / (c + (1 - c) * s)
    info[n > 0] = -1
    return theta, np.argsort(-info)


def test_max_info_picks_the_most_informative_fresh_valid_item():
    n = np.zeros(200)
    n[[5, 17, 40]] = 1
    r = np.zeros(200)
    r[[5, 17]] = 1
    theta, rank = _numpy_info_ranking(n, r)
    action, pstate = _act("cat_max_info", _view(n, r))
    assert int(action) == rank[0] and float(pstate.theta) == pytest.approx(theta, abs=1e-6)
    # the best item masked out -> the next best
    mask = np.ones(200, bool)
    mask[rank[0]] = False
    assert int(_act("cat_max_info", _view(n, r, mask))[0]) == rank[1]
    # the best item given (answered correctly) -> never given again: the best of the others
    n2, r2 = n.copy(), r.copy()
    n2[rank[0]] = r2[rank[0]] = 1
    _, rank2 = _numpy_info_ranking(n2, r2)
    assert int(_act("cat_max_info", _view(n2, r2))[0]) == rank2[0] != rank[0]


def test_kl_index_matches_numpy_and_differs_from_fisher_early():
    items = ability.known_items(CURR)
    est = ability.posterior_from_counts(items, jnp.zeros(200), jnp.zeros(200))
    kl = np.asarray(posterior_kl(est, items), np.float64)
    g = np.asarray(ability.grid(), np.float64)
    a, b, c = (np.asarray(x, np.float64) for x in (items.a, items.b, items.c))
    p = c + (1 - c) / (1 + np.exp(-a * (g[:, None] - b)))
    ph = c + (1 - c) / (1 + np.exp(-a * (float(est.theta) - b)))
    ref = np.asarray(est.posterior, np.float64) @ (ph * np.log(ph / p) + (1 - ph) * np.log((1 - ph) / (1 - p)))
    np.testing.assert_allclose(kl, ref, rtol=2e-3, atol=1e-6)
    assert int(_act("cat_kl", _view(np.zeros(200), np.zeros(200)))[0]) == int(np.argmax(ref))


def test_randomesque_draws_among_the_top_k():
    items = ability.known_items(CURR)
    info = np.asarray(item_information(jnp.float32(0.0), items))
    top5 = set(np.argsort(info)[-5:].tolist())
    view = _view(np.zeros(200), np.zeros(200))
    chosen = {int(_act("cat_randomesque", view, key=k)[0]) for k in range(40)}
    assert chosen <= top5 and len(chosen) >= 3


def test_standard_error_stopping_rule_ends_the_test():
    built = make("pedagogym/AdaptiveTest-v0", horizon=60, stop_se=0.35)
    assert built.env.stop_on_se and not BANK.env.stop_on_se
    res = evaluate(built.env, POLICIES.get("cat_max_info"), 60, built.params, learner_keys(jax.random.PRNGKey(1), 64))
    steps, se = np.asarray(res.steps), np.asarray(res.ability_se)
    stopped = steps < 60
    assert stopped.mean() > 0.9  # most tests end early...
    assert np.all(se[stopped] < 0.35)  # ...exactly when the SE criterion is met
    # one item earlier the SE was still above the threshold: replay one learner step by step
    key = jax.random.PRNGKey(7)
    obs, state = built.env.reset(key, built.params)
    pol, ps = POLICIES.get("cat_max_info"), POLICIES.get("cat_max_info").init(built.params)
    act = jax.jit(lambda k, ps, view: pol.act(k, ps, view, built.params, built.env))
    step = jax.jit(lambda k, state, a: built.env.step(k, state, a, built.params))
    for t in range(60):
        view = PolicyView(state.history, built.env.action_mask(state, built.params), obs)
        a, ps = act(jax.random.fold_in(key, t), ps, view)
        obs, state, _, term, trunc, _ = step(jax.random.fold_in(key, 100 + t), state, a)
        se_now = float(ability.estimate(state.history, built.params.curriculum).se)
        assert bool(term) == (se_now < 0.35)
        if term:
            break
    assert bool(term) and not bool(trunc)


def test_max_info_beats_random_at_equal_length():
    keys = learner_keys(jax.random.PRNGKey(0), 300)
    rmse = {}
    for name in ("random", "cat_max_info"):
        res = evaluate(BANK.env, POLICIES.get(name), 20, BANK.params, keys)
        assert np.all(np.asarray(res.steps) == 20)
        rmse[name] = float(np.sqrt(np.mean(np.asarray(res.ability_error) ** 2)))
    assert rmse["cat_max_info"] < 0.8 * rmse["random"], rmse


def test_ability_rmse_summary_is_sqrt_of_mean_squared_error():
    err = {"random": np.array([0.5, -0.5, 1.0, 0.0]), "cat_max_info": np.array([0.1, -0.2, 0.3, 0.0])}
    rows = [pd.DataFrame({"env": "t", "student_model": "irt3pl_static", "population": "p", "policy": pol, "seed": 0,
                          "learner": np.arange(4), "ability_sq_error": e ** 2, "test_length": 20})
            for pol, e in err.items()]
    s = summary_table(pd.concat(rows, ignore_index=True), ("ability_rmse", "test_length"), "random").set_index("policy")
    assert s.loc["random", "ability_rmse_mean"] == pytest.approx(math.sqrt(1.5 / 4))
    assert s.loc["cat_max_info", "ability_rmse_mean"] == pytest.approx(math.sqrt(0.14 / 4))
    assert s.loc["cat_max_info", "ability_rmse_diff_vs_random"] == pytest.approx(math.sqrt(0.14 / 4) - math.sqrt(1.5 / 4))
    assert s.loc["cat_max_info", "test_length_mean"] == 20
