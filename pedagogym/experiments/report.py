"""Tables, statistics and plots of a finished run, rebuilt from its cell files.

- ``episodes.csv``: one row per learner-episode (only with ``save_episodes``).
Every table below comes from one accumulator (:class:`SummaryAccumulator`: counts, means and
sums of squared deviations of each metric and of its paired difference, combined chunk by
chunk). With ``save_episodes`` it is fed the episodes frame, one chunk per simulator and
policy; without, cell by cell, streaming (at most a cell and its baseline cell in memory).
Intervals are 95% t-intervals everywhere, the curves' bands included.
- ``summary.csv`` / ``summary.md``: mean and 95% CI per cell and metric, and the paired
  difference to the baseline policy (same learners, common random numbers) with its CI.
- ``curves.csv`` + ``curves.png``: mean true mastery after each item, with 95% CI bands.
- ``subgroups.csv`` + ``subgroups.png``: post-test by population subgroup.
- ``time_to_mastery.csv`` + ``time_to_mastery.png``: distribution of items to mastery
  (counts per number of items, -1 = never; ECDF plot).
- ``matrix.csv`` + ``matrix.png``: the robust evaluation matrix (Doroudi et al. 2017),
  policy x simulator, mean post-test.
Plots are drawn from the CSVs written here, never from in-memory state.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from pedagogym.experiments.cells import Cell, load_cell, subgroup_names
from pedagogym.experiments.config import ExperimentConfig, ci_halfwidth
from pedagogym.policies import PRIVILEGED_MARK, is_privileged
from pedagogym.io import atomic_write, atomic_write_text

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
    """Atomically; text cells a spreadsheet would run as formulas are escaped (pedagogym.io.csv_safe)."""
    from pedagogym.io import csv_safe_frame

    safe = csv_safe_frame(df)
    atomic_write(path, lambda p: safe.to_csv(p, index=False, float_format="%.6g"))


def _metric_columns(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The metric columns of one cell, per learner (NaN = undefined, e.g. never mastered)."""
    stm = d["steps_to_mastery"].astype(float)
    return {"final_mastery": d["final_mastery"], "post_test": d["post_test"], "mean_recall": d["mean_recall"],
            "log_recall": d["log_recall"], "steps_to_mastery": np.where(stm >= 0, stm, np.nan),
            "mastered": (stm >= 0).astype(int), "dropped": d["dropped"].astype(int), "steps": d["steps"],
            "time_spent_min": d["time_spent_min"], "days": d["days"], "total_reward": d["total_reward"],
            "valid_actions": d["valid_actions"], "test_length": d["steps"], "ability_error": d["ability_error"],
            "ability_sq_error": d["ability_error"] ** 2, "ability_se": d["ability_se"]}


def _load(out: Path, cell: Cell, learners: int) -> dict[str, np.ndarray]:
    d = load_cell(out / "cells" / f"{cell.id}.npz", learners)
    assert d is not None, cell.id
    return d


def _curve_frame(cell: Cell, d: dict[str, np.ndarray], learners: int) -> pd.DataFrame:
    return pd.DataFrame({"env": cell.env.label, "student_model": cell.model, "population": cell.population,
                         "policy": cell.policy, "seed": cell.seed, "step": np.arange(len(d["curve_sum"])),
                         "sum": d["curve_sum"], "sumsq": d["curve_sumsq"], "n": learners})


def episodes_table(out: Path, cells: list[Cell], learners: int) -> pd.DataFrame:
    """One row per learner-episode (``episodes.csv``); the statistics come from the cells, not from it."""
    frames = []
    for cell in cells:
        d = _load(out, cell, learners)
        names = subgroup_names(cell.population)
        frames.append(pd.DataFrame({
            "env": cell.env.label, "student_model": cell.model, "population": cell.population,
            "subgroup": [names[int(g)] for g in d["subgroup"]], "policy": cell.policy, "seed": cell.seed,
            "learner": np.arange(learners), **_metric_columns(d),
        }))
    return pd.concat(frames, ignore_index=True)


def _t_quantile(n: pd.Series, level: float = 0.95) -> pd.Series:
    """Student-t quantile of a two-sided ``level`` interval with n - 1 degrees of freedom (NaN
    below n = 2), elementwise: the same interval as ``config.ci_halfwidth``."""
    from scipy import stats

    n = np.asarray(n, float)
    return pd.Series(np.where(n >= 2, stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), np.nan))


