"""Memory models (EFC, HLR, ACT-R, FSRS-6): golden values against the papers and the
``fsrs`` package, and properties every memory model must have.

The registry-wide contract tests in test_student_models.py also run on these models;
this file checks what is specific to memory traces.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fsrs import Card, Rating, Scheduler

from pedagogym.curriculum.spec import Curriculum, Item, Skill
from pedagogym.student_models import POPULATIONS, STUDENT_MODELS, Traits, sample_traits
from pedagogym.student_models import actr, efc, fsrs, hlr
from pedagogym.student_models.actr import ACTR
from pedagogym.student_models.efc import EFC
from pedagogym.student_models.fsrs import FSRS
from pedagogym.student_models.hlr import HLR

NAMES = ("efc", "hlr", "actr", "fsrs")
REL = 1e-4  # relative tolerance of every golden value (float32 arithmetic)

# Four words; single-word items of varied difficulty and two multi-word items.
SKILLS = tuple(Skill(f"w{k}", f"w{k}") for k in range(4))
ITEMS = tuple(Item(f"i{k}", (f"w{k % 4}",), difficulty=(k % 3) - 1.0) for k in range(8)) + (
    Item("pair", ("w0", "w1"), difficulty=0.5), Item("all", ("w0", "w1", "w2", "w3"), difficulty=-0.3))
CURR = Curriculum("memory", SKILLS, ITEMS).arrays()
S, I = CURR.n_skills, CURR.n_items
ONE = Curriculum("one", (Skill("a", "a"),), (Item("x", ("a",)), Item("hard", ("a",), difficulty=1.0))).arrays()
KEY = jax.random.PRNGKey(0)


def _learn(model, params, state, curr, item, correct, t, gate=None):
    gate = jnp.ones(curr.n_skills) if gate is None else jnp.asarray(gate, jnp.float32)
    return model.learn(KEY, params, state, curr, jnp.int32(item), jnp.bool_(correct), jnp.float32(t), gate)


def _history(model, params, state, n, seed, curr=CURR, random_gate=False):
    """``n`` practice steps at random items, times and responses; returns (state, t)."""
    rng = np.random.default_rng(seed)
    t = 0.0
    for _ in range(n):
        t += float(rng.choice([0.0, 0.003, 0.04, 0.5, 1.0, 3.0, 9.0]))
        gate = rng.uniform(0, 1, curr.n_skills) if random_gate else None
        state = _learn(model, params, state, curr, int(rng.integers(curr.n_items)), bool(rng.integers(2)), t, gate)
    return state, t


def _learner(name, seed):
    model = STUDENT_MODELS.get(name)
    traits = sample_traits(jax.random.PRNGKey(seed), POPULATIONS.get("heterogeneous").arrays())
    params = model.sample_params(CURR, traits)
    return model, params, model.init(jax.random.PRNGKey(seed + 1), params, CURR)


# ---- registry and validation -------------------------------------------------------------
def test_registered_as_memory_models():
    for name, cls in zip(NAMES, (EFC, HLR, ACTR, FSRS)):
        model = STUDENT_MODELS.get(name)
        assert isinstance(model, cls) and model.name == name and model.family == "memory"
    assert EFC() == EFC() and hash(ACTR()) == hash(ACTR()) and ACTR() != ACTR(h=0.5)


@pytest.mark.parametrize("make, match", [
    (lambda: EFC(theta=0.0), "theta must be > 0"),
    (lambda: EFC(p_unseen=1.0), "p_unseen must be in"),
    (lambda: HLR(p_unseen=-0.1), "p_unseen must be in"),
    (lambda: ACTR(buffer=0), "buffer must be a positive int"),
    (lambda: ACTR(s=0.0), "s must be > 0"),
    (lambda: ACTR(h=0.0), "h must be in"),
    (lambda: ACTR(window=-1.0), "window must be >= 0"),
    (lambda: ACTR(p_unseen=-0.1), "p_unseen must be in"),
    (lambda: FSRS(weights=(0.1,) * 19), "needs 21 weights, got 19"),
    (lambda: FSRS(weights=fsrs.DEFAULT_PARAMETERS[:20] + (0.0,)), "w20"),
    (lambda: FSRS(p_unseen=2.0), "p_unseen must be in"),
])
def test_bad_constructor_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---- FSRS-6: golden values and a cross-check against the fsrs package -------------------
def test_fsrs_default_weights_are_the_packages():
    from fsrs.scheduler import DEFAULT_PARAMETERS
    assert fsrs.DEFAULT_PARAMETERS == tuple(DEFAULT_PARAMETERS) and len(DEFAULT_PARAMETERS) == 21


def test_fsrs_first_review_good_golden():
    # fsrs 6.3.2, Scheduler(enable_fuzzing=False).review_card(Card(), Rating.Good):
    # stability 2.3065 (= w2), difficulty 2.118104 (= w4 - e^(2 w5) + 1 = 7.4133 - 5.295196);
    # get_card_retrievability 1, 10, 100 days later: 0.946847, 0.774367, 0.558907.
    assert float(fsrs.init_stability(3)) == pytest.approx(2.3065, rel=REL)
    assert float(fsrs.init_difficulty(3)) == pytest.approx(2.1181, rel=REL)
    for days, want in ((1, 0.946847), (10, 0.774367), (100, 0.558907)):
        assert float(fsrs.retrievability(jnp.float32(days), jnp.float32(2.3065))) == pytest.approx(want, rel=REL)
    # the simulated learner: a correct first answer is rated Good
    model = FSRS()
    params = model.default_params(ONE)._replace(p_unseen=jnp.zeros(1))
    state = _learn(model, params, model.init(KEY, params, ONE), ONE, 0, True, 5.0)
    assert float(state.stability[0]) == pytest.approx(2.3065, rel=REL)
    assert float(state.difficulty[0]) == pytest.approx(2.1181, rel=REL)
    assert float(model.mastery(params, state, ONE, jnp.float32(15.0))[0]) == pytest.approx(0.774367, rel=REL)
    # and a wrong first answer is rated Again: S0 = w0 = 0.212, D0 = w4 = 6.4133
    state = _learn(model, params, model.init(KEY, params, ONE), ONE, 0, False, 5.0)
    assert float(state.stability[0]) == pytest.approx(0.212, rel=REL)
    assert float(state.difficulty[0]) == pytest.approx(6.4133, rel=REL)


def _package_sequence(ratings, intervals_days):
    """(stability, difficulty) after each review, from the fsrs package."""
    scheduler = Scheduler(enable_fuzzing=False)
    card, when, out = Card(), datetime(2024, 1, 1, tzinfo=timezone.utc), []
    for rating, gap in zip(ratings, intervals_days):
        when = when + timedelta(days=float(gap))
        card, _ = scheduler.review_card(card, Rating(int(rating)), review_datetime=when)
        out.append((card.stability, card.difficulty))
    return np.asarray(out)


@jax.jit
def _ours_sequence(ratings, intervals_days):
    """(stability, difficulty) after each review from ``fsrs.review``, one call a review as the
    package's ``review_card`` (the first review's interval is unused)."""

    def step(carry, x):
        s, d, reviewed = carry
        rating, gap = x
        s, d = fsrs.review(s, d, reviewed, rating, gap)
        return (s, d, jnp.ones((), bool)), jnp.stack([s, d])

    zero = jnp.zeros((), jnp.float32)
    return jax.lax.scan(step, (zero, zero, jnp.zeros((), bool)), (ratings, intervals_days))[1]


def _cross_check(ratings, intervals):
    ours = np.asarray(jax.vmap(_ours_sequence)(jnp.asarray(ratings, jnp.int32), jnp.asarray(intervals, jnp.float32)))
    for k in range(len(ratings)):
        np.testing.assert_allclose(ours[k], _package_sequence(ratings[k], intervals[k]), rtol=REL, atol=0)


def test_fsrs_matches_package_on_random_review_sequences():
    """200 sequences of 10 reviews, ratings 1-4, whole-day intervals 1-60 (fsrs 6.3.2)."""
    rng = np.random.default_rng(2024)
    _cross_check(rng.integers(1, 5, (200, 10)), rng.integers(1, 61, (200, 10)).astype(float))


def test_fsrs_matches_package_with_same_day_reviews():
    """Same-day reviews (a few hours apart) use the short-term stability rule in both."""
    rng = np.random.default_rng(7)
    whole = rng.integers(1, 61, (100, 10)).astype(float)
    hours = rng.choice([1 / 24, 6 / 24, 0.5, 0.9], (100, 10))
    intervals = np.where(rng.uniform(size=(100, 10)) < 0.35, hours, whole)
    _cross_check(rng.integers(1, 5, (100, 10)), intervals)


def test_fsrs_learner_matches_package_good_again():
    """The simulated learner (correct -> Good, wrong -> Again, gate 1) tracks the package's card."""
    model = FSRS()
    params = model.default_params(ONE)
    rng = np.random.default_rng(3)
    for _ in range(20):
        correct = rng.integers(0, 2, 8).astype(bool)
        gaps = rng.integers(1, 30, 8).astype(float)
        want = _package_sequence(np.where(correct, 3, 1), gaps)
        state, t = model.init(KEY, params, ONE), 0.0
        for k in range(8):
            t += gaps[k]
            state = _learn(model, params, state, ONE, 0, correct[k], t)
            np.testing.assert_allclose([float(state.stability[0]), float(state.difficulty[0])], want[k], rtol=REL)


