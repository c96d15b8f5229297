"""Early warning: from the event log a policy sees, each learner's risk of dropping out and of
not reaching mastery within the env's horizon.

    from pedagogym.warning import WarningConfig, env_config, train_warning
    result = train_warning(WarningConfig(env=env_config("pedagogym/EngagedBKT-v0", {"horizon": 100})))
    result.heldout["targets"]["dropout"]["auc"]

Trained on simulated populations taught by a mix of hand-written policies
(:mod:`pedagogym.warning.data`), evaluated on held-out simulated learners by AUC, Brier score
and calibration (:mod:`pedagogym.warning.metrics`), exported as ``risk.onnx`` inside a policy
bundle (``pedagogym export ... --early-warning``) and answered by the runtimes
(``Recommender.risk``, ``POST /risk``, the Node client). CLI: ``pedagogym warn train|evaluate``.
"""
from __future__ import annotations

import importlib

_NAMES = {
    "auc": "metrics", "brier": "metrics", "ece": "metrics", "log_loss": "metrics", "reliability": "metrics",
    "DEFAULT_SUMMARIES": "model", "RiskModel": "model", "Summary": "model", "WarningModelError": "model",
    "risk_jax": "model", "risk_model_bytes": "model",
    "TARGETS": "targets", "Target": "targets",
    "TrainedWarning": "train", "WarningConfig": "train", "WarningConfigError": "train", "env_config": "train",
    "evaluate": "train", "evaluate_warning": "train", "train_warning": "train",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):  # lazy, like pedagogym.export: `pedagogym list` needs only the targets registry
    if name in _NAMES:
        return getattr(importlib.import_module(f"pedagogym.warning.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'pedagogym.warning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
