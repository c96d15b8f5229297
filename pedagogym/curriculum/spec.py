"""Curriculum specification: skills, prerequisite DAG, items (Q-matrix), designer order.

A :class:`Curriculum` is a frozen, validated, pure-Python description. Simulation code
uses :meth:`Curriculum.arrays`, a pytree of JAX arrays (:class:`CurriculumArrays`).
"""
from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array


class ItemKind(enum.IntEnum):
    """What an item is. The integer value is what ``CurriculumArrays.kind`` stores."""

    PRACTICE = 0
    HINT = 1
    WORKED_EXAMPLE = 2
    VIDEO = 3
    ASSESSMENT = 4

    @classmethod
    def from_name(cls, name: str) -> "ItemKind":
        return cls[name.upper().replace(" ", "_").replace("-", "_")]

    @property
    def label(self) -> str:
        return self.name.lower()


# Allowed ranges, shared by the loader's validation and the docs.
DIFFICULTY_RANGE = (-6.0, 6.0)  # IRT b, logit scale
DISCRIMINATION_RANGE = (0.05, 5.0)  # IRT a
PROBABILITY_RANGE = (0.0, 1.0)  # guess, slip: open interval in practice (see loader)


@dataclass(frozen=True)
class Skill:
    id: str
    name: str
    prerequisites: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    """One presentable piece of content.

    difficulty: IRT b on the logit scale (0 = average). discrimination: IRT a.
    guess / slip: optional per-item probabilities (None = the student model's default).
    duration: expected time on the item in seconds.
    """

    id: str
    skills: tuple[str, ...]
    difficulty: float = 0.0
    discrimination: float = 1.0
    guess: float | None = None
    slip: float | None = None
    kind: ItemKind = ItemKind.PRACTICE
    duration: float = 60.0


class CurriculumArrays(NamedTuple):
    """A curriculum as arrays; ``S`` skills, ``I`` items.

    q_matrix:       float32[I, S]  1 where item i exercises skill s.
    difficulty:     float32[I]     IRT b (logit scale).
    discrimination: float32[I]     IRT a (> 0).
    guess:          float32[I]     per-item guess probability, NaN = model default.
    slip:           float32[I]     per-item slip probability, NaN = model default.
    kind:           int32[I]       :class:`ItemKind` values.
    duration:       float32[I]     expected seconds on the item.
    prereq:         float32[S, S]  prereq[s, p] = 1 if skill p is a prerequisite of s.
    order:          int32[I]       the designer's order of item indices.
    """

    q_matrix: Array
    difficulty: Array
    discrimination: Array
    guess: Array
    slip: Array
    kind: Array
    duration: Array
    prereq: Array
    order: Array

    @property
    def n_items(self) -> int:
        return self.q_matrix.shape[0]

    @property
    def n_skills(self) -> int:
        return self.q_matrix.shape[1]


@dataclass(frozen=True)
class Curriculum:
    """Skills, prerequisite edges, items and (optionally) the designer's order.

    Construct through :func:`pedagogym.curriculum.load_curriculum` or
    :func:`pedagogym.curriculum.from_dict`, which validate; the constructor trusts its input.
    """

    name: str
    skills: tuple[Skill, ...]
    items: tuple[Item, ...]
    order: tuple[str, ...] = ()  # item ids; empty = derived (topological by skill)
    description: str = ""
    source: str = field(default="<memory>", compare=False)

    @property
    def n_skills(self) -> int:
        return len(self.skills)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def skill_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.skills)

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(i.id for i in self.items)

    def skill_index(self, skill_id: str) -> int:
        return self.skill_ids.index(skill_id)

    def item_index(self, item_id: str) -> int:
        return self.item_ids.index(item_id)

    def topological_skills(self) -> tuple[str, ...]:
        """Skill ids with every prerequisite before its dependants (stable: file order)."""
        done: list[str] = []
        remaining = list(self.skills)
        while remaining:
            for s in remaining:
                if all(p in done for p in s.prerequisites):
                    done.append(s.id)
                    remaining.remove(s)
                    break
            else:  # validation forbids cycles; guard against unvalidated input
                raise ValueError(f"curriculum {self.name!r}: prerequisite cycle among {[s.id for s in remaining]}")
        return tuple(done)

    def designer_order(self) -> tuple[str, ...]:
        """The designer's item order; if none was given, items grouped by skill in topological order."""
        if self.order:
            return self.order
        rank = {sid: r for r, sid in enumerate(self.topological_skills())}
        keyed = sorted(enumerate(self.items), key=lambda p: (max(rank[s] for s in p[1].skills), p[0]))
        return tuple(item.id for _, item in keyed)

    def arrays(self) -> CurriculumArrays:
        s_idx = {sid: k for k, sid in enumerate(self.skill_ids)}
        i_idx = {iid: k for k, iid in enumerate(self.item_ids)}
        q = np.zeros((self.n_items, self.n_skills), np.float32)
        for i, item in enumerate(self.items):
            for sid in item.skills:
                q[i, s_idx[sid]] = 1.0
        pre = np.zeros((self.n_skills, self.n_skills), np.float32)
        for s, skill in enumerate(self.skills):
            for pid in skill.prerequisites:
                pre[s, s_idx[pid]] = 1.0
        nan = float("nan")
        return CurriculumArrays(
            q_matrix=jnp.asarray(q),
            difficulty=jnp.asarray([it.difficulty for it in self.items], jnp.float32),
            discrimination=jnp.asarray([it.discrimination for it in self.items], jnp.float32),
            guess=jnp.asarray([nan if it.guess is None else it.guess for it in self.items], jnp.float32),
            slip=jnp.asarray([nan if it.slip is None else it.slip for it in self.items], jnp.float32),
            kind=jnp.asarray([int(it.kind) for it in self.items], jnp.int32),
            duration=jnp.asarray([it.duration for it in self.items], jnp.float32),
            prereq=jnp.asarray(pre),
            order=jnp.asarray([i_idx[i] for i in self.designer_order()], jnp.int32),
        )

    def to_dict(self) -> dict:
        """A plain dict in the TOML schema (round-trips through ``from_dict``)."""
        skills = [{"id": s.id, "name": s.name, **({"prerequisites": list(s.prerequisites)} if s.prerequisites else {})} for s in self.skills]
        items = []
        for it in self.items:
            d = {k: v for k, v in asdict(it).items() if v is not None}
            d["skills"] = list(it.skills)
            d["kind"] = it.kind.label
            items.append(d)
        out: dict = {"name": self.name, "skills": skills, "items": items}
        if self.description:
            out["description"] = self.description
        if self.order:
            out["order"] = list(self.order)
        return out

    def content_hash(self) -> str:
        """sha256 of the canonical JSON form; identifies a curriculum in manifests and bundles."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()
