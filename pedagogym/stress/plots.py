"""Figures of a stress report, each drawn from the CSV written beside it (never from
in-memory state), saved atomically as PNG. Every function returns the file it wrote, or
None when its table has nothing to show (the report then says so instead of a figure)."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pedagogym.io import atomic_write  # noqa: E402
from pedagogym.stress.findings import HARD_FAIL_FACTOR, HARD_FAIL_MIN, STALL_FACTOR, STALL_MIN  # noqa: E402

DPI = 110
C_DONE, C_LEARN, C_DROP, C_HORIZON, C_REACH = "#2e7d32", "#90a4ae", "#c62828", "#bdbdbd", "#1565c0"


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=DPI, format="png"))
    plt.close(fig)
    return path


def _read(out: Path, name: str) -> pd.DataFrame:
    path = out / name
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _err(err: np.ndarray) -> np.ndarray:
    """Error-bar lengths: NaN -> 0, and never negative (the CSVs round to 6 digits, so a
    bound can land a hair on the wrong side of its estimate)."""
    return np.clip(np.nan_to_num(np.asarray(err, float)), 0.0, None)


def _models(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df.student_model)) if "student_model" in df else []


def plot_completion(out: Path) -> Path | None:
    df = _read(out, "completion.csv")
    if df.empty:
        return None
    models = _models(df)
    fig, axes = plt.subplots(1, len(models), figsize=(7.5 * len(models), 4.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        g = df[df.student_model == model]
        ax.stackplot(g.step, g.completed, g.still_learning, g.dropped, colors=[C_DONE, C_LEARN, C_DROP], alpha=0.85,
                     labels=["mastered every skill", "still learning", "dropped out"])
        ax.plot(g.step, g.mean_skill_mastery, color="black", lw=1.8, ls="--", label="mean share of skills mastered")
        ax.set(xlabel="items presented", ylabel="share of learners", ylim=(0, 1), xlim=(0, g.step.max()),
               title=f"Completion over the unit ({model})")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=9, frameon=False)
    return _save(fig, out / "figures" / "completion.png")


def plot_time_to_mastery(out: Path) -> Path | None:
    df = _read(out, "skills.csv")
    if df.empty:
        return None
    models = _models(df)
    n_s = df[df.student_model == models[0]].shape[0]
    fig, axes = plt.subplots(1, len(models), figsize=(8.0 * len(models), 1.2 + 0.34 * n_s), squeeze=False)
    for ax, model in zip(axes[0], models):
        g = df[df.student_model == model].reset_index(drop=True)
        y = np.arange(len(g))[::-1]
        for yy, r in zip(y, g.itertuples()):
            if not math.isfinite(r.items_p50):
                continue
            ax.plot([r.items_p10, r.items_p90], [yy, yy], color=C_REACH, lw=1.2)
            ax.add_patch(plt.Rectangle((r.items_p25, yy - 0.3), max(r.items_p75 - r.items_p25, 0.5), 0.6,
                                       color=C_REACH, alpha=0.35))
            ax.plot([r.items_p50, r.items_p50], [yy - 0.3, yy + 0.3], color="black", lw=2)
        xmax = float(np.nanmax(g.items_p90.to_numpy(float))) if g.items_p90.notna().any() else 1.0
        for yy, r in zip(y, g.itertuples()):
            ax.text(xmax * 1.02 + 1, yy, f"{100 * r.mastered:.0f}%", va="center", fontsize=8, color="#333")
        ax.set_yticks(y, [f"{r.skill}" for r in g.itertuples()], fontsize=8)
        ax.set_xlim(0, xmax * 1.12 + 5)
        ax.set(xlabel="items presented until the skill is first mastered", title=f"Time to mastery per skill ({model})")
        ax.grid(axis="x", alpha=0.3)
        ax.text(1.0, 1.01, "% mastered", transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="#333")
    fig.text(0.01, 0.005, "box: 25-75th percentile, bar: median, whiskers: 10-90th percentile, among learners who "
             "learnt the skill during the unit", fontsize=8, color="#555")
    return _save(fig, out / "figures" / "time_to_mastery.png")


def plot_skill_curves(out: Path) -> Path | None:
    df = _read(out, "skill_curves.csv")
    if df.empty:
        return None
    models = _models(df)
    skills = list(dict.fromkeys(df[df.student_model == models[0]].skill))
    fig, axes = plt.subplots(1, len(models), figsize=(8.0 * len(models), 1.2 + 0.3 * len(skills)), squeeze=False)
    im = None
    for ax, model in zip(axes[0], models):
        g = df[df.student_model == model].pivot(index="skill", columns="step", values="mastered").reindex(skills)
        im = ax.imshow(g.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(range(len(skills)), skills, fontsize=8)
        ax.set(xlabel="items presented", title=f"Share of learners with each skill mastered ({model})")
    fig.colorbar(im, ax=list(axes[0]), fraction=0.03, pad=0.01, label="share mastered")
    fig.set_layout_engine("none")
    atomic_write(out / "figures" / "skill_mastery.png", lambda p: fig.savefig(p, dpi=DPI, format="png",
                                                                              bbox_inches="tight"))
    plt.close(fig)
    return out / "figures" / "skill_mastery.png"


def plot_funnel(out: Path) -> Path | None:
    df = _read(out, "items.csv")
    if df.empty:
        return None
    models = _models(df)
    n_i = df[df.student_model == models[0]].shape[0]
    width = min(max(8.0, 0.16 * n_i + 3), 20.0)
    fig, axes = plt.subplots(len(models), 1, figsize=(width, 4.6 * len(models)), squeeze=False)
    for ax, model in zip(axes[:, 0], models):
        g = df[df.student_model == model]
        x = np.arange(len(g))
        bottom = np.zeros(len(g))
        for col, color, label in (("reached", C_REACH, "reached the item"),
                                  ("completed_before", C_DONE, "mastered everything before it"),
                                  ("dropped_before", C_DROP, "dropped out before it"),
                                  ("horizon_before", C_HORIZON, "ran out of items before it")):
            ax.bar(x, g[col], bottom=bottom, color=color, width=0.85, label=label)
            bottom += g[col].to_numpy()
        ax2 = ax.twinx()
        ax2.plot(x, 100 * g.dropout_share, color="black", marker="o", ms=2.5, lw=1, label="share of dropouts leaving here")
        ax2.set_ylabel("% of all dropouts leaving after this item", fontsize=9)
        ax2.set_ylim(0, max(5.0, 100 * float(g.dropout_share.max()) * 1.15))
        ax.set_xticks(x, g.item, rotation=90, fontsize=7 if n_i > 40 else 8)
        ax.set(xlim=(-0.6, len(g) - 0.4), ylim=(0, 1), ylabel="share of learners",
               title=f"Funnel along the designer's order ({model})")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=5, frameon=False)
        ax.set_title(ax.get_title(), pad=24)
    return _save(fig, out / "figures" / "funnel.png")


def plot_bottlenecks(out: Path, top: int = 25) -> Path | None:
    """Left: per skill, the share of learners who practise it (and stay) but never master it.
    Right: the ``top`` items most often failed by learners who have mastered their skills,
    flagged ones in red (the rule of the plain-word findings, roughly)."""
    sk, it = _read(out, "skills.csv"), _read(out, "items.csv")
    if sk.empty or it.empty:
        return None
    models = _models(sk)
    n_s = sk[sk.student_model == models[0]].shape[0]
    n_rows = max(n_s, min(top, it[it.student_model == models[0]].shape[0]))
    fig, axes = plt.subplots(len(models), 2, figsize=(15, max(3.8, 1.4 + 0.3 * n_rows) * len(models)), squeeze=False)
    for (ax1, ax2), model in zip(axes, models):
        g = sk[sk.student_model == model].reset_index(drop=True)
        y = np.arange(len(g))[::-1]
        stalled = g.stalled_stayed.fillna(0).to_numpy()
        right = min(1.0, (stalled.max() if stalled.size else 0) * 1.45 + 0.1)
        med_stall = float(np.median(stalled[g.stalled_stayed.notna().to_numpy()])) if g.stalled_stayed.notna().any() else 0.0
        bad = (stalled >= STALL_MIN) & (stalled >= STALL_FACTOR * med_stall)
        ax1.barh(y, stalled, color=np.where(bad, C_DROP, C_REACH), alpha=0.85)
        ax1.axvline(med_stall, color="black", ls="--", lw=1, label=f"median skill ({100 * med_stall:.0f}%)")
        ax1.legend(fontsize=8, loc="lower right")
        for yy, v, r in zip(y, stalled, g.itertuples()):
            if math.isfinite(r.practice_p50):
                ax1.text(v + 0.01 * right, yy, f"{r.practice_p50:.0f} items to master", va="center", fontsize=7,
                         color="#333")
        ax1.set_yticks(y, g.skill, fontsize=8)
        ax1.set(xlim=(0, right), xlabel="share of learners who practise it (and stay) but never master it")
        ax1.set_title(f"Skills where learners stall ({model}; red: flagged)", fontsize=10)
        ax1.grid(axis="x", alpha=0.3)
        h = it[it.student_model == model].dropna(subset=["mastered_fail_rate"])
        if h.empty:
            ax2.axis("off")
            continue
        med = float(h.mastered_fail_rate.median())
        h = h.sort_values("mastered_fail_rate", ascending=False).head(top).iloc[::-1]
        rate = h.mastered_fail_rate.to_numpy(float)
        yi = np.arange(len(h))
        flagged = rate >= max(HARD_FAIL_MIN, HARD_FAIL_FACTOR * med)
        ax2.barh(yi, rate, color=np.where(flagged, C_DROP, C_REACH), alpha=0.85)
        ax2.axvline(med, color="black", ls="--", lw=1, label=f"median item ({100 * med:.0f}%)")
        ax2.set_yticks(yi, [f"{i}  ({s})" for i, s in zip(h.item, h.skills)], fontsize=7.5)
        ax2.set(xlim=(0, 1), xlabel="failure rate of learners who have mastered every skill the item exercises")
        ax2.set_title(f"Items failed despite mastery, worst {len(h)} ({model}; red: flagged)", fontsize=10)
        ax2.legend(fontsize=8, loc="lower right")
        ax2.grid(axis="x", alpha=0.3)
    return _save(fig, out / "figures" / "bottlenecks.png")


def plot_prereq_gaps(out: Path) -> Path | None:
    df = _read(out, "prereq_gaps.csv")
    if df.empty:
        return None
    models = _models(df)
    top = 25
    n = min(top, df[df.student_model == models[0]].shape[0])
    fig, axes = plt.subplots(1, len(models), figsize=(8.0 * len(models), 1.3 + 0.3 * n), squeeze=False)
    for ax, model in zip(axes[0], models):
        g = df[df.student_model == model].sort_values("gap_rate", ascending=False).head(top).iloc[::-1]
        y = np.arange(len(g))
        err = np.vstack([g.gap_rate - g.gap_ci_low, g.gap_ci_high - g.gap_rate])
        ax.barh(y, g.gap_rate, xerr=_err(err), color="#ef6c00", alpha=0.85, capsize=2)
        ax.set_yticks(y, g.edge, fontsize=8)
        ax.set(xlim=(0, 1), xlabel="share of learners who first practise the skill with this prerequisite unmastered",
               title=f"Prerequisite gaps under the designer's order ({model})")
        ax.axvline(0.3, color="black", ls=":", lw=1)
        ax.grid(axis="x", alpha=0.3)
    return _save(fig, out / "figures" / "prereq_gaps.png")


def plot_missing_prereqs(out: Path) -> Path | None:
    df = _read(out, "missing_prereqs.csv")
    if df.empty:
        return None
    models = _models(df)
    top = 12
    fig, axes = plt.subplots(1, len(models), figsize=(8.0 * len(models), 1.5 + 0.42 * min(top, len(df))), squeeze=False)
    for ax, model in zip(axes[0], models):
        g = df[df.student_model == model].sort_values("ratio", ascending=False).head(top).iloc[::-1]
        y = np.arange(len(g))
        ax.barh(y + 0.2, 100 * g.rate_with, height=0.4, color=C_DONE, label="candidate mastered")
        ax.barh(y - 0.2, 100 * g.rate_without, height=0.4, color=C_DROP, label="candidate not mastered")
        labels = [f"{'!! ' if f else ''}{c} -> {s}  ({r:.1f}x)" for c, s, r, f in zip(g.candidate, g.skill, g.ratio, g.flagged)]
        ax.set_yticks(y, labels, fontsize=8)
        ax.set(xlabel="% of practice items that master the skill (declared prerequisites all mastered)",
               title=f"Possible missing prerequisites, strongest first ({model})")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(axis="x", alpha=0.3)
    fig.text(0.01, 0.005, "!! = flagged: ratio >= 3, >= 2x the skill's median ratio, z >= 4", fontsize=8, color="#555")
    return _save(fig, out / "figures" / "missing_prereqs.png")


EQUITY_PANELS = (("completed", "mastered every skill", True), ("dropped", "dropped out", True),
                 ("skills_mastered", "skills mastered (mean)", False), ("post_test", "post-test score (mean)", False))


def plot_equity(out: Path) -> Path | None:
    df = _read(out, "equity.csv")
    if df.empty:
        return None
    models = _models(df)
    groups = list(dict.fromkeys(df.subgroup))
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(EQUITY_PANELS), figsize=(4.2 * len(EQUITY_PANELS), 3.9), squeeze=False)
    width = 0.8 / len(models)
    for ax, (m, label, is_prop) in zip(axes[0], EQUITY_PANELS):
        for k, model in enumerate(models):
            g = df[df.student_model == model].set_index("subgroup").reindex(groups)
            x = np.arange(len(groups)) + (k - (len(models) - 1) / 2) * width
            err = np.vstack([g[m] - g[f"{m}_lo"], g[f"{m}_hi"] - g[m]])
            ax.bar(x, g[m], width, yerr=_err(err), capsize=3, color=cmap(k), label=model)
        ax.set_xticks(np.arange(len(groups)), ["\n".join(textwrap.wrap(s.replace("_", " "), 12)) for s in groups],
                      fontsize=8)
        ax.set_title(label, fontsize=10)
        if is_prop:
            ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    if len(models) > 1:
        axes[0][0].legend(fontsize=8)
    fig.suptitle("Outcomes by population subgroup (95% CI)", fontsize=11)
    return _save(fig, out / "figures" / "equity.png")


def plot_sensitivity(out: Path) -> Path | None:
    df = _read(out, "sensitivity.csv")
    if df.empty:
        return None
    models = _models(df)
    top = 15
    n = min(top, df[df.student_model == models[0]].shape[0])
    fig, axes = plt.subplots(len(models), 2, figsize=(15, (1.4 + 0.36 * n) * len(models)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1]})
    for (ax1, ax2), model in zip(axes, models):
        g = df[df.student_model == model].sort_values("rank").head(top).iloc[::-1]
        y = np.arange(len(g))
        labels = ["\n".join(textwrap.wrap(c, 58)[:2]) for c in g.change]
        for ax, m, scale, xlabel in ((ax1, "completed", 100, "change in completion (percentage points)"),
                                     (ax2, "skill_time", 1, "change in items to master a skill (mean, capped)")):
            err = np.vstack([g[f"d_{m}"] - g[f"d_{m}_lo"], g[f"d_{m}_hi"] - g[f"d_{m}"]]) * scale
            good = (g[f"d_{m}"] > 0) if m == "completed" else (g[f"d_{m}"] < 0)
            colors = np.where(good, C_DONE, C_DROP)
            ax.barh(y, scale * g[f"d_{m}"], xerr=_err(err), color=colors, alpha=0.85, capsize=2)
            ax.axvline(0, color="black", lw=0.8)
            ax.set(xlabel=xlabel)
            ax.grid(axis="x", alpha=0.3)
        ax1.set_yticks(y, labels, fontsize=7.5)
        ax2.set_yticks(y, [""] * len(y))
        sizes = "; ".join(f"{stage}: {int(k)} learners" for stage, k in
                          g.groupby("stage", sort=False).learners.max().iloc[::-1].items())
        ax1.set_title(f"What-if changes, most influential first ({model}; {sizes}; paired, 95% CI)", fontsize=10,
                      loc="left")
    return _save(fig, out / "figures" / "sensitivity.png")


FIGURES = {
    "completion": plot_completion, "time_to_mastery": plot_time_to_mastery, "skill_mastery": plot_skill_curves,
    "funnel": plot_funnel, "bottlenecks": plot_bottlenecks, "prereq_gaps": plot_prereq_gaps,
    "missing_prereqs": plot_missing_prereqs, "equity": plot_equity, "sensitivity": plot_sensitivity,
}


def plot_all(out: Path) -> dict[str, Path | None]:
    return {name: fn(out) for name, fn in FIGURES.items()}
