"""The experiment runner: files written, resumption after interruption, exact
reproducibility, statistics, and clear errors for bad configs before any work starts."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pedagogym.experiments import ExperimentConfigError, experiment_from_dict, load_experiment, run_experiment
from pedagogym.experiments.report import summary_table

SMALL = {
    "name": "small",
    "learners": 40,
    "seeds": [0, 1],
    "policies": ["random", "designer", "mastery"],
    "envs": [{"id": "pedagogym/PrereqBKT-v0", "label": "tiny", "models": ["bkt", "pfa"],
              "settings": {"curriculum": "tiny", "horizon": 20}}],
}
FILES = ["episodes.csv", "summary.csv", "summary.md", "curves.csv", "curves.png", "subgroups.csv", "subgroups.png",
         "time_to_mastery.png", "matrix.csv", "matrix.png", "manifest.json"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    manifest = run_experiment(experiment_from_dict(SMALL), out, progress=False)
    return out, manifest


def test_run_writes_every_file(full_run):
    out, manifest = full_run
    for f in FILES:
        assert (out / f).stat().st_size > 0, f
    assert manifest["complete"] and manifest["cells_total"] == 2 * 3 * 2
    ep = pd.read_csv(out / "episodes.csv")
    assert len(ep) == 2 * 3 * 2 * 40
    for col in ["env", "student_model", "population", "subgroup", "policy", "seed", "learner", "final_mastery",
                "post_test", "mean_recall", "steps_to_mastery", "dropped", "time_spent_min"]:
        assert col in ep.columns
    md = (out / "summary.md").read_text()
    for pol in SMALL["policies"]:
        assert f"`{pol}`" in md
    assert "[" in md and "Δ post-test vs random" in md
    import json

    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["name"] == "small" and m["seeds"] == [0, 1] and "jax" in m["versions"]
    assert m["wall_time_s"] > 0


def test_common_random_numbers_same_learners_for_every_policy(full_run):
    ep = pd.read_csv(full_run[0] / "episodes.csv")
    groups = ep.groupby(["student_model", "seed", "learner"]).subgroup.nunique()
    assert (groups == 1).all()  # the same learner (same subgroup draw) met every policy


def test_interrupted_run_resumes_and_equals_uninterrupted(full_run, tmp_path):
    out_full, _ = full_run
    config = experiment_from_dict(SMALL)
    first = run_experiment(config, tmp_path, progress=False, max_cells=5)
    assert not first["complete"] and not (tmp_path / "episodes.csv").exists()
    second = run_experiment(config, tmp_path, progress=False)
    assert second["complete"] and second["cells_resumed"] == 5 and second["cells_computed_this_run"] == 7
    for f in ["episodes.csv", "summary.csv", "curves.csv", "matrix.csv", "summary.md"]:
        assert (tmp_path / f).read_bytes() == (out_full / f).read_bytes(), f


def test_corrupted_cell_is_recomputed(full_run, tmp_path):
    config = experiment_from_dict(SMALL)
    run_experiment(config, tmp_path, progress=False, max_cells=1)
    (cell,) = list((tmp_path / "cells").glob("*.npz"))
    cell.write_bytes(b"not a zip file")
    manifest = run_experiment(config, tmp_path, progress=False)
    assert manifest["cells_resumed"] == 0 and manifest["complete"]
    assert (tmp_path / "episodes.csv").read_bytes() == (full_run[0] / "episodes.csv").read_bytes()


def test_killed_cli_run_resumes(tmp_path):
    cfg = tmp_path / "kill.toml"
    cfg.write_text("""
