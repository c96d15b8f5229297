"""Populations: distributions over learner traits, with named subgroups.

A population is model-agnostic: it draws :class:`~pedagogym.student_models.base.Traits`
(prior knowledge, learning speed, retention, persistence, sessions per week), and each
student model maps traits onto its own parameters (``StudentModel.apply_traits``).
Sampling is a pure function of a key, so the same key always gives the same learner.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special  # noqa: F401
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.student_models.base import Traits

TRAIT_NAMES = ("prior", "speed", "memory", "persistence")


class PopulationError(PedagogymError):
    """A population definition is invalid; the message names the source and the key."""


@dataclass(frozen=True)
class Subgroup:
    """One named subgroup: a weight and, per trait, a normal (mean, sd) on the shift scale."""

    name: str
    weight: float = 1.0
    prior: tuple[float, float] = (0.0, 0.5)
    speed: tuple[float, float] = (0.0, 0.5)
    memory: tuple[float, float] = (0.0, 0.3)
    persistence: tuple[float, float] = (0.0, 0.5)
    sessions_per_week: float = 5.0


@dataclass(frozen=True)
class Population:
    name: str
    subgroups: tuple[Subgroup, ...]
    description: str = ""
    source: str = field(default="<builtin>", compare=False)
    fitted_models: tuple[str, ...] = ()  # models with fitted parameters in the file ([model.<name>])

    @property
    def subgroup_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.subgroups)

    def arrays(self) -> "PopulationArrays":
        w = jnp.asarray([g.weight for g in self.subgroups], jnp.float32)
        return PopulationArrays(
            weights=w / jnp.sum(w),
            means=jnp.asarray([[getattr(g, t)[0] for t in TRAIT_NAMES] for g in self.subgroups], jnp.float32),
            sds=jnp.asarray([[getattr(g, t)[1] for t in TRAIT_NAMES] for g in self.subgroups], jnp.float32),
            sessions_per_week=jnp.asarray([g.sessions_per_week for g in self.subgroups], jnp.float32),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "subgroups": [
                {"name": g.name, "weight": g.weight, "sessions_per_week": g.sessions_per_week,
                 **{t: list(getattr(g, t)) for t in TRAIT_NAMES}}
                for g in self.subgroups
            ],
        }


class PopulationArrays(NamedTuple):
    """A population as arrays (``G`` subgroups, 4 traits in ``TRAIT_NAMES`` order)."""

    weights: Array  # float32[G], sums to 1
    means: Array  # float32[G, 4]
    sds: Array  # float32[G, 4]
    sessions_per_week: Array  # float32[G]


def sample_traits(key: Array, pop: PopulationArrays) -> Traits:
    """Draw one learner's traits. ``vmap`` over keys for a cohort."""
    u = jnp.clip(jax.random.uniform(key, (1 + len(TRAIT_NAMES),)), 1e-7, 1.0 - 1e-7)  # one draw, no splits
    g = jnp.minimum(jnp.searchsorted(jnp.cumsum(pop.weights), u[0], side="right"), pop.weights.shape[0] - 1)
    z = pop.means[g] + pop.sds[g] * jax.scipy.special.ndtri(u[1:])
    return Traits(prior=z[0], speed=z[1], memory=z[2], persistence=z[3],
                  sessions_per_week=pop.sessions_per_week[g], subgroup=g.astype(jnp.int32))


# ---- loading ------------------------------------------------------------------------
def _pair(value: Any, where: str) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value), 0.0)
    if isinstance(value, dict) and set(value) <= {"mean", "sd"}:
        value = [value.get("mean", 0.0), value.get("sd", 0.0)]
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        mean, sd = float(value[0]), float(value[1])
        if not (math.isfinite(mean) and math.isfinite(sd)) or sd < 0:
            raise PopulationError(f"{where}: expected a finite mean and an sd >= 0, got {value!r}")
        return (mean, sd)
    raise PopulationError(f"{where}: expected a number, [mean, sd] or {{mean=, sd=}}, got {value!r}")


