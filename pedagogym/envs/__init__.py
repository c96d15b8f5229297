"""Environments: functional JAX core, Gymnasium/vector/SB3 adapters, registered ids.

    import gymnasium as gym
    import pedagogym  # registers the ids (gym.register_envs(pedagogym) documents it)

    env = gym.make("pedagogym/PrereqBKT-v0", population="prior_knowledge", horizon=100)

The names below are imported on first use (PEP 562), so importing this package (or
:mod:`pedagogym.envs.registration`) imports no JAX; the registries and ``make`` live in
:mod:`pedagogym.envs.registration`.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ENV_IDS": "registration", "REWARDS": "registration", "FEATURIZERS": "registration",
    "ENV_SETTINGS": "registration", "make": "registration",
    "BuiltEnv": "config", "EnvConfig": "config", "EnvConfigError": "config", "build": "config",
    "load_env_config": "config",
    "EnvParams": "core", "EnvState": "core", "PedagogyEnv": "core",
    "Featurizer": "observations", "History": "observations", "ObserverParams": "observations",
    "PlatformFeatures": "observations", "TeacherFeatures": "observations",
    "ALL_REWARDS": "rewards", "Reward": "rewards",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pedagogym.envs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pedagogym.envs.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["ENV_IDS", "REWARDS", "FEATURIZERS", "BuiltEnv", "EnvConfig", "EnvConfigError", "EnvParams", "EnvState",
           "PedagogyEnv", "History", "ObserverParams", "build", "load_env_config", "make"]
