"""Training configs: one frozen, validated dataclass for every learning agent.

    name = "ppo_bkt"
    algo = "jax_ppo"                      # jax_ppo | sb3_ppo | sb3_a2c | sb3_dqn | sb3_maskable_ppo | sb3_recurrent_ppo
    seeds = [0, 1, 2, 3]
    total_timesteps = 2_000_000           # env steps per agent
    num_envs = 64                         # learners stepped in parallel per agent
    num_steps = 64                        # rollout length per update (n_steps for SB3)
    lr = 3e-4
    ...
    [env]
    id = "pedagogym/PrereqBKT-v0"
    horizon = 150                         # any env setting (see pedagogym.envs.EnvConfig)
    [sweep]                               # optional: one agent per seed x combination
    lr = [1e-4, 3e-4, 1e-3]
    [sb3]                                 # optional: extra keyword arguments of the SB3 class
    buffer_size = 50_000

Strings become objects at load time: the env is built (so a bad env setting fails here), the
algorithm name is looked up, and every error names the file, the key and what was expected.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from pedagogym.errors import PedagogymError

ALGOS = ("jax_ppo", "sb3_ppo", "sb3_a2c", "sb3_dqn", "sb3_maskable_ppo", "sb3_recurrent_ppo")
#: hyperparameters that can vary between agents of one run (``[sweep]``); for ``jax_ppo`` they
#: are traced values, so every combination trains in the same vmapped, jitted call.
SWEEPABLE = ("lr", "ent_coef", "clip", "vf_coef", "gamma", "gae_lambda", "max_grad_norm")


class TrainConfigError(PedagogymError):
    """A bad training config; the message names the source, the key and the problem."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (see the module docstring for the TOML form).

    Per-agent hyperparameters are the fields of the same name, overridden by ``sweep``;
    :meth:`agents` lists the (seed, hyperparameters) of every agent, seed-major."""

    name: str = "train"
    algo: str = "jax_ppo"
    env_id: str = "pedagogym/PrereqBKT-v0"
    env_settings: tuple[tuple[str, Any], ...] = ()
    seeds: tuple[int, ...] = (0,)
    total_timesteps: int = 1_000_000
    num_envs: int = 64
    num_steps: int = 64
    lr: float = 3e-4
    anneal_lr: bool = True
    epochs: int = 4
    minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (128, 128)
    activation: str = "tanh"
    recurrent: bool = False
    gru_size: int = 128
    normalize_obs: bool = True
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()
    chunk_updates: int = 10  # log, evaluate and checkpoint every this many updates
    eval_learners: int = 256  # learners in each learning-curve evaluation
    eval_seed: int = 12345
    keep_checkpoints: int = 2
    sb3_kwargs: tuple[tuple[str, Any], ...] = ()
    # imitation warm start (jax_ppo): "none" or "imitate:POLICY" -- behaviour cloning of a
    # registered policy on ``imitate_learners`` of its episodes, ``imitate_steps`` Adam steps
    # (lr ``imitate_lr``, ``imitate_batch`` episodes each), before PPO (pedagogym.agents.imitation)
    init: str = "none"
    imitate_learners: int = 256
    imitate_steps: int = 1000
    imitate_lr: float = 1e-3
    imitate_batch: int = 32
    # potential-based reward shaping (Ng, Harada & Russell 1999; jax_ppo): r + gamma phi(s') - phi(s),
    # phi = shaping x the mean knowledge-tracer belief (0 at the end of an episode; 0 = off)
    shaping: float = 0.0
    source: str = field(default="<dict>", compare=False, repr=False)

    # ---- derived ----------------------------------------------------------------------------
    @property
    def teacher(self) -> str | None:
        """The imitation teacher's policy name (``init = "imitate:NAME"``), else None."""
        return self.init.split(":", 1)[1] if self.init.startswith("imitate:") else None

    @property
    def batch_size(self) -> int:
        """Transitions per update (``num_envs * num_steps``)."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return max(1, self.total_timesteps // self.batch_size)

    @property
    def num_chunks(self) -> int:
        return -(-self.num_updates // self.chunk_updates)

    def env_settings_dict(self) -> dict[str, Any]:
        return dict(self.env_settings)

    def sb3_kwargs_dict(self) -> dict[str, Any]:
        return dict(self.sb3_kwargs)

    def agents(self) -> list[dict[str, Any]]:
        """One entry per agent: ``{"index", "seed", <every sweepable hyperparameter>}``."""
        names = [k for k, _ in self.sweep]
        grid = list(itertools.product(*[v for _, v in self.sweep])) or [()]
        out = []
        for seed in self.seeds:
            for combo in grid:
                hp = {k: float(getattr(self, k)) for k in SWEEPABLE}
                hp.update(dict(zip(names, combo)))
                out.append({"index": len(out), "seed": seed, **hp})
        return out

    @property
    def n_agents(self) -> int:
        return len(self.agents())

    def to_dict(self) -> dict[str, Any]:
        """The TOML-shaped dict (``from_dict(to_dict())`` gives back an equal config)."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("source", "env_id", "env_settings", "sweep", "sb3_kwargs"):
                continue
            v = getattr(self, f.name)
            if f.name in _OPTIONAL_AT_DEFAULT and v == f.default:
                continue  # keys added later are left out at their defaults: older runs keep their hash
            d[f.name] = list(v) if isinstance(v, tuple) else v
        d["env"] = {"id": self.env_id, **self.env_settings_dict()}
        if self.sweep:
            d["sweep"] = {k: list(v) for k, v in self.sweep}
        if self.sb3_kwargs:
            d["sb3"] = self.sb3_kwargs_dict()
        return d

    def hash(self) -> str:
        """sha256 (16 hex) of everything that changes what is trained; ``chunk_updates``,
        ``eval_*`` and ``keep_checkpoints`` only change logging, so they are left out, and a
        run may resume with different logging settings."""
        d = self.to_dict()
        for k in ("chunk_updates", "eval_learners", "eval_seed", "keep_checkpoints", "name"):
            d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> "TrainConfig":
        """A new validated config (never mutate one)."""
        return train_config_from_dict({**self.to_dict(), **_to_toml_shape(changes)}, source=self.source)

    def build_env(self):
        """The :class:`pedagogym.envs.BuiltEnv` this config trains on."""
        from pedagogym.envs import make

        return make(self.env_id, **self.env_settings_dict())


