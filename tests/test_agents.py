"""Learning agents: JAX PPO learns, masks, vmaps over seeds and hyperparameters, checkpoints,
resumes after a kill; GRU option; SB3 PPO through the same config path; config validation.

One small training config (curriculum "tiny", 30 items, dense reward, prerequisite locks)
is trained twice at module scope: uninterrupted in this process and, at the same time, in a
subprocess that is killed after its first checkpoint and then resumed here.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pedagogym.agents import (AGENTS, ALGOS, CheckpointError, TrainConfigError, TrainedPolicy, load_policy,
                              load_train_config, make_train, train, train_config_from_dict)
from pedagogym.agents.checkpoint import latest_checkpoint, load_pytree, save_pytree, verify
from pedagogym.agents.networks import NEG_LOGIT, ObsNorm, masked_logits
from pedagogym.agents.policy import TorchMLPPolicy
from pedagogym.agents.ppo import AgentBatch, PPOTrainer
from pedagogym.agents.run import read_curves
from pedagogym.policies.rollout import evaluate, learner_keys

REPO = Path(__file__).resolve().parents[1]

TINY_ENV = {"id": "pedagogym/PrereqBKT-v0", "curriculum": "tiny", "horizon": 30, "reward": "mastery_gain",
            "unlock_threshold": 0.5}
TINY = {"name": "tiny_ppo", "algo": "jax_ppo", "seeds": [0, 1, 2, 3], "total_timesteps": 40960, "num_envs": 16,
        "num_steps": 32, "lr": 3e-3, "hidden": [32, 32], "chunk_updates": 20, "eval_learners": 256,
        "sweep": {"lr": [3e-3, 1e-3]}, "env": TINY_ENV}


def _toml(d: dict, top: bool = True) -> str:
    """A tiny TOML writer for the configs above (scalars, lists, one level of tables)."""
    def val(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()
    lines = [f"{k} = {val(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += [f"[{k}]"] + [f"{kk} = {val(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def _write(tmp: Path, d: dict, name: str = "cfg.toml") -> Path:
    p = tmp / name
    p.write_text(_toml(d))
    return p


def _cli_train(cfg_path: Path, out: Path, cache: Path) -> subprocess.Popen:
    """``pedagogym train`` in a subprocess. The runs of this module share a persistent JAX
    compilation cache, so only the first one compiles the training program."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "JAX_COMPILATION_CACHE_DIR": str(cache)}  # XLA_FLAGS (optimisation off) inherited: tests/conftest.py
    return subprocess.Popen([sys.executable, "-m", "pedagogym.agents.cli", "train", str(cfg_path), "--out", str(out),
                             "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Trains TINY uninterrupted ('full'), then again ('killed') with SIGKILL right after its
    first checkpoint; the resumption is left to the test that checks it."""
    tmp = tmp_path_factory.mktemp("agents")
    cfg_path = _write(tmp, TINY)
    cache = tmp / "jax_cache"
    full, killed = tmp / "full", tmp / "killed"
    _finish(_cli_train(cfg_path, full, cache))
    proc = _cli_train(cfg_path, killed, cache)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if list((killed / "checkpoints").glob("ckpt_u*.msgpack.json")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.communicate(timeout=600)
    return {"config": load_train_config(cfg_path), "cfg_path": cfg_path, "cache": cache, "full": full,
            "killed": killed, "returncode": proc.returncode, "killed_rows": read_curves(killed / "curves.csv"),
            "killed_ckpts": sorted(p.name for p in (killed / "checkpoints").glob("*.json"))}


# ---- training --------------------------------------------------------------------------------
def _same_rows(a: list[dict], b: list[dict], ignore: tuple[str, ...] = ("wall_s",)) -> bool:
    """Curve rows equal (NaN == NaN), ignoring wall-clock columns."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if set(x) != set(y):
            return False
        for k in x:
            if k in ignore:
                continue
            vx, vy = x[k], y[k]
            if not (vx == vy or (isinstance(vx, float) and isinstance(vy, float) and np.isnan(vx) and np.isnan(vy))):
                return False
    return True


def test_ppo_improves_over_its_initial_policy(runs):
    """The learning curve's evaluations run the experiment runner's episode code on fixed
    learners; ``evaluate`` with the trained agent (loaded as a Policy) reproduces the final
    one, and the trained agent beats its initial policy on those learners by a margin."""
    config, full = runs["config"], runs["full"]
    built = config.build_env()
    agent = 0  # seed 0, lr 3e-3
    assert config.agents()[agent]["seed"] == 0 and config.agents()[agent]["lr"] == pytest.approx(3e-3)
    rows = read_curves(full / "curves.csv")
    curve = {r["update"]: r for r in rows if r["agent"] == agent}
    initial, final = curve[0]["eval_post_test"], curve[config.num_updates]["eval_post_test"]
    assert final >= initial + 0.05, (initial, final)

    trained = load_policy(f"agent:{full}#{agent}", built)
    assert isinstance(trained, TrainedPolicy)
    keys = learner_keys(jax.random.PRNGKey(config.eval_seed), config.eval_learners)
    res = evaluate(built.env, trained, built.config.horizon, built.params, keys)
    assert float(np.mean(res.post_test)) == pytest.approx(final, abs=0.01)
    assert np.all(np.asarray(res.valid_actions) == 1.0)
    # every lr=3e-3 agent's curve rises too
    for a in config.agents():
        if a["lr"] == pytest.approx(3e-3):
            mine = {r["update"]: r["eval_post_test"] for r in rows if r["agent"] == a["index"]}
            assert mine[config.num_updates] > mine[0], a


def test_masking_never_chooses_a_locked_item(runs):
    config, full = runs["config"], runs["full"]
    rows = read_curves(full / "curves.csv")
    trained_rows = [r for r in rows if r["update"] > 0]
    assert trained_rows and all(r["invalid_actions"] == 0.0 for r in trained_rows)  # sampled training actions
    assert all(r["eval_valid_actions"] == 1.0 for r in rows)  # deterministic evaluation actions
    # the masked categorical gives locked items exactly zero probability
    logits = jax.random.normal(jax.random.PRNGKey(0), (4096, 6)) * 5
    mask = jax.random.bernoulli(jax.random.PRNGKey(1), 0.4, (4096, 6)).at[:, 0].set(True)
    actions = jax.random.categorical(jax.random.PRNGKey(2), masked_logits(logits, mask))
    assert bool(jnp.all(mask[jnp.arange(4096), actions]))
    assert float(jnp.max(jnp.where(mask, -jnp.inf, masked_logits(logits, mask)))) == NEG_LOGIT
    # the deployed policy too, on observations where items are locked
    policy = load_policy(f"agent:{full}#0")
    obs = jax.random.uniform(jax.random.PRNGKey(3), (256, policy.spec.obs_size))
    lock = jax.random.bernoulli(jax.random.PRNGKey(4), 0.5, (256, 6)).at[:, 5].set(True)

    def act(o, m):
        from pedagogym.policies.base import PolicyView

        view = PolicyView(history=None, action_mask=m, obs=o)
        return policy.act(jax.random.PRNGKey(0), policy.init(None), view, None, None)[0]

    chosen = jax.jit(jax.vmap(act))(obs, lock)
    assert bool(jnp.all(lock[jnp.arange(256), chosen]))


def test_vmap_over_seeds_and_hyperparameters_gives_distinct_agents(runs):
    config, full = runs["config"], runs["full"]
    agents = config.agents()
    assert len(agents) == 8 and [a["seed"] for a in agents] == [0, 0, 1, 1, 2, 2, 3, 3]
    policies = [load_policy(f"agent:{full}#{a['index']}") for a in agents]
    flat = [np.concatenate([np.ravel(x) for x in jax.tree.leaves(p.params)]) for p in policies]
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            assert not np.allclose(flat[i], flat[j]), (i, j)
    # same seed, different learning rate: same initial weights (paired), different outcomes
    trainer = PPOTrainer(config)
    init = trainer.initial_params(jax.random.PRNGKey(0))
    init2 = trainer.initial_params(jax.random.PRNGKey(1))
    a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]) for t in (init, init2))
    assert not np.allclose(a, b)
    curves = read_curves(full / "curves.csv")
    final = {r["agent"]: r["eval_post_test"] for r in curves if r["update"] == config.num_updates}
    assert len(set(np.round(list(final.values()), 6))) >= 4


