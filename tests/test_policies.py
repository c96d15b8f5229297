"""Hand-written policies: a contract test over every registered policy (valid actions
under prerequisite locks, determinism) and a property test per policy that can fail.

One tiny env (3-skill prerequisite chain, 6 items, BKT) and one set of shapes (200
learners x 40 items) are shared by every rollout so that each policy compiles once.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pedagogym.curriculum.spec import Curriculum, Item, ItemKind, Skill
from pedagogym.envs import make
from pedagogym.envs.config import EnvConfig, build
from pedagogym.envs.core import EnvParams
from pedagogym.envs.gym_env import PedagogyGymEnv
from pedagogym.envs.observations import History, ObserverParams
from pedagogym.policies.rollout import evaluate, learner_keys
from pedagogym.policies import POLICIES, PolicyView, expected_belief_gain, sm2_easiness, sm2_review
from pedagogym.policies.gym import GymPolicyRunner
from pedagogym.policies.schedulers import FSRSSchedState, SM2State
from pedagogym.student_models import fsrs

N_SKILLS, N_ITEMS, HORIZON, N_LEARNERS = 3, 6, 40, 200
SKILLS = tuple(Skill(f"s{k}", f"s{k}", (f"s{k - 1}",) if k else ()) for k in range(N_SKILLS))
ITEMS = tuple(Item(f"i{k}", (f"s{k % N_SKILLS}",)) for k in range(N_ITEMS))
CURRICULUM = Curriculum("chain", SKILLS, ITEMS)  # derived designer order: i0 i3 i1 i4 i2 i5
CURR = CURRICULUM.arrays()
ORDER = [0, 3, 1, 4, 2, 5]
# the registered env machinery (so new EnvParams fields get their defaults), on our own curriculum
BUILT = build(EnvConfig(curriculum="tiny", model="bkt", population="typical", reward="posttest", horizon=HORIZON,
                        session_minutes=20.0, unlock_threshold=0.0))
ENV = BUILT.env


def _f(x):
    return jnp.asarray(x, jnp.float32)


def make_params(unlock: float = 0.0, horizon: int = HORIZON, observer: ObserverParams | None = None) -> EnvParams:
    return BUILT.params._replace(curriculum=CURR, observer=observer or ObserverParams.default(N_SKILLS),
                                 item_available=jnp.ones(N_ITEMS, bool), horizon=jnp.asarray(horizon, jnp.int32),
                                 unlock_threshold=_f(unlock))


PARAMS = make_params()
LOCKED = make_params(unlock=0.6)  # same shapes: rollouts on either share one compilation per policy
KEYS = learner_keys(jax.random.PRNGKey(0), N_LEARNERS)


def history(**fields) -> History:
    return History.initial(CURR, PARAMS.observer)._replace(**{k: jnp.asarray(v) for k, v in fields.items()})


def view(h: History, mask=None) -> PolicyView:
    mask = jnp.ones(N_ITEMS, bool) if mask is None else jnp.asarray(mask)
    return PolicyView(history=h, action_mask=mask, obs=jnp.zeros((1,), jnp.float32))


def act(policy, h, mask=None, pstate=None, key=0, params=PARAMS):
    pstate = policy.init(params) if pstate is None else pstate
    a, ps = policy.act(jax.random.PRNGKey(key), pstate, view(h, mask), params, ENV)
    return int(a), ps


def answered(h: History, item: int, correct: bool, t: float, rt: float = 30.0) -> History:
    """``h`` after one logged presentation of ``item`` at day ``t`` (the clock left at t)."""
    h = h.record(CURR, PARAMS.observer, jnp.int32(item), jnp.asarray(correct), jnp.asarray(True), _f(rt), _f(t))
    return h._replace(t=_f(t))


# ---- contract: every registered policy -----------------------------------------------------
def test_registry_has_the_hand_written_policies():
    assert set(POLICIES.names()) >= {"random", "designer", "round_robin", "mastery", "leitner", "sm2",
                                     "fsrs_scheduler", "greedy_gain", "zpdes", "greedy_oracle", "upper_bound",
                                     "threshold", "belief_planner"}
    assert all(POLICIES.get(n).name == n for n in POLICIES.names())
    assert POLICIES.get("upper_bound").privileged and POLICIES.get("greedy_oracle").privileged
    assert not POLICIES.get("mastery").privileged and not POLICIES.get("belief_planner").privileged


def test_the_locked_env_locks_items():
    mask = jax.jit(lambda k: ENV.action_mask(ENV.reset(k, LOCKED)[1], LOCKED))(jax.random.PRNGKey(0))
    assert np.asarray(mask).any() and not np.asarray(mask).all()


@functools.cache
def _all_rollouts():
    """Every registered policy's ``evaluate`` in ONE jitted call (each ``evaluate`` is inlined:
    one XLA compilation instead of one per policy, which is most of this file's run time)."""
    names = tuple(POLICIES.names())
    run = jax.jit(lambda params, keys: {n: evaluate(ENV, POLICIES.get(n), HORIZON, params, keys) for n in names})
    return run(LOCKED, KEYS), run(LOCKED, KEYS), run(PARAMS, KEYS)


