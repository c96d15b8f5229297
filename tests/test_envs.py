"""Environment contract tests: every registered id passes Gymnasium's and SB3's env
checkers; determinism; batched == single; masks; time; bad input."""
from __future__ import annotations

import chex
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pedagogym  # noqa: F401  (registers the ids)
from pedagogym.envs import ENV_IDS, EnvConfigError, make
from pedagogym.envs.gym_env import PedagogyGymEnv, PedagogyVectorEnv

ALL_IDS = ENV_IDS.names()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_check_env(env_id):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(env_id, horizon=30, render_mode="ansi")
    check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_sb3_check_env(env_id):
    from stable_baselines3.common.env_checker import check_env

    env = gym.make(env_id, horizon=30).unwrapped
    check_env(env, warn=True)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_episode_runs_to_truncation_with_finite_values(env_id):
    env = gym.make(env_id, horizon=25)
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and np.all(np.isfinite(obs))
    total, steps = 0.0, 0
    while True:
        mask = info["action_mask"]
        action = int(np.flatnonzero(mask)[steps % mask.sum()])
        obs, r, term, trunc, info = env.step(action)
        steps += 1
        total += r
        assert np.all(np.isfinite(obs)) and np.isfinite(r)
        if term or trunc:
            break
    assert steps <= 25 and (term or steps == 25)


def _trajectory(env, seed, n=40):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for k in range(n):
        obs, r, term, trunc, _ = env.step(k % env.action_space.n)
        out.append(np.append(obs, r))
        if term or trunc:
            break
    return out


