"""The stress-test settings (frozen, validated) and their resolution into typed objects.

Everything a run needs is resolved and checked in :func:`prepare` -- the curriculum first
(:class:`~pedagogym.curriculum.CurriculumError`), then the optional true curriculum, the
population, the policy and the student models -- before any simulation starts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import jax.numpy as jnp

from pedagogym.errors import PedagogymError
from pedagogym.curriculum import Curriculum, CurriculumError, resolve_curriculum
from pedagogym.envs.config import BuiltEnv, EnvConfig, build
from pedagogym.envs.core import EnvParams
from pedagogym.policies.base import Policy
from pedagogym.student_models.population import Population


class StressConfigError(PedagogymError):
    """A bad stress-test setting; the message names the setting and the problem."""


@dataclass(frozen=True)
class StressConfig:
    """One stress test. ``curriculum`` is the designer's file (a path or a built-in name);
    ``true_curriculum`` optionally gives the simulated learners a different truth (same skill
    and item ids; other prerequisites or item parameters), e.g. to check whether the report
    finds a prerequisite the designer's file forgot."""

    curriculum: str
    true_curriculum: str | None = None
    population: str = "heterogeneous"
    policy: str = "designer"
    models: tuple[str, ...] = ("bkt",)
    learners: int = 10_000
    horizon: int = 200
    seed: int = 0
    engagement: bool = True  # engagement dynamics and dropout
    session_minutes: float = 20.0
    mastery_threshold: float = 0.95
    sensitivity: bool = True  # the one-at-a-time what-if runs
    whatif_learners: int | None = None  # learners per what-if variant (None: automatic)
    easier_by: float = 1.0  # logits an item is made easier by in the what-ifs

    def validate(self) -> None:
        def check(ok: bool, key: str, problem: str) -> None:
            if not ok:
                raise StressConfigError(f"stress: {key}: {problem}, got {getattr(self, key)!r}")

        check(2 <= self.learners <= 100_000_000, "learners", "must be from 2 to 100,000,000")
        check(1 <= self.horizon <= 1_000_000, "horizon", "must be a positive number of items (at most 1,000,000)")
        check(len(self.models) >= 1, "models", "needs at least one student model")
        check(len(set(self.models)) == len(self.models), "models", "lists a model twice")
        check(self.whatif_learners is None or 2 <= self.whatif_learners <= 100_000_000, "whatif_learners",
              "must be from 2 to 100,000,000")
        check(0.0 < self.mastery_threshold <= 1.0, "mastery_threshold", "must be in (0, 1]")
        check(0.0 < self.session_minutes <= 1440.0, "session_minutes", "must be in (0, 1440]")
        check(self.easier_by > 0, "easier_by", "must be positive")


@dataclass(frozen=True)
class Prepared:
    """A validated stress test: every name resolved.

    designer: the designer's curriculum (with an explicit order); truth: what the simulated
    learners obey (the designer's file itself unless a true curriculum was given), with the
    designer's skill and item order and the designer's item order. envs: one per model."""

    config: StressConfig
    designer: Curriculum
    truth: Curriculum
    population: Population
    policy: Policy
    envs: tuple[BuiltEnv, ...] = field(repr=False)

    @property
    def has_truth(self) -> bool:
        return self.truth is not self.designer


def with_explicit_order(c: Curriculum) -> Curriculum:
    return c if c.order else dataclasses.replace(c, order=c.designer_order())


def align_truth(designer: Curriculum, truth: Curriculum) -> Curriculum:
    """``truth`` with the designer's skill order, item order and teaching order; its own
    prerequisites and item parameters. Raises :class:`CurriculumError` if ids differ."""
    src = truth.source
    for what, mine, theirs in (("skill", designer.skill_ids, truth.skill_ids), ("item", designer.item_ids, truth.item_ids)):
        if set(mine) != set(theirs):
            only_d = sorted(set(mine) - set(theirs))
            only_t = sorted(set(theirs) - set(mine))
            raise CurriculumError(src, f"{what}s", f"the true curriculum must have the designer's {what} ids "
                                  f"({designer.source}); only in the designer's file: {only_d}, only here: {only_t}")
    skills = {s.id: s for s in truth.skills}
    items = {i.id: i for i in truth.items}
    return dataclasses.replace(truth, skills=tuple(skills[s] for s in designer.skill_ids),
                               items=tuple(items[i] for i in designer.item_ids), order=designer.designer_order())


def curriculum_params(params: EnvParams, curriculum: Curriculum) -> EnvParams:
    """``params`` with ``curriculum``'s arrays (per-skill / per-item fields resized; no teacher
    constraints, which name the designer's items)."""
    from pedagogym.envs.constraints import Constraints

    n_s = curriculum.n_skills
    return params._replace(
        curriculum=curriculum.arrays(),
        constraints=Constraints.none(curriculum.n_items, n_s),
        item_available=jnp.ones((curriculum.n_items,), bool),
        observer=type(params.observer)(*(jnp.full((n_s,), x[0], x.dtype) for x in params.observer)),
    )


def prepare(config: StressConfig) -> Prepared:
    """Validate and resolve everything, in the order a user should hear about problems."""
    from pedagogym.envs.config import resolve_population
    from pedagogym.policies import POLICIES
    from pedagogym.student_models import STUDENT_MODELS

    designer = with_explicit_order(resolve_curriculum(config.curriculum))
    truth = designer
    if config.true_curriculum is not None:
        truth = align_truth(designer, resolve_curriculum(config.true_curriculum))
    config.validate()
    population = resolve_population(config.population)
    policy = POLICIES.get(config.policy)
    for m in config.models:
        STUDENT_MODELS.get(m)
    envs = []
    for m in config.models:
        env_cfg = EnvConfig.from_dict(dict(
            curriculum=str(config.curriculum), model=m, population=config.population, reward="mastery_gain",
            horizon=config.horizon, session_minutes=config.session_minutes, engagement=config.engagement,
            mastery_threshold=config.mastery_threshold, prerequisites=True), source="pedagogym stress")
        envs.append(build(env_cfg))
    return Prepared(config=config, designer=designer, truth=truth, population=population, policy=policy,
                    envs=tuple(envs))