@pytest.mark.parametrize("name", POLICIES.names())
def test_policy_contract(name):
    locked, again, _ = _all_rollouts()
    res = locked[name]
    np.testing.assert_array_equal(np.asarray(res.valid_actions), 1.0)  # never a locked item
    assert res.final_mastery.shape == (N_LEARNERS,) and np.all(np.isfinite(np.asarray(res.post_test)))
    assert np.all(np.asarray(res.steps) >= 1)
    for a, b in zip(jax.tree.leaves(res), jax.tree.leaves(again[name])):  # same keys, same episodes
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    policy = POLICIES.get(name)
    twin = copy.copy(policy)
    assert hash(policy) == hash(twin) and policy == twin  # hashable by value: a valid static jit argument


def _mean_final_mastery(name: str) -> float:
    return float(np.mean(np.asarray(_all_rollouts()[2][name].final_mastery)))


@pytest.mark.parametrize("name", ["greedy_oracle", "upper_bound"])
def test_privileged_greedy_beats_random_on_a_prerequisite_chain(name):
    assert _mean_final_mastery(name) > _mean_final_mastery("random") + 0.1


@pytest.mark.parametrize("locked", [False, True])
def test_upper_bound_is_an_upper_bound_of_the_hand_written_policies(locked):
    res = _all_rollouts()[0 if locked else 2]
    mean = {n: float(np.mean(np.asarray(r.post_test))) for n, r in res.items()
            if n == "upper_bound" or not POLICIES.get(n).privileged}  # the bound is over deployable policies
    assert mean["upper_bound"] == max(mean.values()), mean


def test_mastery_beats_random_on_a_prerequisite_chain():
    assert _mean_final_mastery("mastery") > _mean_final_mastery("random") + 0.05


