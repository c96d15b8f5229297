"""Loading and verifying a policy bundle (a directory with ``manifest.json`` and ``policy.onnx``).

Checks, each a :class:`BundleError` with a message that says what to do:
every file the bundle names (``manifest.json``, the model, the early-warning model) is a plain
file name inside the bundle folder and a regular file (no symlink, FIFO or device: opened with
``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat``); the whole-bundle hash
(``bundle_sha256``: sha256 of the manifest's bytes with that field's value zeroed, so it covers
every byte of the manifest, and through the file hashes in it, every file); the format name; the format version (a bundle newer than this runtime is refused); the
manifest keys the runtime reads; the sha256 of ``policy.onnx`` against the manifest; the
curriculum's content hash against the embedded curriculum spec; the action map against the
curriculum's items; the feature names against the featurizer; and, when the bundle has an
early-warning model (optional ``early_warning`` section + ``risk.onnx``), its section's shape
and the sha256 of ``risk.onnx``; the curriculum spec's shape (ids unique, skills and
prerequisites known); the observer's and env's numbers (lengths, ranges, finite). Bundles
without an early-warning model load as before. ``expected_sha256`` pins a bundle: the hash
must equal the one ``pedagogym export`` printed (the in-file hash detects edits and
corruption; pinning also detects a bundle re-sealed by someone else).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pedagogym.deploy.features import feature_names, schema_mismatch

FORMAT = "pedagogym.policy-bundle"
FORMAT_VERSION = 2  # 2: bundle_sha256 (whole-bundle hash); format 1 bundles are refused (re-export them)
BUNDLE_HASH_KEY = "bundle_sha256"
BUNDLE_HASH_RULE = ("sha256 of manifest.json's bytes with the 64 hex digits of bundle_sha256 replaced by 64 '0's; "
                    "the manifest holds the sha256 of every other file")
MAX_MANIFEST_BYTES = 64 << 20
MAX_MODEL_BYTES = 1 << 30
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


def seal_manifest(manifest: dict[str, Any]) -> bytes:
    """The bytes of ``manifest.json`` for ``manifest``, with ``bundle_sha256`` filled in."""
    m = {**manifest, BUNDLE_HASH_KEY: "0" * 64, "bundle_hash_rule": BUNDLE_HASH_RULE}
    text = json.dumps(m, indent=1) + "\n"
    digest = sha256_bytes(text.encode())
    return text.replace(f'"{BUNDLE_HASH_KEY}": "{"0" * 64}"', f'"{BUNDLE_HASH_KEY}": "{digest}"', 1).encode()


def bundle_digest(raw: bytes, m: dict[str, Any], where: str) -> str:
    """Check the whole-bundle hash of the manifest bytes ``raw`` (parsed: ``m``); returns it."""
    claimed = m.get(BUNDLE_HASH_KEY)
    if not isinstance(claimed, str) or not re.fullmatch(r"[0-9a-f]{64}", claimed):
        raise BundleError(f"{where}: {BUNDLE_HASH_KEY} missing or not 64 lowercase hex digits; re-export the bundle")
    needle = claimed.encode()
    if raw.count(needle) != 1:
        raise BundleError(f"{where}: {BUNDLE_HASH_KEY} must appear exactly once in the manifest")
    digest = sha256_bytes(raw.replace(needle, b"0" * 64))
    if digest != claimed:
        raise BundleError(f"{where}: the manifest's content does not match its {BUNDLE_HASH_KEY} (sha256 {digest}); "
                          f"the manifest was edited or corrupted; re-export the bundle")
    return claimed


def read_bundle_file(folder: Path, name: Any, what: str, limit: int = MAX_MODEL_BYTES) -> bytes:
    """The bytes of ``folder/name``: ``name`` must be a plain file name (no separator, not ``.``
    / ``..``) and the file a regular file (not a symlink, FIFO, socket or device)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise BundleError(f"{folder}: {what}: expected a file name inside the bundle folder, got {name!r}")
    path = folder / name
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise BundleError(f"{folder}: missing {name} ({what})") from None
    except OSError as exc:  # ELOOP: a symlink; EACCES, ENXIO...
        kind = "a symbolic link" if path.is_symlink() else f"unreadable ({exc.strerror})"
        raise BundleError(f"{path}: {what} is {kind}; a bundle holds regular files only") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{path}: {what} is not a regular file (a FIFO, device, socket or folder); "
                              f"a bundle holds regular files only")
        if st.st_size > limit:
            raise BundleError(f"{path}: {what} is {st.st_size} bytes, more than the limit of {limit}")
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            return f.read(limit + 1)[:limit]
    finally:
        if fd >= 0:
            os.close(fd)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_numbers(m: dict[str, Any], where: str) -> None:
    """The curriculum spec's shape and the observer / env / sessions numbers the featurizer uses."""
    spec = m["curriculum"]["spec"]
    skills, items = spec["skills"], spec["items"]
    if not skills or not all(isinstance(s, dict) and isinstance(s.get("id"), str) and s["id"] for s in skills):
        raise BundleError(f"{where}: curriculum.spec.skills: expected a non-empty list of objects with string ids")
    skill_ids = [s["id"] for s in skills]
    if len(set(skill_ids)) != len(skill_ids):
        raise BundleError(f"{where}: curriculum.spec.skills: duplicate skill ids")
    known = set(skill_ids)
    for k, s in enumerate(skills):
        pre = s.get("prerequisites", [])
        if not isinstance(pre, list) or not all(isinstance(p, str) and p in known for p in pre):
            raise BundleError(f"{where}: curriculum.spec.skills[{k}].prerequisites: expected a list of known skill ids")
    if not items or not all(isinstance(it, dict) and isinstance(it.get("id"), str) and it["id"] for it in items):
        raise BundleError(f"{where}: curriculum.spec.items: expected a non-empty list of objects with string ids")
    item_ids = [it["id"] for it in items]
    if len(set(item_ids)) != len(item_ids):
        raise BundleError(f"{where}: curriculum.spec.items: duplicate item ids")
    for k, it in enumerate(items):
        sk = it.get("skills")
        if not isinstance(sk, list) or not sk or not all(isinstance(x, str) and x in known for x in sk):
            raise BundleError(f"{where}: curriculum.spec.items[{k}].skills: expected a non-empty list of known skill ids")
        if not isinstance(it.get("kind", "practice"), str):
            raise BundleError(f"{where}: curriculum.spec.items[{k}].kind: expected a string")
    kinds = m["curriculum"].get("observed_kinds")
    if not isinstance(kinds, list) or not all(isinstance(x, str) for x in kinds):
        raise BundleError(f"{where}: curriculum.observed_kinds: expected a list of strings")
    ob = m["observer"]
    for key in ("p_init", "p_learn", "p_forget", "p_guess", "p_slip"):
        v = ob.get(key)
        if not isinstance(v, list) or len(v) != len(skills) or not all(_finite(x) and 0.0 <= x <= 1.0 for x in v):
            raise BundleError(f"{where}: observer.{key}: expected {len(skills)} probabilities in [0, 1] "
                              f"(one per skill), got {v!r}"[:300])
    env = m["env"]
    h = env.get("horizon")
    if not (isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 10**9):
        raise BundleError(f"{where}: env.horizon: expected an integer from 1 to 1e9, got {h!r}")
    ss = env.get("session_s")
    if not (_finite(ss) and 0 < ss <= 1e9):
        raise BundleError(f"{where}: env.session_s: expected a finite number of seconds > 0, got {ss!r}")
    ut = env.get("unlock_threshold")
    if not (_finite(ut) and 0.0 <= ut <= 1.0):
        raise BundleError(f"{where}: env.unlock_threshold: expected a number in [0, 1], got {ut!r}")
    ia = env.get("item_available")
    if not isinstance(ia, list) or len(ia) != len(items) or not all(isinstance(x, bool) for x in ia):
        raise BundleError(f"{where}: env.item_available: expected {len(items)} booleans (one per item)")
    gap = m["sessions"].get("idle_gap_s", 1800.0)
    if not (_finite(gap) and gap > 0):
        raise BundleError(f"{where}: sessions.idle_gap_s: expected a finite number of seconds > 0, got {gap!r}")


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
    if version < FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format version {version} has no whole-bundle hash and is no longer "
                          f"trusted; re-export it with this pedagogym (format {FORMAT_VERSION})")
    for key, kind in MANIFEST_KEYS.items():
        if not isinstance(m.get(key), kind):
            raise BundleError(f"{where}: key {key!r} missing or not a {kind.__name__}")
    curr = m["curriculum"]
    spec = curr.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("items"), list) or not isinstance(spec.get("skills"), list):
        raise BundleError(f"{where}: curriculum.spec must hold the curriculum's skills and items")
    check_numbers(m, where)
    if not isinstance(m["model"].get("file", MODEL_FILE), str):
        raise BundleError(f"{where}: model.file: expected a file name")
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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (a manifest holds finite numbers only)")


