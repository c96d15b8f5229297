"""The Reddy, Levine & Dragan (2017) replication: the setting's equations against values
computed by hand from the paper's definitions (github.com/rddy/deeptutor, spaced-repetition.ipynb:
EFCEnv, HLREnv, DASHEnv, StudentEnv._step / _rew), tuning, and the CLI end to end."""
from __future__ import annotations

import csv
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pedagogym.envs.rewards import mean_log_recall, mean_recall
from pedagogym.replicate.setting import SIMULATORS, RecallEnv, Sample, flashcards
from pedagogym.replicate.tutors import GRID, episodes, hand_tutors, tune_and_evaluate, tune_and_evaluate_samples
from pedagogym.student_models.dash import DASH, DASHState
from pedagogym.student_models.efc import EFC, EFCState
from pedagogym.student_models.hlr import HLR, HLRState

CURR = flashcards(2)


def test_efc_recall_hand_computed():
    # exp(-theta (t - t_last) / n) with theta 0.1, n 2, t_last 1, t 5: exp(-0.2)
    m = EFC(p_unseen=0.0)
    params = m.default_params(CURR)._replace(theta=jnp.asarray([0.1, 0.1], jnp.float32))
    state = EFCState(strength=jnp.asarray([2.0, 1.0]), last_review=jnp.asarray([1.0, 1.0]))
    assert float(m.mastery(params, state, CURR, 5.0)[0]) == pytest.approx(0.8187307530779818, rel=1e-6)


def test_hlr_loglinear_hand_computed():
    # strength exp(1 * attempts + 1 * correct + 0 * incorrect + coef): 1 right, 1 wrong, coef 0.5 -> exp(3.5)
    m = SIMULATORS["HLR"].model
    params = m.default_params(CURR)._replace(w_lexeme=jnp.asarray([0.5, 0.0], jnp.float32))
    state = HLRState(n_right=jnp.asarray([1.0, 0.0]), n_wrong=jnp.asarray([1.0, 0.0]), last_review=jnp.asarray([0.0, 0.0]))
    r = m.mastery(params, state, CURR, 10.0)
    assert float(r[0]) == pytest.approx(0.7393574104974239, rel=1e-6)
    assert float(r[1]) == pytest.approx(math.exp(-10.0), rel=1e-5)  # all_seen: an unreviewed trace has strength e^0


def test_dash_hand_computed():
    # 2 windows of 2 reviews; after 2 reviews the current window is 1, so window 0 enters the history:
    # h = 0.25 log(1 + 1) + 0.25 log(1 + 2); m = sigmoid(0 - 1 + h); recall = m / (1 + 1 * (7 - 3)) ** 0.5
    m = DASH(n_windows=2, window_size=2)
    params = m.default_params(CURR)._replace(decay=jnp.asarray([0.5, 0.5]), window_cw=jnp.asarray([0.25, 1.0]),
                                             window_nw=jnp.asarray([0.25, 1.0]))
    state = DASHState(n_correct=jnp.asarray([[1.0, 5.0], [0.0, 0.0]]), n_attempts=jnp.asarray([[2.0, 5.0], [0.0, 0.0]]),
                      last_review=jnp.asarray([3.0, 3.0]), reviews=jnp.asarray(2, jnp.int32))
    assert float(m.mastery(params, state, CURR, 7.0)[0]) == pytest.approx(0.1634058438059101, rel=1e-5)
    # a review counts in the window of the review's own step number (reviews + 1)
    s = m.learn(jax.random.PRNGKey(0), params, m.init(None, params, CURR), CURR, jnp.int32(1), jnp.bool_(True), 4.0, 1.0)
    assert s.n_attempts[1].tolist() == [1.0, 0.0] and s.n_correct[1].tolist() == [1.0, 0.0] and float(s.last_review[1]) == 4.0


def test_rewards_hand_computed():
    p = jnp.asarray([0.5, 1.0])
    assert float(mean_recall(p)) == pytest.approx(0.75)
    assert float(mean_log_recall(p)) == pytest.approx(-0.34657358877997263, rel=1e-6)
    assert np.isfinite(float(mean_log_recall(jnp.zeros(2))))  # eps 1e-9: log(1e-9)


