"""Entry point of ``pedagogym replicate``: run a study with a progress bar and write its files."""
from __future__ import annotations

import time
from pathlib import Path

from pedagogym.errors import PedagogymError
from pedagogym.replicate import STUDIES


class ReplicateError(PedagogymError, ValueError):
    """A bad replicate request (unknown study, bad counts)."""


def replicate(study: str, out: Path, reps: int | None = None, episodes: int | None = None, quick: bool = False,
              rl_timesteps: int | None = None, rl: bool = True, show_progress: bool = True) -> list[Path]:
    if study not in STUDIES:
        raise ReplicateError(f"replicate: unknown study {study!r}; available: {sorted(STUDIES)}")
    from rich.progress import Progress

    from pedagogym.replicate.reddy2017 import StudyConfig, run_study, write_outputs

    over = {k: v for k, v in {"reps": reps, "episodes": episodes, "rl_timesteps": rl_timesteps}.items() if v is not None}
    over["rl"] = bool(rl)
    cfg = StudyConfig.quick(**over) if quick else StudyConfig(**over)
    try:
        cfg.validate()
    except ValueError as exc:
        raise ReplicateError(str(exc)) from None
    t0 = time.perf_counter()
    with Progress(disable=not show_progress, transient=False) as bar:
        task = bar.add_task(f"{study}", total=cfg.n_tasks())
        rows, extras = run_study(cfg, progress=lambda what: bar.update(task, advance=1, description=what))
    return write_outputs(Path(out), cfg, rows, extras, time.perf_counter() - t0)
