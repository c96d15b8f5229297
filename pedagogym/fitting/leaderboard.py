"""The model leaderboard: every fitted model scored on the same test responses.

Per model: log loss (nats per response), AUC, RMSE and expected calibration error (ECE: the
response-weighted mean |mean prediction - observed rate| over 10 equal-width bins of the
prediction, :func:`~pedagogym.fitting.metrics.bin_sums`), each with a 95% percentile
interval from a bootstrap over test *learners* (their responses are not independent): each
replicate draws the test learners with replacement and weighs every response by its
learner's count, the same draw for every model. Sorted by log loss. (ECE is biased upward
by resampling, as every binned |gap| is: its interval can lie above the point estimate.)
"""
from __future__ import annotations

import numpy as np

from pedagogym.fitting.metrics import P_CLIP, auc, bin_sums

METRICS = ("log_loss", "auc", "rmse", "ece")
N_BOOT = 200
N_BINS = 10


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS, w: np.ndarray | None = None) -> float:
    """Expected calibration error of predictions ``p`` for outcomes ``y`` (optionally weighted)."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    if w is None:
        cnt, sp, sy = bin_sums(y, p, n_bins)
    else:
        k = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
        cnt = np.bincount(k, weights=w, minlength=n_bins)
        sp = np.bincount(k, weights=w * p, minlength=n_bins)
        sy = np.bincount(k, weights=w * y, minlength=n_bins)
    total = cnt.sum()
    return float(np.sum(np.abs(sp - sy)) / total) if total > 0 else float("nan")


class _WeightedAUC:
    """AUC under response weights in O(n) per replicate: the predictions are sorted once."""

    def __init__(self, y: np.ndarray, p: np.ndarray):
        self.y = np.asarray(y, bool)
        _, self.group = np.unique(np.asarray(p, np.float64), return_inverse=True)  # tie groups, ascending
        self.n_groups = int(self.group.max()) + 1 if len(self.group) else 0

    def __call__(self, w: np.ndarray) -> float:
        neg = np.bincount(self.group, weights=w * ~self.y, minlength=self.n_groups)
        below = np.cumsum(neg) - neg
        wp = w * self.y
        w_pos, w_neg = wp.sum(), neg.sum()
        if w_pos <= 0 or w_neg <= 0:
            return float("nan")
        return float(np.sum(wp * (below[self.group] + 0.5 * neg[self.group])) / (w_pos * w_neg))


def _weighted(y, p, w, wauc) -> dict[str, float]:
    pc = np.clip(p, P_CLIP, 1 - P_CLIP)
    W = w.sum()
    return {
        "log_loss": float(-np.sum(w * (y * np.log(pc) + (1 - y) * np.log1p(-pc))) / W),
        "auc": wauc(w),
        "rmse": float(np.sqrt(np.sum(w * (y - p) ** 2) / W)),
        "ece": ece(y, p, w=w),
    }


def leaderboard(entries: list[tuple[str, np.ndarray, np.ndarray]], learner: np.ndarray, n_boot: int = N_BOOT,
                seed: int = 0) -> list[dict]:
    """Rows (sorted by log loss) for ``entries`` = [(name, y, p)] on the same responses;
    ``learner`` int[n] is each response's test learner (the bootstrap unit)."""
    if not entries:
        return []
    y0 = np.asarray(entries[0][1], np.float64)
    for name, y, p in entries:
        if len(y) != len(y0) or not np.array_equal(np.asarray(y, np.float64), y0):
            raise ValueError(f"leaderboard: model {name!r} was scored on different responses than {entries[0][0]!r}")
    learner = np.asarray(learner)
    _, who = np.unique(learner, return_inverse=True)
    n_learners = int(who.max()) + 1 if len(who) else 0
    rng = np.random.default_rng(seed)
    draws = [np.bincount(rng.integers(0, n_learners, n_learners), minlength=n_learners).astype(np.float64)[who]
             for _ in range(n_boot)] if n_learners else []
    rows = []
    for name, y, p in entries:
        y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
        row: dict = {"model": name, "n_responses": int(len(y)), "n_learners": n_learners}
        if len(y) == 0:
            rows.append({**row, **{m: float("nan") for m in METRICS}})
            continue
        pc = np.clip(p, P_CLIP, 1 - P_CLIP)
        point = {"log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log1p(-pc))), "auc": auc(y, p),
                 "rmse": float(np.sqrt(np.mean((y - p) ** 2))), "ece": ece(y, p)}
        wauc = _WeightedAUC(y, p)
        boot = np.array([[_weighted(y, p, w, wauc)[m] for m in METRICS] for w in draws])
        for j, m in enumerate(METRICS):
            row[m] = point[m]
            col = boot[:, j][np.isfinite(boot[:, j])] if len(boot) else np.zeros(0)
            row[f"{m}_lo"], row[f"{m}_hi"] = ((float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5)))
                                              if len(col) else (float("nan"), float("nan")))
        rows.append(row)
    rows.sort(key=lambda r: (np.inf if not np.isfinite(r["log_loss"]) else r["log_loss"]))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    return rows


COLUMNS = ("rank", "model", "n_responses", "n_learners", *(c for m in METRICS for c in (m, f"{m}_lo", f"{m}_hi")))


def leaderboard_csv(rows: list[dict]) -> str:
    from pedagogym.fitting.report import csv_text

    return csv_text(COLUMNS, ([r[c] for c in COLUMNS] for r in rows))


def leaderboard_markdown(rows: list[dict], test_description: str, n_boot: int = N_BOOT) -> str:
    def f(r, m):
        v, lo, hi = r[m], r[f"{m}_lo"], r[f"{m}_hi"]
        if not np.isfinite(v):
            return "n/a"
        return f"{v:.4f} [{lo:.4f}, {hi:.4f}]" if np.isfinite(lo) and np.isfinite(hi) else f"{v:.4f}"

    n = rows[0]["n_responses"] if rows else 0
    k = rows[0]["n_learners"] if rows else 0
    lines = ["# Leaderboard", "",
             f"Every model scored on the same {n} test responses of {k} test learners ({test_description}), each "
             "predicted online from the learner's own earlier responses. 95% intervals: percentile bootstrap over "
             f"test learners ({n_boot} replicates). Sorted by log loss (nats per response; lower is better). "
             "ECE: expected calibration error over 10 equal-width bins. Reliability diagram of every model: "
             "`calibration.png`.", "",
             "| rank | model | log loss | AUC | RMSE | ECE |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['rank']} | {r['model']} | {f(r, 'log_loss')} | {f(r, 'auc')} | {f(r, 'rmse')} | {f(r, 'ece')} |")
    return "\n".join(lines) + "\n"