def load_bundle(path: str | Path, expected_sha256: str | None = None) -> Bundle:
    """Read and verify a bundle directory (``expected_sha256``: the ``bundle_sha256`` it must have)."""
    path = Path(path)
    if not (path / MANIFEST_FILE).exists() and not (path / MANIFEST_FILE).is_symlink():
        raise BundleError(f"{path}: no {MANIFEST_FILE}; is this a bundle written by `pedagogym export`?")
    mpath = path / MANIFEST_FILE
    raw = read_bundle_file(path, MANIFEST_FILE, "the manifest", MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise BundleError(f"{mpath}: not valid JSON: {type(exc).__name__}: {exc}"[:500]) from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: expected a JSON object")
    check_manifest(manifest, str(mpath))
    digest = bundle_digest(raw, manifest, str(mpath))
    if expected_sha256 is not None and digest != expected_sha256.strip().lower():
        raise BundleError(f"{mpath}: bundle_sha256 is {digest}, not the expected {expected_sha256}; "
                          f"this is not the bundle that was exported")
    model_name = manifest["model"].get("file", MODEL_FILE)
    data = read_bundle_file(path, model_name, "model.file")
    digest = sha256_bytes(data)
    if digest != manifest["model"].get("sha256"):
        raise BundleError(f"{path / model_name}: sha256 {digest} does not match the manifest's "
                          f"{manifest['model'].get('sha256')}; the model file was modified or replaced; re-export the bundle")
    risk = None
    ew = manifest.get("early_warning")
    if ew is not None:
        risk = read_bundle_file(path, ew["file"], "early_warning.file")
        digest = sha256_bytes(risk)
        if digest != ew["sha256"]:
            raise BundleError(f"{path / ew['file']}: sha256 {digest} does not match the manifest's early_warning.sha256 "
                              f"{ew['sha256']}; the early-warning model was modified or replaced; re-export the bundle")
    return Bundle(path=path, manifest=manifest, model_bytes=data, risk_bytes=risk)
