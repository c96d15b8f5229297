"""Tidy tables of a stress test, computed from the rollout's arrays (numpy / pandas only).

Every table has a ``student_model`` column, so several models stack into one CSV, and is
the data behind one figure or one section of the report (see :mod:`pedagogym.stress.report`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pedagogym.curriculum.spec import Curriculum
from pedagogym.stress.rollout import StressResult

Z95 = 1.959964


# ---- statistics --------------------------------------------------------------------------------------
def wilson(k: float, n: float) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n (NaN if n = 0)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + Z95 ** 2 / n
    c = (p + Z95 ** 2 / (2 * n)) / d
    h = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / d
    return (min(p, max(0.0, c - h)), max(p, min(1.0, c + h)))  # contains p despite rounding


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if len(x) < 2:
        return (m, math.nan, math.nan)
    h = Z95 * float(x.std(ddof=1)) / math.sqrt(len(x))
    return (m, m - h, m + h)


def _pct(x: np.ndarray, q: float) -> float:
    x = np.asarray(x, float)
    return float(np.percentile(x, q)) if len(x) else math.nan


# ---- the curriculum's structure ------------------------------------------------------------------
def ancestors(c: Curriculum) -> dict[str, set[str]]:
    """Every skill's declared prerequisites, direct and indirect."""
    pre = {s.id: set(s.prerequisites) for s in c.skills}
    out: dict[str, set[str]] = {}

    def visit(s: str) -> set[str]:
        if s not in out:
            out[s] = set()
            for p in pre[s]:
                out[s] |= {p} | visit(p)
        return out[s]

    for s in pre:
        visit(s)
    return out


def skill_order(c: Curriculum) -> list[str]:
    """Skills in the order the designer's sequence first exercises them (unused skills last)."""
    seen: list[str] = []
    items = {i.id: i for i in c.items}
    for iid in c.designer_order():
        for s in items[iid].skills:
            if s not in seen:
                seen.append(s)
    return seen + [s for s in c.skill_ids if s not in seen]


@dataclass(frozen=True)
class Run:
    """One model's main run as numpy arrays, with what is needed to read them."""

    model: str
    designer: Curriculum
    subgroups: tuple[str, ...]
    horizon: int
    r: StressResult  # numpy arrays

    @classmethod
    def of(cls, model: str, designer: Curriculum, subgroups: tuple[str, ...], horizon: int, res: StressResult) -> "Run":
        return cls(model, designer, subgroups, horizon, StressResult(*(np.asarray(x) for x in res)))

    @property
    def n(self) -> int:
        return int(self.r.mastered_at.shape[0])


# ---- tables ----------------------------------------------------------------------------------------
def learners_table(run: Run) -> pd.DataFrame:
    r = run.r
    done = r.mastered_at >= 0
    return pd.DataFrame({
        "student_model": run.model, "learner": np.arange(run.n),
        "subgroup": [run.subgroups[int(g)] for g in r.subgroup],
        "completed": done.astype(int), "items_to_complete": np.where(done, r.mastered_at, np.nan),
        "dropped": r.dropped.astype(int), "dropout_step": np.where(r.dropped, r.steps, np.nan),
        "dropout_item": [run.designer.item_ids[int(i)] if d and i >= 0 else "" for d, i in zip(r.dropped, r.last_item)],
        "items": r.steps, "minutes": r.time_min, "skills_mastered": (r.cross_step >= 0).sum(1),
        "final_mastery": r.final_mastery, "post_test": r.post_test,
    })


def completion_table(run: Run) -> pd.DataFrame:
    """The completion curve: share of learners who have mastered every skill, dropped out,
    or are still learning after each item."""
    r, n, h = run.r, run.n, run.horizon
    t = np.arange(h + 1)
    done_at = np.where(r.mastered_at >= 0, r.mastered_at, h + 10)
    drop_at = np.where(r.dropped, r.steps, h + 10)
    completed = (done_at[None, :] <= t[:, None]).mean(1)
    dropped = (drop_at[None, :] <= t[:, None]).mean(1)
    mean_skills = r.skill_curve.sum(1) / (n * max(r.skill_curve.shape[1], 1))
    return pd.DataFrame({"student_model": run.model, "step": t, "completed": completed, "dropped": dropped,
                         "still_learning": np.clip(1 - completed - dropped, 0, 1), "mean_skill_mastery": mean_skills})


