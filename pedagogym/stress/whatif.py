"""Sensitivity: one-at-a-time what-if changes to the curriculum, each simulated on the same
learners (common random numbers) and compared, learner by learner, with the unchanged one.

A :class:`Variant` is a pure ``Curriculum -> Curriculum`` change made with
``dataclasses.replace``; its arrays are rebuilt with ``Curriculum.arrays()``. Changes:

- ``remove_item``: drop an item from the items and the order (not the only item of a skill);
- ``easier_item``: an item ``easier_by`` logits easier (IRT b; BKT guess/slip follow b);
- ``remove_edge``: drop one declared prerequisite edge ``p -> s``;
- ``move_earlier``: swap a block of the designer's order (consecutive items of one skill)
  with the block before it.

The same change is applied to the designer's file (what the policy sees) and to the true
curriculum when one is given (what the learners obey), matching by ids. Variants with the
same array shapes run together in one jitted, ``vmap``-ed call.
"""
from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import Array

from pedagogym.curriculum.spec import DIFFICULTY_RANGE, Curriculum
from pedagogym.envs.core import EnvParams
from pedagogym.stress.config import curriculum_params
from pedagogym.stress.rollout import Outcomes

KINDS = {
    "remove_item": "remove the item",
    "easier_item": "make the item easier",
    "remove_edge": "drop the prerequisite edge",
    "move_earlier": "teach the block one block earlier",
}


@dataclass(frozen=True)
class Variant:
    kind: str  # a key of KINDS; "baseline" for the unchanged curriculum
    target: str  # item id, "p -> s" edge, or skill of the moved block
    description: str  # plain words for the report
    change: Callable[[Curriculum], Curriculum] = field(compare=False, repr=False)

    def apply(self, c: Curriculum) -> Curriculum:
        return self.change(c)


BASELINE = Variant("baseline", "-", "the curriculum as designed", lambda c: c)


def _remove_item(item_id: str) -> Callable[[Curriculum], Curriculum]:
    def change(c: Curriculum) -> Curriculum:
        return dataclasses.replace(c, items=tuple(i for i in c.items if i.id != item_id),
                                   order=tuple(i for i in c.designer_order() if i != item_id))
    return change


def _easier(item_id: str, by: float) -> Callable[[Curriculum], Curriculum]:
    lo = DIFFICULTY_RANGE[0]

    def change(c: Curriculum) -> Curriculum:
        items = tuple(dataclasses.replace(i, difficulty=max(lo, i.difficulty - by)) if i.id == item_id else i
                      for i in c.items)
        return dataclasses.replace(c, items=items)
    return change


def _remove_edge(skill: str, prereq: str) -> Callable[[Curriculum], Curriculum]:
    def change(c: Curriculum) -> Curriculum:
        skills = tuple(dataclasses.replace(s, prerequisites=tuple(p for p in s.prerequisites if p != prereq))
                       if s.id == skill else s for s in c.skills)
        return dataclasses.replace(c, skills=skills)
    return change


def order_blocks(c: Curriculum) -> list[tuple[str, tuple[str, ...]]]:
    """The designer's order cut into blocks: maximal runs of items whose first skill is the same."""
    first_skill = {i.id: i.skills[0] for i in c.items}
    blocks: list[tuple[str, list[str]]] = []
    for iid in c.designer_order():
        s = first_skill[iid]
        if blocks and blocks[-1][0] == s:
            blocks[-1][1].append(iid)
        else:
            blocks.append((s, [iid]))
    return [(s, tuple(ids)) for s, ids in blocks]


def _move_earlier(k: int) -> Callable[[Curriculum], Curriculum]:
    def change(c: Curriculum) -> Curriculum:
        blocks = [ids for _, ids in order_blocks(c)]
        blocks[k - 1], blocks[k] = blocks[k], blocks[k - 1]
        return dataclasses.replace(c, order=tuple(i for b in blocks for i in b))
    return change


def variants(c: Curriculum, easier_by: float = 1.0) -> list[Variant]:
    """Every one-at-a-time change of ``c`` (the baseline first)."""
    out = [BASELINE]
    for s in c.skills:
        for p in s.prerequisites:
            out.append(Variant("remove_edge", f"{p} -> {s.id}", f"drop the prerequisite edge {p} -> {s.id}",
                               _remove_edge(s.id, p)))
    blocks = order_blocks(c)
    for k in range(1, len(blocks)):
        skill, ids = blocks[k]
        what = ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}"
        out.append(Variant("move_earlier", f"{skill} block ({what})",
                           f"teach the {skill} block ({what}) before the {blocks[k - 1][0]} block", _move_earlier(k)))
    n_items_of = {s.id: sum(s.id in i.skills for i in c.items) for s in c.skills}
    for it in c.items:
        if it.difficulty > DIFFICULTY_RANGE[0] + 1e-9:
            out.append(Variant("easier_item", it.id, f"make item {it.id} {easier_by:g} logit easier "
                               f"(difficulty {it.difficulty:+.1f} -> {max(DIFFICULTY_RANGE[0], it.difficulty - easier_by):+.1f})",
                               _easier(it.id, easier_by)))
        if all(n_items_of[s] > 1 for s in it.skills):
            out.append(Variant("remove_item", it.id, f"remove item {it.id}", _remove_item(it.id)))
    return out


