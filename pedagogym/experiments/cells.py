"""One cell of an experiment (simulator x policy x seed): what it is, how it is computed and
saved, and how a saved one is recognised. Shared by the runner (which orders cells and writes
the run), the backends (which compute them) and the report (which reads them back).

A cell file (``cells/<id>.npz``) holds every per-learner field of
:class:`~pedagogym.policies.rollout.EpisodeResult` but the curve (kept as sums), and a
fingerprint of everything that produced it (:func:`cell_fingerprint`); a saved cell whose
fingerprint differs from the current one is recomputed."""
from __future__ import annotations

import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jax
import numpy as np

from pedagogym.agents import is_agent_name, load_policy
from pedagogym.envs import make
from pedagogym.envs.config import resolve_population
from pedagogym.envs.fingerprint import simulator_fingerprint
from pedagogym.experiments.config import EnvEntry, ExperimentConfig
from pedagogym.io import atomic_write
from pedagogym.policies import POLICIES
from pedagogym.policies.rollout import EpisodeResult, evaluate, learner_keys

CELL_FORMAT = 2  # 2: ability_error, ability_se
DEFAULT_CHUNK = 65536  # learners per jitted call; bounds device memory (curves are [chunk, T+1])


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


def _policy(name: str, built=None):
    """A registered policy, or a trained agent ``agent:RUN_DIR[#K|#best]`` (checked against ``built``)."""
    return load_policy(name, built) if is_agent_name(name) else POLICIES.get(name)


@lru_cache(maxsize=None)
def subgroup_names(population: str) -> tuple[str, ...]:
    """A population's subgroup names, in the order of a cell file's ``subgroup`` codes."""
    return resolve_population(population).subgroup_names
