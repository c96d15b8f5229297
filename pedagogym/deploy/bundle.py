"""Loading and verifying a policy bundle (a directory with ``manifest.json`` and ``policy.onnx``).

Checks, each a :class:`BundleError` with a message that says what to do:
the format name; the format version (a bundle newer than this runtime is refused); the
manifest keys the runtime reads; the sha256 of ``policy.onnx`` against the manifest; the
curriculum's content hash against the embedded curriculum spec; the action map against the
curriculum's items; the feature names against the featurizer; and, when the bundle has an
early-warning model (optional ``early_warning`` section + ``risk.onnx``), its section's shape
and the sha256 of ``risk.onnx``. Bundles without one load as before.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pedagogym.deploy.features import feature_names, schema_mismatch

FORMAT = "pedagogym.policy-bundle"
FORMAT_VERSION = 1
MANIFEST_FILE, MODEL_FILE, RISK_FILE = "manifest.json", "policy.onnx", "risk.onnx"
MANIFEST_KEYS = {
    "format": str, "format_version": int, "pedagogym_version": str, "policy": dict, "model": dict,
    "observation": dict, "actions": dict, "curriculum": dict, "observer": dict, "env": dict, "sessions": dict,
    "training": dict,
}


class BundleError(ValueError):
    """A bundle that cannot be used as it is (missing, tampered, too new, inconsistent)."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    model_bytes: bytes
    risk_bytes: bytes | None = None  # the early-warning model (``risk.onnx``), when the bundle has one

    @property
    def item_ids(self) -> list[str]:
        return list(self.manifest["actions"]["item_ids"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.manifest["observation"]["feature_names"])

    @property
    def risk_targets(self) -> list[str]:
        """The early-warning model's targets, in output order ([] without one)."""
        ew = self.manifest.get("early_warning")
        return [t["name"] for t in ew["targets"]] if ew else []


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def curriculum_hash(spec: Mapping[str, Any]) -> str:
    """``Curriculum.content_hash()`` recomputed from the curriculum's dict form."""
    return sha256_bytes(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode())


def check_manifest(m: Any, where: str = MANIFEST_FILE) -> None:
    if not isinstance(m, dict):
        raise BundleError(f"{where}: expected a JSON object")
    if m.get("format") != FORMAT:
        raise BundleError(f"{where}: format is {m.get('format')!r}, expected {FORMAT!r}: not a pedagogym policy bundle")
    version = m.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{where}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format version {version} is newer than this runtime supports "
                          f"({FORMAT_VERSION}); upgrade pedagogym (exported by pedagogym {m.get('pedagogym_version')})")
    if version < 1:
        raise BundleError(f"{where}: unknown bundle format version {version}")
    for key, kind in MANIFEST_KEYS.items():
        if not isinstance(m.get(key), kind):
            raise BundleError(f"{where}: key {key!r} missing or not a {kind.__name__}")
    curr = m["curriculum"]
    spec = curr.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("items"), list) or not isinstance(spec.get("skills"), list):
        raise BundleError(f"{where}: curriculum.spec must hold the curriculum's skills and items")
    if curriculum_hash(spec) != curr.get("content_hash"):
        raise BundleError(f"{where}: curriculum.content_hash does not match the embedded curriculum spec "
                          f"(the manifest was edited or corrupted)")
    item_ids = [it["id"] for it in spec["items"]]
    if m["actions"].get("item_ids") != item_ids:
        raise BundleError(f"{where}: actions.item_ids differ from the curriculum's items")
    obs = m["observation"]
    if obs.get("featurizer") != "platform":
        raise BundleError(f"{where}: observation.featurizer {obs.get('featurizer')!r} has no runtime featurizer")
    mismatch = schema_mismatch(obs)
    if mismatch:
        raise BundleError(f"{where}: {mismatch}; export the bundle again with this version, or serve it with "
                          f"the version that exported it")
    if obs.get("feature_names") != feature_names([s["id"] for s in spec["skills"]], item_ids):
        raise BundleError(f"{where}: observation.feature_names differ from the 'platform' featurizer's for this curriculum")
    if m.get("early_warning") is not None:
        check_early_warning(m["early_warning"], len(obs["feature_names"]), where)


def check_early_warning(ew: Any, n_features: int, where: str = MANIFEST_FILE) -> None:
    """The optional ``early_warning`` section: file, sha256, targets, and the graph's shapes."""
    at = f"{where}: early_warning"
    if not isinstance(ew, dict):
        raise BundleError(f"{at}: expected an object")
    for key, kind in (("file", str), ("sha256", str), ("targets", list), ("inputs", dict), ("outputs", dict)):
        if not isinstance(ew.get(key), kind):
            raise BundleError(f"{at}: key {key!r} missing or not a {kind.__name__}")
    names = [t.get("name") if isinstance(t, dict) else None for t in ew["targets"]]
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise BundleError(f"{at}.targets: expected a non-empty list of objects with distinct names, got {ew['targets']!r}")
    if ew["inputs"] != {"obs": ["batch", n_features]}:
        raise BundleError(f"{at}.inputs: expected {{'obs': ['batch', {n_features}]}} (the observation), "
                          f"got {ew['inputs']!r}")
    if ew["outputs"] != {"risk": ["batch", len(names)]}:
        raise BundleError(f"{at}.outputs: expected {{'risk': ['batch', {len(names)}]}} (one probability per target), "
                          f"got {ew['outputs']!r}")
    if "/" in ew["file"] or "\\" in ew["file"] or ew["file"] in ("", ".", ".."):
        raise BundleError(f"{at}.file: expected a file name inside the bundle, got {ew['file']!r}")


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle directory."""
    path = Path(path)
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise BundleError(f"{path}: no {MANIFEST_FILE}; is this a bundle written by `pedagogym export`?")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath}: not valid JSON: {exc}") from None
    check_manifest(manifest, str(mpath))
    model_path = path / manifest["model"].get("file", MODEL_FILE)
    if not model_path.is_file():
        raise BundleError(f"{path}: missing {model_path.name}")
    data = model_path.read_bytes()
    digest = sha256_bytes(data)
    if digest != manifest["model"].get("sha256"):
        raise BundleError(f"{model_path}: sha256 {digest} does not match the manifest's {manifest['model'].get('sha256')}; "
                          f"the model file was modified or replaced; re-export the bundle")
    risk = None
    ew = manifest.get("early_warning")
    if ew is not None:
        risk_path = path / ew["file"]
        if not risk_path.is_file():
            raise BundleError(f"{path}: missing {ew['file']} (the manifest's early_warning model)")
        risk = risk_path.read_bytes()
        digest = sha256_bytes(risk)
        if digest != ew["sha256"]:
            raise BundleError(f"{risk_path}: sha256 {digest} does not match the manifest's early_warning.sha256 "
                              f"{ew['sha256']}; the early-warning model was modified or replaced; re-export the bundle")
    return Bundle(path=path, manifest=manifest, model_bytes=data, risk_bytes=risk)