def test_make_train_is_pure_and_jittable_gru_option_runs():
    """``make_train(config) -> train(key)`` with a recurrent policy: one jit, vmapped over two
    seeds, then the trained GRU agent meets learners in the experiment runner's episode code
    (its hidden state is the per-learner policy memory) -- all in one compiled program."""
    cfg = train_config_from_dict({"name": "gru", "recurrent": True, "gru_size": 16, "hidden": [16], "num_envs": 8,
                                  "num_steps": 16, "minibatches": 2, "epochs": 2, "total_timesteps": 256,
                                  "env": TINY_ENV})
    trainer = PPOTrainer(cfg)
    train_fn = make_train(cfg, trainer.built)

    def train_and_evaluate(key):
        state, metrics = train_fn(key)
        return state, metrics, trainer.evaluate(state.params, state.obs_norm, learner_keys(jax.random.PRNGKey(5), 16))

    fn = jax.jit(jax.vmap(train_and_evaluate))  # compiled with the run's optimisation off (tests/conftest.py)
    states, metrics, res = fn(jax.random.split(jax.random.PRNGKey(0), 2))
    assert metrics.policy_loss.shape == (2, cfg.num_updates)
    for leaf in jax.tree.leaves(metrics):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    assert states.carry.shape == (2, 8, 16)
    assert np.all(np.asarray(res.valid_actions) == 1.0) and np.all(np.isfinite(np.asarray(res.post_test)))
    assert not np.allclose(np.asarray(res.post_test[0]), np.asarray(res.post_test[1]))  # two agents
    # the deployed policy: its memory is the GRU state, and it carries information
    params = jax.tree.map(lambda x: np.asarray(x[0]), states.params)
    policy = TrainedPolicy(trainer.spec, params, ObsNorm(*(np.asarray(x[0]) for x in states.obs_norm)), tag="gru")
    assert policy.init(None).shape == (16,)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, trainer.spec.obs_size))
    _, c1 = policy.logits(policy.init(None), x[0])
    _, c2 = policy.logits(c1, x[1])
    assert not np.allclose(np.asarray(c1), np.asarray(c2))


