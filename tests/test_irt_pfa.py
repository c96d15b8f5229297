"""Learning IRT (1PL/2PL/3PL) and Performance Factors Analysis: golden values and properties.

The registry-wide contract tests in test_student_models.py also run on these models;
this file checks what is specific to them.
"""
from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pedagogym.curriculum.spec import Curriculum, Item, Skill
from pedagogym.student_models import POPULATIONS, STUDENT_MODELS, Traits, sample_traits
from pedagogym.student_models.irt import IRT, IRTParams, IRTState, fisher_information_3pl, prob_3pl
from pedagogym.student_models.pfa import PFA, PFAParams, PFAState

IRT_NAMES = ("irt1pl", "irt2pl", "irt3pl")
NAMES = (*IRT_NAMES, "pfa")

# Three skills; items with varied a/b, some with their own guess, two multi-skill items.
SKILLS = (Skill("a", "a"), Skill("b", "b", ("a",)), Skill("c", "c"))
ITEMS = (
    Item("a1", ("a",), difficulty=-1.0, discrimination=0.5),
    Item("a2", ("a",), difficulty=0.5, discrimination=1.5, guess=0.25),
    Item("b1", ("b",), difficulty=1.0, discrimination=2.0),
    Item("b2", ("b",), difficulty=-0.5, discrimination=1.0, guess=0.1),
    Item("c1", ("c",), difficulty=2.0, discrimination=3.0),
    Item("ab", ("a", "b"), difficulty=0.3, discrimination=1.2),
    Item("abc", ("a", "b", "c"), difficulty=-0.2, discrimination=0.8, guess=0.3),
)
CURR = Curriculum("irt-pfa", SKILLS, ITEMS).arrays()
S, I = CURR.n_skills, CURR.n_items
T0 = jnp.float32(0.0)


def _curr(items, skills=(Skill("a", "a"), Skill("b", "b"))):
    return Curriculum("golden", tuple(skills), tuple(items)).arrays()


def _p(model, params, state, curr, item):
    return float(model.p_correct(params, state, curr, jnp.int32(item), T0))


# ---- registry ------------------------------------------------------------------------------
def test_registered_under_their_names():
    for name in NAMES:
        assert STUDENT_MODELS.get(name).name == name
    assert STUDENT_MODELS.get("irt1pl") == IRT(n_pl=1) and STUDENT_MODELS.get("pfa") == PFA()
    assert IRT(n_pl=1) != IRT(n_pl=3) and hash(IRT(n_pl=2)) == hash(IRT(n_pl=2))


@pytest.mark.parametrize("bad", [0, 4, 2.5])
def test_irt_rejects_unknown_n_pl(bad):
    with pytest.raises(ValueError, match="n_pl must be 1, 2 or 3"):
        IRT(n_pl=bad)


# ---- golden values -------------------------------------------------------------------------
def test_3pl_item_functions_match_catsim():
    # catsim 0.21 (irt.icc / irt.inf with the logistic model, no 1.702 scaling):
    # theta 0.5, a 1.7, b -0.3, c 0.2 -> P = 0.836608, I = 0.357414.
    # By hand: a(theta-b) = 1.7*0.8 = 1.36, sigmoid(1.36) = 0.795760,
    # P = 0.2 + 0.8*0.795760 = 0.836608;
    # I = a^2 (P-c)^2 (1-P) / ((1-c)^2 P) = 2.89 * 0.405269 * 0.163392 / (0.64 * 0.836608) = 0.357414.
    assert float(prob_3pl(0.5, 1.7, -0.3, 0.2)) == pytest.approx(0.836608, abs=2e-6)
    assert float(fisher_information_3pl(0.5, 1.7, -0.3, 0.2)) == pytest.approx(0.357414, abs=2e-6)


def test_2pl_information_is_a2_p_q():
    # c = 0: I = a^2 P (1-P); theta = b -> P = 0.5, I = 1.5^2 * 0.25 = 0.5625 (Lord 1980, eq. 5-6)
    assert float(fisher_information_3pl(0.3, 1.5, 0.3, 0.0)) == pytest.approx(0.5625, abs=1e-6)
    assert float(fisher_information_3pl(-200.0, 1.0, 0.0, 0.0)) == 0.0  # tail: 0, not 0/0


