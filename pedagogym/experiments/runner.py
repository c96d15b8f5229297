"""The experiment runner: config -> envs x student models x populations x policies x seeds
-> tidy tables, statistics, plots and a manifest.

Each grid cell (one policy on one simulator for one seed) is batched over all its learners
in one jitted call and saved atomically to ``cells/<cell>.npz`` as soon as it finishes; a
rerun skips finished cells, so an interrupted run resumes. The final tables are rebuilt
from the cell files, so resumed and uninterrupted runs give identical tables.
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
from pedagogym.experiments.io import atomic_write, atomic_write_json, git_commit, versions
from pedagogym.experiments.rollout import EpisodeResult, evaluate, learner_keys

CELL_FORMAT = 2  # 2: ability_error, ability_se


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


def _save_cell(path: Path, res: EpisodeResult, horizon: int) -> None:
    curve = np.asarray(res.mastery_curve, np.float64)
    arrays = {k: np.asarray(v) for k, v in res._asdict().items() if k != "mastery_curve"}
    arrays.update(curve_sum=curve.sum(0), curve_sumsq=(curve ** 2).sum(0), format=np.asarray(CELL_FORMAT),
                  horizon=np.asarray(horizon))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


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


def _policy(name: str):
    from pedagogym.policies import POLICIES

    return POLICIES.get(name)


def run_experiment(config: ExperimentConfig, out_dir: str | Path, progress: bool = True,
                   max_cells: int | None = None) -> dict:
    """Run (or resume) every cell, then write the tables, plots and manifest.

    ``max_cells`` stops after that many newly computed cells (used to test resumption)."""
    from tqdm.auto import tqdm

    from pedagogym.envs import make
    from pedagogym.experiments.report import write_report

    out = Path(out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cells = cells_of(config)
    built_cache: dict[tuple, object] = {}
    done_now = resumed = 0
    eval_seconds = 0.0
    bar = tqdm(cells, desc=f"{config.name}", unit="cell", disable=not progress)
    for cell in bar:
        path = out / "cells" / f"{cell.id}.npz"
        if load_cell(path, config.learners) is not None:
            resumed += 1
            continue
        if max_cells is not None and done_now >= max_cells:
            break
        bar.set_postfix_str(f"{cell.env.label}/{cell.model}/{cell.policy}/s{cell.seed}")
        sim = cell.simulator
        if sim not in built_cache:
            built_cache[sim] = make(cell.env.id, **{**cell.env.settings_dict(), "model": cell.model,
                                                     "population": cell.population})
        built = built_cache[sim]
        t0 = time.perf_counter()
        res = evaluate(built.env, _policy(cell.policy), built.config.horizon, built.params,
                       learner_keys(cell.learner_key(), config.learners))
        jax.block_until_ready(res)
        eval_seconds += time.perf_counter() - t0
        _save_cell(path, res, built.config.horizon)
        done_now += 1
    bar.close()
    complete = all(load_cell(out / "cells" / f"{c.id}.npz", config.learners) is not None for c in cells)
    manifest = {
        "name": config.name, "config": config.to_dict(), "config_source": config.source,
        "seeds": list(config.seeds), "versions": versions(), "git_commit": git_commit(),
        "cells_total": len(cells), "cells_computed_this_run": done_now, "cells_resumed": resumed,
        "complete": complete, "wall_time_s": None, "learner_episodes_per_s": None,
    }
    if complete:
        write_report(config, out, cells)
        n_eps = done_now * config.learners
        manifest["learner_episodes_per_s"] = n_eps / eval_seconds if eval_seconds > 0 else None
    manifest["wall_time_s"] = time.perf_counter() - t_start
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