# ---- checkpoints and resumption ------------------------------------------------------------------
def test_resume_after_kill_continues_from_the_checkpoint(runs):
    config, full, killed = runs["config"], runs["full"], runs["killed"]
    assert runs["returncode"] == -signal.SIGKILL
    first = latest_checkpoint(killed / "checkpoints", "ckpt", ".msgpack")
    start = verify(first)["update"]
    assert config.chunk_updates <= start < config.num_updates  # killed mid-run, after a checkpoint
    _finish(_cli_train(runs["cfg_path"], killed, runs["cache"]))  # the same command again
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["complete"] and manifest["resumed_from"] == {"checkpoint": f"checkpoints/{first.name}", "update": start}
    rows = read_curves(killed / "curves.csv")
    assert sorted({r["update"] for r in rows}) == list(range(0, config.num_updates + 1, config.chunk_updates))
    assert len(rows) == config.n_agents * (config.num_updates // config.chunk_updates + 1)  # no duplicates
    # rows up to the checkpoint are the killed run's own
    key = lambda r: (r["agent"], r["update"])  # noqa: E731
    before = sorted((r for r in runs["killed_rows"] if r["update"] <= start), key=key)
    assert before and _same_rows([r for r in rows if r["update"] <= start], before)
    # the state carries everything (weights, optimiser, obs statistics, learners, keys): the
    # resumed run ends exactly where the uninterrupted one does, curves included
    assert _same_rows(read_curves(full / "curves.csv"), rows)
    for k in (0, 5):
        a, b = load_policy(f"agent:{full}#{k}"), load_policy(f"agent:{killed}#{k}")
        for x, y in zip(jax.tree.leaves((a.params, a.obs_norm)), jax.tree.leaves((b.params, b.obs_norm))):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checkpoint_round_trip(runs, tmp_path):
    config, full = runs["config"], runs["full"]
    batch = AgentBatch(PPOTrainer(config))
    template = jax.eval_shape(batch.initial_state)
    ckpt = latest_checkpoint(full / "checkpoints", "ckpt", ".msgpack")
    meta = verify(ckpt, {"env_id": config.env_id, "config_hash": config.hash(), "obs_size": batch.trainer.spec.obs_size})
    assert meta["update"] == config.num_updates and meta["n_actions"] == 6 and "jax" in meta["versions"]
    state = load_pytree(ckpt, template)
    copy = tmp_path / "copy_u0000001.msgpack"
    save_pytree(copy, state, {"update": 1})
    again = load_pytree(copy, template)
    for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(again)):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    # the exported policy holds the same weights as the checkpoint
    policy = load_policy(f"agent:{full}#3")
    for x, y in zip(jax.tree.leaves(policy.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y)[3])
    assert load_policy(f"agent:{full}#best").tag.startswith(str(full.resolve()))


