"""BKT golden values, and contract/property tests parametrized over every registered
student model (every model the registry holds is checked; adding one adds its tests)."""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pedagogym.curriculum.spec import Curriculum, Item, Skill
from pedagogym.student_models import POPULATIONS, STUDENT_MODELS, Traits, sample_traits
from pedagogym.student_models import bkt
from pedagogym.student_models.learner import Learner

MODELS = STUDENT_MODELS.names()

SKILLS = tuple(Skill(f"s{k}", f"s{k}", (f"s{k - 1}",) if k else ()) for k in range(4))
ITEMS = tuple(Item(f"i{k}", (f"s{k % 4}",), difficulty=(k % 3) - 1.0) for k in range(8)) + (
    Item("pair", ("s0", "s1"), difficulty=0.5),)
CURR = Curriculum("contract", SKILLS, ITEMS).arrays()


def test_bkt_observer_matches_pybkt():
    """pyBKT 1.4.3, one skill, prior 0.3, learns 0.2, guesses 0.25, slips 0.1, forgets 0,
    responses 0,1,1,0,1: predicted P(correct) and P(known) before each response (the
    figures pyBKT's ``predict`` gives, quoted in the foundation issue)."""
    expected_correct = [0.44500, 0.40811, 0.65894, 0.82683, 0.64649]
    expected_known = [0.3, 0.24324, 0.62914, 0.88744, 0.60998]
    p_known = jnp.float32(0.3)
    for resp, want_c, want_k in zip([0, 1, 1, 0, 1], expected_correct, expected_known):
        assert float(bkt.predict(p_known, 0.25, 0.1)) == pytest.approx(want_c, abs=5e-5)
        assert float(p_known) == pytest.approx(want_k, abs=5e-5)
        p_known = bkt.observe(p_known, jnp.bool_(resp), jnp.bool_(True), 0.2, 0.0, 0.25, 0.1)


def test_bkt_simulated_learner_learns_at_rate_p_learn():
    model = STUDENT_MODELS.get("bkt")
    curr = Curriculum("one", (Skill("a", "a"),), (Item("x", ("a",)),)).arrays()
    params = model.default_params(curr)._replace(p_init=jnp.array([0.0]), p_learn=jnp.array([0.3]), p_forget=jnp.array([0.0]))
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)

    def one(k):
        s = model.init(k, params, curr)
        return model.learn(k, params, s, curr, jnp.int32(0), jnp.bool_(True), jnp.float32(0), jnp.ones(1)).known[0]

    assert float(jnp.mean(jax.vmap(one)(keys))) == pytest.approx(0.3, abs=0.015)


def _learner(name: str, seed: int = 0):
    model = STUDENT_MODELS.get(name)
    traits = sample_traits(jax.random.PRNGKey(seed), POPULATIONS.get("heterogeneous").arrays())
    params = model.sample_params(CURR, traits)
    return model, params, model.init(jax.random.PRNGKey(seed + 1), params, CURR)


def _practice(model, params, state, n, key, t0=0.0, dt=0.5):
    t = jnp.float32(t0)
    for k in range(n):
        key, k1, k2 = jax.random.split(key, 3)
        item = jnp.int32(k % CURR.n_items)
        correct = model.respond(k1, params, state, CURR, item, t)
        state = model.learn(k2, params, state, CURR, item, correct, t, jnp.ones(CURR.n_skills))
        t = t + dt
    return state, t


@pytest.mark.parametrize("name", MODELS)
def test_probabilities_stay_in_unit_interval(name):
    for seed in range(3):
        model, params, state = _learner(name, seed)
        state, t = _practice(model, params, state, 20, jax.random.PRNGKey(seed))
        for when in (t, t + 1.0, t + 100.0):
            p = np.asarray(model.p_correct_all(params, state, CURR, when))
            m = np.asarray(model.mastery(params, state, CURR, when))
            assert np.all((p >= 0) & (p <= 1)) and np.all(np.isfinite(p)), name
            assert np.all((m >= 0) & (m <= 1)) and m.shape == (CURR.n_skills,)


@pytest.mark.parametrize("name", MODELS)
def test_p_correct_all_is_p_correct_for_every_item(name):
    """Models may override ``p_correct_all`` with a vectorised form (BKT does: the post-test
    rewards compute it every step); it must stay ``p_correct`` item by item."""
    model, params, state = _learner(name, 3)
    state, t = _practice(model, params, state, 12, jax.random.PRNGKey(7))
    for when in (t, t + 3.0):
        every = np.asarray(model.p_correct_all(params, state, CURR, when))
        one_by_one = np.array([float(model.p_correct(params, state, CURR, jnp.int32(i), when))
                               for i in range(CURR.n_items)])
        np.testing.assert_allclose(every, one_by_one, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("name", MODELS)
def test_practice_never_lowers_expected_recall_right_after(name):
    """E[p_correct(item) right after practising it] >= p_correct right before (averaged
    over the model's own randomness, so a stochastic learner is judged in expectation)."""
    model, params, state = _learner(name, 4)
    state, t = _practice(model, params, state, 6, jax.random.PRNGKey(4))
    gate = jnp.ones(CURR.n_skills)
    for item in range(CURR.n_items):
        item = jnp.int32(item)
        before = float(model.p_correct(params, state, CURR, item, t))
        keys = jax.random.split(jax.random.PRNGKey(item), 256)

        def after(k, correct):
            s = model.learn(k, params, state, CURR, item, correct, t, gate)
            return model.p_correct(params, s, CURR, item, t)

        for correct in (True, False):
            mean_after = float(jnp.mean(jax.vmap(lambda k: after(k, jnp.bool_(correct)))(keys)))
            if correct or model.family == "skill":
                assert mean_after >= before - 0.02, (name, int(item), correct, before, mean_after)


@pytest.mark.parametrize("name", MODELS)
def test_same_key_gives_same_learner(name):
    _, p1, s1 = _learner(name, 11)
    _, p2, s2 = _learner(name, 11)
    chex.assert_trees_all_equal(p1, p2)
    chex.assert_trees_all_equal(s1, s2)
    _, p3, _ = _learner(name, 12)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p3)))


