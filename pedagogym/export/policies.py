"""A JAX policy over the observation vector defined by an :class:`MLPSpec`: the simulator-side
twin of an exported MLP graph (used for MLPs given as plain parameters, e.g. ``.npz`` files,
and as the reference in parity tests)."""
from __future__ import annotations

import hashlib

import jax.numpy as jnp
import numpy as np
from jax import Array

from pedagogym.export.graph import Dense, MLPSpec, Normalizer
from pedagogym.policies.base import Policy


def spec_fingerprint(spec: MLPSpec) -> str:
    h = hashlib.sha256(spec.activation.encode())
    arrays = [a for d in spec.layers for a in (d.kernel, d.bias)]
    if spec.normalizer is not None:
        arrays += [spec.normalizer.mean, spec.normalizer.var, np.float32([spec.normalizer.eps, spec.normalizer.clip or -1])]
    for a in arrays:
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()


def mlp_scores(spec: MLPSpec, obs: Array) -> Array:
    """float32[..., D] -> float32[..., I], the same operations as the ONNX graph."""
    x = jnp.asarray(obs, jnp.float32)
    if spec.normalizer is not None:
        x = (x - jnp.asarray(spec.normalizer.mean, jnp.float32)) / jnp.asarray(spec.normalizer.denom)
        if spec.normalizer.clip is not None:
            x = jnp.clip(x, -spec.normalizer.clip, spec.normalizer.clip)
    for k, d in enumerate(spec.layers):
        x = x @ jnp.asarray(d.kernel) + jnp.asarray(d.bias)
        if k < len(spec.layers) - 1:
            x = jnp.tanh(x) if spec.activation == "tanh" else jnp.maximum(x, 0.0)
    return x


class MLPPolicy(Policy):
    """Scores = an MLP of the observation vector; deterministic (masked argmax)."""

    name = "mlp"
    description = "an MLP (or linear) scorer over the observation vector"

    def __init__(self, spec: MLPSpec):
        self.spec = spec
        self._fp = spec_fingerprint(spec)

    def _static_key(self) -> tuple:
        return (self._fp[:16],)

    def scores(self, key, pstate, view, params, env):
        return mlp_scores(self.spec, view.obs), pstate


def random_mlp(n_obs: int, n_actions: int, hidden: tuple[int, ...] = (64, 64), activation: str = "tanh",
               seed: int = 0, normalize: bool = True, clip: float | None = 10.0) -> MLPSpec:
    """An MLP with random (orthogonal-ish scaled normal) weights and a random normaliser, for tests
    and examples: same structure as a trained actor."""
    rng = np.random.default_rng(seed)
    sizes = (n_obs, *hidden, n_actions)
    layers = tuple(Dense(kernel=(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32),
                         bias=(0.1 * rng.standard_normal(b)).astype(np.float32)) for a, b in zip(sizes, sizes[1:]))
    norm = None
    if normalize:
        norm = Normalizer(mean=rng.uniform(0.0, 0.5, n_obs).astype(np.float32),
                          var=rng.uniform(0.01, 0.2, n_obs).astype(np.float32), eps=1e-8, clip=clip)
    return MLPSpec(layers=layers, activation=activation, normalizer=norm, meta={"weights": f"random (seed {seed})"})


def linear_scorer(weights: np.ndarray, bias: np.ndarray | None = None) -> MLPSpec:
    """scores = obs @ weights + bias; weights float32[D, I]."""
    w = np.asarray(weights, np.float32)
    b = np.zeros(w.shape[1], np.float32) if bias is None else np.asarray(bias, np.float32)
    return MLPSpec(layers=(Dense(w, b),), activation="tanh", meta={"type_detail": "linear scorer"})
