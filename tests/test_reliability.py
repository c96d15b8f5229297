"""Reliability of runs: saved results are keyed by a fingerprint of what produced them (an
edited config or curriculum file recomputes, never resumes stale), output folders are locked
while a run writes them, names that build default paths cannot escape their root, and bad
input gets one line and exit 2 instead of a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pedagogym.errors import PedagogymError
from pedagogym.experiments import ExperimentConfigError, experiment_from_dict, run_experiment
from pedagogym.experiments.cells import cells_of, load_cell
from pedagogym.io import LOCK_NAME, DirLock, confined, is_safe_name

TINY_CURRICULUM = (Path(__file__).resolve().parents[1] / "pedagogym" / "curriculum" / "builtin" / "tiny.toml").read_text()


def _config(horizon: int = 5, curriculum: str = "tiny", name: str = "rel") -> dict:
    return {"name": name, "learners": 6, "seeds": [0], "policies": ["random"],
            "envs": [{"id": "pedagogym/PrereqBKT-v0", "label": "t", "models": ["bkt"],
                      "settings": {"curriculum": curriculum, "horizon": horizon}}]}


def _cell(out: Path, cfg) -> dict:
    (cell,) = cells_of(cfg)
    data = load_cell(out / "cells" / f"{cell.id}.npz", cfg.learners)
    assert data is not None
    return data


# ---- 1. stale results ----------------------------------------------------------------------------
def test_rerun_after_changing_horizon_recomputes_and_says_why(tmp_path):
    first = experiment_from_dict(_config(horizon=5))
    run_experiment(first, tmp_path, progress=False)
    assert int(_cell(tmp_path, first)["horizon"]) == 5
    second = experiment_from_dict(_config(horizon=7))
    manifest = run_experiment(second, tmp_path, progress=False)
    assert manifest["cells_resumed"] == 0 and manifest["cells_computed_this_run"] == 1
    (why,) = manifest["cells_stale_recomputed"].values()
    assert "horizon: 5 -> 7" in why
    data = _cell(tmp_path, second)
    assert int(data["horizon"]) == 7 and len(data["curve_sum"]) == 8
    curves = (tmp_path / "curves.csv").read_text().splitlines()
    assert len(curves) == 1 + 8  # header + steps 0..7 of the one cell: the tables are rebuilt from the new cell
    again = run_experiment(second, tmp_path, progress=False)  # unchanged: resumed, nothing stale
    assert again["cells_resumed"] == 1 and again["cells_stale_recomputed"] == {}


def test_rerun_after_editing_the_curriculum_file_recomputes(tmp_path):
    cur = tmp_path / "cur.toml"
    cur.write_text(TINY_CURRICULUM)
    cfg = experiment_from_dict(_config(curriculum=str(cur)))
    out = tmp_path / "R"
    run_experiment(cfg, out, progress=False)
    cur.write_text(TINY_CURRICULUM.replace("difficulty = -1.0", "difficulty = 2.5"))
    manifest = run_experiment(experiment_from_dict(_config(curriculum=str(cur))), out, progress=False)
    (why,) = manifest["cells_stale_recomputed"].values()
    assert "curriculum file contents" in why
    assert manifest["cells_computed_this_run"] == 1


def test_cell_without_fingerprint_is_recomputed(tmp_path):
    cfg = experiment_from_dict(_config())
    run_experiment(cfg, tmp_path, progress=False)
    (cell,) = cells_of(cfg)
    path = tmp_path / "cells" / f"{cell.id}.npz"
    with np.load(path) as z:
        data = {k: z[k] for k in z.files if k != "fingerprint"}
    np.savez(path, **data)  # as an older pedagogym saved it
    manifest = run_experiment(cfg, tmp_path, progress=False)
    assert "older pedagogym" in manifest["cells_stale_recomputed"][cell.id][0]


# ---- 1b. the output-folder lock -------------------------------------------------------------------
def test_second_writer_of_a_folder_gets_a_clear_error(tmp_path):
    cfg = experiment_from_dict(_config())
    with DirLock(tmp_path, "pedagogym run"):
        with pytest.raises(PedagogymError, match=f"another pedagogym run is writing this folder \\(pid {os.getpid()}\\)"):
            run_experiment(cfg, tmp_path, progress=False)
    assert not (tmp_path / "manifest.json").exists()


def test_lock_of_a_dead_process_is_recovered(tmp_path):
    # a process that took the lock and was killed: the kernel released its flock, its file stays
    code = ("import os, sys; from pedagogym.io import DirLock; "
            "l = DirLock(sys.argv[1]).__enter__(); os.kill(os.getpid(), 9)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == -9
    assert (tmp_path / LOCK_NAME).read_text().strip().isdigit()
    with DirLock(tmp_path):  # taken at once
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    with DirLock(tmp_path):  # and again after a clean release
        pass


def test_live_lock_in_another_process_blocks(tmp_path):
    code = ("import sys, time; from pedagogym.io import DirLock; l = DirLock(sys.argv[1]).__enter__(); "
            "print('locked', flush=True); sys.stdin.readline()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(PedagogymError, match=f"pid {proc.pid}"):
            DirLock(tmp_path).__enter__()
    finally:
        proc.communicate("\n", timeout=30)


# ---- 2. names and paths ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", [".", "..", "x/../../..", "a/b", "a\\b", "", "x" * 129, "é", "a b", "/abs"])
def test_unsafe_names_are_refused(name):
    assert not is_safe_name(name)


@pytest.mark.parametrize("name", ["quickstart", "a.b", "run-1_x", ".hidden", "..."])
def test_safe_names_pass(name):
    assert is_safe_name(name)


@pytest.mark.parametrize("name", [".", "..", "a/b", "x/../../.."])
def test_experiment_name_that_would_escape_results_is_refused(name):
    with pytest.raises(ExperimentConfigError, match="name: expected a name of letters"):
        experiment_from_dict(_config(name=name))


@pytest.mark.parametrize("name", [".", "..", "a/b"])
def test_training_name_that_would_escape_results_is_refused(name):
    from pedagogym.agents import TrainConfigError, train_config_from_dict

    with pytest.raises(TrainConfigError, match="name: expected a name of letters"):
        train_config_from_dict({"name": name, "env": {"id": "pedagogym/PrereqBKT-v0", "curriculum": "tiny"}})


def test_confined_rejects_paths_outside_and_the_root_itself(tmp_path):
    assert confined(tmp_path, "a") == (tmp_path / "a").resolve()
    for bad in ("..", "../x", "a/../..", str(tmp_path.parent / "other")):
        with pytest.raises(PedagogymError, match="outside"):
            confined(tmp_path, bad)
    with pytest.raises(PedagogymError, match="itself"):
        confined(tmp_path, ".")
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(PedagogymError, match="outside"):
        confined(tmp_path, "link/x")


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PEDAGOGYM_JAX_CACHE": "off",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "pedagogym.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_stress_default_output_refuses_a_curriculum_name_with_separators(tmp_path):
    (tmp_path / "c.toml").write_text(TINY_CURRICULUM.replace('name = "tiny"', 'name = "x/../../.."'))
    r = _cli("stress", "c.toml", "--learners", "4", "--horizon", "3", "--quiet", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "cannot name the default output folder" in r.stderr and "--out" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]  # nothing written anywhere


# ---- 4. one-line errors instead of tracebacks -----------------------------------------------------
def test_deeply_nested_toml_is_one_line_exit_2(tmp_path):
    (tmp_path / "deep.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    r = _cli("run", "deep.toml", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "nested too deeply" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_learners_beyond_the_bound_are_refused_before_any_simulation():
    with pytest.raises(ExperimentConfigError, match="learners: expected a positive integer of at most"):
        experiment_from_dict({**_config(), "learners": 2**63 - 1})


def test_huge_total_timesteps_is_a_config_error():
    from pedagogym.agents import TrainConfigError, train_config_from_dict

    env = {"id": "pedagogym/PrereqBKT-v0", "curriculum": "tiny"}
    for total in (10**30, 2**62, 2**50):  # beyond the int bound; 2**50: updates beyond int32
        with pytest.raises(TrainConfigError, match="total_timesteps"):
            train_config_from_dict({"env": env, "total_timesteps": total, "num_envs": 4, "num_steps": 4,
                                    "minibatches": 1})


def test_run_manifest_that_is_a_json_list_is_a_checkpoint_error(tmp_path):
    from pedagogym.agents import CheckpointError, read_run_manifest

    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object, got a list"):
        read_run_manifest(tmp_path)
    with pytest.raises(ExperimentConfigError, match="expected a JSON object"):
        experiment_from_dict({**_config(), "policies": [f"agent:{tmp_path}"]})


def test_ctrl_c_prints_one_line_and_the_resume_hint(tmp_path):
    (tmp_path / "c.toml").write_text(
        'name = "c"\nlearners = 4\npolicies = ["random"]\n[[envs]]\nid = "pedagogym/PrereqBKT-v0"\n'
        'settings = { curriculum = "tiny", horizon = 3 }\n')
    # SIGINT as soon as the run starts: the handler raises KeyboardInterrupt in the main thread
    code = ("import os, signal, sys, threading; from pedagogym import cli; import pedagogym.experiments.runner as r; "
            "orig = r._run_locked\n"
            "def hit(*a, **k):\n    os.kill(os.getpid(), signal.SIGINT)\n    return orig(*a, **k)\n"
            "r._run_locked = hit; sys.exit(cli.main(['run', 'c.toml', '--quiet']))")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PEDAGOGYM_JAX_CACHE": "off",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 130, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("pedagogym run: interrupted; finished cells are saved; rerun the "
                                                 "same command to resume")


# ---- 3. CSV escaping ------------------------------------------------------------------------------
EVIL = ["=cmd|'/c calc'!A1", "+SUM(1)", "-skill", "@x", "\tt", "plain"]


@pytest.mark.parametrize("module", ["pedagogym.experiments.report", "pedagogym.stress.report"])
def test_csv_writers_escape_formula_cells_and_keep_numbers(module, tmp_path):
    import importlib

    import pandas as pd

    write = importlib.import_module(module)._write_csv
    df = pd.DataFrame({"id": EVIL, "x": [-1.5, 2.0, -3.0, 0.0, 1.0, -0.25], "n": [-1, 2, 3, 4, 5, 6],
                       "cat": pd.Categorical(["-a", "b", "b", "b", "b", "b"])})
    write(df, tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv", keep_default_na=False)
    assert list(back["id"]) == ["'=cmd|'/c calc'!A1", "'+SUM(1)", "'-skill", "'@x", "'\tt", "plain"]
    assert list(back["x"]) == [-1.5, 2.0, -3.0, 0.0, 1.0, -0.25] and list(back["n"]) == [-1, 2, 3, 4, 5, 6]
    assert list(back["cat"])[:2] == ["'-a", "b"]
    assert list(df["id"]) == EVIL  # the caller's frame is not modified


def test_csv_safe_frame_returns_a_clean_frame_unchanged():
    import pandas as pd

    from pedagogym.io import csv_safe_frame

    df = pd.DataFrame({"policy": ["random", "oracle"], "v": [-1.0, 1.0]})
    assert csv_safe_frame(df) is df


def test_warning_calibration_and_training_curves_escape_text(tmp_path):
    from pedagogym.agents.run import CURVE_COLUMNS, write_curves
    from pedagogym.warning.report import CALIBRATION_COLUMNS, calibration_csv

    row = {k: 0.5 for k in CALIBRATION_COLUMNS}
    row[CALIBRATION_COLUMNS[0]] = "=HYPERLINK(1)"
    row[CALIBRATION_COLUMNS[-1]] = -0.5
    text = calibration_csv([row])
    assert "'=HYPERLINK(1)" in text and ",-0.5" in text
    write_curves(tmp_path / "c.csv", [{**{k: 1 for k in CURVE_COLUMNS}, "agent": "-x", "mean_episode_return": -2.5}])
    body = (tmp_path / "c.csv").read_text().splitlines()[1]
    assert body.startswith("'-x,") and ",-2.5," in body


def test_training_rerun_over_an_edited_curriculum_file_is_refused_naming_it(tmp_path):
    from pedagogym.agents import CheckpointError, train, train_config_from_dict

    cur = tmp_path / "cur.toml"
    cur.write_text(TINY_CURRICULUM)
    cfg = {"name": "t", "seeds": [0], "total_timesteps": 64, "num_envs": 4, "num_steps": 8, "minibatches": 1,
           "epochs": 1, "hidden": [8], "chunk_updates": 1, "eval_learners": 4,
           "env": {"id": "pedagogym/PrereqBKT-v0", "curriculum": str(cur), "horizon": 5}}
    out = tmp_path / "run"
    train(train_config_from_dict(cfg), out, progress=False, max_chunks=1)
    saved = json.loads((out / "checkpoints" / "ckpt_u0000001.msgpack.json").read_text())
    assert saved["inputs"]["curriculum_file"] is not None  # every checkpoint carries the inputs' fingerprint
    cur.write_text(TINY_CURRICULUM.replace("difficulty = -1.0", "difficulty = 2.5"))
    with pytest.raises(CheckpointError, match="same config over other inputs \\(changed: curriculum file contents"):
        train(train_config_from_dict(cfg), out, progress=False)
    with DirLock(out, "pedagogym train"):  # a second trainer into the same folder
        with pytest.raises(PedagogymError, match="another pedagogym train is writing"):
            train(train_config_from_dict(cfg), out, progress=False, restart=True)
