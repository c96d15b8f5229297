"""Training runs: a run directory, learning curves, plots, the run manifest, and resumption.

    <out>/config.json       the validated config (TOML shape) and its hash; a rerun must match it
    <out>/curves.csv        one row per agent per logged update (tidy; see CURVE_COLUMNS)
    <out>/curves.png        post-test and episode return vs env steps: mean over seeds with a band
    <out>/checkpoints/      checkpoints with manifests (see pedagogym.agents.checkpoint)
    <out>/policy.msgpack    JAX PPO: every agent's network + observation statistics (for evaluation)
    <out>/manifest.json     config hash, env id, obs size, n actions, agents, progress, versions, git commit

:func:`train` trains (or resumes) whatever ``config.algo`` names, through the ``AGENTS``
registry. Every write is atomic; a run killed at any moment resumes from its latest
checkpoint, and the learning curve keeps only rows up to that checkpoint.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pedagogym.agents.checkpoint import CheckpointError, run_identity
from pedagogym.agents.config import SWEEPABLE, TrainConfig

CURVE_COLUMNS = ("agent", "seed", *SWEEPABLE, "update", "env_steps", "episodes", "mean_episode_return",
                 "eval_post_test", "eval_final_mastery", "eval_total_reward", "eval_valid_actions",
                 "policy_loss", "value_loss", "entropy", "approx_kl", "invalid_actions", "wall_s")


@dataclass
class RunContext:
    """What an algorithm needs to train into a run directory."""

    config: TrainConfig
    out: Path
    built: Any
    progress: bool = True
    max_chunks: int | None = None  # stop after this many new chunks (used to test resumption)
    rows: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: dict[str, Any] = field(default_factory=dict)
    t_start: float = field(default_factory=time.perf_counter)
    wall_before: float = 0.0  # wall time of earlier (interrupted) sessions
    _inputs: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    @property
    def identity(self) -> dict[str, Any]:
        """What every checkpoint of this run must agree on: the config and sizes
        (:func:`run_identity`) and the simulator's inputs (curriculum / population contents,
        parameter arrays, package version), so an edited curriculum file never resumes."""
        if self._inputs is None:
            self._inputs = inputs_fingerprint(self.built)
        return {**run_identity(self.config, self.built), "inputs": self._inputs}

    def wall_s(self) -> float:
        return self.wall_before + time.perf_counter() - self.t_start

    def eval_rows(self, agents: list[dict], update: int, env_steps: int, result, metrics: dict[str, np.ndarray] | None,
                  episodes: np.ndarray | None = None, mean_return: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Curve rows for ``agents`` from an EpisodeResult with leading axes [N, learners]."""
        rows = []
        wall = self.wall_s()
        for k, a in enumerate(agents):
            row = {"agent": a["index"], "seed": a["seed"], **{h: a[h] for h in SWEEPABLE}, "update": int(update),
                   "env_steps": int(env_steps),
                   "episodes": int(episodes[k]) if episodes is not None else 0,
                   "mean_episode_return": float(mean_return[k]) if mean_return is not None else float("nan"),
                   "eval_post_test": float(np.mean(result.post_test[k])),
                   "eval_final_mastery": float(np.mean(result.final_mastery[k])),
                   "eval_total_reward": float(np.mean(result.total_reward[k])),
                   "eval_valid_actions": float(np.mean(result.valid_actions[k])),
                   "wall_s": round(wall, 3)}
            for m in ("policy_loss", "value_loss", "entropy", "approx_kl", "invalid_actions"):
                row[m] = float(metrics[m][k]) if metrics is not None and m in metrics else float("nan")
            rows.append(row)
        return rows

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Append curve rows and rewrite curves.csv / curves.png (atomically). Called *before*
        the checkpoint of the same update is written: a resumed run drops rows newer than its
        checkpoint, so a kill in between loses nothing and duplicates nothing."""
        self.rows.extend(rows)
        write_curves(self.out / "curves.csv", self.rows)
        plot_curves(self.out / "curves.csv", self.out / "curves.png", title=f"{self.config.name} ({self.config.algo})")

    def log(self, rows: list[dict[str, Any]], update: int, env_steps: int, checkpoint: Path | None,
            complete: bool = False) -> None:
        """:meth:`add_rows`, then the run manifest."""
        self.add_rows(rows)
        write_run_manifest(self, update=update, env_steps=env_steps, checkpoint=checkpoint, complete=complete)


# ---- curves ------------------------------------------------------------------------------------
def write_curves(path: Path, rows: list[dict[str, Any]]) -> None:
    from pedagogym.io import atomic_write_text, csv_safe

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: (r["agent"], r["update"])):
        w.writerow({k: csv_safe(v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def read_curves(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    ints = {"agent", "seed", "update", "env_steps", "episodes"}
    with open(path, newline="") as f:
        return [{k: (int(v) if k in ints else float(v)) for k, v in r.items() if k in CURVE_COLUMNS}
                for r in csv.DictReader(f)]


def plot_curves(csv_path: Path, png_path: Path, title: str = "") -> None:
    """From the tidy CSV: one line per hyperparameter setting (mean over seeds) with a band
    (min..max over seeds), for the evaluation post-test and the mean training episode return."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pedagogym.io import atomic_write

    rows = read_curves(csv_path)
    if not rows:
        return
    groups: dict[tuple, dict[int, dict[int, dict]]] = {}
    for r in rows:
        hp = tuple((h, r[h]) for h in SWEEPABLE)
        groups.setdefault(hp, {}).setdefault(r["env_steps"], {})[r["seed"]] = r
    varying = [h for h in SWEEPABLE if len({dict(g)[h] for g in groups}) > 1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (hp, by_step), color in zip(sorted(groups.items()), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10):
        label = ", ".join(f"{h}={dict(hp)[h]:g}" for h in varying) or "all agents"
        steps = sorted(by_step)
        n_seeds = max(len(v) for v in by_step.values())
        for ax, col in zip(axes, ("eval_post_test", "mean_episode_return")):
            ys = [[r[col] for r in by_step[s].values() if math.isfinite(r[col])] for s in steps]
            keep = [i for i, y in enumerate(ys) if y]
            if not keep:
                continue
            x = np.asarray([steps[i] for i in keep], float)
            mean = np.asarray([np.mean(ys[i]) for i in keep])
            lo = np.asarray([np.min(ys[i]) for i in keep])
            hi = np.asarray([np.max(ys[i]) for i in keep])
            ax.plot(x, mean, color=color, label=f"{label} ({n_seeds} seed{'s' if n_seeds > 1 else ''})")
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
    axes[0].set(xlabel="env steps per agent", ylabel="post-test (evaluation learners)", title="post-test")
    axes[1].set(xlabel="env steps per agent", ylabel="mean episode return (training)", title="episode return")
    axes[0].legend(fontsize=8)
    fig.suptitle(title + "  (line: mean over seeds; band: min..max)")
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=100)

    atomic_write(png_path, write)
    plt.close(fig)


