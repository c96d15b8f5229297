"""``pedagogym run --backend ray``: grid cells as Ray tasks on a real local Ray instance give
exactly the local backend's tables; a worker killed mid-grid costs only its cell, and a
rerun computes just that cell. ``pedagogym train --backend ray``: seed groups as tasks, the
same agents as one local run, a killed group retrained alone. One Ray session for the whole
module (Ray starts slowly)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pytest
import ray  # the [dist] extra, installed by [dev]

from pedagogym.agents.distributed import TrainGroupJob, train_groups
from pedagogym.experiments import experiment_from_dict, run_experiment
from pedagogym.experiments.backends import CellJob, RayBackend
from pedagogym.experiments.cells import cells_of

GRID = {
    "name": "raygrid",
    "learners": 25,
    "seeds": [0, 1],
    "policies": ["random", "designer"],
    "envs": [{"id": "pedagogym/PrereqBKT-v0", "label": "tiny", "models": ["bkt"],
              "settings": {"curriculum": "tiny", "horizon": 12}}],
}
TABLES = ["episodes.csv", "summary.csv", "summary.md", "curves.csv", "subgroups.csv", "matrix.csv",
          "time_to_mastery.csv"]

# ray.init starts its processes with fork + exec (subprocess with a preexec_fn); once JAX has
# run in this process (earlier tests), JAX's at-fork hook warns about forking a multithreaded
# process. The child execs at once, so nothing can deadlock: ignore exactly that warning.
pytestmark = pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")

# The job below is defined in this test module, which Ray workers cannot import: ship it by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class KillWorkerOn(CellJob):
    """A job whose worker process dies (no exception, no cleanup) on one cell."""

    victim: str = ""

    def __call__(self, cell):
        if cell.id == self.victim:
            os._exit(1)
        return super().__call__(cell)


@dataclass(frozen=True)
class RayBackendKillingOne(RayBackend):
    victim: str = ""

    def map_cells(self, job, cells):
        return super().map_cells(KillWorkerOn(job.learners, job.chunk_learners, victim=self.victim), cells)


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    manifest = run_experiment(experiment_from_dict(GRID), out, progress=False)
    assert manifest["complete"] and manifest["backend"] == {"name": "local"}
    return out


def test_ray_tables_equal_local_tables(ray_session, local_run, tmp_path):
    manifest = run_experiment(experiment_from_dict(GRID), tmp_path, progress=False, backend=RayBackend(workers=2))
    assert manifest["complete"] and manifest["cells_computed_this_run"] == 4 and not manifest["cells_failed"]
    assert manifest["backend"]["name"] == "ray"
    for f in TABLES:
        assert (tmp_path / f).read_bytes() == (local_run / f).read_bytes(), f


def test_killed_worker_costs_one_cell_and_rerun_fills_it(ray_session, local_run, tmp_path):
    config = experiment_from_dict(GRID)
    cells = cells_of(config)
    victim = cells[2].id
    first = run_experiment(config, tmp_path, progress=False,
                           backend=RayBackendKillingOne(workers=2, max_retries=0, victim=victim))
    assert not first["complete"] and list(first["cells_failed"]) == [victim]
    assert first["cells_computed_this_run"] == 3 and not (tmp_path / "summary.csv").exists()
    files = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").glob("*.npz")}
    assert sorted(files) == sorted(f"{c.id}.npz" for c in cells if c.id != victim)

    second = run_experiment(config, tmp_path, progress=False, backend=RayBackend(workers=2))
    assert second["complete"] and second["cells_resumed"] == 3 and second["cells_computed_this_run"] == 1
    assert not second["cells_failed"]
    for name, mtime in files.items():  # finished cells were neither recomputed nor rewritten
        assert (tmp_path / "cells" / name).stat().st_mtime_ns == mtime, name
    for f in TABLES:
        assert (tmp_path / f).read_bytes() == (local_run / f).read_bytes(), f


# ---- pedagogym train --backend ray: one Ray task per seed group ------------------------------
TRAIN = {"name": "ray_ppo", "algo": "jax_ppo", "seeds": [0, 1], "total_timesteps": 32, "num_envs": 4,
         "num_steps": 4, "hidden": [8], "chunk_updates": 1, "eval_learners": 4,
         "env": {"id": "pedagogym/PrereqBKT-v0", "curriculum": "tiny", "horizon": 5}}


@dataclass(frozen=True)
class KillWorkerOnSeed(TrainGroupJob):
    victim: int = -1

    def __call__(self, group):
        if group.seeds[0] == self.victim:
            os._exit(1)
        return super().__call__(group)


@dataclass(frozen=True)
class RayBackendKillingSeed(RayBackend):
    victim: int = -1

    def map_cells(self, job, items):
        return super().map_cells(KillWorkerOnSeed(victim=self.victim), items)


def test_train_seed_groups_as_ray_tasks_equal_local_training_and_resume(ray_session, tmp_path):
    import jax
    import numpy as np

    from pedagogym.agents import load_policy, train, train_config_from_dict

    config = train_config_from_dict(TRAIN)
    local = train(config, tmp_path / "local", progress=False)
    assert local["complete"]
    out = tmp_path / "ray"
    first = train_groups(config, out, RayBackendKillingSeed(workers=2, max_retries=0, victim=0))
    assert not first["complete"] and list(first["failed"]) == ["seed_0"] and first["trained_this_run"] == 1
    assert first["groups"]["seed_1"]["complete"] and not (out / "seed_0").exists()
    kept = {p: p.stat().st_mtime_ns for p in (out / "seed_1").rglob("*") if p.is_file()}
    second = train_groups(config, out, RayBackend(workers=2))
    assert second["complete"] and second["resumed"] == 1 and second["trained_this_run"] == 1
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # the finished group was not retrained
    # a seed trained alone is the agent of the one-process run: bitwise
    for k, seed in enumerate(config.seeds):
        a, b = load_policy(f"agent:{tmp_path / 'local'}#{k}"), load_policy(f"agent:{out / f'seed_{seed}'}#0")
        for x, y in zip(jax.tree.leaves((a.params, a.obs_norm)), jax.tree.leaves((b.params, b.obs_norm)), strict=True):
            assert np.array_equal(np.asarray(x), np.asarray(y)), (seed, k)