def test_step_order():
    # outcome from recall now; clock + delay; review logged at the new time; reward = mean recall then
    env = RecallEnv(SIMULATORS["EFC"], "L")
    sample = env.sim.draw(jax.random.PRNGKey(3))
    _, s0 = env.reset(jax.random.PRNGKey(1), sample)
    assert float(s0.t) == 5.0 and int(s0.steps) == 1 and float(s0.last.t) == 0.0
    item = jnp.int32((int(s0.last.item) + 1) % env.n_items)
    p_now = float(env.sim.model.p_correct(sample.params, s0.memory, flashcards(30), item, s0.t))
    obs, s1, reward, done, _, _ = env.step(jax.random.PRNGKey(2), s0, item, sample)
    assert float(s1.t) == 10.0 and float(s1.memory.last_review[item]) == 10.0
    assert float(s1.memory.strength[item]) == float(s0.memory.strength[item]) + 1.0
    assert float(s1.last.t) == 5.0 and bool(s1.last.correct) == (float(jax.random.uniform(jax.random.PRNGKey(2))) < p_now)
    assert float(reward) == pytest.approx(float(jnp.mean(env.recall(sample, s1))))
    assert obs.shape == (62,) and float(obs[-1]) == pytest.approx(math.log(6.0)) and not bool(done)


