"""Export a policy for deployment: an ONNX graph plus a manifest (a *bundle*).

    from pedagogym.export import resolve, export_bundle
    source = resolve("agent:results/train/ppo_bkt#best")        # or "policy:mastery" with env=...
    export_bundle(source, "bundle/")                            # verified against the simulator

CLI: ``pedagogym export CHECKPOINT --out BUNDLE/`` and ``pedagogym serve BUNDLE --port N``
(:mod:`pedagogym.export.cli`). The runtime that reads bundles is :mod:`pedagogym.deploy`.

Names are imported lazily, so that ``pedagogym.export.cli`` (and ``pedagogym serve``) does not
load JAX.
"""
from __future__ import annotations

import importlib

_NAMES = {
    "export_bundle": "bundle", "verify_source": "bundle",
    "MASKED_SCORE": "graph", "OPSET": "graph", "Dense": "graph", "MLPSpec": "graph", "Normalizer": "graph",
    "policy_model": "graph",
    "EXPORTERS": "handwritten", "NOT_EXPORTABLE": "handwritten",
    "MLPPolicy": "policies", "linear_scorer": "policies", "random_mlp": "policies",
    "ExportError": "sources", "ExportSource": "sources", "load_mlp_npz": "sources", "resolve": "sources",
    "save_mlp_npz": "sources", "scorer_for": "sources",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"pedagogym.export.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'pedagogym.export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