# ---- EFC, HLR, ACT-R: hand-computed cases from the papers' formulas ----------------------
def test_efc_matches_formula():
    # Reddy et al.: P(recall) = exp(-theta d / n). theta 0.3/day, reviews at day 0 and day 2
    # (n = 2), recall at day 5 (d = 3): exp(-0.3 * 3 / 2) = exp(-0.45) = 0.637628.
    # An item of difficulty b = 1 multiplies theta by e: exp(-0.45 e) = exp(-1.223227) = 0.294279.
    model = EFC(theta=0.3)
    params = model.default_params(ONE)._replace(p_unseen=jnp.zeros(1))
    state = model.init(KEY, params, ONE)
    assert float(model.p_correct(params, state, ONE, jnp.int32(0), jnp.float32(0.0))) == 0.0  # unseen
    state = _learn(model, params, state, ONE, 0, False, 0.0)
    state = _learn(model, params, state, ONE, 0, True, 2.0)
    assert float(state.strength[0]) == 2.0 and float(state.last_review[0]) == 2.0
    assert float(model.mastery(params, state, ONE, jnp.float32(5.0))[0]) == pytest.approx(0.637628, rel=REL)
    assert float(model.p_correct(params, state, ONE, jnp.int32(1), jnp.float32(5.0))) == pytest.approx(0.294279, rel=REL)
    assert float(efc.recall(0.3, 2.0, 3.0)) == pytest.approx(0.637628, rel=REL)


