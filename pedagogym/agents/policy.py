"""Trained agents as :class:`~pedagogym.policies.base.Policy` objects, so that
:func:`pedagogym.policies.rollout.evaluate` (and ``pedagogym run``) meets them exactly like
hand-written policies.

- :class:`TrainedPolicy`: a JAX PPO network (MLP or GRU) with its observation statistics.
  Reads ``view.obs`` and ``view.action_mask``; deterministic masked argmax by default, or a
  sample from the masked distribution; the GRU state is the per-learner ``pstate``.
- :class:`TorchMLPPolicy` / :class:`TorchLSTMPolicy`: an SB3 agent's torch weights copied into
  the same kind of pure JAX function (PPO, A2C, MaskablePPO: the actor MLP + action head; DQN:
  the Q-network, argmax; RecurrentPPO: the actor LSTM + MLP + action head), so SB3 agents
  are evaluated by the same batched rollout as everything else. A test checks the copy picks
  the same actions as SB3's own ``predict(deterministic=True)``.

Every agent is masked at evaluation (a locked item is never chosen), including those (PPO,
A2C, DQN, RecurrentPPO) that were trained without masks: their preference among valid items
is kept.

Agents are named ``agent:RUN_DIR`` (agent 0 of a training run), ``agent:RUN_DIR#K`` (agent
K) or ``agent:RUN_DIR#best`` (best final learning-curve post-test); see
:func:`pedagogym.agents.load_policy`.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.agents.networks import NetworkSpec, ObsNorm, masked_logits, policy_forward
from pedagogym.policies.base import Policy, masked_argmax, weights_fingerprint


class TrainedPolicy(Policy):
    """A trained JAX PPO agent. ``params`` and ``obs_norm`` may be concrete (numpy, for use as a
    static argument of ``evaluate``; equality and hashing go by a fingerprint of the weights and
    observation statistics, never by ``tag``, which only names the run, agent and checkpoint
    digest in ``repr``) or traced (inside training, never hashed)."""

    name = "agent"
    description = "a trained JAX PPO agent (masked argmax of its policy logits)"

    def __init__(self, spec: NetworkSpec, params: Any, obs_norm: ObsNorm | None, deterministic: bool = True,
                 tag: str = "<memory>"):
        self.spec, self.params, self.obs_norm = spec, params, obs_norm
        self.deterministic, self.tag = deterministic, tag
        self._fp: str | None = None

    def _static_key(self) -> tuple:
        if self._fp is None:  # lazily: traced params (inside training) are never hashed
            self._fp = weights_fingerprint(self.params, self.obs_norm)
        return (self._fp, self.spec, self.deterministic)

    def __repr__(self) -> str:
        return f"TrainedPolicy({self.tag!r})"

    def init(self, params) -> Array:
        return jnp.zeros((self.spec.gru_size if self.spec.recurrent else 1,), jnp.float32)

    def logits(self, pstate: Array, obs: Array) -> tuple[Array, Array]:
        """float32[A] logits for one raw observation, and the new GRU state."""
        carry, logits, _ = policy_forward(self.spec, self.params, self.obs_norm, pstate[None], obs[None],
                                          jnp.zeros((1,), bool))
        return logits[0], carry[0]

    def act(self, key, pstate, view, params, env):
        logits, carry = self.logits(pstate, view.obs)
        if self.deterministic:
            return masked_argmax(logits, view.action_mask), carry
        return jax.random.categorical(key, masked_logits(logits, view.action_mask)).astype(jnp.int32), carry


# ---- SB3 agents as pure JAX functions ---------------------------------------------------------
_TORCH_ACT = {"Tanh": jnp.tanh, "ReLU": jax.nn.relu, "ELU": jax.nn.elu, "LeakyReLU": jax.nn.leaky_relu,
              "Sigmoid": jax.nn.sigmoid, "GELU": jax.nn.gelu, "SiLU": jax.nn.silu}


def _sequential_layers(seq) -> list[tuple[str, Any]]:
    """torch ``nn.Sequential`` (or one Linear) -> [("linear", (W[in,out], b[out])) | ("act", name)]."""
    import torch.nn as tnn

    mods = list(seq) if isinstance(seq, tnn.Sequential) else [seq]
    out: list[tuple[str, Any]] = []
    for m in mods:
        if isinstance(m, tnn.Linear):
            out.append(("linear", (m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())))
        elif type(m).__name__ in _TORCH_ACT:
            out.append(("act", type(m).__name__))
        elif isinstance(m, (tnn.Identity, tnn.Flatten)):
            continue
        else:
            raise TypeError(f"cannot convert torch layer {type(m).__name__} of an SB3 policy to JAX")
    return out


def _split(layers) -> tuple[tuple[str, ...], tuple]:
    """-> (structure: "linear" or an activation name per layer, weights: ((W, b), ...))."""
    structure = tuple("linear" if kind == "linear" else v for kind, v in layers)
    weights = tuple(v for kind, v in layers if kind == "linear")
    return structure, weights


def _apply_layers(structure: tuple[str, ...], weights, x: Array) -> Array:
    w = iter(weights)
    for kind in structure:
        if kind == "linear":
            W, b = next(w)
            x = x @ W + b
        else:
            x = _TORCH_ACT[kind](x)
    return x


def _check_features_extractor(policy) -> None:
    from stable_baselines3.common.torch_layers import FlattenExtractor

    extractors = [getattr(policy, n) for n in ("features_extractor", "pi_features_extractor") if hasattr(policy, n)]
    for fe in extractors:
        if not isinstance(fe, FlattenExtractor):
            raise TypeError(f"only SB3 policies with the default FlattenExtractor can be converted, got {type(fe).__name__}")


class TorchMLPPolicy(Policy):
    """An SB3 feed-forward agent (PPO, A2C, MaskablePPO: actor MLP + action head; DQN:
    Q-network) as a JAX function: masked argmax of its logits / Q-values."""

    name = "sb3_agent"
    description = "a trained SB3 agent (weights copied to JAX), masked argmax"

    def __init__(self, structure: tuple[str, ...], weights: tuple, tag: str = "<memory>"):
        self.structure, self.weights, self.tag = structure, weights, tag
        self._fp: str | None = None

    @classmethod
    def from_sb3(cls, model, tag: str = "<memory>") -> "TorchMLPPolicy":
        policy = model.policy
        if hasattr(policy, "q_net"):  # DQN
            _check_features_extractor(policy.q_net)
            return cls(*_split(_sequential_layers(policy.q_net.q_net)), tag=tag)
        _check_features_extractor(policy)
        return cls(*_split(_sequential_layers(policy.mlp_extractor.policy_net) + _sequential_layers(policy.action_net)),
                   tag=tag)

    @classmethod
    def from_parts(cls, structure: tuple[str, ...], weights) -> "TorchMLPPolicy":
        return cls(structure, weights, tag="<traced>")

    def parts(self) -> tuple[tuple[str, ...], Any]:
        return self.structure, self.weights

    def _static_key(self) -> tuple:  # the weights' fingerprint, not the tag (see TrainedPolicy)
        if self._fp is None:
            self._fp = weights_fingerprint(self.weights)
        return (self.structure, self._fp)

    def __repr__(self) -> str:
        return f"TorchMLPPolicy({self.tag!r})"

    def logits(self, obs: Array) -> Array:
        return _apply_layers(self.structure, self.weights, obs)

    def act(self, key, pstate, view, params, env):
        return masked_argmax(self.logits(view.obs), view.action_mask), pstate


class TorchLSTMPolicy(Policy):
    """An sb3-contrib RecurrentPPO agent: actor LSTM (one layer) -> MLP -> action head, with
    the LSTM's (h, c) as the per-learner ``pstate`` (zeros at a learner's first item, as SB3
    resets it at episode starts)."""

    name = "sb3_recurrent_agent"
    description = "a trained RecurrentPPO agent (weights copied to JAX), masked argmax"

    def __init__(self, lstm: tuple, structure: tuple[str, ...], weights: tuple, tag: str = "<memory>"):
        self.lstm, self.structure, self.weights, self.tag = lstm, structure, weights, tag  # lstm: (W_ih, W_hh, b)
        self._fp: str | None = None

    @classmethod
    def from_sb3(cls, model, tag: str = "<memory>") -> "TorchLSTMPolicy":
        policy = model.policy
        _check_features_extractor(policy)
        lstm = policy.lstm_actor
        if lstm.num_layers != 1:
            raise TypeError(f"only one-layer LSTMs can be converted, got {lstm.num_layers} layers")
        w = {k: v.detach().cpu().numpy().copy() for k, v in lstm.state_dict().items()}
        weights = (w["weight_ih_l0"].T.copy(), w["weight_hh_l0"].T.copy(), w["bias_ih_l0"] + w["bias_hh_l0"])
        structure, mlp = _split(_sequential_layers(policy.mlp_extractor.policy_net) + _sequential_layers(policy.action_net))
        return cls(weights, structure, mlp, tag=tag)

    @classmethod
    def from_parts(cls, structure: tuple[str, ...], weights) -> "TorchLSTMPolicy":
        return cls(weights[0], structure, weights[1], tag="<traced>")

    def parts(self) -> tuple[tuple[str, ...], Any]:
        return self.structure, (self.lstm, self.weights)

    def _static_key(self) -> tuple:  # the weights' fingerprint, not the tag (see TrainedPolicy)
        if self._fp is None:
            self._fp = weights_fingerprint(self.lstm, self.weights)
        return (self.structure, self._fp)

    def __repr__(self) -> str:
        return f"TorchLSTMPolicy({self.tag!r})"

    def init(self, params) -> Array:
        return jnp.zeros((2, self.lstm[1].shape[0]), jnp.float32)

    def logits(self, pstate: Array, obs: Array) -> tuple[Array, Array]:
        w_ih, w_hh, b = self.lstm
        h, c = pstate[0], pstate[1]
        i, f, g, o = jnp.split(obs @ w_ih + h @ w_hh + b, 4)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return _apply_layers(self.structure, self.weights, h), jnp.stack([h, c])

    def act(self, key, pstate, view, params, env):
        logits, pstate = self.logits(pstate, view.obs)
        return masked_argmax(logits, view.action_mask), pstate