class Moments:
    """Count, mean and sum of squared deviations of a stream of numbers (NaNs skipped),
    combined chunk by chunk (Chan et al.'s parallel update): exact enough for CIs, O(1) memory."""

    __slots__ = ("n", "mean", "m2")

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> "Moments":
        x = np.asarray(x, float)
        x = x[~np.isnan(x)]
        nb = len(x)
        if nb == 0:
            return self
        mb = float(x.mean())
        m2b = float(((x - mb) ** 2).sum())
        n = self.n + nb
        delta = mb - self.mean
        self.mean += delta * nb / n
        self.m2 += m2b + delta ** 2 * self.n * nb / n
        self.n = n
        return self

    def mean_ci(self) -> tuple[float, float, float, int]:
        if self.n == 0:
            return (math.nan, math.nan, math.nan, 0)
        sd = math.sqrt(max(self.m2, 0.0) / (self.n - 1)) if self.n > 1 else math.nan
        h = ci_halfwidth(sd, self.n)
        return (self.mean, self.mean - h, self.mean + h, self.n)


class SummaryAccumulator:
    """The one statistics path of a run: per (simulator, policy) key and metric, streaming
    moments of the metric and of its paired difference to the baseline on the same learners;
    per subgroup, post-test and dropout. Fed cell by cell (:func:`streaming_tables`) or from an
    episodes frame (:func:`summary_table`); both give the same rows."""

    def __init__(self, metrics: tuple[str, ...], baseline: str) -> None:
        self.metrics, self.baseline = tuple(metrics), baseline
        self.stats: dict[tuple, dict[str, tuple[Moments, Moments]]] = {}
        self.sub: dict[tuple, tuple[Moments, Moments]] = {}

    def add(self, key: tuple, cols: dict[str, np.ndarray], base: dict[str, np.ndarray] | None,
            subgroups: np.ndarray | None = None) -> None:
        """One cell (or one simulator x seed x policy slice): ``cols`` its per-learner metric
        columns, ``base`` the baseline's columns on the same learners in the same order (None
        for the baseline itself), ``subgroups`` each learner's subgroup name."""
        group = self.stats.setdefault(key, {m: (Moments(), Moments()) for m in self.metrics})
        for m in self.metrics:
            col = DERIVED[m][0] if m in DERIVED else m
            group[m][0].add(cols[col])
            if base is not None:  # derived metrics: the baseline's own mean; others: paired differences
                group[m][1].add(base[col] if m in DERIVED else np.subtract(cols[col], base[col]))  # in the columns' dtype
        if subgroups is not None:
            names, first = np.unique(subgroups, return_index=True)
            for name in names[np.argsort(first)]:
                sel = subgroups == name
                acc = self.sub.setdefault(key + (str(name),), (Moments(), Moments()))
                acc[0].add(cols["post_test"][sel])
                acc[1].add(cols["dropped"][sel])

    def summary(self) -> pd.DataFrame:
        rows, baseline = [], self.baseline
        for key, group in self.stats.items():
            row = dict(zip(KEYS, key))
            for m in self.metrics:
                mean, lo, hi, n = group[m][0].mean_ci()
                if m in DERIVED:  # a transform of the mean; the difference of transforms, no CI
                    f = DERIVED[m][1]
                    mean, lo, hi = (float(f(max(v, 0.0))) if math.isfinite(v) else math.nan for v in (mean, lo, hi))
                    b_mean = group[m][1].mean_ci()[0] if key[3] != baseline else math.nan
                    dm = mean - float(f(max(b_mean, 0.0))) if math.isfinite(b_mean) else (0.0 if key[3] == baseline else math.nan)
                    row.update({f"{m}_mean": mean, f"{m}_ci_low": lo, f"{m}_ci_high": hi, f"{m}_n": n,
                                f"{m}_diff_vs_{baseline}": dm, f"{m}_diff_ci_low": math.nan, f"{m}_diff_ci_high": math.nan})
                    continue
                row.update({f"{m}_mean": mean, f"{m}_ci_low": lo, f"{m}_ci_high": hi, f"{m}_n": n})
                if key[3] != baseline:
                    dm, dlo, dhi, _ = group[m][1].mean_ci()
                    row.update({f"{m}_diff_vs_{baseline}": dm, f"{m}_diff_ci_low": dlo, f"{m}_diff_ci_high": dhi})
                else:
                    row.update({f"{m}_diff_vs_{baseline}": 0.0, f"{m}_diff_ci_low": 0.0, f"{m}_diff_ci_high": 0.0})
            rows.append(row)
        return pd.DataFrame(rows)

    def subgroups(self) -> pd.DataFrame:
        rows = []
        for key, (post, dropped) in self.sub.items():
            m, lo, hi, n = post.mean_ci()
            rows.append(dict(zip(KEYS + ["subgroup"], key), post_test_mean=m, ci_low=lo, ci_high=hi, n=n,
                             dropped=float(dropped.mean)))
        return pd.DataFrame(rows)


