"""Simulator validity: posterior predictive checks of a fitted simulator against real learners.

``pedagogym validate FIT_DIR LOG --out DIR`` replays every learner of LOG through the
simulator fitted in FIT_DIR (``population_<model>.toml`` + ``curriculum.toml``, as ``fit``
writes them): each learner's own items at their own times, ``replicas`` times, each replica
a new learner drawn from the fitted population (traits sampled as fitted) answering through
the model's own ``init`` / ``p_correct`` / ``learn``. The simulated responses are then
compared with the real ones:

============================ ===================================== ==========================
check                        statistic                             distance
============================ ===================================== ==========================
learning_curves              accuracy by attempt number (1..10)    mean |real - simulated|,
                             per skill (the item's first skill)    weighted by real counts
learner_accuracy             per-learner accuracy                  Kolmogorov-Smirnov statistic
attempts_to_three_correct    attempts until a first run of three   KS (never = length + 1)
                             correct, per (learner, skill)
longest_error_run            longest run of errors per             KS
                             (learner, skill)
recall_vs_time               (memory models) accuracy by time      mean |real - simulated|,
                             since the skill's last review         weighted by real counts
============================ ===================================== ==========================

**Tolerance.** A distance is only meaningful against the noise of a log of the same size:
the same distance is computed between each simulated replica and the pool of all replicas,
and the tolerance is ``TOLERANCE_FACTOR`` (1.25) times the 95th percentile of those replica
distances. A check *passes* when the real log's distance is within the tolerance, i.e. the
real learners look like one more draw from the simulator. Each check has a plot (simulated
mean with a 95% band over replicas, and the real log); ``report.html`` (self-contained, the
plots embedded) and ``checks.csv`` hold them all.
"""
from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pedagogym.errors import PedagogymError
from pedagogym.schema import SECONDS_PER_DAY

TOLERANCE_FACTOR = 1.25
MAX_ATTEMPT = 10
MIN_CELL = 10  # real responses a curve point needs to count
TIME_BINS_DAYS = (0.0, 1 / 24, 1.0, 7.0, np.inf)
TIME_LABELS = ("< 1 h", "1 h - 1 day", "1-7 days", "> 7 days")


class ValidateError(PedagogymError):
    """The fit directory or the log cannot be validated as given."""


@dataclass
class Check:
    name: str
    description: str
    distance: float
    tolerance: float
    replica_distances: np.ndarray
    figure: bytes  # PNG

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.distance) and self.distance <= self.tolerance)


# ---- replay -----------------------------------------------------------------------------
def replay(model, params, curr, pop_arrays, item: np.ndarray, t_days: np.ndarray, mask: np.ndarray, replicas: int,
           key: jax.Array) -> np.ndarray:
    """Simulated correctness bool[R, L, T] of ``replicas`` fresh learners per logged sequence
    (item int32[L, T], t_days float32[L, T], mask bool[L, T])."""
    from pedagogym.student_models.population import sample_traits

    gate = jnp.ones((curr.n_skills,), jnp.float32)

    def one(k, items, ts, ms):
        k_traits, k_init, k_run = jax.random.split(k, 3)
        p = model.apply_traits(params, sample_traits(k_traits, pop_arrays))
        state = model.init(k_init, p, curr)

        def body(state, x):
            it, tt, m, ks = x
            k_resp, k_learn = jax.random.split(ks)
            y = jax.random.bernoulli(k_resp, model.p_correct(p, state, curr, it, tt))
            new = model.learn(k_learn, p, state, curr, it, y, tt, gate)
            state = jax.tree.map(lambda a, b: jnp.where(m, a, b), new, state)
            return state, y & m

        _, ys = jax.lax.scan(body, state, (items, ts, ms, jax.random.split(k_run, items.shape[0])))
        return ys

    L = item.shape[0]
    run = jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, 0, 0, 0)), in_axes=(0, None, None, None)))
    keys = jax.random.split(key, replicas * L).reshape(replicas, L, -1)
    return np.asarray(run(keys, jnp.asarray(item), jnp.asarray(t_days), jnp.asarray(mask)))


