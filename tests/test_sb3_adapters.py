"""SB3 PPO and sb3-contrib MaskablePPO train through the Gymnasium env and the batched
SB3 VecEnv adapter, with finite losses."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import pedagogym  # noqa: F401  (registers the ids)
from pedagogym.envs import make
from pedagogym.envs.sb3 import PedagogySB3VecEnv

torch.set_num_threads(1)


def _finite_losses(model) -> None:
    values = model.logger.name_to_value
    losses = {k: v for k, v in values.items() if "loss" in k}
    assert losses, "no loss was logged"
    assert all(np.isfinite(v) for v in losses.values()), losses


@pytest.mark.parametrize("algo", ["ppo", "maskable_ppo"])
def test_sb3_trains_on_gymnasium_env(algo):
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    env = gym.make("pedagogym/PrereqBKT-v0", curriculum="tiny", horizon=50, reward="mastery_gain", unlock_threshold=0.5)
    cls = MaskablePPO if algo == "maskable_ppo" else PPO
    model = cls("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=2, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=2048)
    _finite_losses(model)


@pytest.mark.parametrize("algo", ["ppo", "maskable_ppo"])
def test_sb3_trains_on_batched_vecenv(algo):
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks
    from stable_baselines3 import PPO

    built = make("pedagogym/PrereqBKT-v0", curriculum="tiny", horizon=50, reward="mastery_gain", unlock_threshold=0.5)
    venv = PedagogySB3VecEnv(built, num_envs=16)
    cls = MaskablePPO if algo == "maskable_ppo" else PPO
    model = cls("MlpPolicy", venv, n_steps=128, batch_size=256, n_epochs=2, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=4096)
    _finite_losses(model)
    venv.reset()
    masks = get_action_masks(venv)
    assert masks.shape == (16, built.curriculum.n_items) and masks.any(axis=1).all()
    if algo == "maskable_ppo":
        obs = venv.reset()
        actions, _ = model.predict(obs, action_masks=get_action_masks(venv), deterministic=True)
        assert all(get_action_masks(venv)[i, a] for i, a in enumerate(actions))
