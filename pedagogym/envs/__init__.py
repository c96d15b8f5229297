"""Environments: functional JAX core, Gymnasium/vector/SB3 adapters, registered ids.

    import gymnasium as gym, pedagogym.envs
    env = gym.make("pedagogym/PrereqBKT-v0", population="prior_knowledge", horizon=100)
"""
from __future__ import annotations

import gymnasium as gym

from pedagogym.envs.config import BuiltEnv, EnvConfig, EnvConfigError, build, load_env_config
from pedagogym.envs.core import EnvParams, EnvState, PedagogyEnv
from pedagogym.envs.observations import Featurizer, History, ObserverParams, PlatformFeatures, TeacherFeatures
from pedagogym.envs.rewards import ALL_REWARDS, Reward
from pedagogym.registry import Registry

REWARDS: Registry[Reward] = Registry("reward")
FEATURIZERS: Registry[Featurizer] = Registry("featurizer")
ENV_IDS: Registry[EnvConfig] = Registry("env")

for _r in ALL_REWARDS:
    REWARDS.register(_r.name, _r)
FEATURIZERS.register(PlatformFeatures.name, PlatformFeatures())
FEATURIZERS.register(TeacherFeatures.name, TeacherFeatures())

_SKILL = dict(curriculum="maths_fractions", population="heterogeneous", reward="posttest", horizon=200,
              session_minutes=20.0, prerequisites=True, unlock_threshold=0.0)
_CARDS = dict(curriculum="vocab_spanish", population="heterogeneous", reward="recall", horizon=200, n_items=30,
              session_minutes=10.0, prerequisites=False, test_delay_days=1.0, terminate_on_mastery=False)

_IDS = {
    "pedagogym/PrereqBKT-v0": EnvConfig(model="bkt", **_SKILL),
    "pedagogym/PrereqIRT-v0": EnvConfig(model="irt2pl", **_SKILL),
    "pedagogym/PrereqPFA-v0": EnvConfig(model="pfa", **_SKILL),
    "pedagogym/FlashcardsEFC-v0": EnvConfig(model="efc", **_CARDS),
    "pedagogym/FlashcardsHLR-v0": EnvConfig(model="hlr", **_CARDS),
    "pedagogym/FlashcardsACTR-v0": EnvConfig(model="actr", **_CARDS),
    "pedagogym/FlashcardsFSRS-v0": EnvConfig(model="fsrs", **_CARDS),
    "pedagogym/EngagedBKT-v0": EnvConfig(model="bkt", **{**_SKILL, "engagement": True, "reward": "engaged_posttest"}),
    # adaptive testing: a fixed 3PL ability, a 200-item bank, at most `horizon` items; set stop_se > 0 for a
    # variable-length test that ends once the EAP standard error is below it
    "pedagogym/AdaptiveTest-v0": EnvConfig(model="irt3pl_static", curriculum="item_bank_200", population="test_takers",
                                           reward="posttest", horizon=30, session_minutes=120.0, prerequisites=False,
                                           terminate_on_mastery=False),
}

for _id, _cfg in _IDS.items():
    ENV_IDS.register(_id, _cfg)
    if _id not in gym.registry:
        gym.register(
            id=_id,
            entry_point="pedagogym.envs.gym_env:make_gym_env",
            vector_entry_point="pedagogym.envs.gym_env:make_vector_env",
            kwargs={"env_id": _id},
            disable_env_checker=False,
        )


def make(env_id_or_config: str | EnvConfig, **kwargs) -> BuiltEnv:
    """The functional env and params for a registered id (or a config) with overrides."""
    if isinstance(env_id_or_config, EnvConfig):
        return build(env_id_or_config.replace(**kwargs) if kwargs else env_id_or_config)
    base = ENV_IDS.get(env_id_or_config)
    return build(EnvConfig.from_dict(kwargs, source=env_id_or_config, base=base))


__all__ = ["ENV_IDS", "REWARDS", "FEATURIZERS", "BuiltEnv", "EnvConfig", "EnvConfigError", "EnvParams", "EnvState",
           "PedagogyEnv", "History", "ObserverParams", "build", "load_env_config", "make"]
