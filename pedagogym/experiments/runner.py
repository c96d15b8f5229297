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

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from pedagogym.experiments.backends import CellJob, LocalBackend
from pedagogym.experiments.cells import (DEFAULT_CHUNK, _save_cell, cell_fingerprint, cells_of, fingerprint_changes,
                                         load_cell, saved_fingerprint)
from pedagogym.experiments.config import ExperimentConfig
from pedagogym.experiments.report import write_report
from pedagogym.io import DirLock, atomic_write_json, git_commit, versions

EPISODES_AUTO_LIMIT = 1_000_000  # save_episodes=None: write episodes.csv up to this many rows


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
    backend = LocalBackend() if backend is None else backend
    job = CellJob(config.learners, chunk_learners)  # validates chunk_learners before any work
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with DirLock(out, "pedagogym run"):
        return _run_locked(config, out, progress, max_cells, backend, job, chunk_learners, save_episodes)


def _run_locked(config, out: Path, progress, max_cells, backend, job, chunk_learners, save_episodes) -> dict:
    (out / "cells").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cells = cells_of(config)
    prints = {c.id: cell_fingerprint(c, config.learners) for c in cells}
    todo, changed = [], {}
    for c in cells:
        path = out / "cells" / f"{c.id}.npz"
        data = load_cell(path, config.learners)
        if data is not None and saved_fingerprint(data) == prints[c.id]:
            continue
        if data is not None:  # a finished cell of another setting: recompute it, and say why
            changed[c.id] = fingerprint_changes(saved_fingerprint(data), prints[c.id])
        todo.append(c)
    if changed and progress:
        for cell_id, what in changed.items():
            print(f"cell {cell_id}: saved result is stale ({'; '.join(what)}); recomputing", file=sys.stderr)
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
            arrays["fingerprint"] = np.asarray(json.dumps(prints[cell.id], sort_keys=True))
            _save_cell(out / "cells" / f"{cell.id}.npz", arrays)
            done_now += 1
        del arrays
        bar.set_postfix_str(f"{cell.env.label}/{cell.model}/{cell.policy}/s{cell.seed}")
        bar.update()
    eval_seconds = time.perf_counter() - t0
    bar.close()
    complete = all(load_cell(out / "cells" / f"{c.id}.npz", config.learners, prints[c.id]) is not None for c in cells)
    if save_episodes is None:
        save_episodes = len(cells) * config.learners <= EPISODES_AUTO_LIMIT
    manifest = {
        "name": config.name, "config": config.to_dict(), "config_source": config.source,
        "seeds": list(config.seeds), "versions": versions(), "git_commit": git_commit(),
        "cells_total": len(cells), "cells_computed_this_run": done_now, "cells_resumed": resumed,
        "cells_stale_recomputed": changed,
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
