"""Stable-Baselines3 ``VecEnv`` over the batched JAX env (one compiled call steps every
learner; auto-reset comes from :mod:`pedagogym.envs.wrappers`; SB3's own convention:
``infos[i]["terminal_observation"]`` and ``"TimeLimit.truncated"`` where an episode ended)."""
from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from pedagogym.envs.config import BuiltEnv
from pedagogym.envs.gym_env import PedagogyVectorEnv


class PedagogySB3VecEnv(VecEnv):
    """``num_envs`` learners; ``env_method("action_masks")`` serves sb3-contrib's MaskablePPO."""

    def __init__(self, built: BuiltEnv, num_envs: int, seed: int = 0):
        self._vec = PedagogyVectorEnv(built, num_envs)
        super().__init__(num_envs, self._vec.single_observation_space, self._vec.single_action_space)
        self._seed = seed
        self._actions: np.ndarray | None = None
        self._masks: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        obs, info = self._vec.reset(seed=self._seed)
        self._seed += 1
        self._masks = info["action_mask"]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self):
        o = self._vec.step_arrays(self._actions)
        term, trunc = o["terminated"], o["truncated"]
        self._masks = o["mask"]
        done = term | trunc
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(done):
            infos[i]["terminal_observation"] = o["final_obs"][i].copy()
            infos[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
        return o["obs"].copy(), o["reward"].astype(np.float32), done, infos

    def action_masks(self) -> np.ndarray:
        return self._masks if self._masks is not None else np.ones((self.num_envs, self.action_space.n), bool)

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self._vec, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self._vec, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        idx = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in idx]
        raise AttributeError(f"PedagogySB3VecEnv has no per-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def seed(self, seed: int | None = None):
        if seed is not None:
            self._seed = seed
        return [self._seed + i for i in range(self.num_envs)]

    def get_images(self):
        return []
