"""Discrimination and calibration of predicted probabilities (numpy only).

* :func:`auc` -- area under the ROC curve, rank-based (the Mann-Whitney U statistic divided by
  n_pos * n_neg) with tied scores given their average rank, i.e. a tied (positive, negative)
  pair counts 1/2: the probability that a random positive is scored above a random negative.
* :func:`brier` -- mean squared error of the probabilities.
* :func:`reliability` / :func:`ece` -- equal-width bins on [0, 1]; the expected calibration
  error is the decision-weighted mean over bins of |mean prediction - observed frequency|.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pedagogym.fitting.metrics import auc as rank_auc
from pedagogym.fitting.metrics import bin_sums


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores for {y.size} labels")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be 0/1 or booleans")
        y = y.astype(bool)
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return s, y


def auc(scores, labels) -> float:
    """ROC AUC; ``ValueError`` if the labels are all of one class (the AUC is undefined)."""
    s, y = _check(scores, labels)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs positive and negative labels; got {n_pos} positive and {n_neg} negative")
    return rank_auc(y, s)


def brier(probs, labels) -> float:
    p, y = _check(probs, labels)
    return float(np.mean((p - y) ** 2))


def log_loss(probs, labels, eps: float = 1e-7) -> float:
    p, y = _check(probs, labels)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def reliability(probs, labels, bins: int = 10) -> list[dict[str, Any]]:
    """One row per equal-width bin of [0, 1] (bin k holds k/bins <= p < (k+1)/bins; p = 1 falls
    in the last): lo, hi, n, mean_predicted, observed (None for empty bins)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    p, y = _check(probs, labels)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probabilities must be in [0, 1]")
    cnt, sum_p, sum_y = bin_sums(y, p, bins)
    return [{"bin": b, "lo": b / bins, "hi": (b + 1) / bins, "n": int(n),
             "mean_predicted": float(sum_p[b] / n) if n else None, "observed": float(sum_y[b] / n) if n else None}
            for b, n in enumerate(cnt)]


def ece(probs, labels, bins: int = 10) -> float:
    rows = reliability(probs, labels, bins)
    total = sum(r["n"] for r in rows)
    if total == 0:
        raise ValueError("ECE of no predictions")
    return float(sum(r["n"] * abs(r["mean_predicted"] - r["observed"]) for r in rows if r["n"]) / total)