# ---- designer order and round robin --------------------------------------------------------
def test_designer_follows_the_designer_order_with_repeats():
    policy = POLICIES.get("designer")
    got = [act(policy, history(step=k))[0] for k in range(2 * N_ITEMS + 2)]
    want = [ORDER[(k // policy.repeats) % N_ITEMS] for k in range(2 * N_ITEMS + 2)]
    assert got == want
    # a locked item is skipped for the next one in order
    mask = np.ones(N_ITEMS, bool)
    mask[ORDER[0]] = False
    assert act(policy, history(step=0), mask)[0] == ORDER[1]


def test_round_robin_cycles_skills_in_topological_order_least_practised_item():
    policy = POLICIES.get("round_robin")
    attempts = np.zeros(N_ITEMS, np.float32)
    attempts[[0, 1, 2]] = 1.0  # i3, i4, i5 are the least practised items of s0, s1, s2
    for step in range(6):
        a, _ = act(policy, history(step=step, item_attempts=attempts), key=step)
        assert CURR.q_matrix[a, step % N_SKILLS] == 1 and a in (3, 4, 5)


# ---- mastery threshold ---------------------------------------------------------------------
def test_mastery_never_presents_mastered_skills_while_unmastered_unlocked_ones_remain():
    policy = POLICIES.get("mastery")
    rng = np.random.default_rng(0)
    belief = jnp.asarray(rng.choice([0.3, 0.7, 0.96, 0.99], size=(400, N_SKILLS)), jnp.float32)
    attempts = jnp.asarray(rng.integers(0, 5, size=(400, N_ITEMS)), jnp.float32)

    @jax.jit
    def choose(b, n):
        h = history()._replace(belief=b, item_attempts=n)
        _, state = ENV.reset(jax.random.PRNGKey(0), LOCKED)
        mask = ENV.action_mask(state._replace(history=h), LOCKED)
        return policy.act(jax.random.PRNGKey(0), policy.init(LOCKED), view(h, mask), LOCKED, ENV)[0], mask

    actions, masks = jax.vmap(choose)(belief, attempts)
    actions, masks, belief, attempts = map(np.asarray, (actions, masks, belief, attempts))
    q = np.asarray(CURR.q_matrix) > 0
    for a, m, b, n in zip(actions, masks, belief, attempts):
        assert m[a]
        unmastered_valid = [i for i in range(N_ITEMS) if m[i] and b[q[i]].min() < 0.95]
        if unmastered_valid:
            assert a in unmastered_valid
            s = int(np.flatnonzero(q[a])[0])
            # the first unmastered skill along the chain whose prerequisites are mastered, if valid
            firsts = [k for k in range(N_SKILLS) if b[k] < 0.95 and (k == 0 or b[k - 1] >= 0.95)
                      and any(m[i] and q[i, k] for i in range(N_ITEMS))]
            if firsts:
                assert s == firsts[0]
                same = [i for i in range(N_ITEMS) if m[i] and q[i, s]]
                assert n[a] == min(n[i] for i in same)  # least-practised item of the skill
        else:  # everything mastered: review the weakest skill
            assert b[q[a]].min() == min(b[k] for k in range(N_SKILLS) if any(m[i] and q[i, k] for i in range(N_ITEMS)))


def test_mastery_threshold_is_a_constructor_argument():
    lenient = type(POLICIES.get("mastery"))(threshold=0.6)
    h = history(belief=[0.7, 0.2, 0.2])
    assert CURR.q_matrix[act(lenient, h)[0], 1] == 1  # s0 counts as mastered at 0.6
    assert CURR.q_matrix[act(POLICIES.get("mastery"), h)[0], 0] == 1
    with pytest.raises(ValueError, match="threshold"):
        type(lenient)(threshold=1.5)


# ---- Leitner ---------------------------------------------------------------------------------
def test_leitner_moves_a_correct_card_up_and_a_wrong_card_down():
    policy = POLICIES.get("leitner")
    ps = policy.init(PARAMS)._replace(box=jnp.asarray([2, 2, 4, 0, 0, 0], jnp.int32),
                                      introduced=jnp.asarray([True, True, True, False, False, False]))
    h = answered(history(), 0, True, t=3.0)
    _, ps = act(policy, h, pstate=ps)
    assert int(ps.box[0]) == 3 and math.isclose(float(ps.due[0]), 3.0 + 2.0 ** 3)
    h = answered(h, 1, False, t=3.5)
    _, ps = act(policy, h, pstate=ps)
    assert int(ps.box[1]) == 0 and math.isclose(float(ps.due[1]), 3.5 + 1.0)
    h = answered(h, 2, True, t=4.0)  # a card in the last box stays there
    _, ps = act(policy, h, pstate=ps)
    assert int(ps.box[2]) == 4
    _, ps2 = act(policy, h, pstate=ps)  # asking again folds nothing in twice
    np.testing.assert_array_equal(np.asarray(ps2.box), np.asarray(ps.box))
    # the variant that demotes one box
    gentle = type(policy)(demote_to_zero=False)
    ps = gentle.init(PARAMS)._replace(box=jnp.asarray([3, 0, 0, 0, 0, 0], jnp.int32))
    _, ps = act(gentle, answered(history(), 0, False, t=1.0), pstate=ps)
    assert int(ps.box[0]) == 2


def test_leitner_reviews_the_most_overdue_card_else_introduces_a_new_one():
    policy = POLICIES.get("leitner")
    intro = jnp.asarray([True, True, True, False, False, False])
    ps = policy.init(PARAMS)._replace(introduced=intro, due=_f([5.0, 2.0, 9.0, 0, 0, 0]),
                                      box=jnp.asarray([1, 0, 3, 0, 0, 0], jnp.int32))
    assert act(policy, history(t=6.0), pstate=ps)[0] == 1  # cards 0, 1 due; 1 is 4 days overdue
    assert act(policy, history(t=6.0), mask=[True, False] + [True] * 4, pstate=ps)[0] == 0
    assert act(policy, history(t=1.0), pstate=ps)[0] == 3  # none due: the next new card in designer order
    ps_all = ps._replace(introduced=jnp.ones(N_ITEMS, bool), due=_f([5.0, 2.0, 9.0, 3.0, 8.0, 7.0]))
    assert act(policy, history(t=1.0), pstate=ps_all)[0] == 1  # nothing due or new: due soonest


# ---- SM-2 ----------------------------------------------------------------------------------
def test_sm2_easiness_matches_wozniak_1990():
    # Wozniak (1990), SM-2: EF' = EF + (0.1 - (5 - q) * (0.08 + (5 - q) * 0.02)), EF >= 1.3.
    # q = 5: 2.5 + 0.1 = 2.6;  q = 4: 2.5 + (0.1 - 1 * 0.10) = 2.5;
    # q = 3: 2.5 + (0.1 - 2 * 0.12) = 2.36;  q = 1: 2.5 + (0.1 - 4 * 0.16) = 1.96;
    # q = 0 from 1.5: 1.5 + (0.1 - 5 * 0.18) = 0.7 -> floored at 1.3.
    for ef, q, want in ((2.5, 5, 2.6), (2.5, 4, 2.5), (2.5, 3, 2.36), (2.5, 1, 1.96), (1.5, 0, 1.3)):
        assert math.isclose(float(sm2_easiness(_f(ef), q)), want, abs_tol=1e-6), (ef, q)


def test_sm2_intervals_are_1_6_then_interval_times_ef_and_a_lapse_restarts():
    ef, n, i = _f(2.5), jnp.int32(0), _f(0.0)
    ef, n, i = sm2_review(ef, n, i, 4)
    assert (int(n), float(i)) == (1, 1.0)
    ef, n, i = sm2_review(ef, n, i, 4)
    assert (int(n), float(i)) == (2, 6.0)
    ef, n, i = sm2_review(ef, n, i, 3)  # I(3) = ceil(6 * 2.5) = 15, then EF -> 2.36
    assert (int(n), float(i)) == (3, 15.0) and math.isclose(float(ef), 2.36, abs_tol=1e-6)
    ef, n, i = sm2_review(ef, n, i, 5)  # I(4) = ceil(15 * 2.36) = ceil(35.4) = 36
    assert (int(n), float(i)) == (4, 36.0) and math.isclose(float(ef), 2.46, abs_tol=1e-6)
    ef, n, i = sm2_review(ef, n, i, 1)  # a lapse: n = 0, I = 1, EF still updated
    assert (int(n), float(i)) == (0, 1.0) and math.isclose(float(ef), 2.46 - 0.54, abs_tol=1e-6)


def test_sm2_policy_grades_responses_and_picks_the_most_overdue_item():
    policy = POLICIES.get("sm2")
    h = answered(history(), 0, True, t=2.0, rt=5.0)  # fast (< half of 60 s): q = 5
    _, ps = act(policy, h)
    assert math.isclose(float(ps.ef[0]), 2.6, abs_tol=1e-6) and float(ps.due[0]) == 3.0 and not bool(ps.repeat[0])
    h = answered(h, 3, True, t=2.1, rt=50.0)  # slow: q = 4
    _, ps = act(policy, h, pstate=ps)
    assert math.isclose(float(ps.ef[3]), 2.5, abs_tol=1e-6)
    h = answered(h, 1, False, t=2.2)  # wrong: q = 1, repeat today
    a, ps = act(policy, h, pstate=ps)
    assert math.isclose(float(ps.ef[1]), 1.96, abs_tol=1e-6) and bool(ps.repeat[1]) and int(ps.reps[1]) == 0
    assert a == 4  # the failed item waits one turn (not right after itself): a new item
    assert act(policy, h._replace(last_item=jnp.int32(3)), pstate=ps)[0] == 1  # then the same-day repeat
    state = SM2State(ef=_f([2.5] * 6), reps=jnp.ones(6, jnp.int32), interval=_f([1.0] * 6),
                     due=_f([4.0, 3.0, 9.0, 5.5, 9.0, 9.0]), repeat=jnp.zeros(6, bool), introduced=jnp.ones(6, bool),
                     n_seen=_f(0.0))
    assert act(policy, history(t=6.0), pstate=state)[0] == 1  # 3 days overdue beats 2 and 0.5
    assert act(policy, history(t=1.0), pstate=state)[0] == 1  # nothing due: the one due soonest


# ---- FSRS scheduler --------------------------------------------------------------------------
def test_fsrs_scheduler_picks_the_lowest_retrievability_due_item():
    policy = POLICIES.get("fsrs_scheduler")
    stab = _f([1.0, 10.0, 3.0, 0.5, 2.0, 2.0])
    last = _f([0.0, 0.0, 0.0, 5.0, 3.0, 0.0])
    reviewed = jnp.asarray([True, True, True, True, True, False])
    ps = FSRSSchedState(stability=stab, difficulty=_f([5.0] * 6), last_review=last, reviewed=reviewed, n_seen=_f(0.0))
    t = 6.0
    r = np.asarray(fsrs.retrievability(t - last, stab))
    due = [i for i in range(5) if r[i] < 0.9]
    assert 1 not in due and len(due) >= 3  # stability 10, 6 days: not due
    want = min(due, key=lambda i: r[i])
    assert act(policy, history(t=t), pstate=ps)[0] == want
    mask = np.ones(N_ITEMS, bool)
    mask[want] = False
    assert act(policy, history(t=t), mask=mask, pstate=ps)[0] == min((i for i in due if i != want), key=lambda i: r[i])
    # nothing due: the new item; nothing new either: the lowest retrievability
    assert act(policy, history(t=0.01), pstate=ps._replace(last_review=_f([0.0] * 6)))[0] == 5
    ps_all = ps._replace(reviewed=jnp.ones(6, bool), last_review=_f([0.0] * 6))
    assert act(policy, history(t=0.05), pstate=ps_all)[0] == 3  # smallest stability


def test_fsrs_scheduler_updates_memory_states_from_responses():
    policy = POLICIES.get("fsrs_scheduler")
    h = answered(history(), 2, True, t=1.0)
    _, ps = act(policy, h)
    assert math.isclose(float(ps.stability[2]), fsrs.DEFAULT_PARAMETERS[2], rel_tol=1e-6)  # S0(Good) = w2
    assert math.isclose(float(ps.difficulty[2]), float(fsrs.init_difficulty(3)), rel_tol=1e-6)
    h = answered(h, 2, False, t=4.0)  # a lapse three days later
    _, ps2 = act(policy, h, pstate=ps)
    s_want, d_want = fsrs.review(ps.stability[2], ps.difficulty[2], True, fsrs.AGAIN, 3.0)
    assert math.isclose(float(ps2.stability[2]), float(s_want), rel_tol=1e-5)
    assert math.isclose(float(ps2.difficulty[2]), float(d_want), rel_tol=1e-5)
    assert float(ps2.stability[2]) < float(ps.stability[2])


# ---- greedy expected belief gain --------------------------------------------------------------
def test_greedy_gain_picks_the_largest_expected_belief_gain():
    items = (Item("a", ("s0",)), Item("b", ("s1",)), Item("c", ("s2",)), Item("ab", ("s0", "s1")),
             Item("bc", ("s1", "s2")), Item("video", ("s2",), kind=ItemKind.VIDEO))
    curr = Curriculum("g", SKILLS, items).arrays()
    obs = ObserverParams(p_init=_f([0.2] * 3), p_learn=_f([0.3, 0.05, 0.2]), p_forget=_f([0.0, 0.02, 0.05]),
                         p_guess=_f([0.2, 0.25, 0.1]), p_slip=_f([0.1, 0.05, 0.2]))
    params = make_params(observer=obs)._replace(curriculum=curr)
    belief = np.array([0.6, 0.2, 0.4])

    def hand(skills, observed=True):  # expected summed belief after minus before, written out
        total = 0.0
        for k in skills:
            b, gk, sk = belief[k], float(obs.p_guess[k]), float(obs.p_slip[k])
            p_c = b * (1 - sk) + (1 - b) * gk
            post_c = b * (1 - sk) / (b * (1 - sk) + (1 - b) * gk)
            post_w = b * sk / (b * sk + (1 - b) * (1 - gk))
            cond = p_c * post_c + (1 - p_c) * post_w if observed else b
            after = cond * (1 - float(obs.p_forget[k])) + (1 - cond) * float(obs.p_learn[k])
            total += after - b
        return total

    want = np.array([hand([0]), hand([1]), hand([2]), hand([0, 1]), hand([1, 2]), hand([2], observed=False)])
    got = np.asarray(expected_belief_gain(_f(belief), obs, curr))
    np.testing.assert_allclose(got, want, atol=1e-6)
    # the posterior is a martingale: the gain is the transition's, (1 - b) learn - b forget
    assert math.isclose(want[0], (1 - 0.6) * 0.3, abs_tol=1e-6)
    assert math.isclose(want[4], 0.8 * 0.05 - 0.2 * 0.02 + 0.6 * 0.2 - 0.4 * 0.05, abs_tol=1e-6)
    policy = POLICIES.get("greedy_gain")
    h = History.initial(curr, obs)._replace(belief=_f(belief))
    pv = PolicyView(history=h, action_mask=jnp.ones(6, bool), obs=jnp.zeros(1))
    a, _ = policy.act(jax.random.PRNGKey(0), policy.init(params), pv, params, ENV)
    assert int(a) == int(np.argmax(want)) == 3
    mask = np.ones(6, bool)
    mask[3] = False
    a, _ = policy.act(jax.random.PRNGKey(0), policy.init(params), pv._replace(action_mask=jnp.asarray(mask)), params, ENV)
    assert int(a) == int(np.argmax(np.where(mask, want, -np.inf)))


# ---- ZPDES -------------------------------------------------------------------------------------
def _zpdes_state(policy):
    ps = policy.init(PARAMS)
    w = policy.window
    outcomes = np.zeros((N_ITEMS, w), np.float32)
    count = np.zeros(N_ITEMS, np.int32)
    outcomes[0], count[0] = 1.0, w  # i0 (s0) mastered: leaves the ZPD
    outcomes[3, :4], count[3] = [1, 1, 0, 1], 4  # i3 (s0) in progress; s0 at 9/10 opens s1
    weight = np.array([1.0, 0.5, 1.0, 3.0, 0.2, 1.0], np.float32)
    return ps._replace(outcomes=jnp.asarray(outcomes), count=jnp.asarray(count), weight=jnp.asarray(weight))


def test_zpdes_only_samples_activities_in_the_zpd():
    policy = POLICIES.get("zpdes")
    ps = _zpdes_state(policy)
    zone = np.asarray(policy.zpd(ps, PARAMS))
    assert zone.tolist() == [False, True, False, True, True, False]  # s2 locked, i0 mastered
    keys = jax.random.split(jax.random.PRNGKey(1), 2000)
    h = history(item_attempts=np.asarray(ps.count, np.float32))
    sample = jax.jit(jax.vmap(lambda k, m: policy.act(k, ps, view(h, m), PARAMS, ENV)[0], in_axes=(0, None)))
    actions = np.asarray(sample(keys, jnp.ones(N_ITEMS, bool)))
    assert set(actions.tolist()) == {1, 3, 4}
    p = np.asarray(policy.probabilities(ps, PARAMS, jnp.ones(N_ITEMS, bool)))
    g = policy.gamma
    want = (1 - g) * np.array([0, 0.5, 0, 3.0, 0.2, 0]) / 3.7 + g / 3 * zone
    np.testing.assert_allclose(p, want, atol=1e-6)
    freq = np.bincount(actions, minlength=N_ITEMS) / len(actions)
    np.testing.assert_allclose(freq, want, atol=0.04)  # sampling proportional to the weights
    # the mask is respected: without i3 only i1 and i4 remain
    mask = jnp.asarray([True, True, True, False, True, True])
    assert set(np.asarray(sample(keys[:300], mask)).tolist()) == {1, 4}


def test_zpdes_rewards_learning_progress():
    policy = POLICIES.get("zpdes")
    ps = _zpdes_state(policy)
    # i4 answered wrong, wrong, then right, right: progress raises its weight
    h = history()
    for k, ok in enumerate([False, False, True, True]):
        h = answered(h, 4, ok, t=0.01 * k)
        _, ps = act(policy, h, pstate=ps)
    assert int(ps.count[4]) == 4 and np.asarray(ps.outcomes[4, :4]).tolist() == [1, 1, 0, 0]
    assert float(ps.weight[4]) > 1.0  # beta * w + eta * (1 - 0) after the last answer
    assert math.isclose(float(policy.progress(ps.outcomes[4], ps.count[4])), 1.0)


# ---- privileged policies -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["greedy_oracle", "upper_bound", "threshold"])
def test_privileged_policies_need_the_latent_state(name):
    with pytest.raises(ValueError, match="privileged"):
        act(POLICIES.get(name), history())


@pytest.mark.parametrize("thr", [0.3, 0.8])
def test_threshold_presents_the_item_whose_true_recall_is_closest_to_the_threshold(thr):
    """Reddy, Levine & Dragan (2017)'s Threshold baseline, on EFC flashcards mid-episode."""
    from pedagogym.policies.greedy import RecallThreshold

    built = make("pedagogym/FlashcardsEFC-v0", n_items=8, horizon=30)
    env, params = built.env, built.params
    _, state = env.reset(jax.random.PRNGKey(1), params)
    for i, a in enumerate([0, 1, 2, 0, 3, 1, 0]):
        _, state, *_ = env.step(jax.random.PRNGKey(10 + i), state, jnp.int32(a), params)
    curr, t = params.curriculum, state.history.t
    p = np.asarray([env.learner.p_correct(state.learner, state.student, curr, jnp.int32(i), t) for i in range(8)])
    assert p.max() - p.min() > 0.3  # a mix of practised and new items
    mask = np.asarray(env.action_mask(state, params))
    policy = RecallThreshold(thr)
    v = PolicyView(history=state.history, action_mask=jnp.asarray(mask), obs=jnp.zeros((1,)), latent=state)
    a, _ = policy.act(jax.random.PRNGKey(0), policy.init(params), v, params, env)
    assert mask[int(a)]
    assert math.isclose(abs(p[int(a)] - thr), np.min(np.abs(p[mask] - thr)), abs_tol=1e-6), (int(a), p)


# ---- the Gymnasium loop --------------------------------------------------------------------
def test_gym_runner_acts_validly_and_resets_memory_with_the_env():
    built = dataclasses.replace(BUILT, params=make_params(unlock=0.6, horizon=12), curriculum=CURRICULUM)
    env = PedagogyGymEnv(built)
    runner = GymPolicyRunner(POLICIES.get("leitner"), seed=0)

    def episode(seed):
        env.reset(seed=seed)
        actions = []
        while True:
            mask = env.action_masks()
            a = runner.act(env)
            assert mask[a]
            actions.append(a)
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                return actions

    first = episode(3)
    # mid-episode, the runner's Leitner memory follows the env's history: one card introduced per item presented
    env.reset(seed=5)
    for _ in range(4):
        if any(env.step(runner.act(env))[2:4]):
            break
    runner.act(env)
    presented = np.asarray(env.learner_state().history.item_attempts) > 0
    assert presented.any()
    np.testing.assert_array_equal(np.asarray(runner._pstate.introduced), presented)
    assert episode(3) == first  # a new episode starts from a fresh memory: same learner, same actions
    # a privileged policy reads the env's latent state
    out = GymPolicyRunner(POLICIES.get("upper_bound")).run_episode(env, seed=4)
    assert 1 <= out["steps"] <= 12 and np.isfinite(out["total_reward"])
