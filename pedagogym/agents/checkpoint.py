"""Checkpoints: a payload file plus a JSON manifest beside it, both written atomically.

    <run>/checkpoints/ckpt_u000040.msgpack        JAX PPO: every agent's RunnerState (flax msgpack)
    <run>/checkpoints/ckpt_u000040.msgpack.json   manifest: format, kind, config hash and config,
                                                  env id, obs size, n actions, update, env steps,
                                                  versions, sha256 of the payload
    <run>/checkpoints/agent003_u000040.zip(.json) SB3: the algorithm's own zip, one per agent

The manifest is written after its payload, so a checkpoint counts only once both are on
disk; a run killed at any moment leaves either the old or the new checkpoint, never half of
one. Loading checks the payload's sha256, the format, and that the config / env / sizes
match, and every failure raises :class:`CheckpointError` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from pedagogym.errors import PedagogymError

FORMAT = 1
_MANIFEST_SUFFIX = ".json"


class CheckpointError(PedagogymError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(payload: Path) -> Path:
    return payload.with_name(payload.name + _MANIFEST_SUFFIX)


def versions() -> dict[str, str]:
    from pedagogym.io import versions as base

    out = dict(base())
    for mod in ("flax", "optax", "stable_baselines3", "sb3_contrib", "torch"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def run_identity(config, built) -> dict[str, Any]:
    """What a checkpoint must agree on with the run that loads it."""
    return {"config_hash": config.hash(), "algo": config.algo, "env_id": config.env_id,
            "obs_size": int(built.env.obs_size(built.params)), "n_actions": int(built.env.n_actions(built.params))}


def write_checkpoint(payload: Path, write_payload, meta: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (via ``write_payload(tmp_path)``), then its manifest."""
    from pedagogym.io import atomic_write, atomic_write_json

    atomic_write(payload, write_payload)
    manifest = {"format": FORMAT, "payload": payload.name, "sha256": sha256_file(payload), "created": time.time(),
                "versions": versions(), **meta}
    atomic_write_json(manifest_path(payload), manifest)
    return payload


def read_manifest(payload: Path) -> dict[str, Any]:
    mpath = manifest_path(payload)
    try:
        meta = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{mpath}: checkpoint manifest not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{mpath}: corrupted checkpoint manifest (not valid JSON: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{mpath}: unsupported checkpoint format {meta.get('format') if isinstance(meta, dict) else meta!r}; "
                              f"this pedagogym reads format {FORMAT}")
    return meta


def verify(payload: Path, expected: dict[str, Any] | None = None, expected_config: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """The manifest of ``payload`` after checking its digest and that it matches ``expected``
    (the keys of :func:`run_identity`); raises :class:`CheckpointError` naming the file."""
    meta = read_manifest(payload)
    if not payload.exists():
        raise CheckpointError(f"{payload}: checkpoint payload missing (its manifest exists)")
    digest = sha256_file(payload)
    if digest != meta.get("sha256"):
        raise CheckpointError(f"{payload}: corrupted checkpoint (sha256 {digest[:12]}... does not match its manifest's "
                              f"{str(meta.get('sha256'))[:12]}...)")
    for key, want in (expected or {}).items():
        got = meta.get(key)
        if got != want:
            detail = ""
            if key == "config_hash" and expected_config is not None and isinstance(meta.get("config"), dict):
                diff = _diff(meta["config"], expected_config)
                detail = f"; differing settings: {', '.join(diff) or '(none visible)'}"
            raise CheckpointError(f"{payload}: checkpoint does not match this run: {key} is {got!r} in the checkpoint, "
                                  f"{want!r} here{detail}. Use another --out directory (or --restart to discard it).")
    return meta


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k} ({va!r} -> {vb!r})")
    return out


# ---- pytrees as msgpack -------------------------------------------------------------------
def save_pytree(payload: Path, tree: Any, meta: dict[str, Any]) -> Path:
    from flax import serialization

    leaves = [np.asarray(x) for x in jax.tree.leaves(tree)]
    blob = serialization.msgpack_serialize({"leaves": {str(i): x for i, x in enumerate(leaves)}})
    return write_checkpoint(payload, lambda tmp: tmp.write_bytes(blob), meta)


def load_pytree(payload: Path, template: Any) -> Any:
    """Leaves of ``payload`` in the structure of ``template`` (shapes and dtypes checked).
    Call :func:`verify` first for the digest and identity checks."""
    from flax import serialization

    try:
        data = serialization.msgpack_restore(payload.read_bytes())
        stored = data["leaves"]
        leaves = [stored[str(i)] for i in range(len(stored))]
    except FileNotFoundError:
        raise CheckpointError(f"{payload}: checkpoint not found") from None
    except Exception as exc:  # noqa: BLE001 -- any decoding failure is a corrupted file
        raise CheckpointError(f"{payload}: corrupted checkpoint (cannot decode: {type(exc).__name__}: {exc})") from None
    want, treedef = jax.tree.flatten(template)
    if len(leaves) != len(want):
        raise CheckpointError(f"{payload}: checkpoint has {len(leaves)} arrays, this run expects {len(want)} "
                              "(different network, algorithm or number of agents)")
    for i, (got, exp) in enumerate(zip(leaves, want)):
        if tuple(got.shape) != tuple(exp.shape) or np.dtype(got.dtype) != np.dtype(exp.dtype):
            raise CheckpointError(f"{payload}: array {i} is {got.dtype}{list(got.shape)}, this run expects "
                                  f"{np.dtype(exp.dtype)}{list(exp.shape)} (different network, env or number of agents)")
    return jax.tree.unflatten(treedef, leaves)


# ---- finding checkpoints ---------------------------------------------------------------------
_UPDATE = re.compile(r"_u(\d+)\.")


def list_checkpoints(directory: Path, prefix: str, suffix: str) -> list[tuple[int, Path]]:
    """(update, payload) of every checkpoint with a manifest, oldest first."""
    if not directory.exists():
        return []
    out = []
    for mpath in directory.glob(f"{prefix}_u*{suffix}{_MANIFEST_SUFFIX}"):
        payload = mpath.with_name(mpath.name[: -len(_MANIFEST_SUFFIX)])
        m = _UPDATE.search(payload.name)
        if m:
            out.append((int(m.group(1)), payload))
    return sorted(out)


def latest_checkpoint(directory: Path, prefix: str, suffix: str) -> Path | None:
    found = list_checkpoints(directory, prefix, suffix)
    return found[-1][1] if found else None


def prune(directory: Path, prefix: str, suffix: str, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (manifest first, then payload)."""
    for _, payload in list_checkpoints(directory, prefix, suffix)[:-keep]:
        manifest_path(payload).unlink(missing_ok=True)
        payload.unlink(missing_ok=True)


def checkpoint_name(prefix: str, update: int, suffix: str) -> str:
    return f"{prefix}_u{update:07d}{suffix}"
