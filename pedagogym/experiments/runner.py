"""The experiment runner: config -> envs x student models x populations x policies x seeds
-> tidy tables, statistics, plots and a manifest.

Each grid cell (one policy on one simulator for one seed) is batched over its learners in
jitted calls of ``chunk_learners`` learners at a time (the learner axis split over every
visible device) and saved atomically to ``cells/<cell>.npz`` as soon as it finishes; a
rerun skips finished cells, so an interrupted run resumes. The final tables are rebuilt
from the cell files, so resumed and uninterrupted runs give identical tables.

Where cells are computed is a backend (:mod:`pedagogym.experiments.backends`): this process
(default) or Ray tasks on a cluster; either way this process writes each cell file as its
result arrives, so a lost worker costs only its cell and a rerun fills the holes.
"""
from __future__ import annotations

import re
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from pedagogym.experiments.config import ExperimentConfig, EnvEntry
from pedagogym.io import atomic_write, atomic_write_json, git_commit, versions
from pedagogym.experiments.rollout import EpisodeResult, evaluate, learner_keys

CELL_FORMAT = 2  # 2: ability_error, ability_se
DEFAULT_CHUNK = 65536  # learners per jitted call; bounds device memory (curves are [chunk, T+1])
EPISODES_AUTO_LIMIT = 1_000_000  # save_episodes=None: write episodes.csv up to this many rows


@dataclass(frozen=True)
class Cell:
    env: EnvEntry
    model: str
    population: str
    policy: str
    seed: int

    @property
    def simulator(self) -> tuple[str, str, str]:
        return (self.env.label, self.model, self.population)

    @property
    def id(self) -> str:
        raw = f"{self.env.label}__{self.model}__{self.population}__{self.policy}__s{self.seed}"
        return re.sub(r"[^A-Za-z0-9_.-]", "-", raw)

    def learner_key(self) -> jax.Array:
        """Common random numbers: depends on the simulator and seed, never on the policy."""
        tag = zlib.crc32("|".join(self.simulator).encode())
        return jax.random.fold_in(jax.random.PRNGKey(self.seed), tag)


def cells_of(config: ExperimentConfig) -> list[Cell]:
    return [Cell(e, m, p, pol, s) for e in config.envs for m in e.models for p in e.populations
            for s in config.seeds for pol in config.policies_for(e)]


