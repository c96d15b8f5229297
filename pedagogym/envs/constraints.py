"""Teacher constraints at decision time, acting through the action mask.

A teacher can, for one learner:

* ``pin``: present this item next (the mask keeps only it);
* ``forbid_items`` / ``forbid_skills``: never present these items / any item exercising
  these skills;
* ``review_skills``: present only items exercising at least one of these skills;
* ``daily_minutes``: cap the time on task per day.

The first four restrict :meth:`pedagogym.envs.core.PedagogyEnv.action_mask`, so every
policy and agent, which choose among masked items, honours them. A constraint set that
leaves no available item raises :class:`ConstraintSpecError` when it is built
(:func:`build_constraints`): inside a jitted step nothing can raise, so infeasible sets are
refused before they reach the env. When the constraints leave items but prerequisite locks
hide all of them, the mask falls back to the constrained items ignoring the locks (as the
env already falls back to every available item when everything is locked): a pinned item is
presented even when it is locked, the teacher overriding the prerequisites. The deployed
runtime (:meth:`pedagogym.deploy.recommender.Recommender.constrain`, and the Node client)
applies this same rule; ``tests/test_constraints.py`` checks that the two agree.

The daily cap cannot act through the mask alone (a mask is never empty): once the time on
task of the current day reaches the cap, the env ends the session after the item in
progress, and the learner comes back at the start of the next day at the earliest. Days in
the simulator are ``floor(t)`` on its clock (day 0 starts at the learner's first item; the
simulator has no time of day). The deployed runtime (:mod:`pedagogym.deploy.recommender`)
applies the same rules to an event log, with UTC calendar days for the cap; it raises where the
simulator refuses a set at build time (no available item allowed).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import Curriculum, CurriculumArrays


class ConstraintSpecError(PedagogymError):
    """A constraint set, built for the simulator, that names unknown items or skills or leaves no
    item to present. (The deployed runtime's request-time error is
    :class:`pedagogym.deploy.recommender.ConstraintError`, a ``ValueError`` of its own: the runtime
    imports nothing from pedagogym.)"""


class Constraints(NamedTuple):
    """A teacher's constraints for one learner (a pytree; batch it for a cohort).

    pin:           int32[]   item to present next (-1: none)
    forbid_items:  bool[I]   items never to present
    forbid_skills: bool[S]   skills none of whose items may be presented
    review_skills: bool[S]   if any: only items exercising one of these skills
    daily_cap_s:   float32[] seconds on task per day (inf: no cap)
    """

    pin: Array
    forbid_items: Array
    forbid_skills: Array
    review_skills: Array
    daily_cap_s: Array

    @classmethod
    def none(cls, n_items: int, n_skills: int) -> "Constraints":
        return cls(pin=jnp.asarray(-1, jnp.int32), forbid_items=jnp.zeros((n_items,), bool),
                   forbid_skills=jnp.zeros((n_skills,), bool), review_skills=jnp.zeros((n_skills,), bool),
                   daily_cap_s=jnp.asarray(jnp.inf, jnp.float32))


def allowed_items(c: Constraints, curr: CurriculumArrays) -> Array:
    """bool[I] items the constraints allow (before availability and prerequisite locks)."""
    q = curr.q_matrix > 0
    ok = ~c.forbid_items & ~jnp.any(q & c.forbid_skills[None, :], axis=1)
    review = jnp.any(q & c.review_skills[None, :], axis=1)
    ok = ok & jnp.where(jnp.any(c.review_skills), review, True)
    pinned = jnp.arange(curr.n_items) == c.pin
    return jnp.where(c.pin >= 0, pinned & ok, ok)


def build_constraints(curriculum: Curriculum, *, pin: str | None = None, forbid_items: Iterable[str] = (),
                      forbid_skills: Iterable[str] = (), review_skills: Iterable[str] = (),
                      daily_minutes: float | None = None, item_available: np.ndarray | None = None) -> Constraints:
    """Validated :class:`Constraints` from item and skill ids; raises :class:`ConstraintSpecError`
    for unknown ids, a bad cap, or a set that leaves no available item."""
    items, skills = curriculum.item_ids, curriculum.skill_ids

    def index(ids: Iterable[str], known: tuple[str, ...], what: str, key: str) -> list[int]:
        ids = [ids] if isinstance(ids, str) else list(ids)
        bad = [i for i in ids if i not in known]
        if bad:
            raise ConstraintSpecError(f"constraints.{key}: unknown {what}(s) {bad}")
        return [known.index(i) for i in ids]

    def onehot(idx: list[int], n: int) -> np.ndarray:
        out = np.zeros(n, bool)
        out[idx] = True
        return out

    if daily_minutes is not None and not (isinstance(daily_minutes, (int, float)) and not isinstance(daily_minutes, bool)
                                          and daily_minutes > 0 and math.isfinite(daily_minutes)):
        raise ConstraintSpecError(f"constraints.daily_minutes: expected a positive number of minutes, got {daily_minutes!r}")
    c = Constraints(
        pin=jnp.asarray(index([pin], items, "item", "pin")[0] if pin is not None else -1, jnp.int32),
        forbid_items=jnp.asarray(onehot(index(forbid_items, items, "item", "forbid_items"), len(items))),
        forbid_skills=jnp.asarray(onehot(index(forbid_skills, skills, "skill", "forbid_skills"), len(skills))),
        review_skills=jnp.asarray(onehot(index(review_skills, skills, "skill", "review_skills"), len(skills))),
        daily_cap_s=jnp.asarray(math.inf if daily_minutes is None else 60.0 * daily_minutes, jnp.float32),
    )
    available = np.ones(len(items), bool) if item_available is None else np.asarray(item_available, bool)
    if not np.any(np.asarray(allowed_items(c, curriculum.arrays())) & available):
        raise ConstraintSpecError("constraints: no item satisfies every constraint (pin, forbidden items/skills, "
                              "review skills) among the available items")
    return c
