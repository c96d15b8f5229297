"""The early-warning predictor: platform observation -> summary features -> small MLP -> risks.

The input is the observation vector the policy sees (the ``platform`` featurizer, rebuilt from
the event log by the runtimes), so the deployed runtimes need no new featurizer. Inside the
model it is first reduced to a few curriculum-size-independent *summaries* (mean / min / max
of a feature group, the fraction of a group above a threshold, or a scalar feature as it is):
on held-out learners a model over summaries generalises better than one over the whole
vector, which lets a small MLP memorise learners by their item-level features.

The same computation exists twice, and they are checked against each other:

* :func:`risk_jax` -- JAX, used for training and as the reference;
* :func:`risk_model` -- the ONNX graph shipped in a bundle as ``risk.onnx``
  (``obs`` float32[batch, D] -> ``risk`` float32[batch, T], one probability per target).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import TensorProto

from pedagogym.schema import SCALAR_GROUPS, VECTOR_GROUPS  # the observation layout
from pedagogym.errors import PedagogymError
from pedagogym.export.graph import Dense, GraphBuilder, MLPSpec, Normalizer

RISK_INPUT, RISK_OUTPUT = "obs", "risk"
MODEL_FILE, METRICS_FILE = "model.json", "metrics.json"  # a `pedagogym warn train` run's model and metrics
# groups of the platform observation (pedagogym.deploy.features.feature_names); the scalars are one feature each
REDUCTIONS = {
    "mean": "mean of the group's features",
    "min": "smallest of the group's features",
    "max": "largest of the group's features",
    "frac_above": "fraction of the group's features strictly above the threshold",
    "value": "the (scalar) feature itself",
}


class WarningModelError(PedagogymError):
    """An early-warning model that does not fit the observation it is given, or a bad model file."""


@dataclass(frozen=True)
class Summary:
    """One summary feature: ``reduce`` over the observation group ``group``."""

    group: str
    reduce: str
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.reduce not in REDUCTIONS:
            raise WarningModelError(f"summary reduce {self.reduce!r}: expected one of {sorted(REDUCTIONS)}")
        if self.group not in VECTOR_GROUPS + SCALAR_GROUPS:
            raise WarningModelError(f"summary group {self.group!r}: expected one of {list(VECTOR_GROUPS + SCALAR_GROUPS)}")
        if (self.reduce == "value") != (self.group in SCALAR_GROUPS):
            raise WarningModelError(f"summary {self.name}: 'value' is for the scalar features "
                                    f"{list(SCALAR_GROUPS)}, the other reductions for the groups {list(VECTOR_GROUPS)}")
        if (self.reduce == "frac_above") != (self.threshold is not None):
            raise WarningModelError(f"summary {self.name}: a threshold goes with 'frac_above' and only with it")

    @property
    def name(self) -> str:
        if self.reduce == "value":
            return self.group
        return f"{self.reduce}({self.group}{'' if self.threshold is None else f' > {self.threshold:g}'})"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "reduce": self.reduce,
                **({"threshold": self.threshold} if self.threshold is not None else {}),
                "definition": REDUCTIONS[self.reduce] + ("" if self.threshold is None else f" ({self.threshold:g})")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Summary":
        return cls(group=d["group"], reduce=d["reduce"], threshold=d.get("threshold"))


DEFAULT_SUMMARIES = (
    Summary("belief", "mean"), Summary("belief", "min"), Summary("belief", "max"),
    Summary("belief", "frac_above", 0.95),
    Summary("skill_attempts", "mean"), Summary("skill_accuracy", "mean"), Summary("skill_accuracy", "min"),
    Summary("item_attempts", "mean"), Summary("item_attempts", "frac_above", 0.0),
    Summary("item_accuracy", "mean"), Summary("item_recency", "mean"), Summary("item_recency", "max"),
    Summary("last_correct", "value"), Summary("last_rt", "value"), Summary("progress", "value"),
    Summary("session", "value"), Summary("session_time", "value"),
)


def group_slices(feature_names: list[str] | tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """{group: (start, stop)} column ranges of each group in the observation vector (groups are
    contiguous, as the ``platform`` featurizer lays them out)."""
    out: dict[str, tuple[int, int]] = {}
    prev = None
    for k, name in enumerate(feature_names):
        group = name.partition("[")[0]
        if group in out and group != prev:
            raise WarningModelError(f"observation group {group!r} is not contiguous (feature {k}: {name!r})")
        start = out[group][0] if group in out else k
        out[group] = (start, k + 1)
        prev = group
    missing = [g for g in VECTOR_GROUPS + SCALAR_GROUPS if g not in out]
    if missing:
        raise WarningModelError(f"the observation lacks the group(s) {missing}; the early-warning model reads the "
                                f"'platform' observation")
    return out


@dataclass(frozen=True)
class RiskModel:
    """Everything that defines a trained predictor (plain numpy; JSON-serialisable).

    feature_names: the observation it reads (``manifest.observation.feature_names``);
    summaries: the summary features, in order; mlp: normaliser + layers over the summaries,
    one logit per target; targets: target names (registry :data:`pedagogym.warning.targets.TARGETS`);
    observation_signature: what else the observation depends on (:func:`observation_signature`).
    """

    feature_names: tuple[str, ...]
    summaries: tuple[Summary, ...]
    mlp: MLPSpec
    targets: tuple[str, ...]
    observation_signature: dict[str, Any]

    def __post_init__(self) -> None:
        group_slices(self.feature_names)
        if self.mlp.n_inputs != len(self.summaries):
            raise WarningModelError(f"the MLP takes {self.mlp.n_inputs} inputs but there are {len(self.summaries)} "
                                    f"summaries")
        if self.mlp.n_outputs != len(self.targets):
            raise WarningModelError(f"the MLP has {self.mlp.n_outputs} outputs for {len(self.targets)} targets")

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    # ---- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        norm = self.mlp.normalizer
        return {
            "format": "pedagogym.risk-model", "version": 1, "targets": list(self.targets),
            "feature_names": list(self.feature_names), "observation_signature": self.observation_signature,
            "summaries": [s.describe() for s in self.summaries], "activation": self.mlp.activation,
            "normalizer": None if norm is None else {"mean": _floats(norm.mean), "var": _floats(norm.var),
                                                     "eps": norm.eps, "clip": norm.clip},
            "layers": [{"kernel": np.asarray(d.kernel, np.float32).tolist(), "bias": _floats(d.bias)}
                       for d in self.mlp.layers],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model") -> "RiskModel":
        if not isinstance(d, dict) or d.get("format") != "pedagogym.risk-model":
            raise WarningModelError(f"{where}: not a pedagogym early-warning model (format 'pedagogym.risk-model')")
        if d.get("version") != 1:
            raise WarningModelError(f"{where}: model version {d.get('version')!r} is not supported (expected 1)")
        try:
            norm = d["normalizer"]
            mlp = MLPSpec(
                layers=tuple(Dense(np.asarray(lay["kernel"], np.float32), np.asarray(lay["bias"], np.float32))
                             for lay in d["layers"]),
                activation=d["activation"],
                normalizer=None if norm is None else Normalizer(np.asarray(norm["mean"], np.float32),
                                                                np.asarray(norm["var"], np.float32), float(norm["eps"]),
                                                                norm["clip"]))
            return cls(feature_names=tuple(d["feature_names"]),
                       summaries=tuple(Summary.from_dict(s) for s in d["summaries"]), mlp=mlp, targets=tuple(d["targets"]), observation_signature=dict(d["observation_signature"]))
        except (KeyError, TypeError, IndexError) as exc:
            raise WarningModelError(f"{where}: malformed early-warning model ({type(exc).__name__}: {exc})") from None
        except ValueError as exc:
            raise WarningModelError(f"{where}: {exc}") from None

    def describe(self) -> dict[str, Any]:
        """For the bundle manifest: the architecture, without the weights."""
        return {"type": "summaries -> mlp -> sigmoid", "summaries": [s.describe() for s in self.summaries],
                "mlp": self.mlp.describe(), "output": "sigmoid of one logit per target"}


def _floats(x) -> list[float]:
    return [float(v) for v in np.asarray(x, np.float32).reshape(-1)]


def observation_signature(built) -> dict[str, Any]:
    """What the observation vector's values depend on besides the feature names: a model trained on
    one env reads another's observations only if these agree (``progress`` divides by the horizon,
    ``session_time`` by the session length, ``belief`` uses the observer's parameters)."""
    p = built.params
    ob = p.observer
    return {
        "curriculum_hash": built.curriculum.content_hash(),
        "horizon": int(p.horizon),
        "session_s": float(np.float32(p.session_s)),
        "observer": {k: _floats(getattr(ob, k)) for k in ("p_init", "p_learn", "p_forget", "p_guess", "p_slip")},
    }