def skill_curve_table(run: Run) -> pd.DataFrame:
    c = run.designer
    order = skill_order(c)
    idx = [c.skill_index(s) for s in order]
    curve = run.r.skill_curve[:, idx] / run.n
    steps = np.arange(curve.shape[0])
    return pd.DataFrame({"student_model": run.model, "step": np.repeat(steps, len(order)),
                         "skill": np.tile(order, len(steps)), "mastered": curve.reshape(-1)})


def skills_table(run: Run) -> pd.DataFrame:
    """Per skill, in the designer's order: reach, mastery, time to mastery percentiles,
    practice needed, failure streaks, prerequisite gaps."""
    c, r = run.designer, run.r
    rows = []
    for pos, sid in enumerate(skill_order(c)):
        s = c.skill_index(sid)
        skill = c.skills[s]
        cross, first = r.cross_step[:, s], r.first_practice[:, s]
        at_start = cross == 0
        reached = first >= 0
        learnt = cross > 0  # mastered during the unit
        to_learn = reached & ~at_start
        never = to_learn & (cross < 0)
        stayed = to_learn & ~r.dropped  # practised it, did not know it, did not drop out
        t_items = cross[learnt].astype(float)
        t_min = r.cross_min[learnt, s].astype(float)
        practice = r.cross_practice[learnt, s].astype(float)
        streak = r.skill_streak[reached, s].astype(float)
        gap = r.gap[reached, s]
        rows.append({
            "student_model": run.model, "position": pos + 1, "skill": sid, "name": skill.name,
            "prerequisites": " ".join(skill.prerequisites), "items": int(sum(sid in i.skills for i in c.items)),
            "known_at_start": float(at_start.mean()), "reached": float(reached.mean()),
            "mastered": float((cross >= 0).mean()),
            "mastered_if_reached": float((learnt & reached).sum() / to_learn.sum()) if to_learn.any() else math.nan,
            "stalled": float(never.sum() / to_learn.sum()) if to_learn.any() else math.nan,
            "stalled_stayed": float((stayed & (cross < 0)).sum() / stayed.sum()) if stayed.any() else math.nan,
            "n_learnt": int(learnt.sum()),
            **{f"items_p{q}": _pct(t_items, q) for q in (10, 25, 50, 75, 90)},
            "minutes_p50": _pct(t_min, 50), "minutes_p90": _pct(t_min, 90),
            "practice_p50": _pct(practice, 50), "practice_p90": _pct(practice, 90),
            "streak_p90": _pct(streak, 90), "streak_max": float(streak.max()) if len(streak) else math.nan,
            "streak5": float((streak >= 5).mean()) if len(streak) else math.nan,
            "gap": float(gap.mean()) if len(gap) else math.nan,
            "practice_p50_gap": _pct(r.cross_practice[learnt & r.gap[:, s], s], 50),
            "practice_p50_no_gap": _pct(r.cross_practice[learnt & ~r.gap[:, s], s], 50),
        })
    return pd.DataFrame(rows)


def items_table(run: Run) -> pd.DataFrame:
    """Per item along the designer's order: the funnel (reached / finished before / dropped
    before / ran out of items before), attempts, accuracy, failure streaks, dropouts here and
    the failure rate among learners who had mastered every skill the item exercises."""
    from pedagogym.student_models.learner import OBSERVED_KINDS

    c, r = run.designer, run.r
    n_drop = max(int(r.dropped.sum()), 1)
    rows = []
    for pos, iid in enumerate(c.designer_order()):
        i = c.item_index(iid)
        it = c.items[i]
        first = r.item_first[:, i]
        reached = first >= 0
        done_before = ~reached & (r.mastered_at >= 0)
        drop_before = ~reached & r.dropped
        att = r.item_attempts[reached, i].astype(float)
        cor = r.item_correct[reached, i].astype(float)
        observed = it.kind in OBSERVED_KINDS
        tries, fails = float(r.mastered_tries[i]), float(r.mastered_fails[i])
        streak = r.item_streak[reached, i].astype(float)
        dropped_here = r.dropped & (r.last_item == i)
        rows.append({
            "student_model": run.model, "position": pos + 1, "item": iid, "skills": " ".join(it.skills),
            "kind": it.kind.label, "difficulty": it.difficulty, "reached": float(reached.mean()),
            "completed_before": float(done_before.mean()), "dropped_before": float(drop_before.mean()),
            "horizon_before": float((~reached & ~done_before & ~drop_before).mean()),
            "attempts_mean": float(att.mean()) if len(att) else math.nan,
            "first_step_p50": _pct(first[reached].astype(float), 50),
            "accuracy": float(cor.sum() / att.sum()) if observed and att.sum() > 0 else math.nan,
            "streak_p90": _pct(streak, 90) if observed else math.nan,
            "streak_max": float(streak.max()) if observed and len(streak) else math.nan,
            "dropped_here": float(dropped_here.mean()), "dropout_share": float(dropped_here.sum() / n_drop),
            "mastered_attempts": tries, "mastered_fail_rate": fails / tries if observed and tries > 0 else math.nan,
        })
    return pd.DataFrame(rows)