@pytest.mark.parametrize("label", ["Leitner", "Threshold"])
def test_tuning_picks_the_best_grid_value(label):
    env = RecallEnv(SIMULATORS["EFC"], "L", n_steps=20)
    env = RecallEnv(env.sim.__class__("EFC", env.sim.model, n_items=5), "L", n_steps=20)
    hand = next(h for h in hand_tutors(env) if h.label == label)._replace(grid=np.asarray([0.0, 0.3, 0.6, 0.9], np.float32))
    sample = env.sim.draw(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(7)
    best, scores = tune_and_evaluate(env, hand, sample, key, n_eval=3, n_tune=2)
    k_tune, _ = jax.random.split(key)
    keys = jax.random.split(k_tune, 4)
    per_value = [float(jnp.mean(episodes(env, hand.tutor, jnp.float32(g), sample, k, 2))) for g, k in zip(hand.grid, keys)]
    assert len(set(per_value)) > 1  # the small case separates the values
    assert float(best) == float(hand.grid[int(np.argmax(per_value))]) and scores.shape == (3,)
    assert GRID.shape == (100,) and float(GRID[-1]) == pytest.approx(0.99)
    # the study's batched path (one program for both phases, over several samples) gives the same
    # choice and the same episodes as the per-sample reference, on every sample
    samples = jax.vmap(env.sim.draw)(jax.random.split(jax.random.PRNGKey(0), 2))
    keys = jax.random.split(key, 2)
    best_b, scores_b = tune_and_evaluate_samples(env, hand, samples, keys, n_eval=3, n_tune=2)
    for i in range(2):
        b_i, s_i = tune_and_evaluate(env, hand, jax.tree.map(lambda x: x[i], samples), keys[i], n_eval=3, n_tune=2)
        assert float(best_b[i]) == float(b_i)
        np.testing.assert_allclose(scores_b[i], np.asarray(s_i), rtol=1e-6)


def test_quick_end_to_end_writes_every_file(tmp_path):
    # the hand-written tutors only (--no-rl); test_rl_tutor_trains_and_evaluates covers the RL tutor
    from pedagogym.cli import main

    out = tmp_path / "rep"
    code = main(["replicate", "reddy2017", "--out", str(out), "--quick", "--reps", "2", "--episodes", "2", "--no-rl"])
    assert code == 0
    rows = list(csv.DictReader((out / "replication.csv").read_text().splitlines()))
    assert len(rows) == 6 * 5 and set(rows[0]) == {"sim", "tutor", "mean", "ci_low", "ci_high", "pct_vs_random",
                                                     "pct_ci_low", "pct_ci_high", "episodes", "reps"}
    assert [r["sim"] for r in rows[::5]] == ["EFC-L", "EFC-LL", "HLR-L", "HLR-LL", "DASH-L", "DASH-LL"]
    assert all(float(r["pct_vs_random"]) == 0.0 for r in rows if r["tutor"] == "Random")
    assert all(float(r["mean"]) < 0 for r in rows if r["sim"].endswith("-LL"))  # mean log recall
    assert all(0 < float(r["mean"]) <= 1 for r in rows if r["sim"].endswith("-L"))
    man = json.loads((out / "manifest.json").read_text())
    assert man["rl_budget"]["enabled"] is False and man["config"]["reps"] == 2 and man["wall_s"] > 0
    assert (out / "replication.md").read_text().count("\n| ") >= 6
    assert (out / "replication.png").read_bytes()[:4] == b"\x89PNG"


def test_rl_tutor_trains_and_evaluates():
    # a tiny setting: 5 items, 20 steps, 2 PPO updates; scores are episode means of L rewards (in (0, 1])
    from pedagogym.agents.config import TrainConfig
    from pedagogym.replicate.reddy2017 import rl_train_eval

    sim = SIMULATORS["EFC"].__class__("EFC", SIMULATORS["EFC"].model, n_items=5)
    env = RecallEnv(sim, "L", n_steps=20, history=3)
    sample = sim.draw(jax.random.PRNGKey(0))._replace(ll=jnp.asarray(False))
    tc = TrainConfig(name="t", total_timesteps=2 * 4 * 20, num_envs=4, num_steps=20, hidden=(8,), epochs=1, minibatches=2)
    scores, curve = jax.jit(lambda s, k: rl_train_eval(env, tc, s, k, 3))(sample, jax.random.PRNGKey(1))
    assert scores.shape == (3,) and curve.shape == (2,) and env.obs_size() == 3 * 12
    assert bool(jnp.all((scores > 0) & (scores <= 1))) and len(set(np.asarray(scores).tolist())) > 1
    # the same sample with the LL reward (Sample.ll): log recall, negative
    ll_scores, _ = jax.jit(lambda s, k: rl_train_eval(env, tc, s, k, 3))(sample._replace(ll=jnp.asarray(True)),
                                                                       jax.random.PRNGKey(1))
    assert bool(jnp.all(ll_scores < 0))


def test_bad_counts_are_one_line_errors(capsys):
    from pedagogym.cli import main

    assert main(["replicate", "reddy2017", "--out", "/tmp/x", "--reps", "1"]) == 2
    assert "reps must be >= 2" in capsys.readouterr().err
    assert main(["replicate", "nosuch", "--out", "/tmp/x"]) == 2


def test_memorize_clock_hand_computed():
    # Tabibian et al. (2019) eq. (9): u = (1 - m) / sqrt(q). m = [0.5, 0.9], q = 4 -> u = [0.25, 0.05];
    # 2 time units: H = [0.5 + 0.5, 0.1 + 0.1]; overdue (H - E) / u = [(1 - 0.4) / 0.25, (0.2 - 1) / 0.05]
    from pedagogym.policies.memorize import MemorizeClock

    clock = MemorizeClock(hazard=jnp.asarray([0.5, 0.1]), budget=jnp.asarray([0.4, 1.0]))
    recall, q = jnp.asarray([0.5, 0.9]), jnp.float32(4.0)
    clock = clock.elapse(recall, jnp.float32(2.0), q)
    np.testing.assert_allclose(np.asarray(clock.overdue(recall, q)), [2.4, -16.0], rtol=1e-5)
    after = clock.reviewed(jax.random.PRNGKey(0), jnp.int32(0))
    assert float(after.hazard[0]) == 0.0 and float(after.hazard[1]) == pytest.approx(0.2) and float(after.budget[0]) > 0


def test_memorize_policy_on_the_flashcard_env():
    # the registered policy (privileged) picks the valid item most overdue under the true recall
    from pedagogym.envs import make
    from pedagogym.policies import POLICIES, PolicyView

    built = make("pedagogym/FlashcardsEFC-v0", n_items=6, horizon=20)
    env, params = built.env, built.params
    policy = POLICIES.get("memorize")
    _, state = env.reset(jax.random.PRNGKey(1), params)
    ps = policy.init(params)
    for i in range(8):
        mask = env.action_mask(state, params)
        view = PolicyView(history=state.history, action_mask=mask, obs=jnp.zeros((1,)), latent=state)
        s, _ = policy.scores(jax.random.PRNGKey(i), ps, view, params, env)
        a, ps = policy.act(jax.random.PRNGKey(i), ps, view, params, env)
        assert bool(mask[a]) and float(s[a]) == float(jnp.max(jnp.where(mask, s, -jnp.inf)))
        _, state, *_ = env.step(jax.random.PRNGKey(100 + i), state, a, params)
    assert float(ps.n_seen) == 7.0 and bool(ps.started)
