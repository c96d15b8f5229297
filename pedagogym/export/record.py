"""Recorded simulator episodes: observations, masks, the policy's scores and actions, and the
event log a platform would have written. Used by parity tests, the Node fixture and the
latency benchmark."""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pedagogym.envs.core import EnvParams, PedagogyEnv
from pedagogym.policies.base import NEG, Policy
from pedagogym.schema import SECONDS_PER_DAY
from pedagogym.policies.rollout import Step, learner_keys, play_episode
from pedagogym.export.sources import policy_scores



class Recording(NamedTuple):
    """N learners x T steps (numpy). Step k's observation is the one the policy saw before
    choosing action k; index T holds the observation after the last step."""

    obs: np.ndarray  # float32[N, T+1, D]
    mask: np.ndarray  # bool[N, T+1, I]
    scores: np.ndarray  # float32[N, T, I] the policy's scores, masked with NEG
    action: np.ndarray  # int32[N, T]
    active: np.ndarray  # bool[N, T] the episode was still running at step k
    valid: np.ndarray  # bool[N, T] the chosen item was unlocked (else nothing was presented)
    correct: np.ndarray  # bool[N, T] recorded correct response
    observed: np.ndarray  # bool[N, T]
    response_time: np.ndarray  # float32[N, T] seconds
    t_presented: np.ndarray  # float32[N, T] day of the presentation (the env clock)
    t_after: np.ndarray  # float32[N, T] the env clock after the step (next decision time)
    history: Any = None  # History with leading axes [N, T]: what the policy saw at step k
    dropped: Any = None  # bool[N, T] the learner had dropped out after step k (engagement envs)
    mastered: Any = None  # bool[N, T] every skill had been (truly, latently) mastered by step k


@partial(jax.jit, static_argnums=(0, 1, 2))
def _record(env: PedagogyEnv, policy: Policy, n_steps: int, params: EnvParams, keys):
    def emit(s: Step) -> dict[str, Any]:
        v, info = s.view, s.info
        scores = policy_scores(policy, s.key, s.pstate, v, params, env)
        return dict(obs=v.obs, mask=v.action_mask, scores=jnp.where(v.action_mask, scores, NEG), action=s.action,
                    active=s.active, valid=info["valid_action"], correct=info["correct"], observed=info["observed"],
                    response_time=info["response_time"], t_presented=s.state.history.t, t_after=s.new_state.history.t,
                    history=s.state.history, dropped=s.new_state.dropped, mastered=s.new_state.mastered_at >= 0)

    def episode(key):
        state, out = play_episode(env, policy, params, key, n_steps, emit)
        out["obs"] = jnp.concatenate([out["obs"], env.observation(state, params)[None]])
        out["mask"] = jnp.concatenate([out["mask"], env.action_mask(state, params)[None]])
        return out

    return jax.vmap(episode)(keys)


def record_episodes(env: PedagogyEnv, params: EnvParams, policy: Policy, n_learners: int, n_steps: int,
                    seed: int = 0) -> Recording:
    out = _record(env, policy, n_steps, params, learner_keys(jax.random.PRNGKey(seed), n_learners))
    out = jax.device_get(out)
    history = out.pop("history")
    return Recording(**{k: np.asarray(v) for k, v in out.items()}, history=history)


def event_logs(rec: Recording, item_ids: tuple[str, ...] | list[str], learner_prefix: str = "L") -> list[list[dict[str, Any]]]:
    """The event log per learner: one event per presented item (steps where the episode was
    active and the item unlocked), timestamps in seconds since the learner started."""
    logs = []
    for n in range(rec.action.shape[0]):
        log = []
        for k in np.flatnonzero(rec.active[n] & rec.valid[n]):
            log.append({
                "learner_id": f"{learner_prefix}{n}",
                "item_id": item_ids[int(rec.action[n, k])],
                "correct": bool(rec.correct[n, k]) if rec.observed[n, k] else None,
                "response_time": float(rec.response_time[n, k]),
                "timestamp": float(rec.t_presented[n, k]) * SECONDS_PER_DAY,
            })
        logs.append(log)
    return logs


def decision_points(rec: Recording, n: int) -> list[tuple[int, float]]:
    """(number of events so far, decision time in seconds) for each observation of learner
    ``n`` that parity can be checked on: every active step, and the state after the last one."""
    if not np.all(rec.valid[n] | ~rec.active[n]):
        raise ValueError(f"learner {n}: a locked item was chosen; such steps are not in an event log")
    steps = np.flatnonzero(rec.active[n])
    points = [(int(j), float(rec.t_presented[n, k]) * SECONDS_PER_DAY) for j, k in enumerate(steps)]
    last = int(steps[-1]) if len(steps) else -1
    if last >= 0:
        points.append((len(steps), float(rec.t_after[n, last]) * SECONDS_PER_DAY))
    return points


def obs_index(rec: Recording, n: int) -> list[int]:
    """The step index of each of :func:`decision_points`' observations in ``rec.obs[n]``."""
    steps = np.flatnonzero(rec.active[n])
    return [int(k) for k in steps] + ([int(steps[-1]) + 1] if len(steps) else [])