def signature_from_manifest(m: dict[str, Any]) -> dict[str, Any]:
    """:func:`observation_signature` of the env a bundle's manifest describes."""
    return {"curriculum_hash": m["curriculum"]["content_hash"], "horizon": int(m["env"]["horizon"]),
            "session_s": float(np.float32(m["env"]["session_s"])),
            "observer": {k: _floats(m["observer"][k]) for k in ("p_init", "p_learn", "p_forget", "p_guess", "p_slip")}}


def check_compatible(model: RiskModel, feature_names, signature: dict[str, Any], where: str) -> None:
    """Raise :class:`WarningModelError` naming what differs when ``model`` was trained on another observation."""
    if tuple(feature_names) != model.feature_names:
        raise WarningModelError(f"{where}: the early-warning model reads {model.n_features} features "
                                f"({model.feature_names[:2]}...) but the observation has {len(feature_names)} "
                                f"({tuple(feature_names)[:2]}...): a different curriculum")
    diff = [k for k in sorted(set(signature) | set(model.observation_signature))
            if signature.get(k) != model.observation_signature.get(k)]
    if diff:
        detail = ", ".join(f"{k}: model {model.observation_signature.get(k)!r} vs {signature.get(k)!r}"
                           for k in diff if k != "observer")
        if "observer" in diff:
            detail += " (observer parameters differ)"
        raise WarningModelError(f"{where}: the early-warning model was trained on observations computed differently "
                                f"({detail}); train it on an env with the same curriculum, horizon, session length "
                                f"and observer")


