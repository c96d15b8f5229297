"""What can be exported, and how each kind of policy becomes a score graph.

=====================================  =========================================================
checkpoint (CLI argument)              policy
=====================================  =========================================================
``agent:RUN_DIR[#K|#best]`` or RUN_DIR  a trained agent (``pedagogym train``): JAX PPO (flax MLP
                                       actor + observation normaliser) or an SB3 PPO / A2C /
                                       MaskablePPO / DQN agent; the env comes from the run
``policy:NAME`` (or NAME)              a hand-written policy from the registry (``--env`` needed)
``FILE.npz``                           an MLP given as plain arrays (see :func:`load_mlp_npz`)
=====================================  =========================================================

Recurrent agents (JAX PPO with a GRU, RecurrentPPO) are refused: bundle format 1 is a
stateless function of the observation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pedagogym.errors import PedagogymError
from pedagogym.envs.config import BuiltEnv
from pedagogym.export.graph import ACTIVATIONS, Dense, MLPSpec, Normalizer
from pedagogym.export.handwritten import EXPORTERS, NOT_EXPORTABLE, GraphScorer
from pedagogym.export.policies import MLPPolicy
from pedagogym.policies.base import Policy


class ExportError(PedagogymError):
    """A policy or checkpoint that cannot be exported; the message says why."""


@dataclass(frozen=True)
class ExportSource:
    """A policy ready to export: its score graph, its JAX twin (the reference that runs in the
    simulator) and the environment it acts in."""

    kind: str  # "jax_ppo" | "sb3" | "mlp" | "handwritten"
    name: str
    scorer: MLPSpec | GraphScorer
    policy: Policy
    built: BuiltEnv
    training: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "deterministic": True, "architecture": self.scorer.describe()}


# ---- policies -> score graphs ---------------------------------------------------------------
def trained_policy_spec(policy) -> MLPSpec:
    """A JAX PPO :class:`~pedagogym.agents.policy.TrainedPolicy` (flax ``MLPActorCritic``):
    the actor is ``Dense_0 .. Dense_{len(hidden)}``; the normaliser is the agent's own
    (``clip((obs - mean) / sqrt(var + 1e-8), -10, 10)``)."""
    from pedagogym.agents.networks import OBS_CLIP

    spec = policy.spec
    if spec.recurrent:
        raise ExportError("a recurrent (GRU) agent needs its hidden state between decisions; bundle format 1 exports "
                          "stateless policies only (train with recurrent = false)")
    if spec.activation not in ACTIVATIONS:
        raise ExportError(f"activation {spec.activation!r} has no ONNX mapping here (supported: {sorted(ACTIVATIONS)})")
    p = policy.params["params"] if "params" in policy.params else policy.params
    layers = []
    for k in range(len(spec.hidden) + 1):
        d = p[f"Dense_{k}"]
        layers.append(Dense(np.asarray(d["kernel"], np.float32), np.asarray(d["bias"], np.float32)))
    if layers[0].kernel.shape[0] != spec.obs_size or layers[-1].kernel.shape[1] != spec.n_actions:
        raise ExportError(f"unexpected actor layout: {[lay.kernel.shape for lay in layers]} for obs size "
                          f"{spec.obs_size} and {spec.n_actions} actions")
    norm = None
    if policy.obs_norm is not None:
        norm = Normalizer(mean=np.asarray(policy.obs_norm.mean, np.float32), var=np.asarray(policy.obs_norm.var, np.float32),
                          eps=1e-8, clip=float(OBS_CLIP))
    return MLPSpec(layers=tuple(layers), activation=spec.activation, normalizer=norm,
                   meta={"source_network": "flax MLPActorCritic (actor head)"})


_TORCH_TO_ACT = {"Tanh": "tanh", "ReLU": "relu"}


def torch_policy_spec(policy) -> MLPSpec:
    """An SB3 agent converted by :class:`~pedagogym.agents.policy.TorchMLPPolicy`: alternating
    Linear / activation layers (the actor MLP + action head, or DQN's Q-network)."""
    structure, weights = policy.parts()
    acts = {s for s in structure if s != "linear"}
    if len(acts) > 1 or (acts and next(iter(acts)) not in _TORCH_TO_ACT):
        raise ExportError(f"SB3 network with activations {sorted(acts)}; exportable: one of {sorted(_TORCH_TO_ACT)}")
    expect = [("linear" if k % 2 == 0 else s) for k, s in enumerate(structure)]
    if list(structure) != expect or structure[-1] != "linear":
        raise ExportError(f"SB3 network layout {structure} is not Linear (act Linear)*")
    layers = tuple(Dense(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in weights)
    return MLPSpec(layers=layers, activation=_TORCH_TO_ACT[next(iter(acts))] if acts else "tanh",
                   meta={"source_network": "SB3 torch MLP (weights read, graph built with onnx.helper)"})


def scorer_for(policy: Policy, built: BuiltEnv) -> tuple[str, MLPSpec | GraphScorer]:
    """(kind, score graph) for any exportable policy; :class:`ExportError` says why not."""
    if policy.privileged:
        raise ExportError(f"policy {policy.name!r} is privileged (reads latent state no platform has); not deployable")
    if isinstance(policy, MLPPolicy):
        return "mlp", policy.spec
    try:
        from pedagogym.agents.policy import TorchLSTMPolicy, TorchMLPPolicy, TrainedPolicy
    except ImportError:  # pragma: no cover -- agents are part of the package
        TrainedPolicy = TorchMLPPolicy = TorchLSTMPolicy = ()  # type: ignore[assignment,misc]
    if isinstance(policy, TrainedPolicy):
        if not policy.deterministic:
            raise ExportError("a sampling (non-deterministic) agent cannot be exported; load it deterministic")
        return "jax_ppo", trained_policy_spec(policy)
    if isinstance(policy, TorchLSTMPolicy):
        raise ExportError("a RecurrentPPO agent needs its LSTM state between decisions; bundle format 1 exports "
                          "stateless policies only")
    if isinstance(policy, TorchMLPPolicy):
        return "sb3", torch_policy_spec(policy)
    if policy.name in EXPORTERS:
        return "handwritten", EXPORTERS[policy.name](policy, built)
    if policy.name in NOT_EXPORTABLE:
        raise ExportError(f"policy {policy.name!r} cannot be exported: {NOT_EXPORTABLE[policy.name]}")
    raise ExportError(f"policy {policy.name!r} ({type(policy).__name__}) has no ONNX exporter; exportable hand-written "
                      f"policies: {sorted(EXPORTERS)}")


def policy_scores(policy: Policy, key, pstate, view, params, env):
    """float32[I] the raw (unmasked) scores behind ``policy.act`` (for parity checks)."""
    from pedagogym.agents.policy import TorchMLPPolicy, TrainedPolicy

    if isinstance(policy, TrainedPolicy):
        return policy.logits(pstate, view.obs)[0]
    if isinstance(policy, TorchMLPPolicy):
        return policy.logits(view.obs)
    return policy.scores(key, pstate, view, params, env)[0]


# ---- checkpoints -> sources -----------------------------------------------------------------
def from_agent(name: str) -> ExportSource:
    """``agent:RUN_DIR[#K|#best]`` (or a run directory: agent 0)."""
    from pedagogym.agents import is_agent_name, load_policy, parse_agent_name, read_run_manifest
    from pedagogym.agents.config import train_config_from_dict

    if not is_agent_name(name):
        name = f"agent:{name}"
    run_dir, which = parse_agent_name(name)
    manifest = read_run_manifest(run_dir)
    config = train_config_from_dict(manifest["config"], source=str(Path(run_dir) / "manifest.json"))
    built = config.build_env()
    policy = load_policy(name, built)
    kind, scorer = scorer_for(policy, built)
    index = int(policy.tag.rsplit("#", 1)[1].split("@")[0]) if "#" in getattr(policy, "tag", "") else 0
    agent = next((a for a in manifest.get("agents", []) if a.get("index") == index), {})
    training = {
        "run_dir": str(Path(run_dir).resolve()), "algo": manifest.get("algo"), "agent": index, "selected_as": which,
        "agent_hyperparameters": agent, "config": manifest.get("config"), "config_hash": manifest.get("config_hash"),
        "env_id": manifest.get("env_id"), "env_steps_per_agent": manifest.get("env_steps_per_agent"),
        "complete": manifest.get("complete"),
        "final_eval_post_test": (manifest.get("final_eval_post_test") or {}).get(str(index)),
        "checkpoint_tag": getattr(policy, "tag", None), "git_commit": manifest.get("git_commit"),
        "versions": manifest.get("versions"),
    }
    return ExportSource(kind=kind, name=f"{manifest.get('name', 'agent')}#{index}", scorer=scorer, policy=policy,
                        built=built, training=training)


def load_mlp_npz(path: str | Path) -> tuple[MLPSpec, dict[str, Any]]:
    """An MLP from an ``.npz``: ``W0, b0, W1, b1, ...`` (kernel float32[in, out]); optional
    ``activation`` (str), ``obs_mean``, ``obs_var``, ``obs_eps``, ``obs_clip``, and ``env``
    (a JSON string: ``{"id": ..., **settings}``)."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: not a readable .npz file ({exc})") from None
    layers, k = [], 0
    while f"W{k}" in data:
        if f"b{k}" not in data:
            raise ExportError(f"{path}: W{k} without b{k}")
        layers.append(Dense(np.asarray(data[f"W{k}"], np.float32), np.asarray(data[f"b{k}"], np.float32)))
        k += 1
    if not layers:
        raise ExportError(f"{path}: no layers (expected arrays W0, b0, W1, b1, ...)")
    norm = None
    if "obs_mean" in data:
        clip = float(data["obs_clip"]) if "obs_clip" in data else None
        norm = Normalizer(np.asarray(data["obs_mean"], np.float32), np.asarray(data["obs_var"], np.float32),
                          float(data["obs_eps"]) if "obs_eps" in data else 1e-8, clip)
    try:
        spec = MLPSpec(tuple(layers), str(data["activation"]) if "activation" in data else "tanh", norm,
                       meta={"source_network": f"arrays from {path.name}"})
    except ValueError as exc:
        raise ExportError(f"{path}: {exc}") from None
    env = json.loads(str(data["env"])) if "env" in data else None
    return spec, env or {}


def save_mlp_npz(path: str | Path, spec: MLPSpec, env: dict[str, Any] | None = None) -> Path:
    arrays: dict[str, Any] = {"activation": np.asarray(spec.activation)}
    for k, d in enumerate(spec.layers):
        arrays[f"W{k}"], arrays[f"b{k}"] = d.kernel, d.bias
    if spec.normalizer is not None:
        arrays.update(obs_mean=spec.normalizer.mean, obs_var=spec.normalizer.var, obs_eps=np.float64(spec.normalizer.eps))
        if spec.normalizer.clip is not None:
            arrays["obs_clip"] = np.float64(spec.normalizer.clip)
    if env is not None:
        arrays["env"] = np.asarray(json.dumps(env))
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _built(env: dict[str, Any] | None, where: str) -> BuiltEnv:
    from pedagogym.envs import make

    if not env or "id" not in env:
        raise ExportError(f"{where}: which environment does the policy act in? pass --env ID (and --set KEY=VALUE ...)")
    settings = {k: v for k, v in env.items() if k != "id"}
    return make(env["id"], **settings)


def resolve(checkpoint: str, env: dict[str, Any] | None = None) -> ExportSource:
    """A checkpoint string (see the module docstring) -> :class:`ExportSource`. ``env``:
    ``{"id": ..., **settings}`` for sources that do not carry their env (overrides an .npz's)."""
    path = Path(checkpoint)
    if checkpoint.startswith("agent:") or (path.is_dir() and (path / "manifest.json").exists()):
        if env:
            raise ExportError(f"{checkpoint}: a trained agent acts in the env it was trained on; drop --env/--set")
        return from_agent(checkpoint)
    if path.suffix == ".npz":
        spec, file_env = load_mlp_npz(path)
        built = _built({**file_env, **(env or {})}, str(path))
        n_obs, n_act = len(built.feature_names), built.curriculum.n_items
        if (spec.n_inputs, spec.n_outputs) != (n_obs, n_act):
            raise ExportError(f"{path}: the MLP maps {spec.n_inputs} inputs to {spec.n_outputs} scores; the env has "
                              f"{n_obs} features and {n_act} items")
        return ExportSource(kind="mlp", name=path.stem, scorer=spec, policy=MLPPolicy(spec), built=built,
                            training={"source": str(path.resolve())})
    name = checkpoint.removeprefix("policy:")
    from pedagogym.policies import POLICIES

    if name not in POLICIES:
        if path.exists():
            raise ExportError(f"{checkpoint}: not a training run directory (no manifest.json), .npz or policy name")
        raise ExportError(f"{checkpoint}: no such file, run directory or policy; policies: {', '.join(POLICIES.names())}")
    policy = POLICIES.get(name)
    built = _built(env, f"policy:{name}")
    kind, scorer = scorer_for(policy, built)
    return ExportSource(kind=kind, name=name, scorer=scorer, policy=policy, built=built,
                        training={"note": "hand-written policy: not trained"})