def test_hlr_matches_formula():
    # Settles & Meeder: p = 2^(-Δ/h), h = 2^(θ·x), x = (sqrt(1+right), sqrt(1+wrong), bias, lexeme).
    # Weights right 1.0, wrong -0.5, bias 0.5, lexeme 0.2; history right, wrong, right (2 right,
    # 1 wrong): θ·x = 1.0 * sqrt(3) - 0.5 * sqrt(2) + 0.5 + 0.2 = 1.732051 - 0.707107 + 0.7
    # = 1.724944, h = 2^1.724944 = 3.305673 days; Δ = 2 days: p = 2^(-2/3.305673) = 0.657462.
    # An item of difficulty 1 halves h: 2^(-2/1.652837) = 0.432256.
    model = HLR()
    one = jnp.ones(1)
    params = hlr.HLRParams(w_bias=0.5 * one, w_right=1.0 * one, w_wrong=-0.5 * one, w_lexeme=0.2 * one,
                           gain=one, p_unseen=0.0 * one)
    state = model.init(KEY, params, ONE)
    for t, ok in ((0.0, True), (1.0, False), (3.0, True)):
        state = _learn(model, params, state, ONE, 0, ok, t)
    assert (float(state.n_right[0]), float(state.n_wrong[0]), float(state.last_review[0])) == (2.0, 1.0, 3.0)
    h = hlr.half_life(hlr.log2_half_life(params, state.n_right, state.n_wrong))
    assert float(h[0]) == pytest.approx(3.305673, rel=REL)
    assert float(model.mastery(params, state, ONE, jnp.float32(5.0))[0]) == pytest.approx(0.657462, rel=REL)
    assert float(model.p_correct(params, state, ONE, jnp.int32(1), jnp.float32(5.0))) == pytest.approx(0.432256, rel=REL)
    # half-lives are clipped to [15 min, 274 days] as in the reference code
    assert float(hlr.half_life(jnp.float32(-20.0))) == pytest.approx(15 / 1440, rel=REL)
    assert float(hlr.half_life(jnp.float32(20.0))) == pytest.approx(274.0, rel=REL)