def _accumulate_episodes(ep: pd.DataFrame, metrics: tuple[str, ...], baseline: str,
                         subgroups: bool = False) -> SummaryAccumulator:
    """Feed an episodes frame (one row per learner-episode) into the accumulator: per simulator
    and policy, all seeds at once (one chunk, so the moments are numpy's own mean and squared
    deviations of the pooled column), paired with the baseline's rows by seed and learner."""
    acc = SummaryAccumulator(metrics, baseline)
    needed = sorted({DERIVED[m][0] if m in DERIVED else m for m in metrics} | ({"post_test", "dropped"} if subgroups else set()))
    pair_keys = SIM + ["seed", "learner"]
    base = ep[ep.policy == baseline].set_index(pair_keys)
    for key, g in ep.groupby(KEYS, sort=False):
        paired = g.set_index(pair_keys)
        cols = {c: paired[c].to_numpy() for c in needed}
        b = None
        if key[3] != baseline:
            aligned = base.reindex(paired.index)
            b = {c: aligned[c].to_numpy() for c in needed}
        acc.add(tuple(key), cols, b, g["subgroup"].to_numpy() if subgroups else None)
    return acc


def summary_table(ep: pd.DataFrame, metrics: tuple[str, ...], baseline: str) -> pd.DataFrame:
    """Mean, 95% t-interval and paired difference to ``baseline`` per simulator and policy, from
    an episodes frame (the same accumulator as :func:`streaming_tables`)."""
    return _accumulate_episodes(ep, metrics, baseline).summary()


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
    shown = ("post_test", "final_mastery", "mean_recall", "log_recall", "mastered", "steps_to_mastery", "dropped",
             "time_spent_min", "ability_rmse", "test_length")
    all_cols = [m for m in shown if m in config.metrics]
    primary = matrix_metric(config.metrics)  # rows sorted by it; its paired Δ is shown
    lines = [f"# {config.name}: policy comparison", "",
             f"{config.learners} simulated learners per cell x {len(config.seeds)} seed(s) {list(config.seeds)}; "
             f"mean [95% CI]. Δ is the paired difference to `{b}` on the same learners (common random numbers). "
             "(privileged): reads the simulated learner's latent state; a bound, not a deployable policy.", ""]
    for sim, g in summary.groupby(SIM, sort=False):
        # ability RMSE only where the model has an ability (IRT); test length only beside it
        has_ability = "ability_rmse_mean" in g and bool(np.isfinite(g["ability_rmse_mean"].astype(float)).any())
        cols = [c for c in all_cols if has_ability or c not in ("ability_rmse", "test_length")]
        lines += [f"## {sim[0]} · model `{sim[1]}` · population `{sim[2]}`", ""]
        head = ["policy"] + [LABELS[c] for c in cols]
        if primary in cols:
            head.insert(cols.index(primary) + 2, f"Δ {LABELS[primary]} vs {b}")
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lower_better = primary in ("steps_to_mastery", "dropped", "time_spent_min", "ability_rmse", "test_length")
        g = g.sort_values(f"{primary}_mean" if primary in cols else KEYS[3], ascending=lower_better)
        for _, r in g.iterrows():
            cells = [f"`{r.policy}`" + (PRIVILEGED_MARK if is_privileged(r.policy) else "")]
            for c in cols:
                pct = c in ("mastered", "dropped")
                digits = 1 if c in ("steps_to_mastery", "time_spent_min", "test_length") else 3
                cells.append(_fmt(r[f"{c}_mean"], r[f"{c}_ci_low"], r[f"{c}_ci_high"], pct=pct, digits=digits))
                if c == primary:
                    cells.append("—" if r.policy == b else _fmt(r[f"{c}_diff_vs_{b}"], r[f"{c}_diff_ci_low"],
                                                                    r[f"{c}_diff_ci_high"], pct=pct, digits=digits))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def curves_table(curves: pd.DataFrame) -> pd.DataFrame:
    agg = curves.groupby(KEYS + ["step"], sort=False)[["sum", "sumsq", "n"]].sum().reset_index()
    mean = agg["sum"] / agg["n"]
    var = (agg["sumsq"] - agg["n"] * mean ** 2) / (agg["n"] - 1).clip(lower=1)
    half = _t_quantile(agg["n"]) * np.sqrt(var.clip(lower=0) / agg["n"])  # the t interval of every other table
    return agg[KEYS + ["step"]].assign(mean=mean, ci_low=mean - half, ci_high=mean + half, n=agg["n"])