def test_learning_2pl_golden():
    # theta0 = -1; correct (+0.15), wrong (+0.05), correct (+0.15) -> theta = -0.65;
    # item a = 1.5, b = 0.5: P = sigmoid(1.5 * (-0.65 - 0.5)) = sigmoid(-1.725) = 0.151228
    model = IRT(n_pl=2)
    curr = _curr([Item("x", ("a",), difficulty=0.5, discrimination=1.5)], skills=(Skill("a", "a"),))
    params = model.default_params(curr)
    state = model.init(jax.random.PRNGKey(0), params, curr)
    for correct in (True, False, True):
        state = model.learn(jax.random.PRNGKey(0), params, state, curr, jnp.int32(0), jnp.bool_(correct), T0,
                            jnp.ones(1))
    assert float(state.theta[0]) == pytest.approx(-0.65, abs=1e-6)
    assert _p(model, params, state, curr, 0) == pytest.approx(0.151228, abs=1e-6)


def test_irt_multi_skill_item_is_compensatory_for_each_n_pl():
    # theta = (-1.0, 0.2) -> mean -0.4; item a = 2, b = 0.1, no item guess; skill guess (0.2, 0.3)
    # 1PL: sigmoid(1 * (-0.4 - 0.1)) = sigmoid(-0.5) = 0.377541
    # 2PL: sigmoid(2 * (-0.5))       = sigmoid(-1)   = 0.268941
    # 3PL: c = mean(0.2, 0.3) = 0.25; 0.25 + 0.75 * 0.268941 = 0.451706
    curr = _curr([Item("ab", ("a", "b"), difficulty=0.1, discrimination=2.0)])
    state = IRTState(theta=jnp.array([-1.0, 0.2], jnp.float32))
    want = {1: 0.377541, 2: 0.268941, 3: 0.451706}
    for n_pl, p in want.items():
        model = IRT(n_pl=n_pl)
        params = model.default_params(curr)._replace(guess=jnp.array([0.2, 0.3], jnp.float32))
        assert _p(model, params, state, curr, 0) == pytest.approx(p, abs=1e-6), n_pl


def test_3pl_uses_the_items_own_guess_when_given():
    # item guess 0.1 overrides params.guess 0.2: theta = b -> 0.1 + 0.9 * 0.5 = 0.55
    model = IRT(n_pl=3)
    curr = _curr([Item("x", ("a",), difficulty=0.4, discrimination=2.0, guess=0.1)], skills=(Skill("a", "a"),))
    state = IRTState(theta=jnp.array([0.4], jnp.float32))
    assert _p(model, model.default_params(curr), state, curr, 0) == pytest.approx(0.55, abs=1e-6)


def test_irt_mastery_golden():
    # skill a exercised by items b = 0 (a = 1) and b = 1 (a = 1); guess 0.4 ignored; theta_a = 0:
    # mean(sigmoid(0), sigmoid(-1)) = (0.5 + 0.268941) / 2 = 0.384471.
    # skill b: only item b = 1 with a = 3 (2PL/3PL) at theta_b = 1 -> sigmoid(0) = 0.5.
    curr = _curr([Item("x", ("a",), difficulty=0.0), Item("y", ("a", "b"), difficulty=1.0, guess=0.4),
                  Item("z", ("b",), difficulty=1.0, discrimination=3.0)])
    state = IRTState(theta=jnp.array([0.0, 1.0], jnp.float32))
    for n_pl in (2, 3):
        model = IRT(n_pl=n_pl)
        m = np.asarray(model.mastery(model.default_params(curr), state, curr, T0))
        np.testing.assert_allclose(m, [0.384471, 0.5], atol=1e-6)


def test_pfa_golden_single_skill():
    # Pavlik et al. (2009) eq. m = beta + gamma*s + rho*f, p = sigmoid(m):
    # beta -0.5, gamma 0.2, rho -0.1, after 3 successes and 2 failures:
    # m = -0.5 + 0.2*3 - 0.1*2 = -0.1 -> sigmoid(-0.1) = 0.475021
    model = PFA()
    curr = _curr([Item("x", ("a",))], skills=(Skill("a", "a"),))
    params = PFAParams(*(jnp.array([v], jnp.float32) for v in (-0.5, 0.2, -0.1)))
    state = model.init(jax.random.PRNGKey(0), params, curr)
    for correct in (True, False, True, True, False):
        state = model.learn(jax.random.PRNGKey(0), params, state, curr, jnp.int32(0), jnp.bool_(correct), T0,
                            jnp.ones(1))
    chex.assert_trees_all_close(state, PFAState(jnp.array([3.0]), jnp.array([2.0])))
    assert _p(model, params, state, curr, 0) == pytest.approx(0.475021, abs=1e-6)
    assert float(model.mastery(params, state, curr, T0)[0]) == pytest.approx(0.475021, abs=1e-6)


