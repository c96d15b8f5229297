"""``pedagogym train --backend ray``: the agents of a training config, one seed per Ray task.

    <out>/seed_<S>/     a complete training run of the config restricted to seed S (every
                        sweep setting of that seed): curves, checkpoints, policy, manifest;
                        use it as ``agent:<out>/seed_<S>#K``
    <out>/groups.json   which seed went where, and whether every group finished

Each task trains its group into a private directory on its worker (the ordinary
:func:`pedagogym.agents.training.train`) and returns that directory's files; this process writes
them under ``<out>/seed_<S>/`` (each file atomically, the manifest last), so workers need no
shared disk. A group whose task fails or whose worker dies is reported and left out; a
rerun trains just the groups without a complete manifest (from scratch: their partial
checkpoints stayed on the lost worker). Training a seed alone gives the same agents as
training it beside the others (agents never interact), so ``seed_<S>#K`` is agent
``S_index x n_sweep + K`` of the one-process run.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pedagogym.agents.config import TrainConfig


def seed_groups(config: TrainConfig) -> list[TrainConfig]:
    """One config per seed (with the whole sweep), in the order of ``config.seeds``."""
    return [dataclasses.replace(config, seeds=(s,)) for s in config.seeds]


def group_dir(out: Path, group: TrainConfig) -> Path:
    return out / f"seed_{group.seeds[0]}"


def _complete(run_dir: Path, group: TrainConfig) -> bool:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        cfg = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(manifest.get("complete")) and cfg.get("hash") == group.hash()


@dataclass(frozen=True)
class TrainGroupJob:
    """Train one group in a private directory; return ``{relative path: bytes}`` of its files."""

    def __call__(self, group: TrainConfig) -> dict[str, bytes]:
        from pedagogym.agents.training import train

        with tempfile.TemporaryDirectory(prefix="pedagogym-train-") as tmp:
            train(group, Path(tmp), progress=False)
            return {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}


def _write_group(run_dir: Path, files: dict[str, bytes]) -> None:
    from pedagogym.io import atomic_write

    for rel in sorted(files, key=lambda r: r == "manifest.json"):  # the manifest last: complete means complete
        data = files[rel]
        atomic_write(run_dir / rel, lambda p, data=data: p.write_bytes(data))


def train_groups(config: TrainConfig, out: str | Path, backend, restart: bool = False) -> dict[str, Any]:
    """Train every seed group of ``config`` through ``backend`` (e.g. a
    :class:`~pedagogym.experiments.backends.RayBackend`); returns what ``groups.json`` holds."""
    import shutil

    from pedagogym.io import atomic_write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups = seed_groups(config)
    if restart:
        for g in groups:
            shutil.rmtree(group_dir(out, g), ignore_errors=True)
    todo = [g for g in groups if not _complete(group_dir(out, g), g)]
    failed: dict[str, str] = {}
    trained = 0
    for group, files, error in backend.map_cells(TrainGroupJob(), todo):
        if error is not None:
            failed[group_dir(out, group).name] = error
            continue
        shutil.rmtree(group_dir(out, group), ignore_errors=True)  # no stale checkpoints beside the new ones
        _write_group(group_dir(out, group), files)
        trained += 1
    summary = {
        "name": config.name, "config_hash": config.hash(), "backend": backend.describe(),
        "groups": {group_dir(out, g).name: {"seed": g.seeds[0], "agents": g.n_agents,
                                            "complete": _complete(group_dir(out, g), g)} for g in groups},
        "trained_this_run": trained, "resumed": len(groups) - len(todo), "failed": failed,
    }
    summary["complete"] = all(v["complete"] for v in summary["groups"].values())
    atomic_write_json(out / "groups.json", summary)
    return summary