def matrix_metric(metrics) -> str:
    """The metric of the robust evaluation matrix: post-test if the run reports it, else its first metric."""
    return "post_test" if "post_test" in metrics else metrics[0]


def matrix_table(summary: pd.DataFrame, metric: str = "post_test") -> pd.DataFrame:
    """policy x simulator table of the mean of ``metric`` (columns: policy, metric, one per simulator)."""
    s = summary.assign(simulator=summary.env + "/" + summary.student_model + "/" + summary.population)
    m = s.pivot_table(index="policy", columns="simulator", values=f"{metric}_mean", sort=False).reset_index()
    m.insert(1, "metric", metric)
    return m


def streaming_tables(out: Path, cells: list[Cell], learners: int, metrics: tuple[str, ...],
                     baseline: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """summary, subgroups and raw curve sums of a run, computed cell by cell: memory holds one
    cell and its baseline cell (same simulator and seed, same learners)."""
    acc = SummaryAccumulator(metrics, baseline)
    curves = []
    base_of: tuple = (None, None)  # (simulator and seed, baseline columns): cells come grouped by them
    for cell in cells:
        d = _load(out, cell, learners)
        cols = _metric_columns(d)
        base = None
        if cell.policy != baseline:
            b = Cell(cell.env, cell.model, cell.population, baseline, cell.seed)
            if base_of[0] != b:
                base_of = (b, _metric_columns(_load(out, b, learners)))
            base = base_of[1]
        names = np.asarray(subgroup_names(cell.population))
        acc.add((cell.env.label, cell.model, cell.population, cell.policy), cols, base, names[d["subgroup"].astype(int)])
        curves.append(_curve_frame(cell, d, learners))
        del d, cols, base
    return acc.summary(), acc.subgroups(), pd.concat(curves, ignore_index=True)


def time_to_mastery_table(out: Path, cells: list[Cell], learners: int) -> pd.DataFrame:
    """Per simulator and policy (seeds pooled): how many learners mastered every skill after
    each number of items (``steps_to_mastery`` -1: never), ``n`` learners, and the most items
    any of them was presented (``steps_max``)."""
    counts: dict[tuple, np.ndarray] = {}
    steps_max: dict[tuple, int] = {}
    for cell in cells:
        d = _load(out, cell, learners)
        key = (cell.env.label, cell.model, cell.population, cell.policy)
        c = np.bincount(d["steps_to_mastery"].astype(np.int64) + 1)  # index 0 = never (-1)
        old = counts.get(key, np.zeros(0, np.int64))
        size = max(len(old), len(c))
        counts[key] = np.pad(old, (0, size - len(old))) + np.pad(c, (0, size - len(c)))
        steps_max[key] = max(steps_max.get(key, 0), int(d["steps"].max()))
    rows = []
    for key, c in counts.items():
        for k in np.flatnonzero(c):
            rows.append(dict(zip(KEYS, key), steps_to_mastery=int(k) - 1, count=int(c[k]), n=int(c.sum()),
                             steps_max=steps_max[key]))
    return pd.DataFrame(rows)


def write_report(config: ExperimentConfig, out: Path, cells: list[Cell], save_episodes: bool = True) -> None:
    if save_episodes:  # the episodes are in memory anyway: one chunk per simulator and policy
        ep = episodes_table(out, cells, config.learners)
        _write_csv(ep, out / "episodes.csv")
        acc = _accumulate_episodes(ep, config.metrics, config.baseline, subgroups=True)
        summary, subgroups = acc.summary(), acc.subgroups()
        raw_curves = pd.concat([_curve_frame(c, _load(out, c, config.learners), config.learners) for c in cells],
                               ignore_index=True)
        del ep, acc
    else:
        (out / "episodes.csv").unlink(missing_ok=True)  # a stale one would not match these tables
        summary, subgroups, raw_curves = streaming_tables(out, cells, config.learners, config.metrics, config.baseline)
    _write_csv(summary, out / "summary.csv")
    atomic_write_text(out / "summary.md", summary_markdown(summary, config))
    _write_csv(curves_table(raw_curves), out / "curves.csv")
    _write_csv(subgroups, out / "subgroups.csv")
    _write_csv(matrix_table(summary, matrix_metric(config.metrics)), out / "matrix.csv")
    _write_csv(time_to_mastery_table(out, cells, config.learners), out / "time_to_mastery.csv")
    from pedagogym.experiments.plots import plot_all

    plot_all(out)