# ---- statistics ---------------------------------------------------------------------------
def _sequences(log):
    """Per response: its (learner, primary skill) sequence id and 1-based attempt number."""
    primary = np.asarray([int(np.flatnonzero(r)[0]) for r in log.q_matrix])[log.item]
    key = log.learner.astype(np.int64) * (log.n_skills + 1) + primary
    order = np.lexsort((np.arange(len(key)), key))  # stable: time order within a sequence
    sk = key[order]
    start = np.r_[True, sk[1:] != sk[:-1]]
    seq_sorted = np.cumsum(start) - 1
    pos = np.arange(len(sk)) - np.flatnonzero(start)[seq_sorted]
    seq = np.empty_like(seq_sorted)
    att = np.empty_like(pos)
    seq[order], att[order] = seq_sorted, pos + 1
    return primary, seq, att, order, start


def _curve(y, primary, att, n_skills):
    a = np.minimum(att, MAX_ATTEMPT) - 1
    cell = primary * MAX_ATTEMPT + a
    n = np.bincount(cell, minlength=n_skills * MAX_ATTEMPT)
    s = np.bincount(cell, weights=y, minlength=n_skills * MAX_ATTEMPT)
    return n, s


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    grid = np.union1d(a, b)
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def _per_sequence(y_sorted, start):
    """(attempts until a first run of three correct (length + 1 if never), longest error run)
    per sequence, from responses sorted by sequence then time."""
    seq = np.cumsum(start) - 1
    n_seq = int(seq[-1]) + 1 if len(seq) else 0
    first_pos = np.flatnonzero(start)
    pos = np.arange(len(y_sorted)) - first_pos[seq]
    length = np.bincount(seq, minlength=n_seq)
    yy = y_sorted.astype(bool)
    run_c, run_e = _runs(yy, start), _runs(~yy, start)
    hit = run_c >= 3
    first3 = np.full(n_seq, np.inf)
    np.minimum.at(first3, seq[hit], pos[hit] + 1.0)
    first3 = np.where(np.isfinite(first3), first3, length + 1.0)
    longest = np.zeros(n_seq)
    np.maximum.at(longest, seq, run_e)
    return first3, longest


