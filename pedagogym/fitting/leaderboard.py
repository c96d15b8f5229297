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


class _BootAUC:
    """The weighted AUC of every bootstrap replicate when a response's weight is its learner's
    count ``c[l]`` in the replicate.

    With the negatives sorted by prediction, a positive's score is the weight of the
    negatives ranked below it, ties counting half: the AUC's numerator is the quadratic
    form ``c @ A @ c``, ``A[l, m]`` half the number of (positive of learner l, negative of
    learner m) pairs ranked that way, ties once. ``A`` is counted once (exactly, in
    integers); each replicate then costs O(L^2). When the learners x responses count
    table would be large, each replicate makes one pass over the responses instead."""

    MAX_TABLE = 30_000_000  # learners x negatives above which the per-replicate pass is used

    def __init__(self, y: np.ndarray, p: np.ndarray, who: np.ndarray, n_learners: int):
        y = np.asarray(y, bool)
        _, group = np.unique(np.asarray(p, np.float64), return_inverse=True)  # tie groups, ascending
        neg, pos = np.flatnonzero(~y), np.flatnonzero(y)
        neg = neg[np.argsort(group[neg], kind="stable")]
        self.who_neg, self.who_pos = who[neg], who[pos]
        g_neg, g_pos = group[neg], group[pos]
        self.lo = np.searchsorted(g_neg, g_pos, "left")  # negatives ranked strictly below each positive
        self.hi = np.searchsorted(g_neg, g_pos, "right")  # ... and with its ties
        self.n_pos = np.bincount(self.who_pos, minlength=n_learners).astype(np.float64)
        self.n_neg = np.bincount(self.who_neg, minlength=n_learners).astype(np.float64)
        self.A = None
        L, n_neg = n_learners, len(neg)
        if L and L * (n_neg + 1) <= self.MAX_TABLE and L * len(pos) <= self.MAX_TABLE:
            below = np.zeros((L, n_neg + 1), np.int32)  # below[m, k]: learner m's negatives among the first k
            below[self.who_neg, np.arange(1, n_neg + 1)] = 1
            np.cumsum(below, axis=1, out=below)
            pairs = below[:, self.lo] + below[:, self.hi]  # [m, positive]: twice its score from learner m
            order = np.argsort(self.who_pos, kind="stable")
            owners, first = np.unique(self.who_pos[order], return_index=True)
            A = np.zeros((L, L), np.float64)
            if len(order):
                A[owners] = np.add.reduceat(pairs[:, order], first, axis=1).T.astype(np.float64)
            self.A = 0.5 * A

    def __call__(self, c: np.ndarray) -> float:
        """AUC at learner weights ``c`` (float[L])."""
        w_pos, w_neg = float(c @ self.n_pos), float(c @ self.n_neg)
        if w_pos <= 0 or w_neg <= 0:
            return float("nan")
        if self.A is not None:
            return float(c @ self.A @ c / (w_pos * w_neg))
        run = np.concatenate([[0.0], np.cumsum(c[self.who_neg])])  # run[k]: weight of the first k negatives
        return float(np.dot(c[self.who_pos], run[self.lo] + run[self.hi]) * 0.5 / (w_pos * w_neg))


def leaderboard(entries: list[tuple[str, np.ndarray, np.ndarray]], learner: np.ndarray, n_boot: int = N_BOOT,
                seed: int = 0) -> list[dict]:
    """Rows (sorted by log loss) for ``entries`` = [(name, y, p)] on the same responses;
    ``learner`` int[n] is each response's test learner (the bootstrap unit).

    A replicate weighs each response by its learner's draw count, so log loss, RMSE and ECE
    of every replicate come from per-learner sums (a matrix product), the AUC from one pass
    per replicate (:class:`_BootAUC`); the same as weighting each response
    (:func:`_weighted`) up to rounding."""
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
    draws = (np.stack([np.bincount(rng.integers(0, n_learners, n_learners), minlength=n_learners)
                       for _ in range(n_boot)]).astype(np.float64) if n_learners else np.zeros((0, 0)))  # [n_boot, L]
    n_of = np.bincount(who, minlength=n_learners).astype(np.float64)
    rows = []
    for name, y, p in entries:
        y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
        row: dict = {"model": name, "n_responses": int(len(y)), "n_learners": n_learners}
        if len(y) == 0:
            rows.append({**row, **{m: float("nan") for m in METRICS}})
            continue
        pc = np.clip(p, P_CLIP, 1 - P_CLIP)
        loss = -(y * np.log(pc) + (1 - y) * np.log1p(-pc))
        point = {"log_loss": float(np.mean(loss)), "auc": auc(y, p), "rmse": float(np.sqrt(np.mean((y - p) ** 2))),
                 "ece": ece(y, p)}
        if len(draws):
            W = draws @ n_of
            k = who * N_BINS + np.clip((p * N_BINS).astype(int), 0, N_BINS - 1)
            per = lambda v: np.bincount(k, weights=v, minlength=n_learners * N_BINS).reshape(n_learners, N_BINS)  # noqa: E731
            cnt = draws @ per(np.ones_like(p))
            gap = np.abs(draws @ per(p) - draws @ per(y)).sum(1)
            total = cnt.sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                boot_ece = np.where(total > 0, gap / total, np.nan)
            bauc = _BootAUC(y, p, who, n_learners)
            boot = np.column_stack([
                (draws @ np.bincount(who, weights=loss, minlength=n_learners)) / W,
                [bauc(c) for c in draws],
                np.sqrt((draws @ np.bincount(who, weights=(y - p) ** 2, minlength=n_learners)) / W),
                boot_ece,
            ])
        else:
            boot = np.zeros((0, len(METRICS)))
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


def leaderboard_markdown(rows: list[dict], test_description: str, n_boot: int = N_BOOT,
                         not_applicable: tuple[str, ...] = ()) -> str:
    """``not_applicable``: models marked with a dagger and a footnote (e.g. models of
    forgetting over time on a log without timestamps)."""
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
        name = f"{r['model']} †" if r["model"] in not_applicable else r["model"]
        lines.append(f"| {r['rank']} | {name} | {f(r, 'log_loss')} | {f(r, 'auc')} | {f(r, 'rmse')} | {f(r, 'ece')} |")
    if any(r["model"] in not_applicable for r in rows):
        lines += ["", "† Not applicable to this log: its format has no timestamps (time is the row order, 1 s apart) "
                  "and these models predict from the time between responses (HLR, for one, floors the half-life at "
                  "15 minutes, so it predicts recall of at least 0.999 one second later). Shown for completeness; "
                  "do not rank them."]
    return "\n".join(lines) + "\n"
