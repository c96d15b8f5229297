"""An early-warning model inside a policy bundle: ``risk.onnx`` and the manifest's
``early_warning`` section, verified against the JAX model before anything is written.

Why a second graph rather than extra outputs of ``policy.onnx``: the policy graph, its sha256,
its verification and every runtime's check of its signature stay exactly what they were; a
bundle without early warning is byte-for-byte the bundle it was before; the risk model can be
retrained and swapped without touching the verified policy; and runtimes that do not need risks
never load it. Older runtimes ignore the optional section, so the format version is unchanged.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pedagogym.deploy.bundle import RISK_FILE, sha256_bytes
from pedagogym.envs.config import BuiltEnv
from pedagogym.export.graph import IR_VERSION, OPSET
from pedagogym.export.sources import ExportError, ExportSource
from pedagogym.warning.model import (METRICS_FILE, MODEL_FILE, RISK_INPUT, RISK_OUTPUT, RiskModel, WarningModelError,
                                     check_compatible, observation_signature, risk_jax, risk_model_bytes)
from pedagogym.warning.targets import TARGETS
from pedagogym.warning.train import TrainedWarning, WarningConfig, train_warning

RISK_ATOL = 1e-5  # |onnx - jax| on every checked decision


def section(trained: TrainedWarning, model_bytes: bytes, built: BuiltEnv) -> dict[str, Any]:
    """The manifest's ``early_warning`` section (the runtimes read file, sha256, targets, inputs, outputs)."""
    model = trained.model
    return {
        "file": RISK_FILE, "sha256": sha256_bytes(model_bytes), "opset": OPSET, "ir_version": IR_VERSION,
        "inputs": {RISK_INPUT: ["batch", model.n_features]}, "outputs": {RISK_OUTPUT: ["batch", len(model.targets)]},
        "input_dtypes": {RISK_INPUT: "float32"}, "output_dtypes": {RISK_OUTPUT: "float32"},
        "input_note": "the policy's observation (manifest.observation), rebuilt from the learner's event log",
        "targets": [{"name": t, "definition": TARGETS.get(t).definition} for t in model.targets],
        "horizon": {"items": int(built.config.horizon),
                    "note": "each risk is about the learner's whole episode, which ends after `items` items, or "
                            "earlier by mastery or dropout; items already presented count toward it (see "
                            "observation 'progress')"},
        "architecture": model.describe(),
        "training": trained.training,
        "heldout": trained.heldout,
    }


def check_risk(model: RiskModel, model_bytes: bytes, obs: np.ndarray) -> dict[str, Any]:
    """ONNX vs JAX on observations float32[N, D]; :class:`ExportError` beyond :data:`RISK_ATOL`."""
    from pedagogym.deploy.recommender import make_session

    obs = np.asarray(obs, np.float32)
    if len(obs) == 0:
        return {"decisions": 0, "max_abs_diff": 0.0}
    got = make_session(model_bytes).run([RISK_OUTPUT], {RISK_INPUT: obs})[0]
    ref = np.asarray(risk_jax(model, obs))
    worst = float(np.max(np.abs(got - ref)))
    if not worst <= RISK_ATOL:
        raise ExportError(f"early-warning verification failed: ONNX and JAX risks differ by up to {worst:.3g} "
                          f"(tolerance {RISK_ATOL:g}) on {len(obs)} observations")
    return {"decisions": int(len(obs)), "max_abs_diff": worst}


