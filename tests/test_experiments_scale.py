"""Failures and bad flags of a scaled-out run: a Ray task that raises or whose worker dies
is reported for its cell alone, with the task's own error; ``pedagogym run``'s scaling flags
are checked before any work. (Equality of sharded, chunked, streamed and Ray runs with the
plain run: tests/test_scale.py and tests/test_ray_backend.py.)"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from pedagogym.experiments import experiment_from_dict
from pedagogym.experiments.backends import CellJob, RayBackend
from pedagogym.experiments.cells import cells_of

CONFIG = {
    "name": "scale_errors",
    "learners": 12,
    "seeds": [0],
    "policies": ["random", "designer", "mastery"],
    "envs": [{"id": "pedagogym/PrereqBKT-v0", "label": "tiny", "models": ["bkt"],
              "settings": {"curriculum": "tiny", "horizon": 8}}],
}
TOML = """
name = "scale_errors"
learners = 12
seeds = [0]
policies = ["random", "designer", "mastery"]
[[envs]]
id = "pedagogym/PrereqBKT-v0"
settings = { curriculum = "tiny", horizon = 8 }
"""


def test_ray_reports_a_raising_task_and_a_dead_worker_for_their_cells_only():
    """Through RayBackend's own local instance, as `pedagogym run --backend ray` starts it
    (with JAX already imported: no fork warning may escape, warnings are errors here)."""
    import ray

    @dataclass(frozen=True)
    class RaiseOrDie(CellJob):  # defined in a function: Ray ships it to its workers by value
        def __call__(self, cell):
            if cell.policy == "designer":
                raise RuntimeError("bad cell\nsecond line")
            if cell.policy == "mastery":
                os._exit(3)  # the worker process dies: no exception, no cleanup
            return super().__call__(cell)

    config = experiment_from_dict(CONFIG)
    results = {c.policy: (arrays, error) for c, arrays, error in
               RayBackend(workers=2, max_retries=0).map_cells(RaiseOrDie(config.learners, 0), cells_of(config))}
    assert not ray.is_initialized()  # the instance it started is shut down
    assert set(results) == {"random", "designer", "mastery"}
    assert results["random"][1] is None and results["random"][0]["post_test"].shape == (12,)
    assert results["designer"] == (None, "RuntimeError: bad cell")  # the task's error, not Ray's traceback
    assert results["mastery"][0] is None and results["mastery"][1].startswith("WorkerCrashedError: ")


@pytest.mark.parametrize("flags, needle", [
    (["--address", "auto"], "need --backend ray"),
    (["--gpus-per-cell", "1"], "need --backend ray"),
    (["--backend", "ray", "--gpus-per-cell", "-1"], "--gpus-per-cell: expected a number >= 0"),
    (["--chunk-learners", "-1"], "chunk_learners: expected a positive integer (or 0"),
])
def test_cli_bad_scaling_flags_fail_before_any_work(tmp_path, capsys, flags, needle):
    from pedagogym.cli import main

    cfg = tmp_path / "scale.toml"
    cfg.write_text(TOML)
    out = tmp_path / "never"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", *flags]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()