# ---- manifests ---------------------------------------------------------------------------------
def write_run_manifest(ctx: RunContext, update: int, env_steps: int, checkpoint: Path | None, complete: bool) -> None:
    from pedagogym.agents.checkpoint import versions
    from pedagogym.io import atomic_write_json, git_commit

    cfg = ctx.config
    last = {}
    for r in ctx.rows:
        if r["agent"] not in last or r["update"] >= last[r["agent"]]["update"]:
            last[r["agent"]] = r
    manifest = {
        "name": cfg.name, "algo": cfg.algo, **ctx.identity, "config": cfg.to_dict(), "config_source": cfg.source,
        "env_settings": cfg.env_settings_dict(), "feature_names": ctx.built.feature_names,
        "item_ids": list(ctx.built.curriculum.item_ids), "agents": cfg.agents(), "seeds": list(cfg.seeds),
        "num_updates": cfg.num_updates, "update": int(update), "env_steps_per_agent": int(env_steps),
        "total_timesteps": cfg.total_timesteps, "complete": bool(complete),
        "latest_checkpoint": str(checkpoint.relative_to(ctx.out)) if checkpoint is not None else None,
        "resumed_from": ctx.resumed_from or None,
        "final_eval_post_test": {str(k): r["eval_post_test"] for k, r in sorted(last.items())},
        "versions": versions(), "git_commit": git_commit(), "wall_time_s": ctx.wall_s(),
    }
    atomic_write_json(ctx.out / "manifest.json", manifest)


def read_run_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not a training run (no manifest.json; train one with `pedagogym train`)") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: not a training run (manifest.json is a folder)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: corrupted run manifest ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: corrupted run manifest (expected a JSON object, got a {type(data).__name__})")
    return data


def inputs_fingerprint(built) -> dict[str, Any]:
    from pedagogym.envs.fingerprint import simulator_fingerprint

    fp = simulator_fingerprint(built)
    fp.pop("settings")  # the settings are in the config hash already
    return fp


def _prepare_dir(config: TrainConfig, out: Path, restart: bool, inputs: dict[str, Any]) -> None:
    """Create ``out``; refuse a directory that holds a different run (another config, or the
    same config over edited curriculum / population files or another pedagogym), naming what changed."""
    from pedagogym.io import atomic_write_json

    cfg_path = out / "config.json"
    if restart:
        for name in ("checkpoints", "curves.csv", "curves.png", "manifest.json", "policy.msgpack",
                     "policy.msgpack.json", "config.json"):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{cfg_path}: corrupted run config ({exc}); use --restart to discard the run") from None
        if not isinstance(old, dict):
            raise CheckpointError(f"{cfg_path}: corrupted run config (expected a JSON object, got a "
                                  f"{type(old).__name__}); use --restart to discard the run")
        if old.get("hash") != config.hash():
            from pedagogym.agents.checkpoint import _diff

            diff = _diff(old.get("config", {}), config.to_dict())
            raise CheckpointError(f"{cfg_path}: {out} holds a run of a different config (hash {old.get('hash')} vs "
                                  f"{config.hash()}; differing: {', '.join(diff) or '?'}). Use another --out or --restart.")
        if old.get("inputs") != inputs:
            was = old.get("inputs") if isinstance(old.get("inputs"), dict) else {}
            what = [k.replace("_", " ") + (" contents" if k != "pedagogym" else " version")
                    for k in sorted(set(was) | set(inputs)) if was.get(k) != inputs.get(k)]
            raise CheckpointError(f"{cfg_path}: {out} holds a run of the same config over other inputs (changed: "
                                  f"{', '.join(what) or 'no input fingerprint saved'}); its checkpoints would resume "
                                  f"stale. Use another --out or --restart.")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg_path, {"hash": config.hash(), "config": config.to_dict(), "source": config.source,
                                 "inputs": inputs})