def test_actr_matches_formula():
    # Pavlik & Anderson (2005), a = 0.177, c = 0.217, tau = -0.704, s = 0.255; presentations
    # at 0 s and 100 s, test at 200 s (all within the one-hour window: real seconds).
    # d1 = a = 0.177 (m0 = -inf). At 100 s: m1 = ln(100^-0.177) = -0.815115,
    # d2 = 0.217 e^-0.815115 + 0.177 = 0.217 * 0.442588 + 0.177 = 0.273042.
    # At 200 s: 200^-0.177 = 0.391487, 100^-0.273042 = 0.284392, m2 = ln(0.675879) = -0.391741,
    # p = 1 / (1 + exp((-0.704 + 0.391741) / 0.255)) = 1 / (1 + e^-1.224543) = 0.772862.
    m1 = actr.activation(jnp.array([100.0]), jnp.array([0.177]), jnp.array([1.0]))
    assert float(m1) == pytest.approx(-0.815115, rel=REL)
    d2 = actr.decay_rate(m1, 0.177, 0.217)
    assert float(d2) == pytest.approx(0.273042, rel=REL)
    m2 = actr.activation(jnp.array([200.0, 100.0]), jnp.array([0.177, float(d2)]), jnp.array([1.0, 1.0]))
    assert float(m2) == pytest.approx(-0.391741, rel=REL)
    assert float(actr.recall_probability(m2, -0.704, 0.255)) == pytest.approx(0.772862, rel=REL)
    assert float(actr.activation(jnp.zeros(3), jnp.zeros(3), jnp.zeros(3))) == -jnp.inf  # no presentation

    model = ACTR()
    params = model.default_params(ONE)._replace(p_unseen=jnp.zeros(1))
    state = model.init(KEY, params, ONE)
    sec = 1.0 / 86400.0
    state = _learn(model, params, state, ONE, 0, True, 0.0)
    state = _learn(model, params, state, ONE, 0, True, 100 * sec)
    assert float(state.decays[0, 1]) == pytest.approx(0.273042, rel=REL) and int(state.count[0]) == 2
    assert float(model.mastery(params, state, ONE, jnp.float32(200 * sec))[0]) == pytest.approx(0.772862, rel=2e-4)
    # beyond the window time counts at rate h: one presentation, tested a day later:
    # age = 3600 + 0.025 * (86400 - 3600) = 5670 s, m = -0.177 ln 5670 = -1.529801,
    # p = 1 / (1 + exp((-0.704 + 1.529801) / 0.255)) = 1 / (1 + e^3.238436) = 0.037745.
    state = _learn(model, params, model.init(KEY, params, ONE), ONE, 0, True, 0.0)
    assert float(model.mastery(params, state, ONE, jnp.float32(1.0))[0]) == pytest.approx(0.037745, rel=REL)


def test_actr_spacing_effect():
    """Same number of presentations, same retention interval after the last one: spaced
    practice is recalled better a week later than massed practice (Pavlik & Anderson 2005)."""
    model = ACTR()
    params = model.default_params(ONE)

    def week_later(gap_days):
        state = model.init(KEY, params, ONE)
        for k in range(4):
            state = _learn(model, params, state, ONE, 0, True, k * gap_days)
        return float(model.mastery(params, state, ONE, jnp.float32(3 * gap_days + 7.0))[0])

    assert week_later(1.0) > week_later(10 / 1440) > week_later(10 / 86400)


def test_actr_ring_buffer_keeps_the_last_k_presentations():
    model = ACTR(buffer=4)
    params = model.default_params(ONE)
    state = model.init(KEY, params, ONE)
    for k in range(6):
        state = _learn(model, params, state, ONE, 0, True, float(k))
    assert int(state.count[0]) == 6 and bool(jnp.all(state.mask[0]))
    assert sorted(np.asarray(state.times[0]).tolist()) == [2.0, 3.0, 4.0, 5.0]



def test_actr_recall_and_learn_is_p_correct_then_learn():
    """The fused call (one activation for both) gives exactly the two calls' numbers, for
    multi-skill items, partial gates and a full ring buffer (buffer 4, 25 presentations)."""
    model = ACTR(buffer=4)
    params = model.sample_params(CURR, sample_traits(KEY, POPULATIONS.get("heterogeneous").arrays()))
    rng = np.random.default_rng(3)
    state, t = _history(model, params, model.init(KEY, params, CURR), 25, 3, random_gate=True)
    fused = jax.jit(model.recall_and_learn)
    apart = jax.jit(lambda params, state, curr, item, t, gate: (  # compiled alike: the same float rounding
        model.p_correct(params, state, curr, item, t), model.learn(KEY, params, state, curr, item, True, t, gate)))
    for _ in range(6):
        item, t = int(rng.integers(I)), t + float(rng.choice([0.0, 0.01, 2.0]))
        gate = jnp.asarray(rng.uniform(0, 1, S), jnp.float32)
        p, new = fused(params, state, CURR, jnp.int32(item), jnp.float32(t), gate)
        p2, new2 = apart(params, state, CURR, jnp.int32(item), jnp.float32(t), gate)
        np.testing.assert_array_equal(np.asarray(p), np.asarray(p2))
        chex.assert_trees_all_equal(new, new2)
        state = new

