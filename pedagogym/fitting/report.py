"""The fit report: markdown, a metrics CSV and a calibration plot, from FitResults.

Everything written holds aggregates only: counts, per-skill/per-item parameters, subgroup
trait distributions and metrics. No learner id, raw or pseudonymised, appears.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from pedagogym.fitting.engine import TRAIT_ORDER
from pedagogym.fitting.metrics import calibration_bins
from pedagogym.io import csv_safe


def cell(v):
    """A CSV cell: non-finite numbers are left blank (no file of ``fit`` holds NaN/inf),
    floats to 6 decimals, text escaped against formula injection (:func:`pedagogym.io.csv_safe`)."""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6f}" if np.isfinite(v) else ""
    return csv_safe(v if not isinstance(v, (np.integer, np.bool_)) else v.item())


def csv_text(header, rows) -> str:
    """CSV text of ``rows`` (sequences) under ``header``, every cell through :func:`cell`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([cell(h) for h in header])
    for row in rows:
        w.writerow([cell(v) for v in row])
    return buf.getvalue()


def finite_or_none(obj):
    """``obj`` with every non-finite float replaced by None (for JSON and TOML outputs)."""
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj

METRIC_COLUMNS = ("model", "method", "n_parameters", "train_nll", "heldout_n", "log_loss", "auc", "rmse",
                  "accuracy", "mean_p", "rate", "fit_seconds", "converged")
MAX_SKILL_ROWS = 30


def metrics_rows(results) -> list[dict]:
    rows = []
    if results:
        b = results[0].baseline_metrics
        rows.append({"model": "baseline", "method": "training correct rate for every response", "n_parameters": 1,
                     "train_nll": "", "heldout_n": b["n"], **{k: b[k] for k in ("log_loss", "auc", "rmse", "accuracy",
                                                                                  "mean_p", "rate")},
                     "fit_seconds": "", "converged": ""})
    for r in results:
        m = r.metrics
        rows.append({"model": r.model, "method": r.method, "n_parameters": r.n_parameters,
                     "train_nll": round(r.train_nll, 6), "heldout_n": m["n"],
                     **{k: m[k] for k in ("log_loss", "auc", "rmse", "accuracy", "mean_p", "rate")},
                     "fit_seconds": round(r.fit_seconds, 2), "converged": all(r.converged.values())})
    return rows


def metrics_csv(results) -> str:
    return csv_text(METRIC_COLUMNS, ([row[k] for k in METRIC_COLUMNS] for row in metrics_rows(results)))


def skill_params_csv(result) -> str:
    """One row per skill: its parameters, ``status`` (``fitted`` or ``not fitted: why``, the
    parameters then being the model's defaults) and ``converged``."""
    fields = list(result.skill_params)
    failed = getattr(result, "failed_skills", {}) or {}
    conv = getattr(result, "skill_converged", {}) or {}
    rows = []
    for k, s in enumerate(result.skill_ids):
        status = f"not fitted: {failed[s]}" if s in failed else "fitted"
        rows.append([s, *(float(result.skill_params[f][k]) for f in fields), status,
                     "" if s in failed else bool(conv.get(s, all(result.converged.values())))])
    return csv_text(["skill_id", *fields, "status", "converged"], rows)


