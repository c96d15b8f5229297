"""A fingerprint of a built simulator: what its numbers depend on (resolved settings, the
contents of its curriculum and population files, its parameter arrays, the package version).
Experiment cells and training checkpoints store it, so that a rerun over changed inputs is
recomputed or refused instead of resumed (issue 20)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import numpy as np

from pedagogym._version import __version__


def _sha256_file(path: str | Path) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None  # a built-in name, resolved from the package
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tree_sha(tree) -> str:
    """sha256 over every leaf of a pytree (shape, dtype and bytes): the simulator's numbers."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        a = np.asarray(leaf)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def simulator_fingerprint(built) -> dict[str, object]:
    """What a simulator's numbers depend on, as a JSON-able dict: the resolved env settings,
    the contents of the curriculum and population files (sha256; None for a built-in name),
    the sha256 of the simulator's parameter arrays (curriculum, population, model parameters)
    and the package version. Shared by experiment cells and training checkpoints."""
    settings = {k: v for k, v in dataclasses.asdict(built.config).items() if k != "source"}
    population = getattr(built.population, "source", None)
    return {
        "pedagogym": __version__, "settings": json.loads(json.dumps(settings, default=str)),
        "curriculum_file": _sha256_file(built.config.curriculum),
        "population_file": _sha256_file(population) if isinstance(population, str) else None,
        "env_params": _tree_sha(built.params),
    }