def _save_cell(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


_BUILT: dict[tuple, object] = {}  # per process (a Ray worker reuses it across its cells)


def _build(cell: Cell):
    key = (cell.env.id, repr(cell.env.settings), cell.model, cell.population)
    if key not in _BUILT:
        from pedagogym.envs import make

        _BUILT[key] = make(cell.env.id, **{**cell.env.settings_dict(), "model": cell.model,
                                           "population": cell.population})
    return _BUILT[key]


def compute_cell(cell: Cell, learners: int, chunk_learners: int | None = DEFAULT_CHUNK) -> dict[str, np.ndarray]:
    """Evaluate one cell, ``chunk_learners`` learners per jitted call (None or 0: all at
    once) -> the cell file's arrays: every per-learner field of :class:`EpisodeResult` except
    the curve, which is kept as its sum and sum of squares over learners. The learners, their
    items and outcomes do not depend on the chunk size; float results may differ in the last
    bits (XLA may vectorise a reduction differently for another batch size)."""
    built = _build(cell)
    policy = _policy(cell.policy, built)
    horizon = built.config.horizon
    keys = np.asarray(learner_keys(cell.learner_key(), learners))
    size = learners if not chunk_learners or chunk_learners >= learners else chunk_learners
    arrays: dict[str, np.ndarray] = {}
    curve_sum = curve_sumsq = 0.0
    for start in range(0, learners, size):
        k = keys[start:start + size]
        n = len(k)
        if n < size:  # pad the last chunk: one compiled shape for the whole cell
            k = np.concatenate([k, np.repeat(k[-1:], size - n, axis=0)])
        res = jax.device_get(evaluate(built.env, policy, horizon, built.params, k))
        curve = np.asarray(res.mastery_curve[:n], np.float64)
        curve_sum = curve_sum + curve.sum(0)
        curve_sumsq = curve_sumsq + (curve ** 2).sum(0)
        del curve
        for name, v in res._asdict().items():
            if name == "mastery_curve":
                continue
            if name not in arrays:
                arrays[name] = np.empty((learners,) + v.shape[1:], v.dtype)
            arrays[name][start:start + n] = v[:n]
        del res
    arrays.update(curve_sum=curve_sum, curve_sumsq=curve_sumsq, format=np.asarray(CELL_FORMAT),
                  horizon=np.asarray(horizon))
    return arrays


def load_cell(path: Path, learners: int) -> dict[str, np.ndarray] | None:
    """A finished cell's arrays, or None if the file is missing, corrupt or from another config."""
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    needed = set(EpisodeResult._fields) - {"mastery_curve"} | {"curve_sum", "curve_sumsq", "format"}
    if not needed <= set(data) or int(data["format"]) != CELL_FORMAT or data["post_test"].shape != (learners,):
        return None
    return data


def _policy(name: str, built=None):
    """A registered policy, or a trained agent ``agent:RUN_DIR[#K|#best]`` (checked against ``built``)."""
    from pedagogym.agents import is_agent_name, load_policy
    from pedagogym.policies import POLICIES

    return load_policy(name, built) if is_agent_name(name) else POLICIES.get(name)


def run_experiment(config: ExperimentConfig, out_dir: str | Path, progress: bool = True,
                   max_cells: int | None = None, backend=None, chunk_learners: int | None = DEFAULT_CHUNK,
                   save_episodes: bool | None = None) -> dict:
    """Run (or resume) every cell, then write the tables, plots and manifest.

    ``backend``: where cells are computed (:class:`~pedagogym.experiments.backends.LocalBackend`
    by default, or :class:`~pedagogym.experiments.backends.RayBackend`). ``chunk_learners``:
    learners per jitted call. ``save_episodes``: write ``episodes.csv`` (one row per
    learner-episode, built in memory); None: only when the run has at most
    ``EPISODES_AUTO_LIMIT`` rows, otherwise the tables are aggregated cell by cell.
    ``max_cells`` stops after that many newly computed cells (used to test resumption)."""
    from tqdm.auto import tqdm

    from pedagogym.experiments.backends import CellJob, LocalBackend
    from pedagogym.experiments.report import write_report

    backend = LocalBackend() if backend is None else backend
    job = CellJob(config.learners, chunk_learners)  # validates chunk_learners before any work
    out = Path(out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cells = cells_of(config)
    todo = [c for c in cells if load_cell(out / "cells" / f"{c.id}.npz", config.learners) is None]
    resumed = len(cells) - len(todo)
    if max_cells is not None:
        todo = todo[:max_cells]
    done_now = 0
    failed: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc=f"{config.name}", unit="cell", disable=not progress)
    t0 = time.perf_counter()
    for cell, arrays, error in backend.map_cells(job, todo):
        if error is not None:
            failed[cell.id] = error
        else:
            _save_cell(out / "cells" / f"{cell.id}.npz", arrays)
            done_now += 1
        del arrays
        bar.set_postfix_str(f"{cell.env.label}/{cell.model}/{cell.policy}/s{cell.seed}")
        bar.update()
    eval_seconds = time.perf_counter() - t0
    bar.close()
    complete = all(load_cell(out / "cells" / f"{c.id}.npz", config.learners) is not None for c in cells)
    if save_episodes is None:
        save_episodes = len(cells) * config.learners <= EPISODES_AUTO_LIMIT
    manifest = {
        "name": config.name, "config": config.to_dict(), "config_source": config.source,
        "seeds": list(config.seeds), "versions": versions(), "git_commit": git_commit(),
        "cells_total": len(cells), "cells_computed_this_run": done_now, "cells_resumed": resumed,
        "cells_failed": failed, "complete": complete, "wall_time_s": None, "learner_episodes_per_s": None,
        "backend": backend.describe(), "devices": [str(d) for d in jax.devices()],
        "chunk_learners": chunk_learners, "save_episodes": bool(save_episodes),
    }
    if complete:
        write_report(config, out, cells, save_episodes=save_episodes)
        n_eps = done_now * config.learners
        manifest["learner_episodes_per_s"] = n_eps / eval_seconds if done_now and eval_seconds > 0 else None
    manifest["wall_time_s"] = time.perf_counter() - t_start
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
