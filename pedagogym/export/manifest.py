"""The bundle manifest: everything a runtime needs to turn an event log into the policy's
input, and everything an auditor needs to know what was deployed.

The runtime (:mod:`pedagogym.deploy`) reads only this file and ``policy.onnx``; the keys it
relies on are documented in :data:`pedagogym.deploy.bundle.MANIFEST_KEYS`.
"""
from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

import numpy as np

from pedagogym._version import __version__
from pedagogym.deploy.bundle import FORMAT, FORMAT_VERSION
from pedagogym.deploy.features import SESSION_RULE, DEFAULT_IDLE_GAP_S, feature_names
from pedagogym.envs.config import BuiltEnv
from pedagogym.errors import PedagogymError
from pedagogym.envs.observations import PlatformFeatures
from pedagogym.export.graph import IR_VERSION, MASKED_SCORE, OPSET
from pedagogym.schema import RT_SCALE_S, manifest_section
from pedagogym.student_models.learner import OBSERVED_KINDS

FEATURE_DEFINITIONS = {
    "belief": "BKT forward pass (observer params) over the learner's events: start at p_init[s]; at each event on "
              "an item exercising s, condition on the response when the item's kind records one (posterior with "
              "p_guess[s], p_slip[s]), then transition (p_learn[s], p_forget[s])",
    "skill_attempts": "log1p(number of events on items exercising s)",
    "skill_accuracy": "(correct events on items exercising s + 1) / (events on them + 2); only recorded kinds count as correct",
    "item_attempts": "log1p(number of events on item i)",
    "item_accuracy": "(correct events on i + 1) / (events on i + 2)",
    "item_recency": "1 / (1 + days between the decision time and i's last event); 0 if i never appeared",
    "last_correct": "1 if the last event was a recorded correct response, else 0 (0 when there are no events)",
    "last_rt": f"log1p(last event's response_time seconds) / log1p({RT_SCALE_S:g}), clipped to [0, 1]",
    "progress": "number of events / horizon",
    "session": "log1p(session index), sessions inferred from timestamps (see sessions.rule)",
    "session_time": "(decision time - start of the current session) in seconds / session_s, clipped to [0, 1]",
}


def _floats(x) -> list[float]:
    return [float(v) for v in np.asarray(x, np.float32).reshape(-1)]


def features_section(built: BuiltEnv) -> dict[str, Any]:
    env, curr = built.env, built.curriculum
    if env.privileged:
        raise PedagogymError("a privileged env exposes latent state in its observations; such a policy cannot be deployed "
                         "(train and export on the same env with privileged=false)")
    if not isinstance(env.featurizer, PlatformFeatures):
        raise PedagogymError(f"featurizer {env.featurizer.name!r} has no event-log runtime; only 'platform' can be exported")
    names = built.feature_names
    if names != feature_names(curr.skill_ids, curr.item_ids):
        raise AssertionError("the runtime's feature names differ from the simulator's; fix pedagogym.deploy.features")
    features = []
    for k, n in enumerate(names):
        group, _, arg = n.partition("[")
        features.append({"index": k, "name": n, "group": group, **({"of": arg[:-1]} if arg else {}),
                         "definition": FEATURE_DEFINITIONS[group]})
    return {"featurizer": env.featurizer.name, "size": len(names), "feature_names": names, "features": features,
            "dtype": "float32", **manifest_section()}


def build_manifest(built: BuiltEnv, *, policy: dict[str, Any], model_sha256: str, training: dict[str, Any] | None,
                   created_utc: str | None = None) -> dict[str, Any]:
    p, curr = built.params, built.curriculum
    spec = curr.to_dict()
    observer = p.observer
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "pedagogym_version": __version__,
        "created_utc": created_utc or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "exported_with": {"python": platform.python_version()},
        "policy": policy,
        "model": {
            "file": "policy.onnx", "sha256": model_sha256, "opset": OPSET, "ir_version": IR_VERSION,
            "inputs": {"obs": ["batch", len(built.feature_names)], "action_mask": ["batch", curr.n_items]},
            "outputs": {"scores": ["batch", curr.n_items], "action": ["batch"]},
            "input_dtypes": {"obs": "float32", "action_mask": "bool"},
            "output_dtypes": {"scores": "float32", "action": "int64"},
            "masked_score": MASKED_SCORE,
            "tie_break": "lowest action index",
        },
        "observation": features_section(built),
        "actions": {"n": curr.n_items, "item_ids": list(curr.item_ids),
                    "note": "action k presents item_ids[k]; scores are in the same order"},
        "curriculum": {
            "name": curr.name, "content_hash": curr.content_hash(), "hash_rule":
                "sha256 of json.dumps(spec, sort_keys=True, separators=(',', ':'))",
            "skill_ids": list(curr.skill_ids), "observed_kinds": [k.label for k in OBSERVED_KINDS], "spec": spec,
        },
        "observer": {"model": "bkt_forward", "p_init": _floats(observer.p_init), "p_learn": _floats(observer.p_learn),
                     "p_forget": _floats(observer.p_forget), "p_guess": _floats(observer.p_guess),
                     "p_slip": _floats(observer.p_slip)},
        "env": {
            "horizon": int(p.horizon), "session_s": float(np.float32(p.session_s)),
            "unlock_threshold": float(np.float32(p.unlock_threshold)),
            "item_available": [bool(v) for v in np.asarray(p.item_available)],
            "action_mask_rule": "an available item is allowed when every prerequisite of each of its skills has "
                                "belief >= unlock_threshold; if that leaves none, every available item",
            "config": built.config.to_dict(),
        },
        "sessions": {"rule": SESSION_RULE, "idle_gap_s": DEFAULT_IDLE_GAP_S,
                     "clock": "float32 days since the learner's first event (the simulator's clock)"},
        "training": training or {},
    }