def _runs(flag: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Length of the run of True ending at each position, restarting at sequence starts."""
    idx = np.arange(len(flag))
    marker = np.where(flag, -1, idx)
    marker = np.where(start & flag, idx - 1, marker)
    return np.where(flag, idx - np.maximum.accumulate(marker), 0)


# ---- plots ----------------------------------------------------------------------------------
def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ecdf_plot(title, xlabel, real, sims, pooled):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    grid = np.union1d(np.unique(real), np.unique(pooled))
    curves = np.array([np.searchsorted(np.sort(s), grid, side="right") / max(len(s), 1) for s in sims])
    lo, hi = np.percentile(curves, [2.5, 97.5], axis=0)
    ax.fill_between(grid, lo, hi, step="post", alpha=0.3, label="simulated, 95% band")
    ax.step(grid, np.searchsorted(np.sort(pooled), grid, side="right") / len(pooled), where="post", label="simulated")
    ax.step(grid, np.searchsorted(np.sort(real), grid, side="right") / len(real), where="post", color="k",
            label="real")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cumulative fraction")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _curve_plot(title, xlabels, real, sim_mean, lo, hi, xlabel, panels):
    plt = _plt()
    k = len(panels)
    cols = min(k, 4)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    x = np.arange(len(xlabels))
    for ax, (name, j) in zip(axes.ravel(), panels):
        ax.fill_between(x, lo[j], hi[j], alpha=0.3, label="simulated, 95% band")
        ax.plot(x, sim_mean[j], label="simulated")
        ax.plot(x, real[j], "k.-", label="real")
        ax.set_ylim(0, 1)
        ax.set_xticks(x[:: max(1, len(x) // 5)])
        ax.set_xticklabels([xlabels[i] for i in x[:: max(1, len(x) // 5)]], fontsize=7)
        ax.set_title(name[:30], fontsize=9)
    for ax in axes.ravel()[k:]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel(xlabel)
    axes[0, 0].set_ylabel("accuracy")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


# ---- the checks -------------------------------------------------------------------------------
def _tolerance(rep: np.ndarray) -> float:
    rep = rep[np.isfinite(rep)]
    return float(TOLERANCE_FACTOR * np.percentile(rep, 95)) if len(rep) else float("nan")


def _binned_check(name, description, real_y, sim_y, cells, n_cells, labels_x, panel_names, n_x, xlabel):
    """Accuracy per cell (real vs simulated); distance: mean |gap| weighted by real counts over
    cells with at least MIN_CELL responses; tolerance from the replicas."""
    n = np.bincount(cells, minlength=n_cells).astype(float)
    real = np.bincount(cells, weights=real_y, minlength=n_cells) / np.maximum(n, 1)
    sims = np.stack([np.bincount(cells, weights=s, minlength=n_cells) / np.maximum(n, 1) for s in sim_y])
    pooled = sims.mean(0)
    use = n >= MIN_CELL
    w = n * use

    def dist(curve):
        return float(np.sum(w * np.abs(curve - pooled)) / w.sum()) if w.sum() > 0 else float("nan")

    d = dist(real)
    rep = np.array([dist(s) for s in sims])
    lo, hi = np.percentile(sims, [2.5, 97.5], axis=0)
    masked = lambda a: np.where(use, a, np.nan).reshape(-1, n_x)  # noqa: E731
    order = np.argsort(-n.reshape(-1, n_x).sum(1))
    panels = [(panel_names[j], j) for j in order[:8] if n.reshape(-1, n_x)[j].sum() > 0]
    fig = _curve_plot(f"{name}: distance {d:.3f}, tolerance {_tolerance(rep):.3f}", labels_x, masked(real),
                      masked(pooled), masked(lo), masked(hi), xlabel, panels)
    return Check(name, description, d, _tolerance(rep), rep, fig)


def _ks_check(name, description, real, sims, xlabel):
    pooled = np.concatenate(sims)
    d = _ks(real, pooled)
    rep = np.array([_ks(s, pooled) for s in sims])
    fig = _ecdf_plot(f"{name}: KS {d:.3f}, tolerance {_tolerance(rep):.3f}", xlabel, real, sims, pooled)
    return Check(name, description, d, _tolerance(rep), rep, fig)


def run_checks(log, sim: np.ndarray, memory: bool) -> list[Check]:
    """The checks of the module doc for real ``log`` and simulated correctness bool[R, N]
    (aligned with the log's rows)."""
    y = log.correct.astype(float)
    primary, seq, att, order, start = _sequences(log)
    S = log.n_skills
    att_labels = [str(k) for k in range(1, MAX_ATTEMPT)] + [f"{MAX_ATTEMPT}+"]
    checks = [_binned_check(
        "learning_curves", f"accuracy by attempt number (1-{MAX_ATTEMPT - 1}, {MAX_ATTEMPT}+) per skill; mean |real - "
        f"simulated| over cells with >= {MIN_CELL} real responses, weighted by them",
        y, sim.astype(float), primary * MAX_ATTEMPT + np.minimum(att, MAX_ATTEMPT) - 1, S * MAX_ATTEMPT, att_labels,
        list(log.skill_names or log.skill_ids), MAX_ATTEMPT, "attempt")]
    counts = np.bincount(log.learner, minlength=log.n_learners)
    acc = lambda v: np.bincount(log.learner, weights=v, minlength=log.n_learners)[counts > 0] / counts[counts > 0]  # noqa: E731
    checks.append(_ks_check("learner_accuracy", "distribution of per-learner accuracy; Kolmogorov-Smirnov statistic",
                            acc(y), [acc(s.astype(float)) for s in sim], "per-learner accuracy"))
    real3, real_err = _per_sequence(y[order], start)
    sim_stats = [_per_sequence(s[order].astype(float), start) for s in sim]
    checks.append(_ks_check("attempts_to_three_correct", "attempts until a first run of three correct per (learner, "
                            "skill) sequence (length + 1 when never); KS", real3, [a for a, _ in sim_stats],
                            "attempts until three correct in a row"))
    checks.append(_ks_check("longest_error_run", "longest run of errors per (learner, skill) sequence; KS", real_err,
                            [b for _, b in sim_stats], "longest run of errors"))
    if memory:
        last = np.full(len(y), np.nan)
        ts_sorted = log.timestamp[order]
        gap = np.r_[np.nan, np.diff(ts_sorted)] / SECONDS_PER_DAY
        gap[start] = np.nan
        last[order] = gap
        seen = np.isfinite(last)
        b = np.clip(np.searchsorted(TIME_BINS_DAYS, np.where(seen, last, 0.0), side="right") - 1, 0, len(TIME_LABELS) - 1)
        cells = np.where(seen, primary * len(TIME_LABELS) + b, S * len(TIME_LABELS))  # first reviews: their own cell
        checks.append(_recall_check(y, sim, cells, S))
    return checks


def _recall_check(y, sim, cells, S):
    n_t = len(TIME_LABELS)
    keep = cells < S * n_t
    # pooled over skills: the curve of recall against time (skills too sparse alone)
    cells_t = cells[keep] % n_t
    return _binned_check("recall_vs_time", "recall (accuracy) against time since the skill's last review, pooled over "
                         "skills; mean |real - simulated| over bins with >= 10 real reviews, weighted by them",
                         y[keep], sim[:, keep].astype(float), cells_t, n_t, list(TIME_LABELS), ["all skills"], n_t,
                         "time since last review")


# ---- the command --------------------------------------------------------------------------------
def _fitted(fit_dir: Path, model_name: str | None):
    manifest = fit_dir / "manifest.json"
    if not manifest.exists():
        raise ValidateError(f"{fit_dir}: not a fit directory (no manifest.json; run `pedagogym fit` first)")
    meta = json.loads(manifest.read_text())
    models = meta.get("options", {}).get("models", [])
    name = model_name or (models[0] if models else None)
    if name not in models:
        raise ValidateError(f"{fit_dir}: no fitted model {name!r}; it has {', '.join(models) or 'none'}")
    return name, meta


def validate_command(fit_dir, log_paths, out, *, model: str | None = None, replicas: int = 40, seed: int = 0,
                     format: str = "auto", salt: str | None = None, quiet: bool = False) -> int:
    """Run the checks; write ``checks.csv``, ``report.html`` and ``manifest.json`` to ``out``.
    Returns 0 when every check passes, 1 when one fails (the report says which)."""
    import sys

    from pedagogym.curriculum.loader import load_curriculum
    from pedagogym.fitting.fit import fitter_for
    from pedagogym.fitting.formats import read_log
    from pedagogym.fitting.population_file import apply_fitted_params
    from pedagogym.fitting.report import csv_text
    from pedagogym.io import atomic_write_json, atomic_write_text
    from pedagogym.student_models.population import load_population

    t0 = time.perf_counter()
    if not (isinstance(replicas, int) and replicas >= 10):
        raise ValidateError(f"replicas must be an integer >= 10 (the tolerance is a percentile over them), got {replicas!r}")
    fit_dir, out = Path(fit_dir), Path(out)
    name, meta = _fitted(fit_dir, model)
    say = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr))  # noqa: E731
    fitter = fitter_for(name)
    st_model = fitter.make_model(meta.get("options", {}))
    curriculum = load_curriculum(fit_dir / "curriculum.toml")
    pop_file = fit_dir / f"population_{name}.toml"
    applied = apply_fitted_params(st_model, curriculum, pop_file)
    population = load_population(pop_file)
    log = read_log(list(log_paths) if isinstance(log_paths, (list, tuple)) else log_paths, salt=salt, format=format)
    index = {i: k for k, i in enumerate(curriculum.item_ids)}
    unknown = [i for i in log.item_ids if i not in index]
    if unknown:
        raise ValidateError(f"{log.source}: {len(unknown)} item(s) are not in the fitted curriculum "
                            f"({fit_dir / 'curriculum.toml'}): {', '.join(map(repr, unknown[:10]))}")
    item_map = np.asarray([index[i] for i in log.item_ids], np.int32)
    counts = log.learner_counts()
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    T = int(counts.max())
    pos = np.arange(T)[None, :]
    mask = pos < counts[:, None]
    idx = np.where(mask, starts[:, None] + pos, 0)
    t_days = ((log.timestamp[idx] - log.timestamp[starts][:, None]) / SECONDS_PER_DAY).astype(np.float32)
    say(f"replaying {log.n_learners} learners x {replicas} replicas through the fitted {name} simulator ...")
    sim = replay(st_model, applied.params, applied.curriculum, population.arrays(), item_map[log.item[idx]],
                 np.where(mask, t_days, 0.0), mask, replicas, jax.random.PRNGKey(seed))
    sim_rows = np.zeros((replicas, log.n_interactions), bool)
    sim_rows[:, idx[mask]] = sim[:, mask]
    checks = run_checks(log, sim_rows, st_model.family == "memory")
    rows = [[c.name, c.distance, c.tolerance, "pass" if c.passed else "fail", c.description] for c in checks]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "checks.csv", csv_text(["check", "distance", "tolerance", "verdict", "statistic"], rows))
    atomic_write_text(out / "report.html", report_html(checks, name, log, replicas, fit_dir))
    atomic_write_json(out / "manifest.json", {
        "command": "validate", "fit_dir": str(fit_dir), "model": name, "replicas": replicas, "seed": seed,
        "learners": log.n_learners, "responses": log.n_interactions, "wall_time_s": round(time.perf_counter() - t0, 2),
        "checks": {c.name: {"distance": c.distance if np.isfinite(c.distance) else None,
                            "tolerance": c.tolerance if np.isfinite(c.tolerance) else None,
                            "verdict": "pass" if c.passed else "fail"} for c in checks}})
    for c in checks:
        say(f"  {c.name}: distance {c.distance:.4f} (tolerance {c.tolerance:.4f}) {'pass' if c.passed else 'FAIL'}")
    say(f"wrote {out}/ (report.html, checks.csv, manifest.json)")
    return 0 if all(c.passed for c in checks) else 1


