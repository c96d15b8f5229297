"""ONNX policy graphs built with ``onnx.helper`` (numpy + onnx only; no JAX, no PyTorch).

Every exported policy has the same signature:

=============  ======================  =================================================
name           type                    meaning
=============  ======================  =================================================
obs            float32[batch, D]       the observation vector (``manifest.observation``)
action_mask    bool[batch, I]          True = the item may be chosen now
scores         float32[batch, I]       the policy's score per action; masked actions are
                                       exactly ``MASKED_SCORE`` (-1e9)
action         int64[batch]            argmax of ``scores`` (ties: lowest action index)
=============  ======================  =================================================

The batch axis is dynamic; the opset is pinned (:data:`OPSET`). Observation normalisation,
when the policy was trained with it, is part of the graph: callers feed raw features.
A row whose mask is all False gets action 0 (every score is ``MASKED_SCORE``); runtimes
never send one (they fall back to every available item, as the simulator does).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR that opset 17 shipped with; readable by onnxruntime >= 1.13
MASKED_SCORE = -1e9
INPUT_OBS, INPUT_MASK = "obs", "action_mask"
OUTPUT_SCORES, OUTPUT_ACTION = "scores", "action"


class GraphBuilder:
    """A tiny helper: named initializers and nodes with generated output names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._n = 0

    def _name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, stem: str, value, dtype=np.float32) -> str:
        name = self._name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self._name(f"n_{op_type}"), **attrs))
        return out


@dataclass(frozen=True)
class Dense:
    """y = x @ kernel + bias; kernel float32[in, out], bias float32[out]."""

    kernel: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class Normalizer:
    """obs -> clip((obs - mean) / sqrt(var + eps), -clip, clip) (no clip when ``clip`` is None)."""

    mean: np.ndarray
    var: np.ndarray
    eps: float = 1e-8
    clip: float | None = None

    @property
    def denom(self) -> np.ndarray:
        return np.sqrt(np.asarray(self.var, np.float32) + np.float32(self.eps)).astype(np.float32)

    def apply(self, obs: np.ndarray) -> np.ndarray:
        x = (np.asarray(obs, np.float32) - np.asarray(self.mean, np.float32)) / self.denom
        return np.clip(x, -self.clip, self.clip) if self.clip is not None else x


ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}


@dataclass(frozen=True)
class MLPSpec:
    """A multilayer perceptron scorer: [normalise] -> Dense -> act -> ... -> Dense (no
    activation after the last layer, whose outputs are the action scores / logits)."""

    layers: tuple[Dense, ...]
    activation: str = "tanh"
    normalizer: Normalizer | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MLP activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not self.layers:
            raise ValueError("an MLP needs at least one layer")
        for k, (a, b) in enumerate(zip(self.layers, self.layers[1:])):
            if a.kernel.shape[1] != b.kernel.shape[0]:
                raise ValueError(f"layer {k} outputs {a.kernel.shape[1]} values but layer {k + 1} takes {b.kernel.shape[0]}")
        for k, d in enumerate(self.layers):
            if d.bias.shape != (d.kernel.shape[1],):
                raise ValueError(f"layer {k}: bias shape {d.bias.shape} does not match kernel {d.kernel.shape}")

    @property
    def n_inputs(self) -> int:
        return int(self.layers[0].kernel.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.layers[-1].kernel.shape[1])

    def scores(self, obs: np.ndarray) -> np.ndarray:
        """A numpy reference forward pass: float32[N, D] -> float32[N, I]."""
        x = np.asarray(obs, np.float32)
        if self.normalizer is not None:
            x = self.normalizer.apply(x)
        for k, d in enumerate(self.layers):
            x = x @ d.kernel + d.bias
            if k < len(self.layers) - 1:
                x = np.tanh(x) if self.activation == "tanh" else np.maximum(x, 0.0)
        return x.astype(np.float32)

    def describe(self) -> dict:
        return {
            "type": "mlp",
            "layer_sizes": [self.n_inputs] + [int(d.kernel.shape[1]) for d in self.layers],
            "activation": self.activation,
            "onnx_ops": ["Gemm"] + ([ACTIVATIONS[self.activation]] if len(self.layers) > 1 else []),
            "normalization": None if self.normalizer is None else {
                "formula": "clip((obs - mean) / sqrt(var + eps), -clip, clip)" if self.normalizer.clip is not None
                else "(obs - mean) / sqrt(var + eps)",
                "eps": self.normalizer.eps, "clip": self.normalizer.clip, "in_graph": True},
            **self.meta,
        }

    def build_scores(self, g: GraphBuilder, obs: str, mask: str | None = None) -> str:
        x = obs
        if self.normalizer is not None:
            x = g.op("Sub", [x, g.const("obs_mean", self.normalizer.mean)])
            x = g.op("Div", [x, g.const("obs_denom", self.normalizer.denom)])
            if self.normalizer.clip is not None:
                c = float(self.normalizer.clip)
                x = g.op("Clip", [x, g.const("clip_lo", -c), g.const("clip_hi", c)])
        for k, d in enumerate(self.layers):
            x = g.op("Gemm", [x, g.const(f"W{k}", d.kernel), g.const(f"b{k}", d.bias)])
            if k < len(self.layers) - 1:
                x = g.op(ACTIVATIONS[self.activation], [x])
        return x


ScoreBuilder = Callable[[GraphBuilder, str, str], str]  # (builder, obs, action_mask) -> raw scores


def policy_model(build_scores: ScoreBuilder, n_obs: int, n_actions: int, *, name: str = "pedagogym_policy",
                 doc: str = "", metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The full policy graph: ``build_scores(g, "obs", "action_mask")`` returns the name of a float32[batch, I]
    tensor of raw scores; masking and the argmax are added here, identically for every policy."""
    g = GraphBuilder()
    raw = build_scores(g, INPUT_OBS, INPUT_MASK)
    neg = g.const("masked_score", np.float32(MASKED_SCORE))
    g.op("Where", [INPUT_MASK, raw, neg], out=OUTPUT_SCORES)
    g.op("ArgMax", [OUTPUT_SCORES], out=OUTPUT_ACTION, axis=1, keepdims=0, select_last_index=0)
    graph = helper.make_graph(
        g.nodes, name,
        inputs=[helper.make_tensor_value_info(INPUT_OBS, TensorProto.FLOAT, ["batch", n_obs]),
                helper.make_tensor_value_info(INPUT_MASK, TensorProto.BOOL, ["batch", n_actions])],
        outputs=[helper.make_tensor_value_info(OUTPUT_SCORES, TensorProto.FLOAT, ["batch", n_actions]),
                 helper.make_tensor_value_info(OUTPUT_ACTION, TensorProto.INT64, ["batch"])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pedagogym",
                              doc_string=doc)
    model.ir_version = IR_VERSION
    for k, v in sorted((metadata or {}).items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.checker.check_model(model, full_check=True)
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    """Deterministic bytes (same model -> same sha256)."""
    return model.SerializeToString(deterministic=True)
