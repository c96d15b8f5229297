"""Scale-out on one machine: the learner axis split over many devices gives the same numbers
as one device; chunked evaluation and streamed tables give the same results as one call and
in-memory tables."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pedagogym.experiments import experiment_from_dict, run_experiment
from pedagogym.experiments import runner as runner_mod
from pedagogym.experiments.report import write_report
from pedagogym.experiments.cells import cells_of, compute_cell, load_cell

GRID = {
    "name": "scale",
    "learners": 30,
    "seeds": [0, 1],
    "policies": ["random", "mastery"],
    "envs": [{"id": "pedagogym/PrereqBKT-v0", "label": "tiny", "models": ["bkt"],
              "settings": {"curriculum": "tiny", "horizon": 15}}],
}
TABLES = ["summary.csv", "subgroups.csv", "curves.csv", "matrix.csv", "time_to_mastery.csv"]
# Fields whose last float32 bit already depends on the batch size on ONE device (XLA's CPU
# code vectorises the ability estimate's reduction differently by shape): compared to 1e-6.
# Every other field must be bitwise equal. None of them reaches the tables.
SHAPE_ROUNDED = ("ability_se",)


def same(a, b, field) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if field in SHAPE_ROUNDED:
        return a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=0, equal_nan=True)
    if not np.issubdtype(a.dtype, np.inexact):  # ints, bools, the fingerprint string
        return a.shape == b.shape and np.array_equal(a, b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from pedagogym.experiments import experiment_from_dict, run_experiment
    from pedagogym.policies import rollout

    assert jax.device_count() == 4, jax.devices()
    run_experiment(experiment_from_dict(json.loads(sys.argv[1])), sys.argv[2], progress=False)
    assert rollout._evaluate_sharded.cache_info().currsize == 2  # both policies ran the sharded program

    # PPO: 3 agents (padded to 4) split over the devices train exactly as on one device
    import numpy as np
    from pedagogym.agents import train_config_from_dict
    from pedagogym.agents.ppo import AgentBatch, PPOTrainer
    cfg = train_config_from_dict({"name": "shard", "algo": "jax_ppo", "seeds": [0, 1, 2], "total_timesteps": 128,
                                  "num_envs": 8, "num_steps": 8, "hidden": [8], "eval_learners": 8,
                                  "env": {"id": "pedagogym/PrereqBKT-v0", "curriculum": "tiny", "horizon": 10}})
    out = {}
    for name, devices in (("one", jax.devices()[:1]), ("four", None)):
        batch = AgentBatch(PPOTrainer(cfg), devices=devices)
        rs, metrics = batch.run(batch.initial_state(), cfg.num_updates)
        assert len(jax.tree.leaves(rs.params)[0].sharding.device_set) == (1 if devices else 4)
        out[name] = jax.device_get((rs, metrics))
    one, four = jax.tree.leaves(out["one"]), jax.tree.leaves(out["four"])
    assert len(one) == len(four) > 50
    for k, (a, b) in enumerate(zip(one, four)):
        assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True), ("ppo leaf", k)
    print("SHARDED-OK")
""")