def test_pfa_golden_two_skills_and_item_difficulty():
    # skill a: beta -0.5, gamma 0.2, rho -0.1, s 3, f 2 -> -0.5 + 0.6 - 0.2 = -0.1
    # skill b: beta  0.3, gamma 0.1, rho 0.05, s 1, f 4 ->  0.3 + 0.1 + 0.2 =  0.6
    # item (a, b) with difficulty 0.5: m = -0.1 + 0.6 - 0.5 = 0 -> 0.5
    # item (a) with difficulty 0.4:    m = -0.1 - 0.4 = -0.5 -> sigmoid(-0.5) = 0.377541
    # item (b) with difficulty 0:      m = 0.6 -> sigmoid(0.6) = 0.645656
    model = PFA()
    curr = _curr([Item("ab", ("a", "b"), difficulty=0.5), Item("a", ("a",), difficulty=0.4), Item("b", ("b",))])
    params = PFAParams(jnp.array([-0.5, 0.3]), jnp.array([0.2, 0.1]), jnp.array([-0.1, 0.05]))
    state = PFAState(jnp.array([3.0, 1.0]), jnp.array([2.0, 4.0]))
    assert _p(model, params, state, curr, 0) == pytest.approx(0.5, abs=1e-6)
    assert _p(model, params, state, curr, 1) == pytest.approx(0.377541, abs=1e-6)
    assert _p(model, params, state, curr, 2) == pytest.approx(0.645656, abs=1e-6)
    # learning on the two-skill item counts for both skills, scaled by the gate
    new = model.learn(jax.random.PRNGKey(0), params, state, curr, jnp.int32(0), jnp.bool_(False), T0,
                      jnp.array([1.0, 0.5]))
    chex.assert_trees_all_close(new, PFAState(jnp.array([3.0, 1.0]), jnp.array([3.0, 4.5])))


def test_traits_shift_as_documented():
    traits = Traits.neutral()._replace(prior=jnp.float32(0.5), speed=jnp.float32(math.log(2.0)))
    irt = IRT(n_pl=3)
    p = irt.apply_traits(irt.default_params(CURR), traits)
    np.testing.assert_allclose(p.theta0, -0.5, atol=1e-6)
    np.testing.assert_allclose(p.growth, 0.30, atol=1e-6)
    np.testing.assert_allclose(p.fail_growth, 0.10, atol=1e-6)
    np.testing.assert_allclose(p.guess, 0.2, atol=1e-6)
    pfa = PFA()
    q = pfa.apply_traits(pfa.default_params(CURR), traits)
    np.testing.assert_allclose(q.beta, -0.5, atol=1e-6)
    np.testing.assert_allclose(q.gamma, 0.5, atol=1e-6)
    np.testing.assert_allclose(q.rho, 0.1, atol=1e-6)


# ---- properties ----------------------------------------------------------------------------
@settings(max_examples=200, deadline=None, database=None)
@given(theta=st.floats(-30, 30), a=st.floats(0.05, 5.0), b=st.floats(-6, 6), c=st.floats(0.0, 0.95))
def test_3pl_item_functions_are_bounded(theta, a, b, c):
    p = float(prob_3pl(jnp.float32(theta), jnp.float32(a), jnp.float32(b), jnp.float32(c)))
    info = float(fisher_information_3pl(jnp.float32(theta), jnp.float32(a), jnp.float32(b), jnp.float32(c)))
    assert c - 1e-6 <= p <= 1.0
    # I <= a^2/4 (the 2PL maximum; guessing only lowers information)
    assert math.isfinite(info) and 0.0 <= info <= a * a / 4 + 1e-5


