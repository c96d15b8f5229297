"""Simulated populations for the early-warning model: learners taught by several policies,
their observation at every decision, and the outcome of their episode.

Every decision a policy takes (every step at which the episode is still running) is one
example: the observation the policy saw before choosing (``Recording.obs``), labelled with the
outcomes of that learner's whole episode (:mod:`pedagogym.warning.targets`). Learners are the
unit of the train / held-out split: all decisions of a learner fall on the same side.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import numpy as np

from pedagogym.envs.config import BuiltEnv
from pedagogym.policies.base import Policy
from pedagogym.warning.model import Summary, group_slices, summarize_jax
from pedagogym.warning.targets import Target


@dataclass(frozen=True)
class Decisions:
    """M decisions of simulated learners (numpy)."""

    summaries: np.ndarray  # float32[M, K] the model's summary features of each observation
    labels: np.ndarray  # bool[M, T] the learner's outcomes (one column per target)
    learner: np.ndarray  # int64[M] learner id (unique across policies)
    policy: np.ndarray  # int64[M] index into ``policy_names``
    events: np.ndarray  # int64[M] decisions the learner had already been through (0 = the first)
    progress: np.ndarray  # float32[M] the 'progress' feature (events / horizon): the survival-time baseline
    policy_names: tuple[str, ...]
    target_names: tuple[str, ...]
    obs_sample: np.ndarray  # float32[m, D] raw observations of some decisions, spread evenly (ONNX parity checks)
    obs_sample_index: np.ndarray  # int64[m] their rows in this table

    @property
    def n_learners(self) -> int:
        return len(np.unique(self.learner))

    def select(self, rows: np.ndarray) -> "Decisions":
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        where = {int(r): k for k, r in enumerate(rows)}
        keep = [k for k, r in enumerate(self.obs_sample_index) if int(r) in where]
        return Decisions(self.summaries[rows], self.labels[rows], self.learner[rows], self.policy[rows], self.events[rows],
                         self.progress[rows], self.policy_names, self.target_names, self.obs_sample[keep],
                         np.asarray([where[int(self.obs_sample_index[k])] for k in keep], np.int64))


@partial(jax.jit, static_argnums=(0, 1))
def _summaries(summaries: tuple[Summary, ...], names: tuple[str, ...], obs):
    return summarize_jax(summaries, group_slices(names), obs)


def policy_seed(seed: int, index: int) -> int:
    """The recording seed of the ``index``-th policy of a population drawn with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] & 0x7FFFFFFF)


def simulate(built: BuiltEnv, policies: tuple[tuple[str, Policy], ...], n_learners: int, targets: tuple[Target, ...],
             summaries: tuple[Summary, ...], seed: int, keep_obs: int = 2048, progress: bool = False) -> Decisions:
    """``n_learners`` learners per policy over the env's whole horizon; learner ``j`` of policy
    ``p`` has id ``p * n_learners + j`` (so ids ``< n_train`` within a policy can be the training set)."""
    from pedagogym.export.record import record_episodes

    if n_learners < 1:
        raise ValueError(f"learners per policy must be >= 1, got {n_learners}")
    names = tuple(built.feature_names)
    prog_col = names.index("progress")
    horizon = int(built.config.horizon)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("summaries", "labels", "learner", "policy", "events", "progress")}
    sample: list[np.ndarray] = []
    sample_index: list[np.ndarray] = []
    offset = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(policies) * n_learners, desc=f"simulating {built.config.source}", unit="learner",
                   dynamic_ncols=True)
    for p, (_, policy) in enumerate(policies):
        rec = record_episodes(built.env, built.params, policy, n_learners, horizon, seed=policy_seed(seed, p))
        labels = np.stack([t(rec) for t in targets], axis=1)  # bool[N, T]
        active = rec.active  # bool[N, T]: a decision was taken at this step
        obs = rec.obs[:, :-1][active]  # float32[M_p, D] what the policy saw before each decision
        summ = np.asarray(_summaries(summaries, names, obs))
        n_idx, _ = np.nonzero(active)
        events = (np.cumsum(active, axis=1) - 1)[active]
        parts["summaries"].append(summ.astype(np.float32))
        parts["labels"].append(labels[n_idx])
        parts["learner"].append((p * n_learners + n_idx).astype(np.int64))
        parts["policy"].append(np.full(len(n_idx), p, np.int64))
        parts["events"].append(events.astype(np.int64))
        parts["progress"].append(obs[:, prog_col].astype(np.float32))
        take = np.unique(np.linspace(0, len(n_idx) - 1, min(len(n_idx), keep_obs // len(policies))).astype(np.int64))
        sample.append(obs[take])  # evenly spread over the policy's learners (train and held-out alike)
        sample_index.append(offset + take)
        offset += len(n_idx)
        if bar is not None:
            bar.update(n_learners)
    if bar is not None:
        bar.close()
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return Decisions(**cat, policy_names=tuple(name for name, _ in policies), target_names=tuple(t.name for t in targets),
                     obs_sample=np.concatenate(sample) if sample else np.zeros((0, len(names)), np.float32),
                     obs_sample_index=np.concatenate(sample_index) if sample_index else np.zeros(0, np.int64))
