"""What ``pedagogym warn train|evaluate`` writes (every file atomically, ``manifest.json`` last):

=====================  ========================================================================
model.json             the trained model (summaries, normaliser, weights; ``train`` only)
risk.onnx              its ONNX graph, checked against the JAX model (``train`` only)
metrics.json           held-out AUC, Brier, ECE, ... per target (+ by policy, by events seen)
calibration.csv        reliability table: target, bin, lo, hi, n, mean_predicted, observed
calibration.png        reliability diagram per target, drawn from calibration.csv
summary.md             the metrics as a markdown table
manifest.json          config, seeds, versions, git commit, wall time
=====================  ========================================================================
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from pedagogym.io import atomic_write, atomic_write_json, atomic_write_text, git_commit, versions
from pedagogym.warning.model import METRICS_FILE, MODEL_FILE
from pedagogym.warning.train import TrainedWarning

RISK_ONNX, RUN_MANIFEST = "risk.onnx", "manifest.json"
CALIBRATION_CSV, CALIBRATION_PNG, SUMMARY_FILE = "calibration.csv", "calibration.png", "summary.md"
CALIBRATION_COLUMNS = ("target", "bin", "lo", "hi", "n", "mean_predicted", "observed")


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def summary_markdown(result: TrainedWarning, title: str) -> str:
    h = result.heldout
    tr = result.training
    lines = [f"# {title}", "",
             f"Held-out simulated learners: **{h['learners']}** ({h['decisions']} decisions), env "
             f"`{tr.get('env')}` (curriculum {tr.get('curriculum')}, population {tr.get('population')}, horizon "
             f"{tr.get('horizon_items')} items), policies {', '.join(tr.get('policies', []))}.", "",
             "| target | AUC | progress-only AUC | Brier | Brier of base rate | ECE | base rate | mean predicted |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in h["targets"].items():
        lines.append(f"| {name} | {_fmt(m['auc'])} | {_fmt(m['progress_only_auc'])} | {_fmt(m['brier'])} | "
                     f"{_fmt(m['brier_of_base_rate'])} | {_fmt(m['ece'])} | {_fmt(m['base_rate'])} | "
                     f"{_fmt(m['mean_predicted'])} |")
    checkpoints = list(next(iter(h["targets"].values()))["at_events"])
    lines += ["", "AUC among learners still active after k events (one prediction per learner):", "",
              "| target | " + " | ".join(f"k={k}" for k in checkpoints) + " |", "|---|" + "---|" * len(checkpoints)]
    for name, m in h["targets"].items():
        lines.append(f"| {name} | " + " | ".join(f"{_fmt(m['at_events'][k]['auc'])} (n={m['at_events'][k]['learners']})"
                                                 for k in checkpoints) + " |")
    policies = list(next(iter(h["targets"].values()))["by_policy"])
    lines += ["", "AUC by teaching policy:", "", "| target | " + " | ".join(policies) + " |",
              "|---|" + "---|" * len(policies)]
    for name, m in h["targets"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(m["by_policy"][p]["auc"]) for p in policies) + " |")
    lines += ["", "AUC: probability that a learner with the outcome gets a higher risk than one without (ties 1/2); "
              "progress-only AUC: the same for the number of items seen so far alone (the survival-time baseline). "
              "ECE: decision-weighted mean |predicted - observed| over 10 equal-width bins (calibration.png).", ""]
    return "\n".join(lines)


def calibration_csv(rows: list[dict[str, Any]]) -> str:
    from pedagogym.io import csv_safe

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CALIBRATION_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r[k] is None else csv_safe(r[k]) for k in CALIBRATION_COLUMNS})
    return buf.getvalue()


def plot_calibration(out: Path) -> None:
    """Reliability diagrams from ``calibration.csv`` (+ the AUC / ECE in ``metrics.json`` for titles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(out / CALIBRATION_CSV)
    metrics = json.loads((out / METRICS_FILE).read_text())["heldout"]
    targets = list(dict.fromkeys(df.target))
    fig, axes = plt.subplots(2, len(targets), figsize=(4.6 * len(targets), 5.6), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    for k, target in enumerate(targets):
        g = df[df.target == target]
        full = g[g.n > 0]
        m = metrics["targets"][target]
        ax = axes[0, k]
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
        ax.plot(full.mean_predicted, full.observed, marker="o", color="C0", lw=1.6, label="held-out learners")
        ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed frequency",
               title=f"{target}: AUC {_fmt(m['auc'])}, ECE {_fmt(m['ece'])}")
        ax.legend(loc="upper left", fontsize=8)
        bx = axes[1, k]
        bx.bar((g.lo + g.hi) / 2, g.n, width=(g.hi - g.lo) * 0.9, color="C0", alpha=0.6)
        bx.set(xlabel="predicted risk", ylabel="decisions")
    fig.suptitle(f"reliability on {metrics['learners']} held-out simulated learners ({metrics['decisions']} decisions)",
                 fontsize=10)
    fig.tight_layout()
    atomic_write(out / CALIBRATION_PNG, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def write_run(result: TrainedWarning, out: str | Path, *, kind: str, argv: list[str] | None = None,
              t0: float | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write a train (model + evaluation) or evaluate (evaluation only) run into ``out``."""
    from pedagogym.deploy.bundle import sha256_bytes
    from pedagogym.warning.bundle import check_risk
    from pedagogym.warning.model import risk_model_bytes

    out = Path(out)
    if (out / RUN_MANIFEST).exists() and not overwrite:
        raise FileExistsError(f"{out}: already holds a `pedagogym warn` run; choose another --out or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    onnx_sha = None
    if kind == "train":
        risk_bytes = risk_model_bytes(result.model)
        parity = check_risk(result.model, risk_bytes, result.verification_obs)
        onnx_sha = sha256_bytes(risk_bytes)
        atomic_write_text(out / MODEL_FILE, json.dumps(result.model.to_dict()) + "\n")
        atomic_write(out / RISK_ONNX, lambda p: p.write_bytes(risk_bytes))
        files += [MODEL_FILE, RISK_ONNX]
    else:
        parity = None
    metrics = {"kind": kind, "heldout": result.heldout, "training" if kind == "train" else "population": result.training,
               "calibration": result.calibration, "model_fingerprint": result.model.fingerprint(),
               "risk_onnx_sha256": onnx_sha, "onnx_vs_jax": parity}
    atomic_write_json(out / METRICS_FILE, metrics)
    atomic_write_text(out / CALIBRATION_CSV, calibration_csv(result.calibration))
    plot_calibration(out)
    title = "Early warning: held-out evaluation" if kind == "train" else "Early warning: evaluation on new learners"
    atomic_write_text(out / SUMMARY_FILE, summary_markdown(result, title))
    files += [METRICS_FILE, CALIBRATION_CSV, CALIBRATION_PNG, SUMMARY_FILE]
    manifest = {"kind": f"pedagogym warn {kind}", "config": None if result.config is None else result.config.to_dict(),
                "argv": argv, "files": files + [RUN_MANIFEST], "timings": result.timings, "versions": versions(),
                "git_commit": git_commit(),
                "wall_time_s": None if t0 is None else round(time.perf_counter() - t0, 2)}
    atomic_write_json(out / RUN_MANIFEST, manifest)
    return manifest