def test_four_devices_give_the_same_numbers_as_one(tmp_path):
    """XLA_FLAGS must be set before JAX is imported: a subprocess with 4 forced CPU devices
    runs a grid (30 learners a cell: not a multiple of 4, so padded) whose cell files must
    equal this one-device process's, array by array, and whose tables must be identical;
    there, PPO agents split over the 4 devices must train bitwise as on one device
    (parameters, optimiser moments, env states, metrics)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",  # the run's other XLA flags kept: compiled as this process is
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()}
    out4 = tmp_path / "four"
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, json.dumps(GRID), str(out4)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "SHARDED-OK" in proc.stdout, proc.stderr[-3000:]
    m4 = json.loads((out4 / "manifest.json").read_text())
    assert len(m4["devices"]) == 4
    config = experiment_from_dict(GRID)
    out1 = tmp_path / "one"
    m1 = run_experiment(config, out1, progress=False)
    assert len(m1["devices"]) == 1
    for cell in cells_of(config):
        a = load_cell(out1 / "cells" / f"{cell.id}.npz", config.learners)
        b = load_cell(out4 / "cells" / f"{cell.id}.npz", config.learners)
        assert a is not None and b is not None and set(a) == set(b)
        for k in a:
            assert same(a[k], b[k], k), (cell.id, k)
    for f in TABLES + ["summary.md"]:
        assert (out1 / f).read_bytes() == (out4 / f).read_bytes(), f
    e1, e4 = pd.read_csv(out1 / "episodes.csv"), pd.read_csv(out4 / "episodes.csv")
    assert list(e1.columns) == list(e4.columns) and len(e1) == 2 * 2 * 30
    for col in e1.columns:
        assert e1[col].equals(e4[col]) or (col in SHAPE_ROUNDED and np.allclose(e1[col], e4[col], rtol=1e-5)), col


def test_chunked_cell_equals_one_call():
    config = experiment_from_dict(GRID)
    cell = cells_of(config)[1]
    whole = compute_cell(cell, config.learners, chunk_learners=None)
    chunked = compute_cell(cell, config.learners, chunk_learners=7)  # 30 = 4 x 7 + 2 (a padded last chunk)
    assert set(whole) == set(chunked)
    for k in whole:
        if k.startswith("curve_"):  # sums in another order: equal up to rounding
            np.testing.assert_allclose(chunked[k], whole[k], rtol=1e-12)
        else:
            assert same(whole[k], chunked[k], k), k


@pytest.fixture(scope="module")
def in_memory_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("memory")
    manifest = run_experiment(experiment_from_dict(GRID), out, progress=False, save_episodes=True)
    return out, manifest


def test_streamed_tables_equal_in_memory_tables(in_memory_run, tmp_path):
    out_mem, manifest = in_memory_run
    assert manifest["save_episodes"] and (out_mem / "episodes.csv").exists()
    config = experiment_from_dict(GRID)
    shutil.copytree(out_mem / "cells", tmp_path / "cells")
    write_report(config, tmp_path, cells_of(config), save_episodes=False)
    assert not (tmp_path / "episodes.csv").exists()
    for f in TABLES:
        a, b = pd.read_csv(out_mem / f), pd.read_csv(tmp_path / f)
        assert list(a.columns) == list(b.columns), f
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-12, obj=f)
    s = pd.read_csv(tmp_path / "summary.csv").set_index("policy")
    assert s.loc["mastery", "post_test_n"] == 2 * config.learners  # both seeds pooled
    assert s.loc["mastery", "post_test_diff_vs_random"] != 0  # a real paired difference, not the baseline's 0
    assert (tmp_path / "summary.md").read_text() == (out_mem / "summary.md").read_text()
    # the time-to-mastery table holds every learner once, whatever the mastery step
    ttm = pd.read_csv(tmp_path / "time_to_mastery.csv")
    assert (ttm.groupby("policy")["count"].sum() == 2 * config.learners).all()


def test_large_runs_stream_by_default(in_memory_run, tmp_path, monkeypatch):
    """Over EPISODES_AUTO_LIMIT rows, no episodes.csv unless asked; the tables stay the same."""
    out_mem, _ = in_memory_run
    monkeypatch.setattr(runner_mod, "EPISODES_AUTO_LIMIT", 10)
    config = experiment_from_dict(GRID)
    shutil.copytree(out_mem / "cells", tmp_path / "cells")  # resume: only the report runs
    manifest = run_experiment(config, tmp_path, progress=False)
    assert manifest["complete"] and manifest["cells_computed_this_run"] == 0
    assert manifest["save_episodes"] is False and not (tmp_path / "episodes.csv").exists()
    pd.testing.assert_frame_equal(pd.read_csv(out_mem / "matrix.csv"), pd.read_csv(tmp_path / "matrix.csv"),
                                  check_exact=False, rtol=1e-5)
    manifest = run_experiment(config, tmp_path, progress=False, save_episodes=True)
    assert manifest["save_episodes"] and (tmp_path / "episodes.csv").read_bytes() == (out_mem / "episodes.csv").read_bytes()


def test_cli_rejects_ray_options_without_ray_backend(tmp_path):
    from pedagogym.cli import main

    cfg = Path(__file__).parents[1] / "experiments" / "quickstart.toml"
    assert main(["run", str(cfg), "--out", str(tmp_path / "x"), "--workers", "2"]) == 2
    assert main(["run", str(cfg), "--out", str(tmp_path / "x"), "--backend", "ray", "--workers", "0"]) == 2
    train_cfg = Path(__file__).parents[1] / "experiments" / "train_ppo.toml"
    assert main(["train", str(train_cfg), "--out", str(tmp_path / "x"), "--address", "auto"]) == 2
    assert not (tmp_path / "x").exists()
