"""What the early-warning model predicts: one outcome per learner-episode, in a registry.

Each target labels every decision of a simulated learner with the outcome of that learner's
whole episode (the env's horizon: ``horizon`` items, or fewer when the episode ends first).
Labels come from the simulator's latent state, which no platform sees; the predictor sees
only the observation the policy sees.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pedagogym.registry import Registry


@dataclass(frozen=True)
class Target:
    name: str
    definition: str
    label: Callable[[object], np.ndarray]  # Recording -> bool[N]: the outcome per learner

    def __call__(self, rec) -> np.ndarray:
        out = np.asarray(self.label(rec), bool)
        if out.shape != rec.action.shape[:1]:
            raise AssertionError(f"target {self.name}: labels of shape {out.shape} for {rec.action.shape[0]} learners")
        return out


def _dropped(rec) -> np.ndarray:
    return rec.dropped.any(axis=1)


def _not_mastered(rec) -> np.ndarray:
    return ~rec.mastered.any(axis=1)


TARGETS: Registry[Target] = Registry("warning_target")
TARGETS.register("dropout", Target(
    "dropout",
    "the learner quits (the engagement model's per-item dropout hazard) before the episode's horizon; an episode "
    "that ends by mastery or by reaching the horizon is not a dropout. Always 0 in envs without engagement.",
    _dropped))
TARGETS.register("not_mastered", Target(
    "not_mastered",
    "the learner has not mastered every skill by the end of the episode (the simulator's latent mastery >= the env's "
    "mastery_threshold on every skill at some step before the horizon -- the env's own termination-by-mastery rule, "
    "not the post-test). A learner who drops out first counts as not mastered.",
    _not_mastered))