def test_same_seed_same_trajectory_gymnasium():
    env = gym.make("pedagogym/PrereqBKT-v0", curriculum="tiny", horizon=40)
    a, b = _trajectory(env, 7), _trajectory(env, 7)
    c = _trajectory(env, 8)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_batched_env_equals_single_envs_with_same_keys():
    built = make("pedagogym/FlashcardsHLR-v0", n_items=8, horizon=30)
    env, params = built.env, built.params
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    obs_b, st_b = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    step_b = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    step_1 = jax.jit(env.step)
    singles = [env.reset(k, params) for k in keys]
    for t in range(12):
        ks = jax.random.split(jax.random.PRNGKey(100 + t), 5)
        actions = jnp.arange(5, dtype=jnp.int32) * (t + 1) % 8
        obs_b, st_b, r_b, *_ = step_b(ks, st_b, actions, params)
        for i in range(5):
            o, s, r, *_ = step_1(ks[i], singles[i][1], actions[i], params)
            singles[i] = (o, s)
            np.testing.assert_allclose(np.asarray(o), np.asarray(obs_b[i]), rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(float(r), float(r_b[i]), rtol=1e-6, atol=1e-6)


def test_vector_entry_point_runs_n_learners_with_autoreset():
    venv = gym.make_vec("pedagogym/PrereqBKT-v0", num_envs=6, vectorization_mode="vector_entry_point",
                        curriculum="tiny", horizon=5)
    assert isinstance(venv.unwrapped if hasattr(venv, "unwrapped") else venv, PedagogyVectorEnv)
    obs, info = venv.reset(seed=0)
    assert obs.shape[0] == 6 and info["action_mask"].shape == (6, venv.single_action_space.n)
    dones = 0
    for _ in range(12):
        obs, r, term, trunc, info = venv.step(np.zeros(6, np.int64))
        dones += int(np.sum(term | trunc))
        assert np.all(np.isfinite(obs))
    assert dones >= 6 * 2  # horizon 5 -> every learner finished at least twice and restarted


def test_action_mask_locks_items_until_prerequisites_believed():
    built = make("pedagogym/PrereqBKT-v0", curriculum="tiny", unlock_threshold=0.6)
    env, params, c = built.env, built.params, built.curriculum
    _, state = env.reset(jax.random.PRNGKey(0), params)
    mask = np.asarray(env.action_mask(state, params))
    roots = {s.id for s in c.skills if not s.prerequisites}
    for i, item in enumerate(c.items):
        assert mask[i] == all(s in roots for s in item.skills), item.id
    genv = PedagogyGymEnv(built)
    genv.reset(seed=0)
    np.testing.assert_array_equal(genv.action_masks(), mask)


def test_locked_action_presents_nothing():
    built = make("pedagogym/PrereqBKT-v0", curriculum="tiny", unlock_threshold=0.99)
    env, params, c = built.env, built.params, built.curriculum
    _, state = env.reset(jax.random.PRNGKey(0), params)
    locked = int(np.flatnonzero(~np.asarray(env.action_mask(state, params)))[0])
    _, new, _, _, _, info = env.step(jax.random.PRNGKey(1), state, jnp.int32(locked), params)
    assert not bool(info["valid_action"])
    assert float(new.history.item_attempts[locked]) == 0.0 and int(new.history.step) == 1
    chex.assert_trees_all_equal(new.student, state.student)


def test_sessions_and_days_pass():
    built = make("pedagogym/FlashcardsEFC-v0", n_items=5, horizon=300, session_minutes=2.0, population="schedule")
    env, params = built.env, built.params
    _, state = env.reset(jax.random.PRNGKey(2), params)
    step = jax.jit(env.step)
    for t in range(60):
        _, state, *_ = step(jax.random.PRNGKey(t), state, jnp.int32(t % 5), params)
    h = state.history
    seconds_on_task = 60 * 5.0  # >= 5 s per item at these durations
    assert int(h.session) >= int(seconds_on_task // 120) - 1  # 2-minute sessions
    gap = 7.0 / float(state.learner.traits.sessions_per_week)
    assert float(h.t) >= int(h.session) * 0.75 * gap  # each break lasts 7 / sessions_per_week days +/- 25%
    assert float(h.t) <= int(h.session) * 1.25 * gap + 1.0


def test_privileged_observation_adds_latent_state():
    plain, priv = make("pedagogym/PrereqBKT-v0", curriculum="tiny"), make("pedagogym/PrereqBKT-v0", curriculum="tiny", privileged=True)
    n_s = plain.curriculum.n_skills
    assert priv.env.obs_size(priv.params) == plain.env.obs_size(plain.params) + n_s + 1
    assert priv.feature_names[-1] == "true_engagement" and len(priv.feature_names) == priv.env.obs_size(priv.params)
    _, state = priv.env.reset(jax.random.PRNGKey(0), priv.params)
    obs = priv.env.observation(state, priv.params)
    np.testing.assert_allclose(np.asarray(obs[-n_s - 1:-1]), np.asarray(priv.env.true_mastery(state, priv.params)))


def test_feature_names_match_observation_size():
    for env_id in ALL_IDS:
        built = make(env_id)
        assert len(built.feature_names) == built.env.obs_size(built.params)
        assert len(set(built.feature_names)) == len(built.feature_names)


def test_step_compiles_once():
    built = make("pedagogym/PrereqBKT-v0", curriculum="tiny")
    env, params = built.env, built.params
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state, action):
        return env.step(key, state, action, params)

    _, state = env.reset(jax.random.PRNGKey(0), params)
    for t in range(4):
        _, state, *_ = step(jax.random.PRNGKey(t), state, jnp.int32(t % 2))


def test_finished_episode_is_a_noop():
    built = make("pedagogym/PrereqBKT-v0", curriculum="tiny", horizon=2)
    env, params = built.env, built.params
    _, s = env.reset(jax.random.PRNGKey(0), params)
    for t in range(2):
        _, s, *_ = env.step(jax.random.PRNGKey(t), s, jnp.int32(0), params)
    assert bool(s.done)
    _, s2, r, term, trunc, _ = env.step(jax.random.PRNGKey(9), s, jnp.int32(1), params)
    chex.assert_trees_all_equal(s, s2)
    assert float(r) == 0.0 and bool(term | trunc)


@pytest.mark.parametrize("kwargs, needle", [
    ({"horizon": 0}, "horizon"),
    ({"horizon": "long"}, "horizon"),
    ({"unlock_threshold": 1.5}, "unlock_threshold"),
    ({"model": "nope"}, "unknown student_model 'nope'"),
    ({"reward": "nope"}, "unknown reward 'nope'"),
    ({"population": "nope"}, "unknown population 'nope'"),
    ({"curriculum": "no_such_curriculum"}, "no_such_curriculum"),
    ({"colour": "red"}, "unknown env setting(s) ['colour']"),
    ({"n_items": 10_000}, "n_items"),
    ({"engagement": "yes"}, "engagement"),
])
def test_bad_kwargs_give_clear_errors(kwargs, needle):
    with pytest.raises(EnvConfigError, match=None) as err:
        gym.make("pedagogym/PrereqBKT-v0", **kwargs)
    assert needle in str(err.value)
    assert "pedagogym/PrereqBKT-v0" in str(err.value)


def test_broken_curriculum_file_gives_clear_error(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text('name = "b"\n[[skills]]\nid = "a"\n[[items]]\nid = "i1"\nskills = ["zzz"]\n')
    with pytest.raises(EnvConfigError) as err:
        make("pedagogym/PrereqBKT-v0", curriculum=str(bad))
    assert "broken.toml" in str(err.value) and "zzz" in str(err.value)


def test_make_accepts_toml_config(tmp_path):
    from pedagogym.envs import load_env_config

    cfg = tmp_path / "env.toml"
    cfg.write_text('[env]\nmodel = "bkt"\ncurriculum = "tiny"\nhorizon = 12\nengagement = true\n')
    config = load_env_config(cfg, base=ENV_IDS.get("pedagogym/PrereqBKT-v0"))
    assert config.horizon == 12 and config.engagement and config.curriculum == "tiny"
    (tmp_path / "bad.toml").write_text("[env]\nhorizon = -3\n")
    with pytest.raises(EnvConfigError, match="bad.toml: horizon"):
        load_env_config(tmp_path / "bad.toml")


def test_engagement_env_can_drop_out():
    built = make("pedagogym/EngagedBKT-v0", curriculum="tiny", horizon=400)
    from pedagogym.policies.rollout import evaluate, learner_keys
    from pedagogym.policies.base import DesignerOrder

    res = evaluate(built.env, DesignerOrder(repeats=50), 400, built.params, learner_keys(jax.random.PRNGKey(0), 200))
    # hammering one item long after it is easy bores learners: some drop out before the horizon
    assert 0.0 < float(np.mean(res.dropped)) < 1.0
    assert np.all(np.asarray(res.steps)[np.asarray(res.dropped)] < 400)


@pytest.mark.parametrize("n", [1, 5, 200])
def test_batch_step_equals_per_learner_auto_reset(n):
    """The batched auto-reset (re-sampling only finished learners, a few at a time) gives what
    ``vmap(auto_reset_step)`` gives, step after step, while episodes end at different times."""
    from pedagogym.envs import make
    from pedagogym.envs.wrappers import auto_reset_step, batch_reset, batch_step

    built = make("pedagogym/PrereqBKT-v0", curriculum="tiny", horizon=7)
    env, params = built.env, built.params
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    _, state_a = batch_reset(env, keys, params)
    state_b = state_a
    # bitwise equal as users compile them (XLA's default backend optimisation; the suite runs
    # with it off, where the two programs' float rounding differs in the last bit)
    as_users = {"xla_backend_optimization_level": 3}
    fast = jax.jit(lambda k, s, a: batch_step(env, k, s, a, params), compiler_options=as_users)
    slow = jax.jit(jax.vmap(lambda k, s, a: auto_reset_step(env, k, s, a, params)), compiler_options=as_users)
    ended = 0
    for t in range(20):
        k = jax.random.split(jax.random.PRNGKey(100 + t), n)
        actions = jax.random.randint(jax.random.PRNGKey(t), (n,), 0, env.n_actions(params))
        oa, state_a, ra, ta, ua, ia = fast(k, state_a, actions)
        ob, state_b, rb, tb, ub, ib = slow(k, state_b, actions)
        ended += int(np.sum(np.asarray(ta | ua)))
        np.testing.assert_array_equal(np.asarray(oa), np.asarray(ob))
        np.testing.assert_array_equal(np.asarray(ia["action_mask"]), np.asarray(ib["action_mask"]))
        np.testing.assert_array_equal(np.asarray(ia["final_obs"]), np.asarray(ib["final_obs"]))
        for x, y in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert ended >= 2 * n  # every learner's episode ended at least twice (horizon 7, 20 steps)


def test_bench_env_prints_the_documented_json(capsys):
    """`pedagogym bench env --json`: one row per (mode, batch) with env_id, mode, batch and
    steps_per_s; compile time apart; the Gymnasium loop is the speed-up's baseline."""
    import json

    from pedagogym.cli import main

    assert main(["bench", "env", "--json", "--batch", "4", "--steps", "5", "--gym-steps", "20"]) == 0
    rows = json.loads(capsys.readouterr().out)
    gym_row = rows[0]
    assert 0 < gym_row["step_p50_us"] <= gym_row["step_p99_us"] and gym_row["import_pedagogym_s"] > 0
    assert gym_row["import_pedagogym_loads_jax"] is False
    assert [(r["mode"], r["batch"]) for r in rows] == [
        ("gymnasium", 1), ("jax_batched", 4), ("jax_batched_autoreset", 4)]
    for r in rows:
        assert r["env_id"] == "pedagogym/PrereqBKT-v0" and r["steps_per_s"] > 0 and np.isfinite(r["steps_per_s"])
        assert r["speedup_vs_gymnasium"] == pytest.approx(r["steps_per_s"] / rows[0]["steps_per_s"])
    assert all(r["compile_s"] > 0 for r in rows[1:])