def test_corrupted_or_mismatched_checkpoint_gives_a_clear_error(runs, tmp_path):
    config, full = runs["config"], runs["full"]
    run = tmp_path / "run"
    shutil.copytree(full, run)
    ckpt = latest_checkpoint(run / "checkpoints", "ckpt", ".msgpack")
    blob = bytearray(ckpt.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupted checkpoint") as exc:
        train(config, run, progress=False)  # resuming reads the latest checkpoint
    assert str(exc.value).startswith(f"{ckpt}: ")
    # a manifest that is not JSON
    pol = run / "policy.msgpack"
    (run / "policy.msgpack.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="policy.msgpack.json"):
        load_policy(f"agent:{run}")
    # a payload that decodes to garbage (digest fixed up, so only decoding can fail)
    bad = tmp_path / "bad_u0000001.msgpack"
    save_pytree(bad, {"x": np.zeros(3)}, {})
    bad.write_bytes(b"\x00garbage")
    manifest = json.loads((tmp_path / "bad_u0000001.msgpack.json").read_text())
    from pedagogym.agents.checkpoint import sha256_file

    manifest["sha256"] = sha256_file(bad)
    (tmp_path / "bad_u0000001.msgpack.json").write_text(json.dumps(manifest))
    verify(bad)
    with pytest.raises(CheckpointError, match=f"{bad}.*corrupted"):
        load_pytree(bad, {"x": np.zeros(3)})
    save_pytree(bad, {"x": np.zeros(3, np.float64)}, {})
    with pytest.raises(CheckpointError, match="expects float32"):
        load_pytree(bad, {"x": jax.ShapeDtypeStruct((3,), jnp.float32)})
    # a different config in the same directory names the file and the differing setting
    other = config.replace(env={**TINY_ENV, "horizon": 40})
    with pytest.raises(CheckpointError, match=r"config\.json.*env\.horizon"):
        train(other, run, progress=False)
    # a checkpoint from another env (obs size) is refused, naming the file
    good = latest_checkpoint(full / "checkpoints", "ckpt", ".msgpack")
    with pytest.raises(CheckpointError, match=f"{good}.*obs_size"):
        verify(good, {"obs_size": 999})
    # an agent trained on another env cannot be evaluated on it
    from pedagogym.envs import make

    maths = make("pedagogym/PrereqBKT-v0", horizon=30)
    with pytest.raises(CheckpointError, match="obs size"):
        load_policy(f"agent:{full}", maths)
    with pytest.raises(CheckpointError, match="agent 99"):
        load_policy(f"agent:{full}#99")
    with pytest.raises(CheckpointError, match="manifest.json"):
        load_policy(f"agent:{tmp_path / 'nowhere'}")
    assert pol.exists()


# ---- SB3 -----------------------------------------------------------------------------------------
def test_sb3_ppo_trains_through_the_same_config_path(tmp_path):
    import torch

    torch.set_num_threads(1)
    cfg = load_train_config(_write(tmp_path, {"name": "sb3", "algo": "sb3_ppo", "seeds": [0], "total_timesteps": 512,
                                              "num_envs": 8, "num_steps": 32, "hidden": [32, 32], "chunk_updates": 1,
                                              "eval_learners": 32, "env": TINY_ENV}))
    run = tmp_path / "run"
    manifest = train(cfg, run, progress=False)
    assert manifest["complete"] and manifest["algo"] == "sb3_ppo"
    rows = read_curves(run / "curves.csv")
    assert [r["env_steps"] for r in rows] == [0, 256, 512]
    assert all(np.isfinite(r["eval_post_test"]) and r["eval_valid_actions"] == 1.0 for r in rows)
    assert np.isfinite(rows[-1]["value_loss"])
    policy = load_policy(f"agent:{run}")
    assert isinstance(policy, TorchMLPPolicy)
    # the JAX copy of the torch network chooses what SB3 chooses
    from stable_baselines3 import PPO

    model = PPO.load(latest_checkpoint(run / "checkpoints", "agent000", ".zip"), device="cpu")
    obs = np.random.default_rng(0).uniform(0, 1, (64, model.observation_space.shape[0])).astype(np.float32)
    sb3_actions, _ = model.predict(obs, deterministic=True)
    jax_actions = np.argmax(np.asarray(jax.vmap(policy.logits)(jnp.asarray(obs))), axis=1)
    np.testing.assert_array_equal(sb3_actions, jax_actions)


# ---- configs ---------------------------------------------------------------------------------------
def test_registry_lists_every_algorithm():
    assert tuple(AGENTS.names()) == ALGOS


def test_shipped_training_configs_are_valid():
    paths = sorted((REPO / "experiments").glob("train_*.toml"))
    assert paths
    for p in paths:
        cfg = load_train_config(p)
        assert cfg.algo in ALGOS and cfg.n_agents >= 1


@pytest.mark.parametrize("change, key, match", [
    ({"algo": "ppo2"}, "algo", "expected one of jax_ppo"),
    ({"lr": -1.0}, "lr", r"expected a number in \(0.0, 1.0\]"),
    ({"gamma": 1.5}, "gamma", r"in \[0.0, 1.0\]"),
    ({"num_envs": 0}, "num_envs", "integer >= 1"),
    ({"minibatches": 3}, "minibatches", "divisible"),
    ({"recurrent": "yes"}, "recurrent", "true/false"),
    ({"hidden": []}, "hidden", "non-empty list"),
    ({"bogus": 1}, "bogus", "unknown key"),
    ({"seeds": [0, 0]}, "seeds", "distinct"),
    ({"sweep": {"hidden": [1, 2]}}, "sweep.hidden", "not sweepable"),
    ({"env": {"id": "pedagogym/Nope-v0"}}, "env.id", "unknown env id"),
    ({"env": {**TINY_ENV, "horizon": -3}}, "env", "horizon"),
    ({"total_timesteps": 10}, "total_timesteps", "at least"),
    ({"algo": "sb3_dqn", "recurrent": True}, "recurrent", "needs algo"),
    ({"algo": "sb3_ppo", "sb3": {"n_stepz": 3}}, "sb3", "unknown argument 'n_stepz'"),
    ({"sb3": {"buffer_size": 3}}, "sb3", "only used by the sb3_"),
])
def test_bad_config_names_file_key_and_problem(tmp_path, change, key, match):
    path = _write(tmp_path, {**TINY, **change})
    with pytest.raises(TrainConfigError, match=match) as exc:
        load_train_config(path)
    assert str(exc.value).startswith(f"{path}: {key}")


def test_config_round_trip_and_hash():
    cfg = train_config_from_dict(TINY)
    assert train_config_from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(chunk_updates=20).hash() == cfg.hash()  # logging only
    assert cfg.replace(lr=1e-2).hash() != cfg.hash()
    assert cfg.num_updates == 80 and cfg.n_agents == 8 and cfg.num_chunks == 4


# ---- evaluation beside the hand-written policies ----------------------------------------------------
def test_pedagogym_run_evaluates_a_trained_agent_beside_hand_written_policies(runs, tmp_path):
    from pedagogym.experiments import load_experiment, run_experiment
    from pedagogym.experiments.config import ExperimentConfigError as ConfigError

    full = runs["full"]
    settings = {k: v for k, v in TINY_ENV.items() if k != "id"}
    exp = {"name": "agent_eval", "learners": 64, "seeds": [0], "baseline": "random",
           "policies": ["random", f"agent:{full}#0"], "envs": [{"id": TINY_ENV["id"], "settings": settings}]}
    cfg_path = tmp_path / "exp.toml"
    cfg_path.write_text(_toml({k: v for k, v in exp.items() if k != "envs"})
                        + "[[envs]]\n" + f'id = "{TINY_ENV["id"]}"\n'
                        + "settings = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in settings.items()) + " }\n")
    manifest = run_experiment(load_experiment(cfg_path), tmp_path / "out", progress=False)
    assert manifest["complete"]
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert f"agent:{full}#0" in summary and "random" in summary
    # a missing run directory, and an agent trained on another env, fail before any work
    bad = cfg_path.read_text().replace(f"agent:{full}#0", f"agent:{tmp_path / 'nope'}")
    (tmp_path / "bad.toml").write_text(bad)
    with pytest.raises(ConfigError, match=r"policies\[1\]"):
        load_experiment(tmp_path / "bad.toml")
    other = cfg_path.read_text().replace('curriculum = "tiny"', 'curriculum = "maths_fractions"')
    (tmp_path / "other.toml").write_text(other)
    with pytest.raises(ConfigError, match="obs size"):
        load_experiment(tmp_path / "other.toml")


def test_bench_sb3_times_both_vec_envs_with_the_same_hyperparameters():
    """`pedagogym bench train` times SB3 PPO the usual way (make_vec_env: a DummyVecEnv of
    Gymnasium envs) and through the batched adapter; both learn the given number of steps."""
    from pedagogym.agents.bench import _config, bench_sb3

    cfg = _config("pedagogym/PrereqBKT-v0", {"horizon": 20}, 1, 4, 8, 1)
    rows = {vec: bench_sb3(cfg, sb3_steps=64, num_envs=4, vec=vec) for vec in ("gymnasium", "batched")}
    assert rows["gymnasium"]["algo"] == "sb3_ppo" and rows["gymnasium"]["vec_env"] == "DummyVecEnv"
    assert rows["batched"]["algo"] == "sb3_ppo_batched_env" and rows["batched"]["vec_env"] == "PedagogySB3VecEnv"
    for r in rows.values():
        assert r["env_steps"] == 64 and r["num_envs"] == 4 and r["num_steps"] == 8 and r["env_steps_per_s"] > 0
    with pytest.raises(ValueError, match="vec"):
        bench_sb3(cfg, sb3_steps=64, num_envs=4, vec="subproc")