# ---- JAX: the reference -----------------------------------------------------------------------
def summarize_jax(summaries: tuple[Summary, ...], slices: dict[str, tuple[int, int]], obs):
    """float32[..., D] -> float32[..., K]."""
    import jax.numpy as jnp

    obs = jnp.asarray(obs, jnp.float32)
    cols = []
    for s in summaries:
        a, b = slices[s.group]
        x = obs[..., a:b]
        if s.reduce == "value":
            cols.append(x[..., 0])
        elif s.reduce == "mean":
            cols.append(jnp.mean(x, axis=-1))
        elif s.reduce == "min":
            cols.append(jnp.min(x, axis=-1))
        elif s.reduce == "max":
            cols.append(jnp.max(x, axis=-1))
        else:  # frac_above
            cols.append(jnp.mean((x > jnp.float32(s.threshold)).astype(jnp.float32), axis=-1))
    return jnp.stack(cols, axis=-1)


def risk_logits_jax(model: RiskModel, obs):
    """float32[..., D] -> float32[..., T] logits (the ONNX graph before its Sigmoid)."""
    from pedagogym.export.policies import mlp_scores

    return mlp_scores(model.mlp, summarize_jax(model.summaries, group_slices(model.feature_names), obs))


def risk_jax(model: RiskModel, obs):
    """float32[..., D] -> float32[..., T] probabilities."""
    import jax

    return jax.nn.sigmoid(risk_logits_jax(model, obs))


# ---- ONNX ---------------------------------------------------------------------------------------
def build_summaries(g: GraphBuilder, summaries: tuple[Summary, ...], slices: dict[str, tuple[int, int]], obs: str) -> str:
    """The ONNX twin of :func:`summarize_jax` (opset 17: reduce axes are attributes)."""
    cols = []
    axes = g.const("axis1", [1], np.int64)
    for s in summaries:
        a, b = slices[s.group]
        x = g.op("Slice", [obs, g.const("start", [a], np.int64), g.const("stop", [b], np.int64), axes])
        if s.reduce == "value":
            cols.append(x)
        elif s.reduce == "frac_above":
            above = g.op("Greater", [x, g.const("threshold", np.float32(s.threshold))])
            cols.append(g.op("ReduceMean", [g.op("Cast", [above], to=TensorProto.FLOAT)], axes=[1], keepdims=1))
        else:
            op = {"mean": "ReduceMean", "min": "ReduceMin", "max": "ReduceMax"}[s.reduce]
            cols.append(g.op(op, [x], axes=[1], keepdims=1))
    return g.op("Concat", cols, axis=1)


def risk_model(model: RiskModel, *, name: str = "pedagogym_risk", doc: str = "",
               metadata: dict[str, str] | None = None):
    """``obs`` float32[batch, D] -> ``risk`` float32[batch, T] (sigmoid of the MLP's logits)."""
    import onnx
    from onnx import helper

    from pedagogym.export.graph import IR_VERSION, OPSET

    g = GraphBuilder()
    x = build_summaries(g, model.summaries, group_slices(model.feature_names), RISK_INPUT)
    logits = model.mlp.build_scores(g, x)
    g.op("Sigmoid", [logits], out=RISK_OUTPUT)
    graph = helper.make_graph(
        g.nodes, name,
        inputs=[helper.make_tensor_value_info(RISK_INPUT, TensorProto.FLOAT, ["batch", model.n_features])],
        outputs=[helper.make_tensor_value_info(RISK_OUTPUT, TensorProto.FLOAT, ["batch", len(model.targets)])],
        initializer=g.initializers,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pedagogym",
                                   doc_string=doc)
    onnx_model.ir_version = IR_VERSION
    for k, v in sorted({"pedagogym.targets": ",".join(model.targets), **(metadata or {})}.items()):
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def risk_model_bytes(model: RiskModel) -> bytes:
    from pedagogym.export.graph import serialize

    return serialize(risk_model(model, doc=f"pedagogym early-warning model ({', '.join(model.targets)})"))
