"""Tables, statistics and plots of a finished run, rebuilt from its cell files.

- ``episodes.csv``: one row per learner-episode.
- ``summary.csv`` / ``summary.md``: mean and 95% CI per cell and metric, and the paired
  difference to the baseline policy (same learners, common random numbers) with its CI.
- ``curves.csv`` + ``curves.png``: mean true mastery after each item, with 95% CI bands.
- ``subgroups.csv`` + ``subgroups.png``: post-test by population subgroup.
- ``time_to_mastery.png``: distribution of items to mastery (ECDF).
- ``matrix.csv`` + ``matrix.png``: the robust evaluation matrix (Doroudi et al. 2017),
  policy x simulator, mean post-test.
Plots are drawn from the CSVs written here, never from in-memory state.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pedagogym.experiments.config import ExperimentConfig, ci_halfwidth
from pedagogym.experiments.io import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from pedagogym.experiments.runner import Cell

KEYS = ["env", "student_model", "population", "policy"]
SIM = ["env", "student_model", "population"]
LABELS = {"post_test": "post-test", "final_mastery": "final mastery", "mean_recall": "mean recall",
          "log_recall": "log recall", "steps_to_mastery": "items to mastery", "mastered": "mastered",
          "dropped": "dropped out", "time_spent_min": "minutes", "days": "days", "total_reward": "return",
          "ability_rmse": "ability RMSE", "test_length": "test length"}
# Metrics summarised from a per-episode column other than their own name, through a monotone
# transform of the mean (and of its CI bounds): ability RMSE = sqrt(mean squared error of the
# platform's EAP estimate). Their paired difference to the baseline is the difference of the
# transformed means, without a CI.
DERIVED = {"ability_rmse": ("ability_sq_error", np.sqrt)}


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda p: df.to_csv(p, index=False, float_format="%.6g"))


def episodes_table(out: Path, cells: list["Cell"], learners: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from pedagogym.experiments.runner import load_cell
    from pedagogym.experiments.config_resolve import subgroup_names

    frames, curves = [], []
    for cell in cells:
        d = load_cell(out / "cells" / f"{cell.id}.npz", learners)
        assert d is not None, cell.id
        names = subgroup_names(cell.population)
        stm = d["steps_to_mastery"].astype(float)
        frames.append(pd.DataFrame({
            "env": cell.env.label, "student_model": cell.model, "population": cell.population,
            "subgroup": [names[int(g)] for g in d["subgroup"]], "policy": cell.policy, "seed": cell.seed,
            "learner": np.arange(learners), "final_mastery": d["final_mastery"], "post_test": d["post_test"],
            "mean_recall": d["mean_recall"], "log_recall": d["log_recall"],
            "steps_to_mastery": np.where(stm >= 0, stm, np.nan), "mastered": (stm >= 0).astype(int),
            "dropped": d["dropped"].astype(int), "steps": d["steps"], "time_spent_min": d["time_spent_min"],
            "days": d["days"], "total_reward": d["total_reward"], "valid_actions": d["valid_actions"],
            "test_length": d["steps"], "ability_error": d["ability_error"], "ability_sq_error": d["ability_error"] ** 2,
            "ability_se": d["ability_se"],
        }))
        curves.append(pd.DataFrame({"env": cell.env.label, "student_model": cell.model, "population": cell.population,
                                    "policy": cell.policy, "seed": cell.seed, "step": np.arange(len(d["curve_sum"])),
                                    "sum": d["curve_sum"], "sumsq": d["curve_sumsq"], "n": learners}))
    return pd.concat(frames, ignore_index=True), pd.concat(curves, ignore_index=True)


def _mean_ci(x: pd.Series) -> tuple[float, float, float, int]:
    x = x.dropna().astype(float)
    n = len(x)
    if n == 0:
        return (math.nan, math.nan, math.nan, 0)
    m, h = float(x.mean()), ci_halfwidth(float(x.std(ddof=1)) if n > 1 else math.nan, n)
    return (m, m - h, m + h, n)


def summary_table(ep: pd.DataFrame, metrics: tuple[str, ...], baseline: str) -> pd.DataFrame:
    rows = []
    pair_keys = SIM + ["seed", "learner"]
    base = ep[ep.policy == baseline].set_index(pair_keys)
    for key, g in ep.groupby(KEYS, sort=False):
        row = dict(zip(KEYS, key))
        paired = g.set_index(pair_keys)
        for m in metrics:
            if m in DERIVED:
                col, f = DERIVED[m]
                mean, lo, hi, n = _mean_ci(g[col])
                mean, lo, hi = (float(f(max(v, 0.0))) if math.isfinite(v) else math.nan for v in (mean, lo, hi))
                row.update({f"{m}_mean": mean, f"{m}_ci_low": lo, f"{m}_ci_high": hi, f"{m}_n": n})
                b_mean = _mean_ci(base[col].reindex(paired.index))[0] if key[3] != baseline else math.nan
                dm = mean - float(f(max(b_mean, 0.0))) if math.isfinite(b_mean) else (0.0 if key[3] == baseline else math.nan)
                row.update({f"{m}_diff_vs_{baseline}": dm, f"{m}_diff_ci_low": math.nan, f"{m}_diff_ci_high": math.nan})
                continue
            mean, lo, hi, n = _mean_ci(g[m])
            row.update({f"{m}_mean": mean, f"{m}_ci_low": lo, f"{m}_ci_high": hi, f"{m}_n": n})
            diff = (paired[m] - base[m].reindex(paired.index)) if key[3] != baseline else None
            if diff is not None:
                dm, dlo, dhi, dn = _mean_ci(diff)
                row.update({f"{m}_diff_vs_{baseline}": dm, f"{m}_diff_ci_low": dlo, f"{m}_diff_ci_high": dhi})
            else:
                row.update({f"{m}_diff_vs_{baseline}": 0.0, f"{m}_diff_ci_low": 0.0, f"{m}_diff_ci_high": 0.0})
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(m: float, lo: float, hi: float, pct: bool = False, digits: int = 3) -> str:
    if not math.isfinite(m):
        return "–"
    if pct:
        return f"{100 * m:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    if not math.isfinite(lo):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def summary_markdown(summary: pd.DataFrame, config: ExperimentConfig) -> str:
    b = config.baseline
    shown = ("post_test", "final_mastery", "mean_recall", "mastered", "steps_to_mastery", "dropped",
             "time_spent_min", "ability_rmse", "test_length")
    all_cols = [m for m in shown if m in config.metrics]
    lines = [f"# {config.name}: policy comparison", "",
             f"{config.learners} simulated learners per cell x {len(config.seeds)} seed(s) {list(config.seeds)}; "
             f"mean [95% CI]. Δ is the paired difference to `{b}` on the same learners (common random numbers).", ""]
    for sim, g in summary.groupby(SIM, sort=False):
        # ability RMSE only where the model has an ability (IRT); test length only beside it
        has_ability = "ability_rmse_mean" in g and bool(np.isfinite(g["ability_rmse_mean"].astype(float)).any())
        cols = [c for c in all_cols if has_ability or c not in ("ability_rmse", "test_length")]
        lines += [f"## {sim[0]} · model `{sim[1]}` · population `{sim[2]}`", ""]
        head = ["policy"] + [LABELS[c] for c in cols]
        if "post_test" in cols:
            head.insert(2, f"Δ post-test vs {b}")
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        g = g.sort_values("post_test_mean" if "post_test" in cols else KEYS[3], ascending=False)
        for _, r in g.iterrows():
            cells = [f"`{r.policy}`"]
            for c in cols:
                pct = c in ("mastered", "dropped")
                digits = 1 if c in ("steps_to_mastery", "time_spent_min", "test_length") else 3
                cells.append(_fmt(r[f"{c}_mean"], r[f"{c}_ci_low"], r[f"{c}_ci_high"], pct=pct, digits=digits))
                if c == "post_test":
                    cells.append("—" if r.policy == b else _fmt(r[f"post_test_diff_vs_{b}"], r["post_test_diff_ci_low"],
                                                                    r["post_test_diff_ci_high"]))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def curves_table(curves: pd.DataFrame) -> pd.DataFrame:
    agg = curves.groupby(KEYS + ["step"], sort=False)[["sum", "sumsq", "n"]].sum().reset_index()
    mean = agg["sum"] / agg["n"]
    var = (agg["sumsq"] - agg["n"] * mean ** 2) / (agg["n"] - 1).clip(lower=1)
    half = 1.96 * np.sqrt(var.clip(lower=0) / agg["n"])
    return agg[KEYS + ["step"]].assign(mean=mean, ci_low=mean - half, ci_high=mean + half, n=agg["n"])


def subgroup_table(ep: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, g in ep.groupby(KEYS + ["subgroup"], sort=False):
        m, lo, hi, n = _mean_ci(g["post_test"])
        rows.append(dict(zip(KEYS + ["subgroup"], key), post_test_mean=m, ci_low=lo, ci_high=hi, n=n,
                         dropped=float(g["dropped"].mean())))
    return pd.DataFrame(rows)


def matrix_table(summary: pd.DataFrame) -> pd.DataFrame:
    s = summary.assign(simulator=summary.env + "/" + summary.student_model + "/" + summary.population)
    return s.pivot_table(index="policy", columns="simulator", values="post_test_mean", sort=False).reset_index()


def write_report(config: ExperimentConfig, out: Path, cells: list["Cell"]) -> None:
    ep, raw_curves = episodes_table(out, cells, config.learners)
    _write_csv(ep, out / "episodes.csv")
    summary = summary_table(ep, config.metrics, config.baseline)
    _write_csv(summary, out / "summary.csv")
    atomic_write_text(out / "summary.md", summary_markdown(summary, config))
    _write_csv(curves_table(raw_curves), out / "curves.csv")
    _write_csv(subgroup_table(ep), out / "subgroups.csv")
    _write_csv(matrix_table(summary), out / "matrix.csv")
    from pedagogym.experiments.plots import plot_all

    plot_all(out)