def stacked_params(base: EnvParams, curricula: list[Curriculum]) -> EnvParams:
    """``base`` with each curriculum's arrays, stacked along a leading variant axis (same shapes)."""
    arrays = [c.arrays() for c in curricula]
    curr = type(arrays[0])(*(jnp.asarray(np.stack([np.asarray(a[k]) for a in arrays]))
                             for k in range(len(arrays[0]))))
    one = curriculum_params(base, curricula[0])
    v = len(curricula)
    return jax.tree.map(lambda x: jnp.asarray(np.broadcast_to(np.asarray(x), (v,) + np.shape(x))), one)._replace(
        curriculum=curr)


@dataclass
class Group:
    """Variants whose arrays have the same shapes: they run in one call."""

    variants: list[Variant]
    sim: EnvParams  # stacked, leading axis V
    plan: EnvParams

    def __len__(self) -> int:
        return len(self.variants)

    def take(self, idx: np.ndarray) -> tuple[EnvParams, EnvParams]:
        """The params of variants ``idx`` (int[V'], repeats allowed), stacked in that order."""
        pick = lambda p: jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[idx]), p)  # noqa: E731
        sim = pick(self.sim)
        return sim, (sim if self.plan is self.sim else pick(self.plan))


def groups(base: EnvParams, designer: Curriculum, truth: Curriculum, vs: list[Variant]) -> list[Group]:
    """Variant params, grouped by shape; the baseline's group first."""
    by_shape: dict[tuple[int, int], tuple[list[Variant], list[Curriculum], list[Curriculum]]] = {}
    for v in vs:
        d = v.apply(designer)
        t = d if truth is designer else v.apply(truth)
        g = by_shape.setdefault((d.n_items, d.n_skills), ([], [], []))
        g[0].append(v)
        g[1].append(t)
        g[2].append(d)
    out = []
    for vv, ts, ds in by_shape.values():
        sim = stacked_params(base, ts)
        out.append(Group(vv, sim, sim if truth is designer else stacked_params(base, ds)))
    return out


def block_keys(key: Array, m: int, blocks: np.ndarray) -> Array:
    """uint32[V, M, 2]: for slot v, learners ``blocks[v] * m ... + m - 1`` of the main run
    (learner i's key is ``fold_in(key, i)``, as in :func:`pedagogym.policies.rollout.learner_keys`)."""
    idx = jnp.asarray(np.asarray(blocks)[:, None] * m + np.arange(m)[None, :], jnp.uint32)
    return jax.vmap(jax.vmap(lambda i: jax.random.fold_in(key, i)))(idx)


def learners_per_variant(n_learners: int, n_variants: int, override: int | None) -> int:
    """Screening learners per variant: about half the main run's learner-episodes in all (the
    confirmation stage re-runs as many, so the what-ifs cost about one main run), 32 to 500 each."""
    if override is not None:
        return override
    return int(min(500, max(32, round(n_learners / (2 * max(n_variants, 1))))))


ALPHA = 0.05  # family-wise error rate of each stage's significance tests (Bonferroni)
MIN_COMPLETED = 0.01  # a change in completion smaller than 1 point is not reported as significant
MIN_SKILL_TIME = 0.1  # ... nor a change smaller than 0.1 item in the mean items to master a skill

METRICS = ("completed", "skill_time", "time_to_complete", "skills_mastered", "dropped", "post_test")


def per_learner(o: Outcomes, horizon: int) -> dict[str, np.ndarray]:
    """Per-learner outcomes [V, M] of one what-if call."""
    mastered_at = np.asarray(o.mastered_at)
    cross = np.asarray(o.cross_step)
    return {
        "completed": (mastered_at >= 0).astype(float),
        "time_to_complete": np.where(mastered_at >= 0, mastered_at, horizon).astype(float),
        "skill_time": np.where(cross >= 0, cross, horizon).mean(axis=-1),
        "skills_mastered": (cross >= 0).sum(axis=-1).astype(float),
        "dropped": np.asarray(o.dropped).astype(float),
        "post_test": np.asarray(o.post_test, float),
    }


