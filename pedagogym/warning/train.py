"""Training and evaluating the early-warning model.

    config = WarningConfig(env=env_config("pedagogym/EngagedBKT-v0", {"horizon": 100}))
    result = train_warning(config)            # simulate, split by learner, fit, evaluate held-out
    result.metrics["targets"]["dropout"]["auc"]

Training is PureJaxRL style: :func:`make_train` returns a pure ``train(key, x, y)`` whose whole
loop (minibatch sampling, Adam steps) is one ``jit``-ed ``lax.scan``. Same config and seed ->
the same simulated learners, the same weights, the same metrics.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pedagogym.errors import PedagogymError
from pedagogym.envs.config import BuiltEnv, EnvConfig
from pedagogym.export.graph import ACTIVATIONS, Dense, MLPSpec, Normalizer
from pedagogym.policies.base import Policy
from pedagogym.warning import metrics as M
from pedagogym.warning.data import Decisions, simulate
from pedagogym.warning.model import (DEFAULT_SUMMARIES, RiskModel, Summary, WarningModelError, observation_signature)
from pedagogym.warning.targets import TARGETS, Target

DEFAULT_POLICIES = ("random", "designer", "mastery", "zpdes")
NORM_MIN_VAR = 1e-4  # summaries that barely vary are scaled by at most 1 / 0.01
NORM_CLIP = 10.0
CHECKPOINTS = (5, 10, 25, 50)  # learner-level AUC from the decision after this many events


class WarningConfigError(PedagogymError):
    """A bad early-warning setting; the message names the key and what was expected."""


@dataclass(frozen=True)
class WarningConfig:
    """How to simulate the training population and fit the model.

    env: the simulated population's env (default ``pedagogym/EngagedBKT-v0``); policies:
    hand-written policies that teach the simulated learners (a mix, so that the predictor is not
    tied to one policy); learners / heldout_learners: per policy; the model: summaries -> MLP
    with ``hidden`` units -> one sigmoid per target; Adam(``lr``) on the mean log loss +
    ``l2`` * sum of squared weights, ``steps`` minibatches of ``batch`` decisions.
    """

    env: EnvConfig = field(default_factory=lambda: _registered_env("pedagogym/EngagedBKT-v0"))
    policies: tuple[str, ...] = DEFAULT_POLICIES
    targets: tuple[str, ...] = ("dropout", "not_mastered")
    learners: int = 512
    heldout_learners: int = 256
    hidden: tuple[int, ...] = (16,)
    activation: str = "tanh"
    steps: int = 1500
    batch: int = 4096
    lr: float = 3e-3
    l2: float = 1e-3
    seed: int = 0
    bins: int = 10

    def __post_init__(self) -> None:
        def bad(key: str, problem: str) -> None:
            raise WarningConfigError(f"early warning: {key}: {problem}, got {getattr(self, key)!r}")

        if not self.policies:
            bad("policies", "name at least one hand-written policy")
        if len(set(self.policies)) != len(self.policies):
            bad("policies", "each policy once")
        if not self.targets or len(set(self.targets)) != len(self.targets):
            bad("targets", f"one or more distinct targets among {TARGETS.names()}")
        for t in self.targets:
            if t not in TARGETS:
                bad("targets", f"unknown target {t!r}; known: {', '.join(TARGETS.names())}")
        for key in ("learners", "heldout_learners", "steps", "batch"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(key, "must be a positive integer")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            bad("hidden", "layer sizes must be positive integers (empty: logistic regression)")
        if self.activation not in ACTIVATIONS:
            bad("activation", f"must be one of {sorted(ACTIVATIONS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad("lr", "must be a positive number")
        if not (self.l2 >= 0 and math.isfinite(self.l2)):
            bad("l2", "must be >= 0")
        if self.bins < 2:
            bad("bins", "must be >= 2")

    def replace(self, **changes: Any) -> "WarningConfig":
        return dataclasses.replace(self, **changes)

    def build_env(self) -> BuiltEnv:
        from pedagogym.envs import build

        return build(self.env)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "env"}
        return {"env": {"source": self.env.source, **self.env.to_dict()},
                **{k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}}


def _registered_env(env_id: str) -> EnvConfig:
    from pedagogym.envs import ENV_IDS

    return dataclasses.replace(ENV_IDS.get(env_id), source=env_id)


def env_config(env_id: str, settings: dict[str, Any] | None = None) -> EnvConfig:
    """A registered env id with overrides (``--env ID --set KEY=VALUE``), validated."""
    from pedagogym.envs import ENV_IDS

    return EnvConfig.from_dict(dict(settings or {}), source=env_id, base=ENV_IDS.get(env_id))


def resolve_policies(names: tuple[str, ...]) -> tuple[tuple[str, Policy], ...]:
    from pedagogym.policies import POLICIES

    out = []
    for name in names:
        policy = POLICIES.get(name)  # unknown names: RegistryError listing the known ones
        if policy.privileged:
            raise WarningConfigError(f"early warning: policies: {name!r} reads latent state; the simulated learners "
                                     f"should meet policies a platform could run")
        out.append((name, policy))
    return tuple(out)


# ---- the fit -----------------------------------------------------------------------------------
def _init(key, sizes: tuple[int, ...], out_bias: np.ndarray) -> list[tuple[jax.Array, jax.Array]]:
    layers = []
    for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
        key, sub = jax.random.split(key)
        w = jax.random.normal(sub, (a, b), jnp.float32) * jnp.sqrt(1.0 / a)
        bias = jnp.asarray(out_bias, jnp.float32) if k == len(sizes) - 2 else jnp.zeros((b,), jnp.float32)
        layers.append((w, bias))
    return layers


def _forward(layers, x, activation: str):
    act = jnp.tanh if activation == "tanh" else jax.nn.relu
    for k, (w, b) in enumerate(layers):
        x = x @ w + b
        if k < len(layers) - 1:
            x = act(x)
    return x


def make_train(config: WarningConfig, n_inputs: int, n_outputs: int):
    """A pure ``train(key, x, y, out_bias) -> layers`` over normalised inputs ``x`` float32[M, K]
    and labels ``y`` float32[M, T]; jit-compiled, the loop a ``lax.scan`` over ``config.steps``."""
    sizes = (n_inputs, *config.hidden, n_outputs)
    opt = optax.adam(config.lr)

    def loss(layers, x, y):
        logits = _forward(layers, x, config.activation)
        penalty = sum(jnp.sum(w * w) for w, _ in layers)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y)) + config.l2 * penalty

    @jax.jit
    def train(key, x, y, out_bias):
        k_init, k_batches = jax.random.split(key)
        layers = _init(k_init, sizes, out_bias)

        def step(carry, k):
            layers, opt_state = carry
            idx = jax.random.randint(k, (config.batch,), 0, x.shape[0])
            value, grads = jax.value_and_grad(loss)(layers, x[idx], y[idx])
            updates, opt_state = opt.update(grads, opt_state, layers)
            return (optax.apply_updates(layers, updates), opt_state), value

        (layers, _), losses = jax.lax.scan(step, (layers, opt.init(layers)), jax.random.split(k_batches, config.steps))
        return layers, losses

    return train


def fit(config: WarningConfig, train: Decisions, feature_names: tuple[str, ...], signature: dict[str, Any],
        summaries: tuple[Summary, ...] = DEFAULT_SUMMARIES) -> tuple[RiskModel, np.ndarray]:
    """The model and its training-loss curve (float32[steps])."""
    x = train.summaries.astype(np.float64)
    y = train.labels.astype(np.float32)
    for t, name in enumerate(train.target_names):
        if y[:, t].min() == y[:, t].max():
            raise WarningModelError(
                f"early warning: target {name!r} is {'always' if y[0, t] else 'never'} true among the "
                f"{train.n_learners} simulated training learners, so there is nothing to learn"
                + ("; dropout needs an env with engagement (e.g. pedagogym/EngagedBKT-v0, or --set engagement=true)"
                   if name == "dropout" and not y[0, t] else "")
                + f"; choose other targets (known: {', '.join(TARGETS.names())})")
    mean = x.mean(axis=0).astype(np.float32)
    var = np.maximum(x.var(axis=0), NORM_MIN_VAR).astype(np.float32)
    norm = Normalizer(mean=mean, var=var, eps=0.0, clip=NORM_CLIP)
    base = np.clip(y.mean(axis=0), 1e-4, 1 - 1e-4)
    run = make_train(config, x.shape[1], y.shape[1])
    layers, losses = run(jax.random.PRNGKey(config.seed), jnp.asarray(norm.apply(train.summaries)), jnp.asarray(y),
                         jnp.asarray(np.log(base / (1 - base)), jnp.float32))
    layers = jax.device_get(layers)
    mlp = MLPSpec(layers=tuple(Dense(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers),
                  activation=config.activation, normalizer=norm)
    model = RiskModel(feature_names=tuple(feature_names), summaries=tuple(summaries), mlp=mlp,
                      targets=tuple(train.target_names), observation_signature=signature)
    return model, np.asarray(losses)


def predict_summaries(model: RiskModel, summaries: np.ndarray) -> np.ndarray:
    """float32[M, K] summary features -> float32[M, T] probabilities (the model after its summaries)."""
    from pedagogym.export.policies import mlp_scores

    return np.asarray(jax.jit(lambda s: jax.nn.sigmoid(mlp_scores(model.mlp, s)))(summaries))


# ---- evaluation --------------------------------------------------------------------------------
def _auc_or_none(p: np.ndarray, y: np.ndarray) -> float | None:
    return M.auc(p, y) if 0 < int(np.sum(y)) < len(y) else None


def evaluate(model: RiskModel, data: Decisions, bins: int = 10) -> tuple[dict[str, Any], list[dict[str, Any]], np.ndarray]:
    """(metrics, reliability rows, predictions float32[M, T]) on ``data`` (held-out learners)."""
    if tuple(data.target_names) != model.targets:
        raise WarningModelError(f"the data is labelled with {list(data.target_names)}, the model predicts "
                                f"{list(model.targets)}")
    pred = predict_summaries(model, data.summaries)
    out: dict[str, Any] = {"learners": data.n_learners, "decisions": int(len(pred)), "targets": {}}
    rows: list[dict[str, Any]] = []
    first = np.ones(len(data.learner), bool)
    first[1:] = data.learner[1:] != data.learner[:-1]
    for t, name in enumerate(model.targets):
        p, y = pred[:, t], data.labels[:, t]
        baseline = _auc_or_none(data.progress, y)
        entry: dict[str, Any] = {
            "auc": _auc_or_none(p, y), "brier": M.brier(p, y), "ece": M.ece(p, y, bins), "log_loss": M.log_loss(p, y),
            "base_rate": float(y.mean()), "mean_predicted": float(p.mean()),
            "learners_positive": int(y[first].sum()), "learners": int(first.sum()),
            "brier_of_base_rate": float(y.mean() * (1 - y.mean())),
            "progress_only_auc": None if baseline is None else max(baseline, 1.0 - baseline),
            "by_policy": {}, "at_events": {},
        }
        for k, pname in enumerate(data.policy_names):
            sel = data.policy == k
            if sel.any():
                entry["by_policy"][pname] = {"auc": _auc_or_none(p[sel], y[sel]), "brier": M.brier(p[sel], y[sel]),
                                             "decisions": int(sel.sum())}
        for c in CHECKPOINTS:
            sel = data.events == c
            entry["at_events"][str(c)] = {"learners": int(sel.sum()),
                                          "auc": _auc_or_none(p[sel], y[sel]) if sel.sum() >= 20 else None}
        out["targets"][name] = entry
        rows += [{"target": name, **r} for r in M.reliability(p, y, bins)]
    return out, rows, pred


@dataclass(frozen=True)
class TrainedWarning:
    """A fitted model with what a bundle manifest and a report say about it."""

    model: RiskModel
    config: WarningConfig | None  # None for a model loaded from a `pedagogym warn train` directory
    heldout: dict[str, Any]  # evaluate()'s metrics on held-out learners
    calibration: list[dict[str, Any]]  # reliability rows (tidy: target, bin, lo, hi, n, mean_predicted, observed)
    training: dict[str, Any]  # the simulated population: env, policies, learners, decisions, seed, fit figures
    verification_obs: np.ndarray | None = field(default=None, compare=False, repr=False)  # raw held-out observations
    timings: dict[str, float] = field(default_factory=dict, compare=False)  # seconds (not in bundle manifests)


def describe_population(config: WarningConfig, built: BuiltEnv) -> dict[str, Any]:
    return {"env": built.config.source, "env_config": built.config.to_dict(), "curriculum": built.curriculum.name,
            "population": built.population.name, "model": built.config.model, "engagement": built.config.engagement,
            "horizon_items": int(built.config.horizon), "policies": list(config.policies),
            "learners_per_policy": config.learners, "heldout_learners_per_policy": config.heldout_learners,
            "split": "by learner: each policy's first `learners_per_policy` simulated learners train, the next "
                     "`heldout_learners_per_policy` are held out (all decisions of a learner on one side)",
            "seed": config.seed}


def train_warning(config: WarningConfig, *, built: BuiltEnv | None = None,
                  extra_policies: tuple[tuple[str, Policy], ...] = (), progress: bool = False) -> TrainedWarning:
    """Simulate ``(learners + heldout_learners)`` learners per policy, fit on the first
    ``learners`` of each, evaluate on the rest. ``built``: the env (default ``config.build_env()``);
    ``extra_policies``: (label, policy) pairs added to the mix (e.g. the policy being exported)."""
    t0 = time.perf_counter()
    built = built or config.build_env()
    if "dropout" in config.targets and not built.config.engagement:
        raise WarningConfigError(f"early warning: target 'dropout': learners never drop out in env {built.config.source} "
                                 f"(engagement = false); train on an env with engagement (e.g. pedagogym/EngagedBKT-v0, "
                                 f"--set engagement=true, or for an export --early-warning-set engagement=true), or "
                                 f"choose --targets not_mastered")
    policies = resolve_policies(config.policies) + tuple(extra_policies)
    targets: tuple[Target, ...] = tuple(TARGETS.get(t) for t in config.targets)
    n = config.learners + config.heldout_learners
    data = simulate(built, policies, n, targets, DEFAULT_SUMMARIES, config.seed, progress=progress)
    t_sim = time.perf_counter() - t0
    is_train = (data.learner % n) < config.learners
    train, held = data.select(is_train), data.select(~is_train)
    model, losses = fit(config, train, tuple(built.feature_names), observation_signature(built))
    heldout, rows, _ = evaluate(model, held, config.bins)
    training = {**describe_population(config, built), "policies": [name for name, _ in policies],
                "learners": train.n_learners, "decisions": int(len(train.labels)),
                "base_rates": {t: float(train.labels[:, k].mean()) for k, t in enumerate(config.targets)},
                "fit": {"hidden": list(config.hidden), "activation": config.activation, "steps": config.steps,
                        "batch": config.batch, "lr": config.lr, "l2": config.l2, "optimizer": "adam",
                        "loss": "mean sigmoid cross-entropy + l2 * sum of squared weights",
                        "final_loss": float(losses[-50:].mean())}}
    return TrainedWarning(model=model, config=config, heldout=heldout, calibration=rows, training=training,
                          verification_obs=held.obs_sample,
                          timings={"simulate_s": round(t_sim, 2), "total_s": round(time.perf_counter() - t0, 2)})


def evaluate_warning(model: RiskModel, config: WarningConfig, *, progress: bool = False) -> TrainedWarning:
    """Fresh simulated learners (``config.heldout_learners`` per policy, seed ``config.seed``) for a
    trained model; the env may differ (population, engagement, ...) but must produce the observation
    the model reads."""
    from pedagogym.warning.model import check_compatible

    t0 = time.perf_counter()
    built = config.build_env()
    check_compatible(model, built.feature_names, observation_signature(built), f"env {built.config.source}")
    targets = tuple(TARGETS.get(t) for t in model.targets)
    data = simulate(built, resolve_policies(config.policies), config.heldout_learners, targets, model.summaries,
                    config.seed, progress=progress)
    heldout, rows, _ = evaluate(model, data, config.bins)
    return TrainedWarning(model=model, config=config, heldout=heldout, calibration=rows,
                          training=describe_population(config, built), verification_obs=data.obs_sample,
                          timings={"total_s": round(time.perf_counter() - t0, 2)})
