"""Writing a policy bundle: ``policy.onnx`` + ``manifest.json``, verified before it is written.

Verification (on by default) runs the policy's JAX twin in the simulator for a few learners
over the whole horizon, then checks on every recorded decision that the ONNX graph picks the
same item and gives the same scores, and that the runtime featurizer rebuilds the
simulator's observations from the event log. A bundle that fails is not written.

With an early-warning model (:mod:`pedagogym.warning`), the bundle also holds ``risk.onnx``
and the manifest an ``early_warning`` section; its verification is
:func:`pedagogym.warning.bundle.verify`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pedagogym.deploy.bundle import BUNDLE_HASH_KEY, MANIFEST_FILE, MODEL_FILE, load_bundle, seal_manifest, sha256_bytes
from pedagogym.deploy.events import parse_events
from pedagogym.deploy.features import FeatureSpec, action_mask, featurize, replay
from pedagogym.deploy.recommender import Recommender
from pedagogym.io import atomic_write_bytes
from pedagogym.export.graph import MASKED_SCORE, OPSET, policy_model, serialize
from pedagogym.export.manifest import build_manifest
from pedagogym.export.sources import ExportError, ExportSource

if TYPE_CHECKING:
    from pedagogym.warning.train import TrainedWarning

SCORE_RTOL = 1e-5  # |onnx - jax| <= SCORE_RTOL * max(1, |score|)
FEATURE_ATOL = 1e-6
NEAR_TIE = 1e-5  # reference top-2 gap below which an argmax disagreement is a tie, not an error


def build_model_bytes(source: ExportSource) -> bytes:
    built = source.built
    model = policy_model(source.scorer.build_scores, len(built.feature_names), built.curriculum.n_items,
                         name=f"pedagogym_{source.kind}", doc=f"pedagogym policy {source.name!r} ({source.kind})",
                         metadata={"pedagogym.policy": source.name, "pedagogym.kind": source.kind,
                                   "pedagogym.curriculum_hash": built.curriculum.content_hash()})
    return serialize(model)


def verify_source(source: ExportSource, model_bytes: bytes, manifest: dict[str, Any], n_learners: int = 32,
                  n_steps: int | None = None, featurizer_learners: int = 8, seed: int = 20240501) -> dict[str, Any]:
    """Simulate ``n_learners`` with the JAX policy; compare ONNX and the runtime featurizer."""
    from pedagogym.export.record import decision_points, event_logs, obs_index, record_episodes
    from pedagogym.deploy.recommender import make_session

    built = source.built
    steps = int(n_steps or built.config.horizon)
    rec = record_episodes(built.env, built.params, source.policy, n_learners, steps, seed=seed)
    act = rec.active
    obs, mask = rec.obs[:, :-1][act], rec.mask[:, :-1][act]
    sess = make_session(model_bytes)
    scores, actions = sess.run(["scores", "action"], {"obs": obs, "action_mask": mask})
    ref = rec.scores[act]
    ref_actions = rec.action[act]
    tol = SCORE_RTOL * np.maximum(1.0, np.abs(ref))
    score_ok = np.where(mask, np.abs(scores - ref) <= tol, scores == np.float32(MASKED_SCORE))
    mism = actions != ref_actions
    top2 = np.sort(np.where(mask, ref, -np.inf), axis=1)[:, -2:] if ref.shape[1] > 1 else np.zeros((len(ref), 2))
    gap = top2[:, 1] - top2[:, 0]
    ties = mism & (gap < NEAR_TIE)
    report: dict[str, Any] = {
        "simulated_learners": n_learners, "steps": steps, "seed": seed, "decisions": int(act.sum()),
        "action_agreement": float(1.0 - mism.mean()) if len(mism) else 1.0,
        "action_mismatches": int(mism.sum()), "mismatches_at_near_ties": int(ties.sum()),
        "max_score_abs_diff": float(np.max(np.where(mask, np.abs(scores - ref), 0.0))) if len(ref) else 0.0,
        "scores_within_tolerance": bool(score_ok.all()), "score_tolerance": f"{SCORE_RTOL:g} * max(1, |score|)",
    }
    # the runtime featurizer on the event logs
    spec = FeatureSpec.from_manifest(manifest)
    item_index = {iid: k for k, iid in enumerate(spec.item_ids)}
    logs = event_logs(rec, built.curriculum.item_ids)
    worst, n_checked, mask_bad = 0.0, 0, 0
    for n in range(min(featurizer_learners, n_learners)):
        if not np.all(rec.valid[n] | ~rec.active[n]):
            continue  # a locked item was chosen: not representable as an event
        evs = parse_events(logs[n], item_index)
        for (j, now), k in zip(decision_points(rec, n), obs_index(rec, n)):
            h = replay(spec, evs[:j], now)
            worst = max(worst, float(np.max(np.abs(featurize(spec, h) - rec.obs[n, k]))))
            mask_bad += int(not np.array_equal(action_mask(spec, h), rec.mask[n, k]))
            n_checked += 1
    report.update({"featurizer_observations": n_checked, "featurizer_max_abs_diff": worst,
                   "featurizer_mask_mismatches": mask_bad})
    failures = []
    if mism.sum() > ties.sum():
        failures.append(f"{int(mism.sum() - ties.sum())} of {len(mism)} decisions differ between ONNX and the JAX policy")
    if not score_ok.all():
        failures.append(f"scores differ by up to {report['max_score_abs_diff']:.3g}")
    if worst > FEATURE_ATOL or mask_bad:
        failures.append(f"runtime features differ from the simulator's by up to {worst:.3g} ({mask_bad} masks differ)")
    if failures:
        raise ExportError("export verification failed: " + "; ".join(failures) + f". Details: {report}")
    return report


def export_bundle(source: ExportSource, out: str | Path, *, verify_learners: int = 32, overwrite: bool = False,
                  created_utc: str | None = None, early_warning: TrainedWarning | None = None) -> dict[str, Any]:
    """Write ``out/policy.onnx`` and ``out/manifest.json``; returns a report (paths, sha256,
    sizes, verification figures, export time). ``early_warning``: a
    :class:`pedagogym.warning.TrainedWarning` to ship as ``out/risk.onnx``."""
    t0 = time.perf_counter()
    out = Path(out)
    if (out / MANIFEST_FILE).exists() and not overwrite:
        raise ExportError(f"{out}: already holds a bundle; choose another --out or pass --force")
    model_bytes = build_model_bytes(source)
    digest = sha256_bytes(model_bytes)
    manifest = build_manifest(source.built, policy=source.describe(), model_sha256=digest, training=source.training,
                              created_utc=created_utc)
    risk_bytes = None
    if early_warning is not None:
        from pedagogym.warning import bundle as ew_bundle

        risk_bytes, manifest["early_warning"] = ew_bundle.prepare(early_warning, source.built)
    if verify_learners > 0:
        manifest["verification"] = verify_source(source, model_bytes, manifest, n_learners=verify_learners)
    if early_warning is not None:
        manifest["early_warning"]["verification"] = ew_bundle.verify(early_warning, risk_bytes, source, manifest,
                                                                     model_bytes, n_learners=verify_learners)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / MODEL_FILE, model_bytes)
    if risk_bytes is not None:
        atomic_write_bytes(out / manifest["early_warning"]["file"], risk_bytes)
    sealed = seal_manifest(manifest)
    atomic_write_bytes(out / MANIFEST_FILE, sealed)
    Recommender(load_bundle(out)).recommend([])  # the written bundle loads and answers
    bundle_sha = json.loads(sealed)[BUNDLE_HASH_KEY]
    return {"out": str(out), "policy": source.name, "kind": source.kind, "sha256": digest, "bundle_sha256": bundle_sha,
            "opset": OPSET,
            "n_features": len(source.built.feature_names), "n_items": source.built.curriculum.n_items,
            "model_bytes": len(model_bytes), "verification": manifest.get("verification"),
            **({"early_warning": _ew_report(manifest["early_warning"])} if risk_bytes is not None else {}),
            "export_s": round(time.perf_counter() - t0, 3)}


def _ew_report(section: dict[str, Any]) -> dict[str, Any]:
    heldout = section["heldout"]["targets"]
    return {"file": section["file"], "sha256": section["sha256"], "targets": [t["name"] for t in section["targets"]],
            "heldout": {t: {k: m[k] for k in ("auc", "brier", "ece", "base_rate")} for t, m in heldout.items()},
            "heldout_learners": section["heldout"]["learners"], "verification": section["verification"]}
