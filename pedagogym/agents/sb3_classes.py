"""Which SB3 class each ``sb3_*`` algo is, and the check of a config's ``[sb3]`` table against
its signature. Imports nothing of pedagogym, so the config validator can use it without the
training code (and SB3 itself is imported only when a class is asked for)."""
from __future__ import annotations

import inspect
from typing import Any

#: algo -> (module, class, policy name, feed-forward or recurrent)
_CLASSES = {
    "sb3_ppo": ("stable_baselines3", "PPO", "MlpPolicy"),
    "sb3_a2c": ("stable_baselines3", "A2C", "MlpPolicy"),
    "sb3_dqn": ("stable_baselines3", "DQN", "MlpPolicy"),
    "sb3_maskable_ppo": ("sb3_contrib", "MaskablePPO", "MlpPolicy"),
    "sb3_recurrent_ppo": ("sb3_contrib", "RecurrentPPO", "MlpLstmPolicy"),
}


def sb3_class(algo: str):
    module, cls, _ = _CLASSES[algo]
    return getattr(__import__(module, fromlist=[cls]), cls)


_RESERVED = {"policy", "env", "seed", "device", "verbose", "_init_setup_model", "tensorboard_log"}


def check_sb3_kwargs(algo: str, extra: dict[str, Any]) -> str | None:
    """A problem with the ``[sb3]`` table, or None."""
    params = set(inspect.signature(sb3_class(algo).__init__).parameters) - {"self"}
    for k in sorted(extra):
        if k in _RESERVED:
            return f"{k!r} is set by pedagogym and cannot be overridden"
        if k not in params:
            return f"unknown argument {k!r} for {_CLASSES[algo][1]}; known: {', '.join(sorted(params - _RESERVED))}"
    return None
