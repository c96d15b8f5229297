"""The env registries and the Gymnasium ids (gymnax / Jumanji style ``registration.py``).

Importing this module is cheap: it imports neither JAX nor the env code. The registries are
filled by loaders on first use, and :func:`register_gym_ids` registers every id with
Gymnasium through string entry points, so ``import pedagogym`` makes
``gymnasium.make("pedagogym/PrereqBKT-v0")`` work without compiling anything:

    import gymnasium as gym
    import pedagogym

    gym.register_envs(pedagogym)  # documents the import (a no-op)
    env = gym.make("pedagogym/PrereqBKT-v0", population="prior_knowledge", horizon=100)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pedagogym.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from pedagogym.envs.config import BuiltEnv, EnvConfig
    from pedagogym.envs.observations import Featurizer
    from pedagogym.envs.rewards import Reward

REWARDS: "Registry[Reward]" = Registry("reward")
FEATURIZERS: "Registry[Featurizer]" = Registry("featurizer")
ENV_IDS: "Registry[EnvConfig]" = Registry("env")

GYM_ENTRY_POINT = "pedagogym.envs.gym_env:make_gym_env"
GYM_VECTOR_ENTRY_POINT = "pedagogym.envs.gym_env:make_vector_env"

_SKILL = dict(curriculum="maths_fractions", population="heterogeneous", reward="posttest", horizon=200,
              session_minutes=20.0, prerequisites=True, unlock_threshold=0.0)
_CARDS = dict(curriculum="vocab_spanish", population="heterogeneous", reward="recall", horizon=200, n_items=30,
              session_minutes=10.0, prerequisites=False, test_delay_days=1.0, terminate_on_mastery=False)

#: every registered id -> its ``EnvConfig`` settings (plain data: no JAX needed to list them)
ENV_SETTINGS: dict[str, dict[str, Any]] = {
    "pedagogym/PrereqBKT-v0": dict(model="bkt", **_SKILL),
    "pedagogym/PrereqIRT-v0": dict(model="irt2pl", **_SKILL),
    "pedagogym/PrereqPFA-v0": dict(model="pfa", **_SKILL),
    "pedagogym/FlashcardsEFC-v0": dict(model="efc", **_CARDS),
    "pedagogym/FlashcardsHLR-v0": dict(model="hlr", **_CARDS),
    "pedagogym/FlashcardsACTR-v0": dict(model="actr", **_CARDS),
    "pedagogym/FlashcardsFSRS-v0": dict(model="fsrs", **_CARDS),
    "pedagogym/EngagedBKT-v0": dict(model="bkt", **{**_SKILL, "engagement": True, "reward": "engaged_posttest"}),
    # adaptive testing: a fixed 3PL ability, a 200-item bank, at most `horizon` items; set stop_se > 0 for a
    # variable-length test that ends once the EAP standard error is below it
    "pedagogym/AdaptiveTest-v0": dict(model="irt3pl_static", curriculum="item_bank_200", population="test_takers",
                                      reward="posttest", horizon=30, session_minutes=120.0, prerequisites=False,
                                      terminate_on_mastery=False),
}


def _load_rewards() -> None:
    from pedagogym.envs.rewards import ALL_REWARDS

    for r in ALL_REWARDS:
        if r.name not in REWARDS:
            REWARDS.register(r.name, r)


def _load_featurizers() -> None:
    from pedagogym.envs.observations import PlatformFeatures, TeacherFeatures

    for f in (PlatformFeatures(), TeacherFeatures()):
        if f.name not in FEATURIZERS:
            FEATURIZERS.register(f.name, f)


def _load_env_ids() -> None:
    from pedagogym.envs.config import EnvConfig

    for env_id, settings in ENV_SETTINGS.items():
        if env_id not in ENV_IDS:
            ENV_IDS.register(env_id, EnvConfig(**settings))


REWARDS.add_loader(_load_rewards)
FEATURIZERS.add_loader(_load_featurizers)
ENV_IDS.add_loader(_load_env_ids)


def register_gym_ids() -> None:
    """Register every id of :data:`ENV_SETTINGS` with Gymnasium (string entry points: nothing
    is imported or compiled until ``gymnasium.make``). Idempotent."""
    import gymnasium as gym

    for env_id in ENV_SETTINGS:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=GYM_ENTRY_POINT, vector_entry_point=GYM_VECTOR_ENTRY_POINT,
                         kwargs={"env_id": env_id}, disable_env_checker=False)


def make(env_id_or_config: "str | EnvConfig", **kwargs) -> "BuiltEnv":
    """The functional env and params for a registered id (or a config) with overrides."""
    from pedagogym.envs.config import EnvConfig, build

    if isinstance(env_id_or_config, EnvConfig):
        return build(env_id_or_config.replace(**kwargs) if kwargs else env_id_or_config)
    base = ENV_IDS.get(env_id_or_config)
    return build(EnvConfig.from_dict(kwargs, source=env_id_or_config, base=base))
