"""``train(config, out)``: one training run of any registered algorithm, resumable and locked.
Above the algorithms (it looks them up in :mod:`pedagogym.agents.registry`), so that the
algorithms and the run helpers they share (:mod:`pedagogym.agents.run`) never import it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pedagogym.agents.checkpoint import CheckpointError
from pedagogym.agents.config import TrainConfig
from pedagogym.agents.registry import AGENTS
from pedagogym.agents.run import RunContext, _prepare_dir, read_run_manifest
from pedagogym.io import DirLock


def train(config: TrainConfig, out: str | Path, progress: bool = True, max_chunks: int | None = None,
          restart: bool = False) -> dict[str, Any]:
    """Train (or resume) every agent of ``config`` into ``out``; returns the run manifest."""
    out = Path(out)
    algo = AGENTS.get(config.algo)
    built = config.build_env()
    ctx = RunContext(config=config, out=out, built=built, progress=progress, max_chunks=max_chunks)
    out.mkdir(parents=True, exist_ok=True)
    with DirLock(out, "pedagogym train"):
        _prepare_dir(config, out, restart, ctx.identity["inputs"])
        if (out / "manifest.json").exists():
            try:
                ctx.wall_before = float(read_run_manifest(out).get("wall_time_s") or 0.0)
            except CheckpointError:
                ctx.wall_before = 0.0
        algo.train(config, ctx)
        return read_run_manifest(out)
