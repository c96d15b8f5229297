"""Actor-critic networks (flax.linen) and the running observation normaliser.

Shapes: ``D`` observation size, ``A`` actions (items), ``B`` batch, ``T`` time, ``H`` GRU size.
Every network maps *normalised* observations to ``(logits float32[..., A], value float32[...])``;
:func:`masked_logits` applies the action mask. Normalisation statistics live beside the
network parameters (in the train state and in every checkpoint) and are applied by
:func:`normalize`, in training and in :class:`pedagogym.agents.policy.TrainedPolicy` alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

NEG_LOGIT = -1e9
OBS_CLIP = 10.0

_ACT = {"tanh": nn.tanh, "relu": nn.relu}


# ---- observation normalisation -----------------------------------------------------------
class ObsNorm(NamedTuple):
    """Running mean / variance of observations (parallel Welford). float32[D], float32[D], float32[]."""

    mean: Array
    var: Array
    count: Array

    @classmethod
    def initial(cls, obs_size: int) -> "ObsNorm":
        return cls(jnp.zeros((obs_size,), jnp.float32), jnp.ones((obs_size,), jnp.float32), jnp.asarray(1e-4, jnp.float32))

    def update(self, batch: Array) -> "ObsNorm":
        """Fold in ``batch`` float32[B, D]."""
        b_mean, b_var, b_n = jnp.mean(batch, 0), jnp.var(batch, 0), jnp.asarray(batch.shape[0], jnp.float32)
        delta = b_mean - self.mean
        total = self.count + b_n
        mean = self.mean + delta * b_n / total
        m2 = self.var * self.count + b_var * b_n + delta ** 2 * self.count * b_n / total
        return ObsNorm(mean, m2 / total, total)


def normalize(norm: ObsNorm | None, obs: Array) -> Array:
    """Standardised, clipped observation (identity when ``norm`` is None)."""
    if norm is None:
        return obs
    return jnp.clip((obs - norm.mean) / jnp.sqrt(norm.var + 1e-8), -OBS_CLIP, OBS_CLIP)


def masked_logits(logits: Array, mask: Array) -> Array:
    return jnp.where(mask, logits, NEG_LOGIT)


def masked_entropy(logits: Array, mask: Array) -> Array:
    """Entropy of the masked categorical (masked actions contribute exactly 0)."""
    logp = jax.nn.log_softmax(masked_logits(logits, mask))
    p = jnp.exp(logp)
    return -jnp.sum(jnp.where(mask, p * logp, 0.0), axis=-1)


# ---- networks ---------------------------------------------------------------------------
def _dense(features: int, scale: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale), bias_init=nn.initializers.zeros)


class MLPActorCritic(nn.Module):
    """Separate actor and critic MLPs (PureJaxRL's default)."""

    n_actions: int
    hidden: tuple[int, ...] = (128, 128)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        act = _ACT[self.activation]
        a = x
        for h in self.hidden:
            a = act(_dense(h, np.sqrt(2))(a))
        logits = _dense(self.n_actions, 0.01)(a)
        v = x
        for h in self.hidden:
            v = act(_dense(h, np.sqrt(2))(v))
        value = _dense(1, 1.0)(v)
        return logits, jnp.squeeze(value, -1)


class ScannedGRU(nn.Module):
    """A GRU over time (leading axis) that resets its carry where ``reset`` (the step starts
    a new learner)."""

    size: int

    @nn.compact
    def __call__(self, carry: Array, xs: tuple[Array, Array]) -> tuple[Array, Array]:
        def step(cell, carry, x):
            inp, reset = x
            carry = jnp.where(reset[..., None], jnp.zeros_like(carry), carry)
            carry, y = cell(carry, inp)
            return carry, y

        scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False}, in_axes=0, out_axes=0)
        return scan(nn.GRUCell(features=self.size), carry, xs)


class GRUActorCritic(nn.Module):
    """Dense embedding -> GRU -> separate actor / critic heads.

    ``carry`` float32[B, H]; ``x`` float32[T, B, D]; ``reset`` bool[T, B]
    -> (carry, logits float32[T, B, A], value float32[T, B])."""

    n_actions: int
    hidden: tuple[int, ...] = (128, 128)
    gru_size: int = 128
    activation: str = "tanh"

    @nn.compact
    def __call__(self, carry: Array, x: Array, reset: Array) -> tuple[Array, Array, Array]:
        act = _ACT[self.activation]
        emb = act(_dense(self.hidden[0], np.sqrt(2))(x))
        carry, y = ScannedGRU(self.gru_size)(carry, (emb, reset))
        a = y
        for h in self.hidden[1:]:
            a = act(_dense(h, np.sqrt(2))(a))
        logits = _dense(self.n_actions, 0.01)(a)
        v = y
        for h in self.hidden[1:]:
            v = act(_dense(h, np.sqrt(2))(v))
        value = _dense(1, 1.0)(v)
        return carry, logits, jnp.squeeze(value, -1)


@dataclass(frozen=True)
class NetworkSpec:
    """What a checkpoint needs to rebuild the network (hashable, JSON-able)."""

    obs_size: int
    n_actions: int
    hidden: tuple[int, ...]
    activation: str = "tanh"
    recurrent: bool = False
    gru_size: int = 128

    def module(self) -> nn.Module:
        if self.recurrent:
            return GRUActorCritic(self.n_actions, self.hidden, self.gru_size, self.activation)
        return MLPActorCritic(self.n_actions, self.hidden, self.activation)

    def init_params(self, key: Array) -> Any:
        x = jnp.zeros((1, self.obs_size), jnp.float32)
        if self.recurrent:
            return self.module().init(key, self.initial_carry(1), x[None], jnp.zeros((1, 1), bool))
        return self.module().init(key, x)

    def initial_carry(self, batch: int) -> Array:
        return jnp.zeros((batch, self.gru_size), jnp.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"obs_size": self.obs_size, "n_actions": self.n_actions, "hidden": list(self.hidden),
                "activation": self.activation, "recurrent": self.recurrent, "gru_size": self.gru_size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NetworkSpec":
        return cls(obs_size=int(d["obs_size"]), n_actions=int(d["n_actions"]), hidden=tuple(int(h) for h in d["hidden"]),
                   activation=str(d.get("activation", "tanh")), recurrent=bool(d.get("recurrent", False)),
                   gru_size=int(d.get("gru_size", 128)))


def policy_forward(spec: NetworkSpec, params: Any, obs_norm: ObsNorm | None, carry: Array, obs: Array,
                   reset: Array) -> tuple[Array, Array, Array]:
    """One decision for a batch: raw ``obs`` float32[B, D], ``carry`` float32[B, H], ``reset``
    bool[B] -> (carry, logits float32[B, A], value float32[B]). Shared by training and the
    deployed :class:`~pedagogym.agents.policy.TrainedPolicy`."""
    x = normalize(obs_norm, obs)
    if spec.recurrent:
        carry, logits, value = spec.module().apply(params, carry, x[None], reset[None])
        return carry, logits[0], value[0]
    logits, value = spec.module().apply(params, x)
    return carry, logits, value