@pytest.mark.parametrize("name", MODELS)
def test_vmap_over_10000_learners_equals_python_loop(name):
    learner = Learner(STUDENT_MODELS.get(name), prerequisites=True, engagement=True)
    pop = POPULATIONS.get("heterogeneous").arrays()

    def one(key):
        k1, k2, k3 = jax.random.split(key, 3)
        lp = learner.sample(k1, CURR, pop)
        ls = learner.init(k2, lp, CURR)
        att = learner.attempt(k3, lp, ls, CURR, jnp.int32(1), jnp.float32(0.5))
        return att.p_correct, att.correct, att.response_time, learner.mastery(lp, att.state, CURR, jnp.float32(1.0))

    keys = jax.random.split(jax.random.PRNGKey(5), 10_000)
    batched = jax.jit(jax.vmap(one))(keys)
    single = jax.jit(one)
    for i in list(range(0, 10_000, 1000)) + [9_999]:  # a python loop over a spread of learners
        ref = single(keys[i])
        for b, r in zip(batched, ref):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(r), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_learn_traces_once(name):
    chex.clear_trace_counter()  # chex counts per source location, shared across parametrized cases
    model, params, state = _learner(name)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def learn(key, state, item, correct, t):
        return model.learn(key, params, state, CURR, item, correct, t, jnp.ones(CURR.n_skills))

    for k in range(3):
        state = learn(jax.random.PRNGKey(k), state, jnp.int32(k), jnp.bool_(k % 2), jnp.float32(k))


@pytest.mark.parametrize("name", MODELS)
def test_gate_zero_freezes_the_learner(name):
    model, params, state = _learner(name, 2)
    new = model.learn(jax.random.PRNGKey(0), params, state, CURR, jnp.int32(0), jnp.bool_(True), jnp.float32(1.0),
                      jnp.zeros(CURR.n_skills))
    p_before = np.asarray(model.mastery(params, state, CURR, jnp.float32(1.0)))
    p_after = np.asarray(model.mastery(params, new, CURR, jnp.float32(1.0)))
    # no learning on the practised skill (memory models may still record that a review happened)
    assert p_after[0] <= p_before[0] + 1e-6


@pytest.mark.parametrize("name", MODELS)
def test_traits_move_parameters_in_the_documented_direction(name):
    """More prior knowledge -> higher initial mastery on average (every model family)."""
    model = STUDENT_MODELS.get(name)
    neutral = Traits.neutral()

    def mean_mastery(prior):
        params = model.apply_traits(model.default_params(CURR), neutral._replace(prior=jnp.float32(prior)))
        keys = jax.random.split(jax.random.PRNGKey(0), 2000)
        states = jax.vmap(lambda k: model.init(k, params, CURR))(keys)
        # memory models: knowledge shows after a first exposure; skill models: immediately
        return float(jnp.mean(jax.vmap(lambda s: model.p_correct_all(params, s, CURR, jnp.float32(0.0)))(states)))

    assert mean_mastery(2.0) >= mean_mastery(-2.0)


@pytest.mark.parametrize("floor", [0.0, 0.1, 0.5])
def test_prerequisite_gate_is_the_product_over_prerequisites(floor):
    """gate[s] = prod_{p in prereq(s)} (floor + (1 - floor) * mastery[p]) (Prerequisites'
    docstring); computed in the log domain for speed, it must match the plain product,
    including floor 0 with an unknown prerequisite (learning blocked: exactly 0)."""
    from pedagogym.student_models.learner import PREREQUISITES

    skills = (Skill("a", "a"), Skill("b", "b"), Skill("c", "c", ("a", "b")), Skill("d", "d", ("c",)))
    curr = Curriculum("gate", skills, tuple(Item(f"i{s.id}", (s.id,)) for s in skills)).arrays()
    params = PREREQUISITES.default_params(floor)
    pre = np.asarray(curr.prereq) > 0
    for mastery in ([0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0], [0.3, 0.8, 0.5, 1.0], [1.0, 1.0, 0.0, 0.2]):
        m = np.asarray(mastery, np.float32)
        want = [np.prod([floor + (1 - floor) * m[p] for p in np.flatnonzero(pre[s])]) for s in range(4)]
        got = np.asarray(PREREQUISITES.gate(params, curr, jnp.asarray(m)))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0.0)


def test_bkt_difficulty_shift_is_sigmoid_of_shifted_logit():
    """BKT's item guess/slip shift p / (p + (1 - p) e^-d) is sigmoid(logit(p) + d), with logit's
    clipping at 0 and 1 (a guess of exactly 0 stays a tiny positive number, as before)."""
    from pedagogym.student_models.base import logit

    for p in (0.0, 1e-9, 0.2, 0.5, 0.9, 1.0):
        for d in (-2.0, 0.0, 1.5):
            want = float(jax.nn.sigmoid(logit(jnp.float32(p)) + d))
            assert float(bkt._shift(jnp.float32(p), jnp.float32(d))) == pytest.approx(want, rel=1e-5, abs=1e-12)