# ---- properties of every memory model ------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_probabilities_in_unit_interval(name):
    for seed in range(4):
        model, params, state = _learner(name, seed)
        state, t = _history(model, params, state, 25, seed, random_gate=bool(seed % 2))
        for when in (t, t + 0.01, t + 1.0, t + 30.0, t + 3000.0):
            p = np.asarray(model.p_correct_all(params, state, CURR, jnp.float32(when)))
            m = np.asarray(model.mastery(params, state, CURR, jnp.float32(when)))
            assert p.dtype == np.float32 and m.dtype == np.float32 and m.shape == (S,)
            assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1)), (name, when, p)
            assert np.all(np.isfinite(m)) and np.all((m >= 0) & (m <= 1)), (name, when, m)


@pytest.mark.parametrize("name", NAMES)
def test_unseen_recall_is_p_unseen_and_low(name):
    model, params, state = _learner(name, 1)
    m = np.asarray(model.mastery(params, state, CURR, jnp.float32(3.0)))
    np.testing.assert_allclose(m, np.asarray(params.p_unseen), rtol=1e-6)
    default = model.default_params(CURR)
    assert np.all(np.asarray(model.mastery(default, model.init(KEY, default, CURR), CURR, jnp.float32(0.0))) <= 0.1)


@pytest.mark.parametrize("name", NAMES)
def test_recall_right_after_review_never_lower(name):
    """For any history, item, response and gate: recall of every item right after a
    review is >= right before it (the trace is refreshed, even after a wrong answer)."""
    rng = np.random.default_rng(11)
    for seed in range(3):
        model, params, state = _learner(name, seed)
        state, t = _history(model, params, state, 12, seed)
        for _ in range(12):
            t += float(rng.choice([0.0, 0.02, 1.0, 5.0]))
            item, ok = int(rng.integers(I)), bool(rng.integers(2))
            gate = rng.choice([1.0, rng.uniform(0, 1)])
            before = np.asarray(model.p_correct_all(params, state, CURR, jnp.float32(t)))
            state = _learn(model, params, state, CURR, item, ok, t, np.full(S, gate))
            after = np.asarray(model.p_correct_all(params, state, CURR, jnp.float32(t)))
            assert np.all(after >= before - 1e-5), (name, item, ok, gate, before, after)


@pytest.mark.parametrize("name", NAMES)
def test_recall_decays_with_time_since_review(name):
    model, params, state = _learner(name, 3)
    state, t = _history(model, params, state, 15, 3)
    grid = t + np.array([0.0, 0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 100, 1000], np.float32)
    m = np.stack([np.asarray(model.mastery(params, state, CURR, jnp.float32(x))) for x in grid])
    assert np.all(np.diff(m, axis=0) <= 1e-6), (name, m)
    practised = m[0] > np.asarray(params.p_unseen) + 1e-3
    assert np.all(m[-1][practised] < m[0][practised]), name  # and it actually forgets


@pytest.mark.parametrize("name", NAMES)
def test_gate_zero_leaves_state_unchanged(name):
    model, params, state = _learner(name, 5)
    state, t = _history(model, params, state, 10, 5)
    for item in range(I):
        for ok in (True, False):
            new = _learn(model, params, state, CURR, item, ok, t + 1.5, jnp.zeros(S))
            chex.assert_trees_all_equal(new, state)
    # skills an item does not exercise are untouched whatever the gate
    new = _learn(model, params, state, CURR, 0, True, t + 1.5)
    for leaf_new, leaf_old in zip(jax.tree.leaves(new), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(leaf_new)[1:], np.asarray(leaf_old)[1:])


@pytest.mark.parametrize("name", NAMES)
def test_partial_gate_interpolates(name):
    """Recall a day after a review grows with the gate: gate 0 <= gate 0.5 <= gate 1."""
    model, params, state = _learner(name, 6)
    state, t = _history(model, params, state, 6, 6)
    later = []
    for g in (0.0, 0.25, 0.5, 1.0):
        new = _learn(model, params, state, CURR, 0, True, t + 2.0, np.full(S, g))
        later.append(float(model.mastery(params, new, CURR, jnp.float32(t + 3.0))[0]))
    assert later == sorted(later) and later[-1] > later[0], (name, later)