def verify(trained: TrainedWarning, risk_bytes: bytes, source: ExportSource, manifest: dict[str, Any],
           policy_bytes: bytes, n_learners: int, seed: int = 20240501, log_learners: int = 8) -> dict[str, Any]:
    """ONNX vs JAX on the held-out observations kept from training; on every decision of
    ``n_learners`` learners taught by the bundle's policy (the learners of the policy verification:
    same seed, so their simulation is compiled once); and end to end -- event log -> runtime
    featurizer -> ``risk.onnx`` -- on the first ``log_learners`` of those learners' logs."""
    from pedagogym.deploy.bundle import Bundle
    from pedagogym.deploy.recommender import Recommender
    from pedagogym.export.record import decision_points, event_logs, obs_index, record_episodes

    built = source.built
    report: dict[str, Any] = {"tolerance": RISK_ATOL}
    if trained.verification_obs is not None and len(trained.verification_obs):
        report["heldout_observations"] = check_risk(trained.model, risk_bytes, trained.verification_obs)
    if n_learners <= 0:
        return report
    rec = record_episodes(built.env, built.params, source.policy, n_learners, int(built.config.horizon), seed=seed)
    report["bundle_policy"] = {"simulated_learners": n_learners, "seed": seed,
                               **check_risk(trained.model, risk_bytes, rec.obs[:, :-1][rec.active])}
    runtime = Recommender(Bundle(path=Path("<being exported>"), manifest=manifest, model_bytes=policy_bytes,
                                 risk_bytes=risk_bytes))
    ref = np.asarray(risk_jax(trained.model, rec.obs))  # float32[N, T+1, targets]
    logs = event_logs(rec, built.curriculum.item_ids)
    worst, n_checked = 0.0, 0
    for n in range(min(log_learners, n_learners)):
        if not np.all(rec.valid[n] | ~rec.active[n]):
            continue  # a locked item was chosen: not representable as an event
        for (j, now), k in zip(decision_points(rec, n), obs_index(rec, n)):
            got = runtime.risk(logs[n][:j], now=now)
            worst = max(worst, max(abs(got[t] - float(ref[n, k, c])) for c, t in enumerate(trained.model.targets)))
            n_checked += 1
    report["event_logs"] = {"learners": min(log_learners, n_learners), "decisions": n_checked, "max_abs_diff": worst}
    if not worst <= RISK_ATOL:
        raise ExportError(f"early-warning verification failed: risks from the event logs differ from the JAX model's "
                          f"on the simulator's observations by up to {worst:.3g} (tolerance {RISK_ATOL:g})")
    return report


def prepare(trained: TrainedWarning, built: BuiltEnv) -> tuple[bytes, dict[str, Any]]:
    """(risk.onnx bytes, manifest section) for a bundle whose policy acts in ``built``;
    :class:`ExportError` if the model reads another observation."""
    try:
        check_compatible(trained.model, built.feature_names, observation_signature(built), "early warning")
    except WarningModelError as exc:
        raise ExportError(str(exc)) from None
    risk_bytes = risk_model_bytes(trained.model)
    return risk_bytes, section(trained, risk_bytes, built)


def train_for_bundle(source: ExportSource, config: WarningConfig, progress: bool = False) -> TrainedWarning:
    """Train on ``config.env`` (by default the bundle's own env) with the config's hand-written policies
    plus the bundle's policy (unless it is one of them), so that the risks fit the policy deployed."""
    built = config.build_env()
    try:
        check_compatible_env(source.built, built)
    except WarningModelError as exc:
        raise ExportError(str(exc)) from None
    in_mix = source.kind == "handwritten" and source.name in config.policies
    extra = () if in_mix else ((f"bundle:{source.name}", source.policy),)
    return train_warning(config, built=built, extra_policies=extra, progress=progress)


def check_compatible_env(bundle_env: BuiltEnv, training_env: BuiltEnv) -> None:
    """The training env must produce the bundle's observation (same names, curriculum, horizon,
    session length and observer); checked before any simulation."""
    sig, other = observation_signature(bundle_env), observation_signature(training_env)
    if list(bundle_env.feature_names) != list(training_env.feature_names) or sig != other:
        diff = [k for k in sig if sig[k] != other.get(k)]
        raise WarningModelError(f"early warning: the training env's observation differs from the bundle's "
                                f"({', '.join(diff) or 'feature names'}); only settings that leave the observation "
                                f"unchanged (population, engagement, model, ...) may differ")


def load_trained(directory: str | Path) -> TrainedWarning:
    """A model written by ``pedagogym warn train`` (``model.json`` + ``metrics.json``)."""

    d = Path(directory)
    for name in (MODEL_FILE, METRICS_FILE):
        if not (d / name).is_file():
            raise ExportError(f"{d}: no {name}; expected a directory written by `pedagogym warn train`")
    try:
        model = RiskModel.from_dict(json.loads((d / MODEL_FILE).read_text()), str(d / MODEL_FILE))
        metrics = json.loads((d / METRICS_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise ExportError(f"{d}: not valid JSON: {exc}") from None
    except WarningModelError as exc:
        raise ExportError(str(exc)) from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("heldout"), dict):
        raise ExportError(f"{d / METRICS_FILE}: no held-out metrics ('heldout')")
    return TrainedWarning(model=model, config=None, heldout=metrics["heldout"], calibration=metrics.get("calibration", []),
                          training={**metrics.get("training", {}), "loaded_from": str(d.resolve())})
