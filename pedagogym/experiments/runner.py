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

import dataclasses
import hashlib
import json
import re
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from pedagogym.experiments.config import ExperimentConfig, EnvEntry
from pedagogym.io import DirLock, atomic_write, atomic_write_json, git_commit, versions
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


def _sha256_file(path: str | Path) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None  # a built-in name, resolved from the package
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tree_sha(tree) -> str:
    """sha256 over every leaf of a pytree (shape, dtype and bytes): the simulator's numbers."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        a = np.asarray(leaf)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def simulator_fingerprint(built) -> dict[str, object]:
    """What a simulator's numbers depend on, as a JSON-able dict: the resolved env settings,
    the contents of the curriculum and population files (sha256; None for a built-in name),
    the sha256 of the simulator's parameter arrays (curriculum, population, model parameters)
    and the package version. Shared by experiment cells and training checkpoints."""
    import pedagogym

    settings = {k: v for k, v in dataclasses.asdict(built.config).items() if k != "source"}
    population = getattr(built.population, "source", None)
    return {
        "pedagogym": pedagogym.__version__, "settings": json.loads(json.dumps(settings, default=str)),
        "curriculum_file": _sha256_file(built.config.curriculum),
        "population_file": _sha256_file(population) if isinstance(population, str) else None,
        "env_params": _tree_sha(built.params),
    }


def cell_fingerprint(cell: Cell, learners: int) -> dict[str, object]:
    """Everything that produced a cell's numbers (stored in the cell file): the simulator's
    fingerprint (:func:`simulator_fingerprint`), the policy (a trained agent's checkpoint hash
    is in its tag), learners, seed and the cell format. A saved cell whose fingerprint differs
    is recomputed (see :func:`fingerprint_changes`)."""
    built = _build(cell)
    return {"format": CELL_FORMAT, "learners": int(learners), "seed": int(cell.seed), "env": cell.env.id,
            "model": cell.model, "population": cell.population, "policy": repr(_policy(cell.policy, built)),
            **simulator_fingerprint(built)}


def fingerprint_changes(old: dict | None, new: dict) -> list[str]:
    """What differs between a saved cell's fingerprint and the current one, for the user."""
    if old is None:
        return ["saved without a fingerprint (by an older pedagogym)"]
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if k == "settings" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"{s}: {a.get(s)!r} -> {b.get(s)!r}" for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
        elif k in ("curriculum_file", "population_file", "env_params"):
            out.append(f"{k.replace('_', ' ')} contents")
        else:
            out.append(f"{k}: {a!r} -> {b!r}")
    return out


def saved_fingerprint(data: dict[str, np.ndarray]) -> dict | None:
    try:
        fp = json.loads(str(data["fingerprint"]))
    except (KeyError, ValueError):
        return None
    return fp if isinstance(fp, dict) else None


def load_cell(path: Path, learners: int, fingerprint: dict | None = None) -> dict[str, np.ndarray] | None:
    """A finished cell's arrays, or None if the file is missing, corrupt or from another config
    (with ``fingerprint``: None also when the saved fingerprint differs)."""
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
    if fingerprint is not None and saved_fingerprint(data) != fingerprint:
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
    from pedagogym.experiments.backends import CellJob, LocalBackend

    backend = LocalBackend() if backend is None else backend
    job = CellJob(config.learners, chunk_learners)  # validates chunk_learners before any work
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with DirLock(out, "pedagogym run"):
        return _run_locked(config, out, progress, max_cells, backend, job, chunk_learners, save_episodes)


def _run_locked(config, out: Path, progress, max_cells, backend, job, chunk_learners, save_episodes) -> dict:
    from tqdm.auto import tqdm

    from pedagogym.experiments.report import write_report

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
        import sys

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
