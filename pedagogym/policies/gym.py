"""Hand-written policies in the Gymnasium loop.

    env = gymnasium.make("pedagogym/FlashcardsFSRS-v0")
    runner = GymPolicyRunner(POLICIES.get("leitner"), seed=0)
    obs, info = env.reset(seed=1)
    while True:
        obs, reward, terminated, truncated, info = env.step(runner.act(env))
        if terminated or truncated:
            break

The runner reads the env's logged history (``PedagogyGymEnv.learner_state()``) and
``action_masks()``, and keeps the policy's per-learner memory between calls; the memory
is reset when the env starts a new episode (its step count went back) or on ``reset()``.
The same jitted ``policy.act`` as in batched rollouts does the work.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp

from pedagogym.envs.gym_env import PedagogyGymEnv
from pedagogym.policies.base import Policy, PolicyView


@partial(jax.jit, static_argnums=(0, 6))
def _act(policy: Policy, key, pstate, state, mask, params, env):
    view = PolicyView(history=state.history, action_mask=mask, obs=env.observation(state, params),
                      latent=state if policy.privileged else None)
    return policy.act(key, pstate, view, params, env)


class GymPolicyRunner:
    """Acts for one :class:`~pedagogym.envs.gym_env.PedagogyGymEnv` (or a wrapper of one)."""

    def __init__(self, policy: Policy, seed: int = 0):
        self.policy = policy
        self._key = jax.random.PRNGKey(seed)
        self._pstate: Any = None
        self._last_step = 0

    def reset(self) -> None:
        """Forget the policy memory (the next ``act`` starts it afresh)."""
        self._pstate = None
        self._last_step = 0

    @staticmethod
    def _unwrap(env: gym.Env) -> tuple[PedagogyGymEnv, Any]:
        """The base env and its current learner's state (unpacked once per call)."""
        base = env.unwrapped
        if not isinstance(base, PedagogyGymEnv):
            raise TypeError(f"GymPolicyRunner needs a PedagogyGymEnv, got {type(base).__name__}")
        state = base.learner_state()
        if state is None:
            raise RuntimeError("call env.reset() before asking the runner for an action")
        return base, state

    def act(self, env: gym.Env) -> int:
        """The policy's item for the env's current learner (always a valid one)."""
        base, state = self._unwrap(env)
        params = base.params
        step = int(state.history.step)
        if self._pstate is None or step == 0 or step < self._last_step:  # first call or a new episode
            self._pstate = self.policy.init(params)
        self._last_step = step
        # the policy folds in only responses it has not seen (its memory counts them), so
        # asking twice in the same state is harmless
        self._key, k = jax.random.split(self._key)
        action, self._pstate = _act(self.policy, k, self._pstate, state, jnp.asarray(base.action_masks()), params, base.env)
        return int(action)

    __call__ = act

    def run_episode(self, env: gym.Env, seed: int | None = None) -> dict[str, float]:
        """Reset ``env`` and play one whole episode; returns total reward and steps."""
        env.reset(seed=seed)
        self.reset()
        total, steps = 0.0, 0
        while True:
            _, reward, terminated, truncated, _ = env.step(self.act(env))
            total += float(reward)
            steps += 1
            if terminated or truncated:
                return {"total_reward": total, "steps": float(steps)}
