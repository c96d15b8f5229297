"""Typed, frozen environment configs. Strings (from ``gymnasium.make`` kwargs or TOML)
become objects here, in :func:`build`, and nowhere deeper."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import Curriculum
from pedagogym.envs.constraints import Constraints
from pedagogym.envs.core import EnvParams, PedagogyEnv
from pedagogym.envs.observations import ObserverParams
from pedagogym.student_models.learner import Learner
from pedagogym.student_models.population import Population


class EnvConfigError(PedagogymError):
    """A bad environment setting; the message names the source, the key and the problem."""


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines an environment. All fields are keyword arguments of
    ``gymnasium.make("pedagogym/...", **kwargs)`` and keys of an ``[env]`` TOML table."""

    curriculum: str = "maths_fractions"  # built-in name or path to a .toml
    model: str = "bkt"  # student model name (``pedagogym list``)
    population: str = "heterogeneous"  # built-in name or path to a population .toml
    reward: str = "posttest"
    featurizer: str = "platform"
    horizon: int = 200  # items per episode
    session_minutes: float = 20.0
    prerequisites: bool = True  # prerequisite gating of learning
    engagement: bool = False  # engagement dynamics and dropout
    privileged: bool = False  # add latent state to observations (oracles only)
    unlock_threshold: float = 0.0  # belief on prerequisites needed to unlock an item (0 = all unlocked)
    mastery_threshold: float = 0.95
    terminate_on_mastery: bool = True  # end the episode when every skill is mastered
    test_delay_days: float = 0.0
    dropout_penalty: float = 1.0
    invalid_action_seconds: float = 5.0
    n_items: int | None = None  # keep only the first n items (e.g. a smaller flashcard deck)
    stop_se: float = 0.0  # adaptive tests: end once the EAP ability standard error is below this (0 = off)
    observer_p_init: float = 0.2
    observer_p_learn: float = 0.15
    observer_p_guess: float = 0.2
    observer_p_slip: float = 0.1
    source: str = field(default="<kwargs>", compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<kwargs>", base: "EnvConfig | None" = None) -> "EnvConfig":
        """Validate ``data`` over ``base`` (default: the class defaults)."""
        base = base or cls()
        allowed = {f.name: f for f in fields(cls) if f.name != "source"}
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise EnvConfigError(f"{source}: unknown env setting(s) {unknown}; allowed: {sorted(allowed)}")
        values = {}
        for key, value in data.items():
            values[key] = _coerce(key, value, type(getattr(base, key)) if getattr(base, key) is not None else int, source)
        cfg = dataclasses.replace(base, source=source, **values)
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> "EnvConfig":
        return EnvConfig.from_dict(changes, source=self.source, base=self)

    def validate(self) -> None:
        src = self.source

        def check(ok: bool, key: str, problem: str) -> None:
            if not ok:
                raise EnvConfigError(f"{src}: {key}: {problem}, got {getattr(self, key)!r}")

        check(self.horizon >= 1, "horizon", "must be a positive number of items")
        check(0 < self.session_minutes <= 24 * 60, "session_minutes", "must be in (0, 1440]")
        check(0.0 <= self.unlock_threshold <= 1.0, "unlock_threshold", "must be in [0, 1]")
        check(0.0 < self.mastery_threshold <= 1.0, "mastery_threshold", "must be in (0, 1]")
        check(self.test_delay_days >= 0, "test_delay_days", "must be >= 0")
        check(self.dropout_penalty >= 0, "dropout_penalty", "must be >= 0")
        check(self.invalid_action_seconds >= 0, "invalid_action_seconds", "must be >= 0")
        check(self.stop_se >= 0, "stop_se", "must be >= 0 (0 = no standard-error stopping rule)")
        check(self.n_items is None or self.n_items >= 1, "n_items", "must be >= 1")
        for key in ("observer_p_init", "observer_p_learn", "observer_p_guess", "observer_p_slip"):
            check(0.0 < getattr(self, key) < 1.0, key, "must be a probability in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source" and getattr(self, f.name) is not None}


def _coerce(key: str, value: Any, kind: type, source: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise EnvConfigError(f"{source}: {key}: expected true/false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise EnvConfigError(f"{source}: {key}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise EnvConfigError(f"{source}: {key}: expected a finite number, got {value!r}")
    if kind is str:
        if isinstance(value, (str, Path)) and str(value):
            return str(value)
        raise EnvConfigError(f"{source}: {key}: expected a non-empty string, got {value!r}")
    return value


def subset_items(curriculum: Curriculum, n_items: int) -> Curriculum:
    """The first ``n_items`` items and the skills they exercise (prerequisites kept within)."""
    if n_items > curriculum.n_items:
        raise EnvConfigError(f"n_items: curriculum {curriculum.name!r} has only {curriculum.n_items} items, asked for {n_items}")
    items = curriculum.items[:n_items]
    used = {s for it in items for s in it.skills}
    skills = tuple(dataclasses.replace(s, prerequisites=tuple(p for p in s.prerequisites if p in used))
                   for s in curriculum.skills if s.id in used)
    keep = {it.id for it in items}
    order = tuple(i for i in curriculum.order if i in keep)
    return dataclasses.replace(curriculum, name=f"{curriculum.name}[:{n_items}]", skills=skills, items=items, order=order)


@dataclass(frozen=True)
class BuiltEnv:
    """An environment ready to run: the pure env, its params, and the named objects behind them."""

    env: PedagogyEnv
    params: EnvParams
    config: EnvConfig
    curriculum: Curriculum
    population: Population

    @property
    def feature_names(self) -> list[str]:
        return self.env.feature_names(self.curriculum.skill_ids, self.curriculum.item_ids)


def resolve_population(name_or_path: str) -> Population:
    from pedagogym.student_models import POPULATIONS, load_population

    if name_or_path in POPULATIONS:
        return POPULATIONS.get(name_or_path)
    if name_or_path.endswith(".toml") or Path(name_or_path).exists():
        return load_population(name_or_path)
    POPULATIONS.get(name_or_path)  # raises with the list of known names
    raise AssertionError("unreachable")


def build(config: EnvConfig) -> BuiltEnv:
    """Resolve every name in ``config`` and assemble the env and its params."""
    from pedagogym.curriculum import resolve_curriculum
    from pedagogym.envs.registration import FEATURIZERS, REWARDS
    from pedagogym.student_models import STUDENT_MODELS

    def named(registry, key: str):
        try:
            return registry.get(getattr(config, key))
        except KeyError as exc:
            raise EnvConfigError(f"{config.source}: {key}: {exc}") from None

    model, reward, featurizer = named(STUDENT_MODELS, "model"), named(REWARDS, "reward"), named(FEATURIZERS, "featurizer")
    try:
        curriculum = resolve_curriculum(config.curriculum)
        population = resolve_population(config.population)
    except (KeyError, ValueError) as exc:
        raise EnvConfigError(f"{config.source}: {exc}") from None
    if config.n_items is not None:
        try:
            curriculum = subset_items(curriculum, config.n_items)
        except EnvConfigError as exc:
            raise EnvConfigError(f"{config.source}: {exc}") from None
    learner = Learner(model=model, prerequisites=config.prerequisites, engagement=config.engagement)
    env = PedagogyEnv(learner=learner, reward=reward, featurizer=featurizer, privileged=config.privileged,
                      stop_on_se=config.stop_se > 0)
    curr = curriculum.arrays()
    model_params = model.default_params(curr)
    if population.fitted_models and model.name in population.fitted_models:
        # a population fitted from logs (``pedagogym fit``) carries the model's parameters
        from pedagogym.fitting.population_file import apply_fitted_params

        try:
            applied = apply_fitted_params(model, curriculum, population.source)
        except ValueError as exc:
            raise EnvConfigError(f"{config.source}: population: {exc}") from None
        model_params, curr = applied.params, applied.curriculum
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    params = EnvParams(
        curriculum=curr,
        population=population.arrays(),
        observer=ObserverParams.default(curriculum.n_skills, p_init=config.observer_p_init, p_learn=config.observer_p_learn,
                                        p_guess=config.observer_p_guess, p_slip=config.observer_p_slip),
        item_available=jnp.ones((curriculum.n_items,), bool),
        horizon=jnp.asarray(config.horizon, jnp.int32),
        session_s=f32(config.session_minutes * 60.0),
        mastery_threshold=f32(config.mastery_threshold),
        unlock_threshold=f32(config.unlock_threshold),
        test_delay_days=f32(config.test_delay_days),
        dropout_penalty=f32(config.dropout_penalty),
        invalid_action_s=f32(config.invalid_action_seconds),
        terminate_on_mastery=jnp.asarray(config.terminate_on_mastery, bool),
        model_params=model_params,
        stop_se=f32(config.stop_se),
        constraints=Constraints.none(curriculum.n_items, curriculum.n_skills),
    )
    return BuiltEnv(env=env, params=params, config=config, curriculum=curriculum, population=population)


def load_env_config(path: str | Path, base: EnvConfig | None = None) -> EnvConfig:
    """An env config from a TOML file: top-level keys or an ``[env]`` table."""
    from pedagogym.tomlfile import read_toml

    data = read_toml(path, EnvConfigError, "env config file")
    data = data.get("env", data)
    return EnvConfig.from_dict(data, source=str(path), base=base)
