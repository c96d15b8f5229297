"""Prediction metrics for binary responses: log loss, AUC, RMSE, and calibration bins."""
from __future__ import annotations

import numpy as np

P_CLIP = 1e-6


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``; tied values share the mean of the ranks they span."""
    x = np.asarray(x, np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    _, inverse, counts = np.unique(x[order], return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of each distinct value's last occurrence
    mean_rank = last - (counts - 1) / 2.0
    ranks = np.empty(len(x), np.float64)
    ranks[order] = mean_rank[inverse]
    return ranks


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN if
    only one class is present."""
    y = np.asarray(y, bool).reshape(-1)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = average_ranks(p)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """log loss (nats per response), AUC, RMSE, accuracy at 0.5, mean prediction vs. rate."""
    y = np.asarray(y, np.float64)
    p = np.clip(np.asarray(p, np.float64), P_CLIP, 1 - P_CLIP)
    if len(y) == 0:
        nan = float("nan")
        return {"n": 0, "log_loss": nan, "auc": nan, "rmse": nan, "accuracy": nan, "mean_p": nan, "rate": nan}
    return {
        "n": int(len(y)),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))),
        "auc": auc(y, p),
        "rmse": float(np.sqrt(np.mean((y - p) ** 2))),
        "accuracy": float(np.mean((p >= 0.5) == (y > 0.5))),
        "mean_p": float(np.mean(p)),
        "rate": float(np.mean(y)),
    }


def bin_sums(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, sum of predictions, sum of outcomes) in each of ``n_bins`` equal-width bins of
    the prediction on [0, 1] (bin k holds k/n <= p < (k+1)/n; p = 1 falls in the last)."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    k = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    return (np.bincount(k, minlength=n_bins), np.bincount(k, weights=p, minlength=n_bins),
            np.bincount(k, weights=y, minlength=n_bins))


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean prediction, observed rate, count) per equal-width bin of the prediction; bins
    with no predictions are left out."""
    cnt, sp, sy = bin_sums(y, p, n_bins)
    m = cnt > 0
    return sp[m] / cnt[m], sy[m] / cnt[m], cnt[m]