def report_html(checks: list[Check], model: str, log, replicas: int, fit_dir: Path) -> str:
    n_pass = sum(c.passed for c in checks)
    H = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>Simulator validity: {html.escape(model)}</title>",
         "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px}"
         ".pass{color:#2e7d32;font-weight:bold}.fail{color:#c62828;font-weight:bold}img{max-width:100%}"
         ".muted{color:#666;font-size:13px}</style></head><body>",
         f"<h1>Simulator validity: the fitted {html.escape(model)} simulator vs the real learners</h1>",
         f"<p>{n_pass} of {len(checks)} checks pass. {log.n_learners} real learners ({log.n_interactions} responses) "
         f"replayed {replicas} times each through the simulator fitted in <code>{html.escape(str(fit_dir))}</code>: "
         "their own items at their own times, each replica a fresh learner drawn from the fitted population.</p>",
         "<p class='muted'>How to read it: each distance compares the real log with the simulated pool; the tolerance "
         f"is {TOLERANCE_FACTOR} x the 95th percentile of the same distance between one simulated replica and the pool, "
         "so it scales with the size of the log. A check passes when the real learners look like one more draw from "
         "the simulator. A failed check names what the simulator gets wrong (the plot shows where).</p>",
         "<table><tr><th>check</th><th>distance</th><th>tolerance</th><th>verdict</th><th>statistic</th></tr>"]
    for c in checks:
        v = "pass" if c.passed else "fail"
        H.append(f"<tr><td><a href='#{c.name}'>{c.name}</a></td><td>{c.distance:.4f}</td><td>{c.tolerance:.4f}</td>"
                 f"<td class='{v}'>{v}</td><td>{html.escape(c.description)}</td></tr>")
    H.append("</table>")
    for c in checks:
        v = "pass" if c.passed else "fail"
        H += [f"<h2 id='{c.name}'>{c.name} <span class='{v}'>{v}</span></h2>", f"<p>{html.escape(c.description)}.</p>",
              f"<img alt='{c.name}' src='data:image/png;base64,{base64.b64encode(c.figure).decode('ascii')}'>"]
    H.append("</body></html>")
    return "\n".join(H) + "\n"