name = "kill"
learners = 30
seeds = [0, 1, 2]
policies = ["random", "designer", "round_robin"]
[[envs]]
id = "pedagogym/PrereqBKT-v0"
settings = { curriculum = "tiny", horizon = 15 }
""")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pedagogym.cli", "run", str(cfg), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cells = out / "cells"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if cells.exists() and len(list(cells.glob("*.npz"))) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(list((out / "cells").glob("*.npz")))
    assert 0 < n_before < 9, "the run should have been killed mid-way"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import json

    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["cells_resumed"] == n_before and m["cells_computed_this_run"] == 9 - n_before


def test_summary_paired_difference_and_ci():
    ep = pd.DataFrame({
        "env": "e", "student_model": "m", "population": "p", "seed": 0,
        "learner": list(range(4)) * 2, "policy": ["random"] * 4 + ["good"] * 4,
        "post_test": [0.1, 0.2, 0.3, 0.4, 0.3, 0.4, 0.5, 0.6],
    })
    s = summary_table(ep, ("post_test",), "random").set_index("policy")
    assert s.loc["good", "post_test_mean"] == pytest.approx(0.45)
    assert s.loc["good", "post_test_diff_vs_random"] == pytest.approx(0.2)
    # every paired difference is exactly 0.2, so the paired CI collapses onto it
    assert s.loc["good", "post_test_diff_ci_low"] == pytest.approx(0.2)
    assert s.loc["good", "post_test_diff_ci_high"] == pytest.approx(0.2)
    # unpaired CI of the mean: t(0.975, 3) * sd / sqrt(4) = 3.182446 * 0.1290994 / 2
    assert s.loc["good", "post_test_ci_high"] - 0.45 == pytest.approx(3.182446 * 0.1290994 / 2, rel=1e-5)


def test_rerun_reproduces_numbers_exactly(full_run, tmp_path):
    run_experiment(experiment_from_dict(SMALL), tmp_path, progress=False)
    a = pd.read_csv(full_run[0] / "summary.csv")
    b = pd.read_csv(tmp_path / "summary.csv")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("change, needle", [
    ({"policies": ["random", "telepathy"]}, "policies[1]: unknown policy 'telepathy'"),
    ({"learners": -5}, "learners: expected a positive integer"),
    ({"envs": [{"id": "pedagogym/PrereqBKT-v0", "settings": {"curriculum": "missing_curriculum"}}]}, "missing_curriculum"),
    ({"envs": [{"id": "pedagogym/Nope-v0"}]}, "envs[0].id: unknown env id"),
    ({"envs": [{"id": "pedagogym/PrereqBKT-v0", "models": ["bkt", "nope"]}]}, "unknown student_model 'nope'"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"baseline": "upper_bound"}, "baseline"),
    ({"metrics": ["happiness"]}, "metrics[0]: unknown metric"),
    ({"colour": 1}, "colour: unknown key"),
])
def test_bad_configs_fail_before_any_work(tmp_path, change, needle):
    path = tmp_path / "bad.toml"
    import tomllib  # noqa: F401  (the file below is written by hand, not by a TOML writer)

    data = {**SMALL, **change}
    path.write_text(_to_toml(data))
    with pytest.raises(ExperimentConfigError) as err:
        load_experiment(path)
    assert needle in str(err.value) and "bad.toml" in str(err.value)


def test_cli_bad_config_exit_code_and_message(tmp_path):
    from pedagogym.cli import main

    path = tmp_path / "bad.toml"
    path.write_text(_to_toml({**SMALL, "learners": 0}))
    out = tmp_path / "never"
    assert main(["run", str(path), "--out", str(out)]) == 2
    assert not out.exists()


def test_quickstart_config_is_valid():
    config = load_experiment(Path(__file__).parents[1] / "experiments" / "quickstart.toml")
    assert {e.label for e in config.envs} == {"maths", "vocab"}
    assert all("random" in config.policies_for(e) for e in config.envs)


def _to_toml(data: dict) -> str:
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        return str(v)

    lines = [f"{k} = {val(v)}" for k, v in data.items() if k != "envs"]
    for e in data.get("envs", []):
        lines.append("[[envs]]")
        lines += [f"{k} = {val(v)}" for k, v in e.items()]
    return "\n".join(lines) + "\n"


def test_summary_without_post_test_ranks_and_diffs_by_the_first_metric():
    """A memory-model study reports recall only: rows sorted by it, its paired Δ shown, and the
    evaluation matrix is of that metric."""
    from pedagogym.experiments.report import matrix_table, summary_markdown

    ep = pd.DataFrame({
        "env": "cards", "student_model": "efc", "population": "p", "seed": 0,
        "learner": list(range(4)) * 3, "policy": ["random"] * 4 + ["leitner"] * 4 + ["sm2"] * 4,
        "mean_recall": [0.5, 0.6, 0.7, 0.8, 0.6, 0.7, 0.8, 0.9, 0.4, 0.5, 0.6, 0.7],
        "log_recall": [-0.7, -0.5, -0.4, -0.2, -0.5, -0.4, -0.2, -0.1, -0.9, -0.7, -0.5, -0.4],
    })
    config = experiment_from_dict({
        "name": "cards", "learners": 4, "seeds": [0], "metrics": ["mean_recall", "log_recall"],
        "policies": ["random", "leitner", "sm2"],
        "envs": [{"id": "pedagogym/FlashcardsEFC-v0", "label": "cards", "models": ["efc"],
                  "settings": {"n_items": 5, "horizon": 10}}]})
    summary = summary_table(ep, config.metrics, "random")
    md = summary_markdown(summary, config)
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["leitner", "random", "sm2"]
    assert "Δ mean recall vs random" in md and "log recall" in md
    assert "0.100 [0.100, 0.100]" in rows[0]  # leitner - random, paired: +0.1 for every learner
    m = matrix_table(summary, "mean_recall").set_index("policy")
    assert (m["metric"] == "mean_recall").all() and m.loc["sm2", "cards/efc/p"] == pytest.approx(0.55)


def test_atomic_write_gives_plain_permissions_and_leaves_nothing_on_failure(tmp_path):
    """Results and bundles are written through experiments.io.atomic_write: the file appears whole
    with the permissions a plain write gives (0666 minus the umask; mkstemp alone makes 0600), and a
    write that fails leaves neither the target nor a temp file behind."""
    import os
    import stat

    from pedagogym.io import atomic_write, atomic_write_bytes

    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    (tmp_path / "plain.bin").write_bytes(b"\x00\x01")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    mode = stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(os.stat(tmp_path / "plain.bin").st_mode)

    def broken(p):
        p.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "b.txt", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "plain.bin"]