def _random_params(model, key, n):
    """``n`` random parameter sets and hidden states, wide but with non-negative learning
    weights (the assumption under which practice cannot hurt)."""
    ks = jax.random.split(key, 6)
    u = lambda k, lo, hi: jax.random.uniform(k, (n, S), jnp.float32, lo, hi)  # noqa: E731
    if isinstance(model, IRT):
        params = IRTParams(u(ks[0], -4, 4), u(ks[1], 0, 2), u(ks[2], 0, 1), u(ks[3], 0, 0.5))
        return params, IRTState(theta=u(ks[4], -8, 8))
    params = PFAParams(u(ks[0], -4, 4), u(ks[1], 0, 2), u(ks[2], 0, 1))
    return params, PFAState(jnp.floor(u(ks[4], 0, 30)), jnp.floor(u(ks[5], 0, 30)))


@pytest.mark.parametrize("name", NAMES)
def test_probabilities_in_unit_interval_for_random_params_and_states(name):
    model = STUDENT_MODELS.get(name)
    params, states = _random_params(model, jax.random.PRNGKey(1), 1000)
    p = np.asarray(jax.vmap(lambda pr, s: model.p_correct_all(pr, s, CURR, T0))(params, states))
    m = np.asarray(jax.vmap(lambda pr, s: model.mastery(pr, s, CURR, T0))(params, states))
    assert p.shape == (1000, I) and m.shape == (1000, S) and p.dtype == m.dtype == np.float32
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    assert np.all(np.isfinite(m)) and np.all((m >= 0) & (m <= 1))


@pytest.mark.parametrize("name", NAMES)
def test_practice_never_lowers_p_correct_on_the_practised_item(name):
    model = STUDENT_MODELS.get(name)
    params, states = _random_params(model, jax.random.PRNGKey(2), 500)
    gate = jnp.ones(S)

    def check(pr, s, item, correct):
        before = model.p_correct(pr, s, CURR, item, T0)
        after = model.p_correct(pr, model.learn(jax.random.PRNGKey(0), pr, s, CURR, item, correct, T0, gate),
                                CURR, item, T0)
        return after - before

    items = jnp.arange(I, dtype=jnp.int32)
    for correct in (True, False):
        diff = jax.vmap(lambda pr, s: jax.vmap(lambda i: check(pr, s, i, jnp.bool_(correct)))(items))(params, states)
        assert float(jnp.min(diff)) >= -1e-6, (name, correct)
    # and a correct answer helps strictly on a learner away from the ceiling
    model_params = model.default_params(CURR)
    state0 = model.init(jax.random.PRNGKey(0), model_params, CURR)
    assert float(check(model_params, state0, jnp.int32(0), jnp.bool_(True))) > 0


@pytest.mark.parametrize("name", NAMES)
def test_gate_zero_leaves_the_state_unchanged(name):
    model = STUDENT_MODELS.get(name)
    params, states = _random_params(model, jax.random.PRNGKey(3), 50)
    for item in range(I):
        for correct in (True, False):
            new = jax.vmap(lambda pr, s: model.learn(jax.random.PRNGKey(0), pr, s, CURR, jnp.int32(item),
                                                     jnp.bool_(correct), T0, jnp.zeros(S)))(params, states)
            chex.assert_trees_all_equal(new, states)


def test_gate_and_q_matrix_limit_learning_to_the_items_skills():
    for name in NAMES:
        model = STUDENT_MODELS.get(name)
        params = model.default_params(CURR)
        state = model.init(jax.random.PRNGKey(0), params, CURR)
        # item "ab" (index 5) with skill b gated off: only skill a moves
        new = model.learn(jax.random.PRNGKey(0), params, state, CURR, jnp.int32(5), jnp.bool_(True), T0,
                          jnp.array([1.0, 0.0, 1.0]))
        m0, m1 = (np.asarray(model.mastery(params, s, CURR, T0)) for s in (state, new))
        assert m1[0] > m0[0] and m1[1] == m0[1] and m1[2] == m0[2], name


def test_1pl_ignores_discrimination():
    model = STUDENT_MODELS.get("irt1pl")
    other = CURR._replace(discrimination=CURR.discrimination * 3.7 + 0.2)
    params, states = _random_params(model, jax.random.PRNGKey(4), 200)
    for fn in (lambda pr, s, c: model.p_correct_all(pr, s, c, T0), lambda pr, s, c: model.mastery(pr, s, c, T0)):
        got = jax.vmap(lambda pr, s: fn(pr, s, CURR))(params, states)
        want = jax.vmap(lambda pr, s: fn(pr, s, other))(params, states)
        chex.assert_trees_all_equal(got, want)
    # ... which the 2PL does not
    two = STUDENT_MODELS.get("irt2pl")
    s = IRTState(theta=jnp.ones(S))
    assert not np.allclose(two.p_correct_all(model.default_params(CURR), s, CURR, T0),
                           two.p_correct_all(model.default_params(CURR), s, other, T0))