def _to_toml_shape(changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(changes)
    if "env_id" in out or "env_settings" in out:
        raise TrainConfigError("replace(): change the env through env={'id': ..., **settings}")
    return out


#: keys that ``to_dict`` omits at their default value (so configs written before they existed
#: keep the same hash and their runs resume)
_OPTIONAL_AT_DEFAULT = ("init", "imitate_learners", "imitate_steps", "imitate_lr", "imitate_batch", "shaping")


# ---- validation ---------------------------------------------------------------------------------
def _err(source: str, key: str, problem: str) -> TrainConfigError:
    return TrainConfigError(f"{source}: {key}: {problem}")


INT_MAX = 2**31 - 1  # JAX counts in int32: larger sizes / counts are refused before any XLA call
TIMESTEPS_MAX = 2**53  # total_timesteps (a Python int; updates = total / batch must still fit INT_MAX)


def _int(v: Any, source: str, key: str, lo: int = 1, hi: int = INT_MAX) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _err(source, key, f"expected an integer >= {lo} (at most {hi:,}), got {v!r}")
    return v


def _float(v: Any, source: str, key: str, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise _err(source, key, f"expected a finite number, got {v!r}")
    v = float(v)
    bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
    if bad_lo or bad_hi:
        rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{')' if hi_open else ']'}"
        raise _err(source, key, f"expected a number in {rng}, got {v!r}")
    return v


def _bool(v: Any, source: str, key: str) -> bool:
    if not isinstance(v, bool):
        raise _err(source, key, f"expected true/false, got {v!r}")
    return v


# range of each float hyperparameter: (lo, hi, lo_open, hi_open)
_FLOAT_RANGES = {
    "lr": (0.0, 1.0, True, False),
    "gamma": (0.0, 1.0, False, False),
    "gae_lambda": (0.0, 1.0, False, False),
    "clip": (0.0, None, True, False),
    "ent_coef": (0.0, None, False, False),
    "vf_coef": (0.0, None, False, False),
    "max_grad_norm": (0.0, None, True, False),
    "imitate_lr": (0.0, 1.0, True, False),
    "shaping": (0.0, None, False, False),
}
_INT_KEYS = {"total_timesteps": 1, "num_envs": 1, "num_steps": 1, "epochs": 1, "minibatches": 1, "gru_size": 1,
             "chunk_updates": 1, "eval_learners": 1, "eval_seed": 0, "keep_checkpoints": 1,
             "imitate_learners": 1, "imitate_steps": 1, "imitate_batch": 1}
_BOOL_KEYS = ("anneal_lr", "recurrent", "normalize_obs")
ACTIVATIONS = ("tanh", "relu")


def train_config_from_dict(data: dict[str, Any], source: str = "<dict>") -> TrainConfig:
    """Validate a TOML-shaped dict (see the module docstring) into a :class:`TrainConfig`."""
    from pedagogym.envs import ENV_IDS, EnvConfigError, make

    if not isinstance(data, dict):
        raise _err(source, "<root>", f"expected a table, got {type(data).__name__}")
    allowed = ({f.name for f in dataclasses.fields(TrainConfig)} - {"source", "env_id", "env_settings", "sweep", "sb3_kwargs"}
               | {"env", "sweep", "sb3", "description"})
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _err(source, unknown[0], f"unknown key; allowed: {', '.join(sorted(allowed))}")
    v: dict[str, Any] = {}
    from pedagogym.io import SAFE_NAME_RULE, is_safe_name

    name = data.get("name", "train")
    if not is_safe_name(name):  # it names the default run folder results/train/<name>
        raise _err(source, "name", f"expected a name of {SAFE_NAME_RULE}, got {name!r}")
    v["name"] = name
    algo = data.get("algo", "jax_ppo")
    if algo not in ALGOS:
        raise _err(source, "algo", f"expected one of {', '.join(ALGOS)}, got {algo!r}")
    v["algo"] = algo

    env = data.get("env")
    if not isinstance(env, dict) or "id" not in env:
        raise _err(source, "env", "expected an [env] table with at least id = \"pedagogym/...\"")
    env = dict(env)
    env_id = env.pop("id")
    if env_id not in ENV_IDS:
        raise _err(source, "env.id", f"unknown env id {env_id!r}; known: {', '.join(ENV_IDS.names())}")
    try:
        make(env_id, **env)  # resolve every name now: fail before any work starts
    except EnvConfigError as exc:
        raise _err(source, "env", str(exc)) from None
    v["env_id"], v["env_settings"] = env_id, tuple(sorted(env.items()))

    from pedagogym.io import parse_seeds

    v["seeds"] = parse_seeds(data.get("seeds", [0]))
    if v["seeds"] is None:
        raise _err(source, "seeds", f"expected a non-empty list of distinct non-negative integers, got {data['seeds']!r}")
    for key, lo in _INT_KEYS.items():
        if key in data:
            v[key] = _int(data[key], source, key, lo, TIMESTEPS_MAX if key == "total_timesteps" else INT_MAX)
    for key, (lo, hi, lo_open, hi_open) in _FLOAT_RANGES.items():
        if key in data:
            v[key] = _float(data[key], source, key, lo, hi, lo_open, hi_open)
    for key in _BOOL_KEYS:
        if key in data:
            v[key] = _bool(data[key], source, key)
    if "hidden" in data:
        h = data["hidden"]
        if isinstance(h, int) and not isinstance(h, bool):
            h = [h]
        if not isinstance(h, list) or not h or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in h):
            raise _err(source, "hidden", f"expected a non-empty list of positive layer sizes, got {h!r}")
        v["hidden"] = tuple(h)
    if "activation" in data:
        if data["activation"] not in ACTIVATIONS:
            raise _err(source, "activation", f"expected one of {', '.join(ACTIVATIONS)}, got {data['activation']!r}")
        v["activation"] = data["activation"]

    if "init" in data:
        v["init"] = _check_init(data["init"], source)

    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict):
        raise _err(source, "sweep", "expected a table of hyperparameter = [values]")
    sweep_items = []
    for key, values in sweep.items():
        if key not in SWEEPABLE:
            raise _err(source, f"sweep.{key}", f"not sweepable; sweepable: {', '.join(SWEEPABLE)}")
        if not isinstance(values, list) or not values:
            raise _err(source, f"sweep.{key}", f"expected a non-empty list of numbers, got {values!r}")
        lo, hi, lo_open, hi_open = _FLOAT_RANGES[key]
        vals = tuple(_float(x, source, f"sweep.{key}", lo, hi, lo_open, hi_open) for x in values)
        if len(set(vals)) != len(vals):
            raise _err(source, f"sweep.{key}", f"duplicate values in {values!r}")
        sweep_items.append((key, vals))
    v["sweep"] = tuple(sweep_items)

    sb3 = data.get("sb3", {})
    if not isinstance(sb3, dict):
        raise _err(source, "sb3", "expected a table of extra keyword arguments for the SB3 algorithm")
    if sb3 and algo == "jax_ppo":
        raise _err(source, "sb3", "only used by the sb3_* algorithms, but algo = 'jax_ppo'")
    v["sb3_kwargs"] = tuple(sorted(sb3.items()))

    cfg = TrainConfig(source=source, **v)
    # cross-field rules
    if cfg.batch_size % cfg.minibatches:
        raise _err(source, "minibatches", f"num_envs * num_steps = {cfg.batch_size} must be divisible by minibatches = {cfg.minibatches}")
    if cfg.recurrent and cfg.num_envs % cfg.minibatches:
        raise _err(source, "minibatches", f"a recurrent policy splits minibatches over envs: num_envs = {cfg.num_envs} must be divisible by minibatches = {cfg.minibatches}")
    if cfg.recurrent and algo not in ("jax_ppo", "sb3_recurrent_ppo"):
        raise _err(source, "recurrent", f"recurrent = true needs algo 'jax_ppo' or 'sb3_recurrent_ppo', got {algo!r}")
    if cfg.total_timesteps < cfg.batch_size:
        raise _err(source, "total_timesteps", f"must be at least num_envs * num_steps = {cfg.batch_size}, got {cfg.total_timesteps}")
    if cfg.num_updates > INT_MAX or cfg.batch_size > INT_MAX:
        raise _err(source, "total_timesteps", f"total_timesteps / (num_envs * num_steps) = {cfg.num_updates:,} updates "
                                              f"and num_envs * num_steps = {cfg.batch_size:,} must each be at most {INT_MAX:,}")
    if algo != "jax_ppo":
        for key in ("init", "shaping"):
            if getattr(cfg, key) != getattr(TrainConfig, key):
                raise _err(source, key, f"only used by algo 'jax_ppo', got algo = {algo!r}")
    if algo.startswith("sb3_"):
        from pedagogym.agents.sb3_classes import check_sb3_kwargs  # deferred: inspects SB3 (torch) classes

        problem = check_sb3_kwargs(algo, cfg.sb3_kwargs_dict())
        if problem:
            raise _err(source, "sb3", problem)
    return cfg


def _check_init(value: Any, source: str) -> str:
    """``"none"`` or ``"imitate:POLICY"`` with POLICY a registered policy."""
    from pedagogym.policies import POLICIES

    if value == "none":
        return value
    if not isinstance(value, str) or not value.startswith("imitate:"):
        raise _err(source, "init", f"expected \"none\" or \"imitate:POLICY\" (a registered policy), got {value!r}")
    name = value.split(":", 1)[1]
    if name not in POLICIES:
        raise _err(source, "init", f"unknown policy {name!r} to imitate; known: {', '.join(POLICIES.names())}")
    return value


def load_train_config(path: str | Path) -> TrainConfig:
    from pedagogym.tomlfile import read_toml

    data = read_toml(path, TrainConfigError, "training config")
    data.pop("description", None)
    return train_config_from_dict(data, source=str(path))