def _paired(x: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> dict[str, float]:
    row = {}
    for m in METRICS:
        diff = x[m] - base[m]
        mean = float(diff.mean())
        sd = float(diff.std(ddof=1)) if len(diff) > 1 else math.nan
        half = 1.96 * sd / math.sqrt(len(diff)) if len(diff) > 1 else math.nan
        row.update({f"d_{m}": mean, f"d_{m}_lo": mean - half, f"d_{m}_hi": mean + half,
                    f"z_{m}": mean / (sd / math.sqrt(len(diff))) if sd > 0 else 0.0})
    return row


Runner = Callable[[int, EnvParams, EnvParams, Array], Outcomes]  # (group index, sim[V], plan[V], keys[V, M])


def sensitivity(model: str, gs: list[Group], run: Runner, key: Array, m: int, horizon: int,
                confirm: int = 12) -> pd.DataFrame:
    """Two stages, each one call per group (the same compiled shapes):

    1. screening: every variant on the same ``m`` learners (the main run's first ``m``);
    2. confirmation: the ``confirm`` variants with the largest screening z-scores, and the
       baseline, spread over all the slots, each slot a further block of ``m`` learners, so
       each of them is measured on ``r x m`` learners (paired with the baseline's).

    One row per variant with paired differences to the baseline: mean, 95% CI, z, and
    ``significant`` (Bonferroni-corrected within the stage, and of a minimal practical size).
    """
    outcomes = [per_learner(run(k, g.sim, g.plan, block_keys(key, m, np.zeros(len(g), int))), horizon)
                for k, g in enumerate(gs)]
    where = {(k, j): g.variants[j] for k, g in enumerate(gs) for j in range(len(g))}
    (bk, bj), = [kj for kj, v in where.items() if v.kind == "baseline"]
    base = {mm: outcomes[bk][mm][bj] for mm in METRICS}
    rows = {}
    for (k, j), v in where.items():
        if v.kind != "baseline":
            rows[(k, j)] = {"kind": v.kind, "target": v.target, "change": v.description, "learners": m,
                            "stage": "screening", **_paired({mm: outcomes[k][mm][j] for mm in METRICS}, base)}
    score = {kj: max(abs(r["z_skill_time"]), abs(r["z_completed"])) for kj, r in rows.items()}
    top = sorted(score, key=lambda kj: -score[kj])[:confirm]
    if top:
        members = {k: ([(bk, bj)] if k == bk else []) + [kj for kj in top if kj[0] == k] for k in range(len(gs))}
        r = min(len(gs[k]) // len(mem) for k, mem in members.items() if mem)
        if r >= 2:
            per_slot = {}
            for k, mem in members.items():
                if not mem:
                    continue
                # blocks 1..r: fresh learners, not the screening block 0 the variants were selected on
                slots = [(mem[s // r], 1 + s % r) for s in range(r * len(mem))]
                slots += [(mem[0], 0)] * (len(gs[k]) - len(slots))  # filler, ignored
                sim, plan = gs[k].take(np.array([kj[1] for kj, _ in slots]))
                o = per_learner(run(k, sim, plan, block_keys(key, m, np.array([b for _, b in slots]))), horizon)
                for s, (kj, b) in enumerate(slots[: r * len(mem)]):
                    per_slot[(kj, b)] = {mm: o[mm][s] for mm in METRICS}
            cat = lambda kj: {mm: np.concatenate([per_slot[(kj, b)][mm] for b in range(1, r + 1)])  # noqa: E731
                              for mm in METRICS}
            base2 = cat((bk, bj))
            for kj in top:
                rows[kj].update(learners=r * m, stage="confirmed", **_paired(cat(kj), base2))
    df = pd.DataFrame(list(rows.values()))
    if df.empty:
        return df
    df.insert(0, "student_model", model)
    for mm in METRICS:
        df[f"base_{mm}"] = float(base[mm].mean())

    # significant: |z| beyond a Bonferroni bound for the number of variants compared at that stage
    # (every variant at screening, the ``confirm`` selected ones on fresh learners) and the change at
    # least a small practical size, so a 0.01-item shift measured very precisely is not a finding
    n_stage = df.stage.map(df.stage.value_counts()).to_numpy(float)
    z_crit = np.array([NormalDist().inv_cdf(1 - ALPHA / (2 * k)) for k in n_stage])
    df["z_critical"] = z_crit
    sig_c = (df["z_completed"].abs() >= z_crit) & (df["d_completed"].abs() >= MIN_COMPLETED)
    sig_t = (df["z_skill_time"].abs() >= z_crit) & (df["d_skill_time"].abs() >= MIN_SKILL_TIME)
    df["significant"] = sig_c | sig_t
    # rank: confirmed before screening-only, significant first, then by the size of the change in the
    # per-skill time to mastery (it moves with both completion and speed), then in completion
    df["_c"] = df.stage != "confirmed"
    df["_a"] = -df["d_skill_time"].abs()
    df["_b"] = -df["d_completed"].abs()
    df = df.sort_values(["_c", "significant", "_a", "_b"], ascending=[True, False, True, True])
    df = df.drop(columns=["_c", "_a", "_b"])
    df.insert(1, "rank", np.arange(1, len(df) + 1))
    return df.reset_index(drop=True)