def test_only_3pl_has_a_guessing_floor():
    low = IRTState(theta=jnp.full((S,), -1e4, jnp.float32))  # theta -> -inf
    floors = {}
    for name in IRT_NAMES:
        model = STUDENT_MODELS.get(name)
        params = model.default_params(CURR)._replace(guess=jnp.array([0.2, 0.3, 0.1], jnp.float32))
        floors[name] = np.asarray(model.p_correct_all(params, low, CURR, T0))
    # 3PL: the item's own guess where given, else the mean skill guess over the item's skills
    want = [0.2, 0.25, 0.3, 0.1, 0.1, 0.25, 0.3]
    np.testing.assert_allclose(floors["irt3pl"], want, atol=1e-6)
    np.testing.assert_allclose(floors["irt1pl"], 0.0, atol=1e-6)
    np.testing.assert_allclose(floors["irt2pl"], 0.0, atol=1e-6)
    # mastery never has a floor
    model = STUDENT_MODELS.get("irt3pl")
    np.testing.assert_allclose(model.mastery(model.default_params(CURR), low, CURR, T0), 0.0, atol=1e-6)


def _one_learner(model, key):
    """Sample a learner from the heterogeneous population, then 6 sampled practice steps."""
    pop = POPULATIONS.get("heterogeneous").arrays()
    k_traits, k_init, key = jax.random.split(key, 3)
    params = model.sample_params(CURR, sample_traits(k_traits, pop))
    state = model.init(k_init, params, CURR)
    ps = []
    for step in range(6):
        key, k_resp, k_learn = jax.random.split(key, 3)
        item = jnp.int32((3 * step) % I)
        correct = model.respond(k_resp, params, state, CURR, item, T0)
        ps.append(model.p_correct(params, state, CURR, item, T0))
        state = model.learn(k_learn, params, state, CURR, item, correct, T0, jnp.ones(S))
    return params, state, jnp.stack(ps), model.mastery(params, state, CURR, T0)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_1000_learners_equals_python_loop(name):
    model = STUDENT_MODELS.get(name)
    keys = jax.random.split(jax.random.PRNGKey(7), 1000)
    batched = jax.jit(jax.vmap(lambda k: _one_learner(model, k)))(keys)
    single = jax.jit(lambda k: _one_learner(model, k))
    looped = jax.device_get([single(k) for k in keys])  # one compiled call per learner
    chex.assert_trees_all_close(jax.device_get(batched), jax.tree.map(lambda *xs: np.stack(xs), *looped),
                                rtol=1e-5, atol=1e-6)
    # the learners differ from each other (the test would be vacuous otherwise)
    assert np.unique(np.asarray(batched[3][:, 0])).size > 100


@pytest.mark.parametrize("name", NAMES)
def test_same_key_gives_same_learner(name):
    model = STUDENT_MODELS.get(name)
    a = _one_learner(model, jax.random.PRNGKey(11))
    b = _one_learner(model, jax.random.PRNGKey(11))
    c = _one_learner(model, jax.random.PRNGKey(12))
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(np.asarray(a[3]), np.asarray(c[3]))


@pytest.mark.parametrize("name", NAMES)
def test_jitted_learn_traces_once(name):
    model = STUDENT_MODELS.get(name)
    params = model.default_params(CURR)
    state = model.init(jax.random.PRNGKey(0), params, CURR)
    chex.clear_trace_counter()  # chex keys its counter on the source, shared by the parametrized cases

    @jax.jit
    @chex.assert_max_traces(n=1)
    def learn(key, params, state, item, correct, gate):
        return model.learn(key, params, state, CURR, item, correct, T0, gate)

    s1 = learn(jax.random.PRNGKey(1), params, state, jnp.int32(0), jnp.bool_(True), jnp.ones(S))
    s2 = learn(jax.random.PRNGKey(2), params, s1, jnp.int32(5), jnp.bool_(False), jnp.full((S,), 0.5, jnp.float32))
    for leaf in jax.tree.leaves(s2):
        assert leaf.dtype == jnp.float32 and leaf.shape == (S,)
    assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)))
