"""Plots of a run, drawn from its CSV tables (never from in-memory state)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pedagogym.io import atomic_write  # noqa: E402
from pedagogym.policies import PRIVILEGED_MARK, is_privileged  # noqa: E402

SIM = ["env", "student_model", "population"]


def _colors(policies: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(policies) <= 10 else "tab20")
    return {p: cmap(i % cmap.N) for i, p in enumerate(policies)}


def _grid(n: int, width: float = 5.0, height: float = 3.6):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def _short(policy: str) -> str:
    """A legend label: a trained agent ``agent:/long/path/RUN#K`` shows as ``agent:RUN#K``;
    a privileged policy is marked ``(privileged)``."""
    if policy.startswith("agent:"):
        path, sep, index = policy[len("agent:"):].partition("#")
        return f"agent:{Path(path).name}{sep}{index}"
    return policy + PRIVILEGED_MARK if is_privileged(policy) else policy


def _style(policy: str) -> dict:
    """Privileged policies are drawn dashed, so they never read as deployable candidates."""
    return {"ls": "--"} if is_privileged(policy) else {}


def _legend(ax, **kw) -> None:
    """A legend on every panel (panels of different settings show different policies)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _title(key) -> str:
    return f"{key[0]} · {key[1]} · {key[2]}"


def plot_curves(out: Path) -> None:
    df = pd.read_csv(out / "curves.csv")
    policies = list(dict.fromkeys(df.policy))
    color = _colors(policies)
    groups = list(df.groupby(SIM, sort=False))
    fig, axes = _grid(len(groups))
    for ax, (key, g) in zip(axes, groups):
        for pol, gp in g.groupby("policy", sort=False):
            ax.plot(gp.step, gp["mean"], color=color[pol], label=_short(pol), lw=1.6, **_style(pol))
            ax.fill_between(gp.step, gp.ci_low, gp.ci_high, color=color[pol], alpha=0.2, lw=0)
        ax.set(title=_title(key), xlabel="items presented", ylabel="mean true mastery", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7, loc="lower right")
    fig.suptitle("Mastery (skill models) / recall (memory models)\nover the episode, 95% CI bands", fontsize=11)
    _save(fig, out / "curves.png")


def plot_subgroups(out: Path) -> None:
    df = pd.read_csv(out / "subgroups.csv")
    policies = list(dict.fromkeys(df.policy))
    color = _colors(policies)
    groups = list(df.groupby(SIM, sort=False))
    fig, axes = _grid(len(groups), width=5.5)
    for ax, (key, g) in zip(axes, groups):
        subgroups = list(dict.fromkeys(g.subgroup))
        width = 0.8 / len(policies)
        for k, pol in enumerate(policies):
            gp = g[g.policy == pol].set_index("subgroup").reindex(subgroups)
            x = np.arange(len(subgroups)) + (k - (len(policies) - 1) / 2) * width
            err = np.vstack([gp.post_test_mean - gp.ci_low, gp.ci_high - gp.post_test_mean])
            if gp.post_test_mean.notna().any():  # only the policies this panel's setting ran
                ax.bar(x, gp.post_test_mean, width, yerr=np.nan_to_num(err), color=color[pol], label=_short(pol),
                       capsize=2, hatch="//" if is_privileged(pol) else None)
        ax.set_xticks(np.arange(len(subgroups)), subgroups, rotation=20, ha="right", fontsize=8)
        ax.set(title=_title(key), ylabel="post-test score", ylim=(0, 1.05))
        ax.grid(axis="y", alpha=0.3)
        _legend(ax, fontsize=6, ncol=2)
    fig.suptitle("Outcomes by population subgroup (mean, 95% CI)", fontsize=11)
    _save(fig, out / "subgroups.png")


def plot_time_to_mastery(out: Path) -> None:
    df = pd.read_csv(out / "time_to_mastery.csv")
    policies = list(dict.fromkeys(df.policy))
    color = _colors(policies)
    groups = list(df.groupby(SIM, sort=False))
    fig, axes = _grid(len(groups))
    for ax, (key, g) in zip(axes, groups):
        horizon = int(g.steps_max.max())
        for pol, gp in g.groupby("policy", sort=False):
            gp = gp[gp.steps_to_mastery >= 0].sort_values("steps_to_mastery")
            x = gp.steps_to_mastery.to_numpy()
            n = int(g[g.policy == pol].n.iloc[0])
            y = np.cumsum(gp["count"].to_numpy()) / n
            ax.step(np.concatenate([[0], x, [horizon]]), np.concatenate([[0], y, [y[-1] if len(y) else 0]]),
                    where="post", color=color[pol], label=_short(pol), **_style(pol))
        ax.set(title=_title(key), xlabel="items presented", ylabel="fraction of learners who mastered all skills",
               ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7, loc="upper left")
    fig.suptitle("Time to mastery (cumulative distribution)", fontsize=11)
    _save(fig, out / "time_to_mastery.png")


def plot_matrix(out: Path) -> None:
    df = pd.read_csv(out / "matrix.csv")
    metric = str(df.pop("metric").iloc[0]) if "metric" in df else "post_test"
    df = df.set_index("policy")
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * df.shape[1], 1.2 + 0.45 * df.shape[0]))
    im = ax.imshow(df.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(df.shape[1]), [c.replace("/", "\n") for c in df.columns], fontsize=8)
    ax.set_yticks(range(df.shape[0]), [_short(p) for p in df.index])
    vals = df.to_numpy()
    mid = np.nanmean(vals)
    for i in range(df.shape[0]):
        for j in range(df.shape[1]):
            if np.isfinite(vals[i, j]):
                ax.text(j, i, f"{vals[i, j]:.3f}", ha="center", va="center", fontsize=8,
                        color="black" if vals[i, j] > mid else "white")
    label = metric.replace("_", " ")
    fig.colorbar(im, ax=ax, label=label if label.startswith("mean") else f"mean {label}")
    ax.set_title("Robust evaluation matrix: policy x simulator"
                 + ("\n(privileged: reads the latent state, a bound, not deployable)"
                    if any(is_privileged(p) for p in df.index) else ""))
    _save(fig, out / "matrix.png")


def plot_all(out: Path) -> None:
    plot_curves(out)
    plot_subgroups(out)
    plot_time_to_mastery(out)
    plot_matrix(out)
