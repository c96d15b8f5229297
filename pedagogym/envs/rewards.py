"""Reward strategies. Each sees the learner's true latent state through the learner's
pure functions (the simulator knows it; the policy does not) and returns float32[].
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import jax.numpy as jnp
from jax import Array

from pedagogym.registry import StaticArg

if TYPE_CHECKING:
    from pedagogym.envs.core import EnvParams, PedagogyEnv


class Outcome(NamedTuple):
    """What a reward can look at for one transition (all float32[] / bool[])."""

    mastery_before: Array  # mean true mastery before the step
    mastery_after: Array  # mean true mastery after the step
    all_mastered: Array  # bool: every skill mastered after the step
    done: Array  # bool: the episode ends with this step
    dropped: Array  # bool: the learner quit with this step
    final_score: Array  # post-test score (skill models) / mean recall (memory) at the test time
    final_log_recall: Array  # mean log P(correct) at the test time


class Reward(StaticArg, ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    needs_final: ClassVar[bool] = False  # reads final_score / final_log_recall

    @abstractmethod
    def __call__(self, o: Outcome, params: "EnvParams") -> Array:
        """float32[] the reward of one transition."""


class MasteryGain(Reward):
    name = "mastery_gain"
    description = "change in mean true mastery per step (dense)"

    def __call__(self, o: Outcome, params: "EnvParams") -> Array:
        return o.mastery_after - o.mastery_before


class PostTest(Reward):
    name = "posttest"
    description = "expected post-test score when the episode ends (sparse)"
    needs_final = True

    def __call__(self, o: Outcome, params: "EnvParams") -> Array:
        return jnp.where(o.done, o.final_score, 0.0)


class Recall(PostTest):
    """The post-test reward under its memory-model name: a memory model's post-test score is the
    mean recall probability of every item."""

    name = "recall"
    description = "mean recall probability at the horizon (+ test delay), Reddy et al. 2017 (sparse)"


class LogRecall(Reward):
    name = "log_recall"
    description = "mean log recall probability at the horizon, Reddy et al. 2017's log-likelihood reward (sparse)"
    needs_final = True

    def __call__(self, o: Outcome, params: "EnvParams") -> Array:
        return jnp.where(o.done, o.final_log_recall, 0.0)


class TimeToMastery(Reward):
    name = "time_to_mastery"
    description = "-1 per item until every skill is mastered (minimise steps to mastery)"

    def __call__(self, o: Outcome, params: "EnvParams") -> Array:
        return jnp.where(o.all_mastered, 0.0, -1.0)


class EngagedMasteryGain(Reward):
    name = "engaged_mastery_gain"
    description = "mastery gain minus a penalty when the learner drops out (engagement-aware)"

    def __call__(self, o: Outcome, params: "EnvParams") -> Array:
        return o.mastery_after - o.mastery_before - params.dropout_penalty * o.dropped


class EngagedPostTest(Reward):
    name = "engaged_posttest"
    description = "post-test score at the end minus a penalty if the learner dropped out (engagement-aware)"
    needs_final = True

    def __call__(self, o: Outcome, params: "EnvParams") -> Array:
        return jnp.where(o.done, o.final_score - params.dropout_penalty * o.dropped, 0.0)


ALL_REWARDS = (MasteryGain(), PostTest(), Recall(), LogRecall(), TimeToMastery(), EngagedMasteryGain(), EngagedPostTest())


# ---- per-step mean recall (Reddy, Levine & Dragan 2017) ------------------------------------
LOG_RECALL_EPS = 1e-9  # the reference simulator's ``_recall_log_likelihoods(eps=1e-9)``


def mean_recall(p: Array) -> Array:
    """float32[] Reddy et al.'s likelihood reward ("-L"): the mean over items of recall ``p`` (float32[I])."""
    return jnp.mean(p, axis=-1)


def mean_log_recall(p: Array, eps: float = LOG_RECALL_EPS) -> Array:
    """float32[] Reddy et al.'s log-likelihood reward ("-LL"): the mean over items of ``log(eps + p)``."""
    return jnp.mean(jnp.log(eps + p), axis=-1)


STEP_RECALL_REWARDS = {"L": mean_recall, "LL": mean_log_recall}
