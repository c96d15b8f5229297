"""Gymnasium adapters over the one jitted JAX step: a single-learner ``gymnasium.Env``
and a ``gymnasium.vector.VectorEnv`` that runs N learners in one jitted call."""
from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from pedagogym.envs.config import BuiltEnv, EnvConfig, build
from pedagogym.envs.wrappers import batch_step


def _spaces(built: BuiltEnv) -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    d = built.env.obs_size(built.params)
    # every feature is >= 0; probabilities and fractions are <= 1, log1p counts <= log1p(horizon)
    high = np.float32(max(1.0, np.log1p(built.config.horizon)))
    obs_space = gym.spaces.Box(low=0.0, high=high, shape=(d,), dtype=np.float32)
    return obs_space, gym.spaces.Discrete(built.curriculum.n_items)


def _info_to_numpy(info: dict[str, Any]) -> dict[str, Any]:
    return {k: np.array(v) for k, v in info.items()}  # writable copies (torch warns on read-only)


@partial(jax.jit, static_argnums=0)
def _reset(env, key, params):
    return env.reset(key, params)


@partial(jax.jit, static_argnums=0)
def _step(env, key, state, action, params):
    """One call per step: the key split, the step and the next mask (the host reads the
    results with one ``device_get``)."""
    key, k = jax.random.split(key)
    obs, state, reward, term, trunc, info = env.step(k, state, action, params)
    return key, state, (obs, reward, term, trunc, info, env.action_mask(state, params))


class PedagogyGymEnv(gym.Env):
    """One simulated learner per episode. ``reset(seed=s)`` draws a learner from the
    population with ``PRNGKey(s)``; the same seed gives the same learner and, with the same
    actions, the same trajectory."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, built: BuiltEnv, render_mode: str | None = None):
        self.built = built
        self.env, self.params = built.env, built.params
        self.observation_space, self.action_space = _spaces(built)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.feature_names = built.feature_names
        self._state = None
        self._mask = None
        self._key = jax.random.PRNGKey(0)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        elif self._state is None:
            self._key = jax.random.PRNGKey(int(self.np_random.integers(2**31)))
        self._key, k = jax.random.split(self._key)
        obs, self._state = _reset(self.env, k, self.params)
        self._mask = np.asarray(self.env.action_mask(self._state, self.params))
        return np.array(obs), {"action_mask": self._mask.copy()}

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action) and not self.action_space.contains(int(action)):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        self._key, self._state, out = _step(self.env, self._key, self._state, np.int32(action), self.params)
        obs, reward, term, trunc, info, self._mask = jax.device_get(out)
        return np.array(obs), float(reward), bool(term), bool(trunc), _info_to_numpy(info)

    def action_masks(self) -> np.ndarray:
        """bool[I] valid items now (sb3-contrib MaskablePPO calls this)."""
        if self._mask is None:
            return np.ones(self.action_space.n, bool)
        return self._mask.copy()

    def render(self):
        if self.render_mode != "ansi" or self._state is None:
            return None
        h = self._state.history
        return (f"step {int(h.step)} session {int(h.session)} day {float(h.t):.2f} "
                f"last item {self.built.curriculum.item_ids[int(h.last_item)] if int(h.last_item) >= 0 else '-'} "
                f"belief {np.round(np.asarray(h.belief), 2).tolist()}")


class PedagogyVectorEnv(gym.vector.VectorEnv):
    """N learners stepped by one jitted, vmapped call, with auto-reset (next-step mode:
    the observation returned with ``terminated|truncated`` is already the new learner's;
    the last one is in ``infos["final_observation"]``)."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, built: BuiltEnv, num_envs: int):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.built, self.num_envs = built, num_envs
        self.env, self.params = built.env, built.params
        self.single_observation_space, self.single_action_space = _spaces(built)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        env = self.env
        self._reset_fn = jax.jit(lambda keys, p: jax.vmap(env.reset, in_axes=(0, None))(keys, p))
        self._step_fn = jax.jit(lambda keys, s, a, p: batch_step(env, keys, s, a, p))
        self._mask_fn = jax.jit(lambda s, p: jax.vmap(env.action_mask, in_axes=(0, None))(s, p))
        self._state = None
        self._key = jax.random.PRNGKey(0)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        self._key, k = jax.random.split(self._key)
        obs, self._state = self._reset_fn(jax.random.split(k, self.num_envs), self.params)
        return np.array(obs), {"action_mask": np.asarray(self._mask_fn(self._state, self.params))}

    def step(self, actions):
        self._key, k = jax.random.split(self._key)
        obs, self._state, reward, term, trunc, info = self._step_fn(
            jax.random.split(k, self.num_envs), self._state, jnp.asarray(actions, jnp.int32), self.params)
        return np.array(obs), np.array(reward), np.array(term), np.array(trunc), _info_to_numpy(info)

    def action_masks(self) -> np.ndarray:
        return np.asarray(self._mask_fn(self._state, self.params))


def config_from_kwargs(env_id: str, defaults: EnvConfig, kwargs: dict[str, Any]) -> EnvConfig:
    return EnvConfig.from_dict(kwargs, source=f"gymnasium.make({env_id!r})", base=defaults)


def make_gym_env(env_id: str, render_mode: str | None = None, **kwargs) -> PedagogyGymEnv:
    from pedagogym.envs import ENV_IDS

    return PedagogyGymEnv(build(config_from_kwargs(env_id, ENV_IDS.get(env_id), kwargs)), render_mode=render_mode)


def make_vector_env(env_id: str, num_envs: int = 1, **kwargs) -> PedagogyVectorEnv:
    from pedagogym.envs import ENV_IDS

    kwargs.pop("render_mode", None)
    return PedagogyVectorEnv(build(config_from_kwargs(env_id, ENV_IDS.get(env_id), kwargs)), num_envs)