def prereq_gaps_table(run: Run) -> pd.DataFrame:
    """Per declared edge ``p -> s``: how often learners first practised s with p unmastered."""
    c, r = run.designer, run.r
    rows = []
    for sid in skill_order(c):
        s = c.skill_index(sid)
        reached = float((r.first_practice[:, s] >= 0).sum())
        for pid in c.skills[s].prerequisites:
            p = c.skill_index(pid)
            k = float(r.gap_pairs[s, p])
            lo, hi = wilson(k, reached)
            rows.append({"student_model": run.model, "prerequisite": pid, "skill": sid, "edge": f"{pid} -> {sid}",
                         "reached_skill": int(reached), "gap_rate": k / reached if reached else math.nan,
                         "gap_ci_low": lo, "gap_ci_high": hi})
    return pd.DataFrame(rows, columns=["student_model", "prerequisite", "skill", "edge", "reached_skill", "gap_rate",
                                       "gap_ci_low", "gap_ci_high"])


EQUITY_METRICS = (("completed", "completed every skill", True), ("dropped", "dropped out", True),
                  ("skills_mastered", "skills mastered", False), ("post_test", "post-test", False))


def equity_table(learners: pd.DataFrame) -> pd.DataFrame:
    """Outcomes by population subgroup, 95% CIs (Wilson for proportions)."""
    rows = []
    for (model, group), g in learners.groupby(["student_model", "subgroup"], sort=False):
        row = {"student_model": model, "subgroup": group, "n": len(g)}
        for m, _, is_prop in EQUITY_METRICS:
            x = g[m].to_numpy(float)
            if is_prop:
                k = float(x.sum())
                lo, hi = wilson(k, len(x))
                row.update({m: k / len(x), f"{m}_lo": lo, f"{m}_hi": hi})
            else:
                mean, lo, hi = mean_ci(x)
                row.update({m: mean, f"{m}_lo": lo, f"{m}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def equity_gaps_table(learners: pd.DataFrame) -> pd.DataFrame:
    """Per metric: the best and the worst subgroup and the gap between them (95% CI, normal
    approximation for a difference of independent means)."""
    rows = []
    for model, g in learners.groupby("student_model", sort=False):
        groups = {k: v for k, v in g.groupby("subgroup", sort=False)}
        if len(groups) < 2:
            continue
        for m, label, _ in EQUITY_METRICS:
            means = {k: float(v[m].mean()) for k, v in groups.items()}
            hi_g, lo_g = max(means, key=means.get), min(means, key=means.get)
            a, b = groups[hi_g][m].to_numpy(float), groups[lo_g][m].to_numpy(float)
            gap = means[hi_g] - means[lo_g]
            se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if len(a) > 1 and len(b) > 1 else math.nan
            rows.append({"student_model": model, "metric": m, "label": label, "highest": hi_g,
                         "highest_value": means[hi_g], "lowest": lo_g, "lowest_value": means[lo_g], "gap": gap,
                         "gap_lo": gap - Z95 * se, "gap_hi": gap + Z95 * se})
    return pd.DataFrame(rows)


def redundant_table(c: Curriculum, d_difficulty: float = 0.1, d_discrimination: float = 0.3) -> pd.DataFrame:
    """Pairs of items the simulator cannot tell apart: the same skills, the same kind, and
    difficulty / discrimination / guess / slip within small tolerances."""
    def close(a, b, tol):
        return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= tol)

    rows = []
    items = c.items
    for x in range(len(items)):
        for y in range(x + 1, len(items)):
            a, b = items[x], items[y]
            if (set(a.skills) == set(b.skills) and a.kind == b.kind and abs(a.difficulty - b.difficulty) <= d_difficulty
                    and abs(a.discrimination - b.discrimination) <= d_discrimination
                    and close(a.guess, b.guess, 0.05) and close(a.slip, b.slip, 0.05)):
                rows.append({"item": a.id, "twin": b.id, "skills": " ".join(a.skills), "kind": a.kind.label,
                             "difficulty": a.difficulty, "twin_difficulty": b.difficulty})
    return pd.DataFrame(rows, columns=["item", "twin", "skills", "kind", "difficulty", "twin_difficulty"])


def missing_prereqs_table(run: Run, min_opportunities: int = 30) -> pd.DataFrame:
    """Skills whose learning stalls unless another skill, not a declared prerequisite, is mastered.

    For each skill ``s`` and candidate ``p`` (not ``s``, not a declared prerequisite of ``s``,
    direct or indirect, and not a skill that requires ``s``), practice of ``s`` while ``s`` is
    unmastered and all its declared prerequisites are mastered is split by whether ``p`` was
    mastered; ``ratio`` is the chance that one such practice masters ``s`` with ``p`` mastered
    over the chance without. Ability makes every ratio somewhat above 1 (able learners master
    everything sooner); a hidden prerequisite makes it large. ``flagged`` marks ratios at least
    ``3`` and at least twice the skill's median ratio over candidates, with ``z >= 4``.
    """
    c, r = run.designer, run.r
    anc = ancestors(c)
    rows = []
    for sid in skill_order(c):
        s = c.skill_index(sid)
        opp, learn = float(r.ready_opp[s]), float(r.ready_learn[s])
        if opp < 2 * min_opportunities:
            continue
        cand = []
        for pid in c.skill_ids:
            p = c.skill_index(pid)
            if pid == sid or pid in anc[sid] or sid in anc[pid]:
                continue
            w_opp, w_learn = float(r.pair_opp[s, p]), float(r.pair_learn[s, p])
            o_opp, o_learn = opp - w_opp, learn - w_learn
            if w_opp < min_opportunities or o_opp < min_opportunities:
                continue
            r1, r0 = (w_learn + 0.5) / (w_opp + 1.0), (o_learn + 0.5) / (o_opp + 1.0)
            pooled = learn / opp
            se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / w_opp + 1 / o_opp))
            cand.append({"student_model": run.model, "skill": sid, "candidate": pid,
                         "opportunities_with": int(w_opp), "rate_with": w_learn / w_opp,
                         "opportunities_without": int(o_opp), "rate_without": o_learn / o_opp,
                         "ratio": r1 / r0, "z": (w_learn / w_opp - o_learn / o_opp) / se})
        if not cand:
            continue
        med = float(np.median([x["ratio"] for x in cand]))
        for x in cand:
            x["skill_median_ratio"] = med
            x["flagged"] = bool(x["ratio"] >= 3.0 and x["ratio"] >= 2.0 * med and x["z"] >= 4.0)
        rows += cand
    cols = ["student_model", "skill", "candidate", "opportunities_with", "rate_with", "opportunities_without",
            "rate_without", "ratio", "z", "skill_median_ratio", "flagged"]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["flagged", "ratio"], ascending=[False, False]).reset_index(drop=True)


def difficulty_outliers(c: Curriculum, gap: float = 2.0) -> pd.DataFrame:
    """Items at least ``gap`` logits harder than the median of the other items of their first skill."""
    rows = []
    for it in c.items:
        others = [o.difficulty for o in c.items if o.id != it.id and it.skills[0] in o.skills]
        if others and it.difficulty - float(np.median(others)) >= gap:
            rows.append({"item": it.id, "skill": it.skills[0], "difficulty": it.difficulty,
                         "skill_median": float(np.median(others))})
    return pd.DataFrame(rows, columns=["item", "skill", "difficulty", "skill_median"])