def population_from_dict(data: dict[str, Any], source: str = "<dict>") -> Population:
    """Build a validated population from the TOML schema (see README, 'Populations')."""
    if not isinstance(data, dict):
        raise PopulationError(f"{source}: a population must be a table")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise PopulationError(f"{source}: key 'name' must be a non-empty string")
    groups_raw = data.get("subgroups")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise PopulationError(f"{source}: key 'subgroups' must be a non-empty array of tables ([[subgroups]])")
    known = {"name", "weight", "sessions_per_week", *TRAIT_NAMES}
    groups, seen = [], set()
    for k, g in enumerate(groups_raw):
        where = f"{source}: subgroups[{k}]"
        if not isinstance(g, dict):
            raise PopulationError(f"{where}: must be a table")
        unknown = set(g) - known
        if unknown:
            raise PopulationError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}")
        gname = g.get("name")
        if not isinstance(gname, str) or not gname:
            raise PopulationError(f"{where}.name: must be a non-empty string")
        if gname in seen:
            raise PopulationError(f"{where}.name: duplicate subgroup name {gname!r}")
        seen.add(gname)
        weight = g.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight > 0 or not math.isfinite(weight):
            raise PopulationError(f"{where}.weight: must be a positive number, got {weight!r}")
        spw = g.get("sessions_per_week", 5.0)
        if not isinstance(spw, (int, float)) or isinstance(spw, bool) or not 0 < spw <= 50:
            raise PopulationError(f"{where}.sessions_per_week: must be in (0, 50], got {spw!r}")
        traits = {t: _pair(g[t], f"{where}.{t}") for t in TRAIT_NAMES if t in g}
        groups.append(Subgroup(name=gname, weight=float(weight), sessions_per_week=float(spw), **traits))
    unknown_top = sorted(set(data) - {"name", "description", "subgroups", "model", "fit"})
    if unknown_top:
        raise PopulationError(f"{source}: unknown key(s) {unknown_top}; allowed: name, description, subgroups, model, fit")
    models = data.get("model", {})
    if not isinstance(models, dict):
        raise PopulationError(f"{source}: [model.<name>] must be tables of fitted parameters")
    return Population(name=name, subgroups=tuple(groups), description=str(data.get("description", "")), source=source,
                      fitted_models=tuple(models))


def load_population(path: str | Path) -> Population:
    from pedagogym.tomlfile import read_toml

    data = read_toml(path, PopulationError, "population file")
    return population_from_dict(data, source=str(path))


# ---- built-ins ----------------------------------------------------------------------
BUILTIN_POPULATIONS: tuple[Population, ...] = (
    Population("homogeneous", (Subgroup("all", prior=(0.0, 0.0), speed=(0.0, 0.0), memory=(0.0, 0.0), persistence=(0.0, 0.0)),),
               "identical learners at the model's default parameters"),
    Population("typical", (Subgroup("all"),), "one group with moderate spread in every trait"),
    Population("prior_knowledge", (
        Subgroup("low_prior", prior=(-1.5, 0.5), speed=(-0.3, 0.5)),
        Subgroup("high_prior", prior=(1.0, 0.5), speed=(0.3, 0.5)),
    ), "heterogeneous: half the learners start with little prior knowledge and learn slower"),
    Population("schedule", (
        Subgroup("daily", sessions_per_week=7.0),
        Subgroup("weekly", sessions_per_week=1.5, persistence=(-0.5, 0.5)),
    ), "same abilities, different study schedules: daily vs. about weekly sessions"),
    Population("heterogeneous", (
        Subgroup("low_prior_daily", weight=1.0, prior=(-1.5, 0.6), speed=(-0.4, 0.6), sessions_per_week=6.0),
        Subgroup("low_prior_weekly", weight=1.0, prior=(-1.5, 0.6), speed=(-0.4, 0.6), memory=(-0.3, 0.4),
                 persistence=(-0.5, 0.6), sessions_per_week=2.0),
        Subgroup("high_prior_daily", weight=1.0, prior=(1.0, 0.6), speed=(0.4, 0.6), sessions_per_week=6.0),
        Subgroup("high_prior_weekly", weight=1.0, prior=(1.0, 0.6), speed=(0.4, 0.6), memory=(-0.3, 0.4),
                 persistence=(-0.5, 0.6), sessions_per_week=2.0),
    ), "four subgroups crossing prior knowledge (low/high) with schedule (daily/weekly)"),
    Population("test_takers", (Subgroup("all", prior=(0.0, 1.0)),),
               "adaptive testing: prior-knowledge trait ~ N(0, 1) (the ability of `irt3pl_static`), "
               "matching the EAP prior"),
)