@pytest.mark.parametrize("name", NAMES)
def test_traits_move_memory_in_the_documented_direction(name):
    """+memory and +speed: better recall 10 days after the same all-correct history;
    +prior: better recall of unseen words."""
    model = STUDENT_MODELS.get(name)
    neutral = Traits.neutral()

    def recall_after(**shift):
        params = model.apply_traits(model.default_params(CURR), neutral._replace(**{k: jnp.float32(v) for k, v in shift.items()}))
        state = model.init(KEY, params, CURR)
        for day in (0.0, 1.0, 3.0):
            state = _learn(model, params, state, CURR, 0, True, day)
        return float(model.mastery(params, state, CURR, jnp.float32(13.0))[0]), float(model.mastery(params, state, CURR, jnp.float32(13.0))[1])

    assert recall_after(memory=1.0)[0] > recall_after()[0] > recall_after(memory=-1.0)[0]
    assert recall_after(speed=1.0)[0] > recall_after(speed=-1.0)[0]
    assert recall_after(prior=1.0)[1] > recall_after()[1] > recall_after(prior=-1.0)[1]


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_1000_learners_equals_python_loop(name):
    model = STUDENT_MODELS.get(name)
    pop = POPULATIONS.get("heterogeneous").arrays()
    rng = np.random.default_rng(0)
    items = jnp.asarray(rng.integers(0, I, 8), jnp.int32)
    times = jnp.asarray(np.cumsum(rng.choice([0.0, 0.01, 1.0, 4.0], 8)), jnp.float32)
    gates = jnp.asarray(rng.uniform(0.3, 1.0, (8, S)), jnp.float32)

    def one(key):
        k1, k2, k3 = jax.random.split(key, 3)
        params = model.sample_params(CURR, sample_traits(k1, pop))
        state = model.init(k2, params, CURR)
        for k, rk in enumerate(jax.random.split(k3, 8)):
            ka, kb = jax.random.split(rk)
            correct = model.respond(ka, params, state, CURR, items[k], times[k])
            state = model.learn(kb, params, state, CURR, items[k], correct, times[k], gates[k])
        return state, model.mastery(params, state, CURR, times[-1] + 2.0), model.p_correct_all(params, state, CURR, times[-1] + 2.0)

    keys = jax.random.split(jax.random.PRNGKey(42), 1000)
    batched = jax.device_get(jax.jit(jax.vmap(one))(keys))
    single = jax.jit(one)
    # one compiled call per learner; compared on the host, all at once (indexing device arrays
    # 1000 times over is what made this slow, not the learners)
    looped = jax.device_get([single(k) for k in keys])
    for b, *refs in zip(jax.tree.leaves(batched), *(jax.tree.leaves(r) for r in looped)):
        np.testing.assert_allclose(b, np.stack(refs), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_same_key_same_learner(name):
    def run(seed):
        model, params, state = _learner(name, seed)
        key = jax.random.PRNGKey(seed)
        t = jnp.float32(0.0)
        for k in range(6):
            key, k1, k2 = jax.random.split(key, 3)
            correct = model.respond(k1, params, state, CURR, jnp.int32(k % I), t)
            state = model.learn(k2, params, state, CURR, jnp.int32(k % I), correct, t, jnp.ones(S))
            t = t + 0.7
        return params, state

    chex.assert_trees_all_equal(run(8), run(8))
    p_a, _ = run(8)
    p_b, _ = run(9)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p_a), jax.tree.leaves(p_b)))


@pytest.mark.parametrize("name", NAMES)
def test_jitted_learn_traces_once(name):
    model, params, state = _learner(name, 0)
    chex.clear_trace_counter()  # chex keys its counter on the source, shared by the parametrized cases

    @jax.jit
    @chex.assert_max_traces(n=1)
    def learn(key, state, item, correct, t, gate):
        return model.learn(key, params, state, CURR, item, correct, t, gate)

    for k in range(4):
        state = learn(jax.random.PRNGKey(k), state, jnp.int32(k), jnp.bool_(k % 2), jnp.float32(k),
                      jnp.full((S,), 0.5 + 0.1 * k, jnp.float32))
    chex.assert_trees_all_equal_dtypes(state, model.init(KEY, params, CURR))