def calibration_plot(results, path: Path, n_bins: int = 10) -> None:
    """Reliability diagram of held-out predictions, one line per model (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.0))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    for r in results:
        if len(r.heldout_y) == 0:
            continue
        mp, rate, cnt = calibration_bins(r.heldout_y, r.heldout_p, n_bins)
        line, = ax.plot(mp, rate, linewidth=1.2, label=f"{r.model} (AUC {r.metrics['auc']:.3f})")
        ax.scatter(mp, rate, s=8 + 60 * cnt / cnt.max(), color=line.get_color(), zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(correct), held-out learners")
    ax.set_ylabel("observed rate correct")
    ax.set_title("Calibration (marker size: responses per bin)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if np.isnan(v) else f"{v:.4f}"
    return str(v)


def report_markdown(results, log_summary: dict, options: dict, files: list[str]) -> str:
    lines = ["# Fit report", ""]
    lines += [f"Log: {log_summary['learners']} learners, {log_summary['interactions']} responses, "
              f"{log_summary['items']} items, {log_summary['skills']} skills, spanning {log_summary['span_days']:.1f} days. "
              + ("Evaluated on the learners of a separate test file, " if options.get("test_file") else
                 f"Held out for evaluation: {options['holdout']:.0%} of learners (seed {options['seed']}), ")
              + "predicted online from their own earlier responses only (fitted parameters, no refit).", ""]
    if log_summary.get("reading"):
        lines += ["Reading the log:", ""] + [f"- {n}" for n in log_summary["reading"]] + [""]
    lines += ["## Privacy", "",
              "- Learner ids were replaced on reading by salted hashes; the salt is not stored anywhere "
              + ("(it was given by the caller)." if options.get("salt_given") else "(drawn at random for this run)."),
              "- These outputs hold aggregates only: no learner id (raw or pseudonymised)"
              + (" except `per_learner_*.csv`, written because per-learner output was asked for."
                 if options.get("per_learner") else " and no per-learner parameters."),
              f"- Subgroups with fewer than {options['min_group_size']} learners are not reported on their own.", ""]
    lines += ["## Model comparison (held-out learners)", "",
              "| model | log loss | AUC | RMSE | accuracy | parameters | train NLL | fit s |",
              "|---|---|---|---|---|---|---|---|"]
    for row in metrics_rows(results):
        lines.append(f"| {row['model']} | {_fmt(row['log_loss'])} | {_fmt(row['auc'])} | {_fmt(row['rmse'])} | "
                     f"{_fmt(row['accuracy'])} | {row['n_parameters']} | {_fmt(row['train_nll'])} | {row['fit_seconds']} |")
    best = min(results, key=lambda r: r.metrics["log_loss"] if not np.isnan(r.metrics["log_loss"]) else np.inf) if results else None
    if best is not None and len(results) > 1:
        lines += ["", f"Lowest held-out log loss: **{best.model}**."]
    lines += ["", "Log loss in nats per response; train NLL is the mean negative marginal log-likelihood per response "
              "(on the population-stage subsample when traits were estimated).", ""]
    for r in results:
        lines += [f"## {r.model}", "", f"Method: {r.method}. Iterations: "
                  + ", ".join(f"{k} {v}{'' if r.converged[k] else ' (not converged)'}" for k, v in r.iterations.items())
                  + ".", ""]
        lines += ["Population (trait shifts on this model's scale; mean, sd):", "",
                  "| subgroup | weight | learners | sessions/week | " + " | ".join(TRAIT_ORDER) + " |",
                  "|---|---|---|---|" + "---|" * len(TRAIT_ORDER)]
        for g in r.subgroups:
            spw = f"{g.sessions_per_week:.2f}" + ("" if g.sessions_estimated else " (default)")
            lines.append(f"| {g.name} | {g.weight:.3f} | {g.n_learners} | {spw} | "
                         + " | ".join(f"{g.traits[t][0]:+.3f}, {g.traits[t][1]:.3f}" for t in TRAIT_ORDER) + " |")
        fields = list(r.skill_params)
        lines += ["", f"Per-skill parameters ({len(r.skill_ids)} skills"
                  + (f"; first {MAX_SKILL_ROWS} shown, all in the population file" if len(r.skill_ids) > MAX_SKILL_ROWS else "")
                  + "):", "", "| skill | " + " | ".join(fields) + " |", "|---|" + "---|" * len(fields)]
        for k, s in enumerate(r.skill_ids[:MAX_SKILL_ROWS]):
            lines.append(f"| {s} | " + " | ".join(f"{r.skill_params[f][k]:.4f}" for f in fields) + " |")
        if r.global_params:
            for f, v in r.global_params.items():
                lines.append("")
                lines.append(f"Global `{f}`: " + ", ".join(f"{x:.4f}" for x in np.ravel(v)))
        if r.item_params:
            lines += ["", f"Per-item parameters for {len(r.item_ids)} items are in the population file "
                      f"([model.{r.model}.items])."]
        if r.notes:
            lines += ["", "Notes:", ""] + [f"- {n}" for n in r.notes]
        lines.append("")
    lines += ["## Files", ""] + [f"- `{f}`" for f in files] + [""]
    return "\n".join(lines)
