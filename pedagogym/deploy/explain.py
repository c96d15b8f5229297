"""Why the runtime chose an item, in plain terms (numpy + the bundle's ONNX session).

``Recommender.recommend(events, explain=True)`` (HTTP: ``"explain": true``; Node:
``{explain: true}``) adds ``explanation`` to the answer. It is off by default: the ranking
answer is unchanged, and an explanation costs one extra batched model call and a few KB of
JSON. ``explain`` may also be an object of options (:class:`ExplainOptions`):

=====================  =======  ==============================================================
option                 default  meaning
=====================  =======  ==============================================================
``top_k``              3        alternatives listed (0-100)
``top_features``       3        feature groups listed under ``attribution`` (0-100; 0: no
                                attribution, no extra model call unless constraints narrowed)
``review_after_days``  1.0      an item is due for review this many days after it was last
                                presented (>= 0)
``max_review``         5        items listed under ``due_for_review`` (0-100)
=====================  =======  ==============================================================

The explanation (every number is computed from the same replayed learner state as the
observation; ``belief`` is the BKT observer's posterior, the ``belief[...]`` features)::

    summary          one or a few plain-English sentences
    chosen           {item_id, score, skills: [skill], attempts, correct, days_since_last,
                      unlocked, due_for_review}
    alternatives     top_k eligible items after the chosen one, by score (ties: curriculum
                     order, as the policy's argmax): {item_id, score, score_gap, skills (ids),
                     reason}
    skills           every skill: {skill_id, belief, attempts, correct, accuracy,
                     prerequisites: [{skill_id, belief, met}], unlocked}
    unlock_threshold the belief every prerequisite needs (the bundle's env.unlock_threshold)
    locked_items     available items the prerequisites lock now: {item_id, missing (prerequisite
                     skill ids not met)}
    due_for_review   {n_due, review_after_days, items: [{item_id, days_since_last, attempts,
                     accuracy, skills, weakest_belief, eligible}]}
    constraints      null without teacher constraints, else {applied (keys, in the order only,
                     exclude, pin, forbid_skills, review_skills, daily_minutes), eligible_without,
                     eligible_with, narrowed_by ({key: item ids that constraint alone removes from
                     the prerequisite-eligible items}), unconstrained_choice, changed_choice,
                     daily (with daily_minutes: {cap_minutes, minutes_today, minutes_left})}
    attribution      null when top_features is 0, else {method: "occlusion", baseline, item_id,
                     groups: [{group, features, effect, text}]}

Definitions.

- ``attempts`` / ``correct`` count the learner's events on the skill's items (or the item);
  ``correct`` counts recorded correct responses only; ``accuracy`` = correct / attempts
  (null without attempts).
- A prerequisite skill is ``met`` when its belief >= ``unlock_threshold``; a skill is
  ``unlocked`` when all its prerequisites are met; an item when all its skills are (the
  action mask's rule, :func:`pedagogym.deploy.features.action_mask`). ``chosen.unlocked`` is
  false only when every item was locked and the mask fell back to all available items.
- ``summary`` and ``reason`` texts round like Python's ``format`` (half to even on exact
  ties); beliefs to 2 decimals, times as s / min / h / days.
- ``recommend_many`` (batched learners) does not explain; call ``recommend`` per learner.
- Due for review: an item presented before whose last presentation is at least
  ``review_after_days`` days before the decision time (``days_since_last``, the quantity
  behind the ``item_recency`` feature). Listed most overdue first (ties: curriculum order).
  The observer's belief does not decay with time (BKT), so staleness is what marks an item
  for review; ``weakest_belief`` is the lowest belief among the item's skills.
- Attribution by occlusion: the observation's features are grouped (``belief[s]``;
  ``practice[s]`` = skill_attempts[s], skill_accuracy[s]; ``history[i]`` = item_attempts[i],
  item_accuracy[i], item_recency[i]; ``last_response`` = last_correct, last_rt;
  ``progress``; ``session`` = session, session_time). Each group that differs from a new
  learner's (no events) is reset to the new learner's values, all other features kept, and
  the policy is run on the whole batch of perturbed observations at once (same mask).
  ``effect`` = chosen item's score on the real observation - its score with the group
  reset: positive when the learner's actual values raise the score. Groups are listed by
  ``|effect|`` (ties: feature order); effects below 1e-5 * max(1, |score|) (the runtimes'
  numerical agreement) are left out. The Node client computes the same explanation.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pedagogym.deploy.events import SECONDS_PER_DAY
from pedagogym.deploy.features import (FeatureSpec, LearnerState, feature_names, featurize, items_unlocked,
                                       prerequisite_met, skills_unlocked)

EXPLAIN_KEYS = ("top_k", "top_features", "review_after_days", "max_review")
MAX_LISTED = 100
ATTRIBUTION_RTOL = 1e-5  # effects below this * max(1, |score|) are numerical noise
_F = np.float32


class ExplainError(ValueError):
    """An ``explain`` parameter that is not true, false or a valid options object (HTTP 422)."""


@dataclass(frozen=True)
class ExplainOptions:
    top_k: int = 3
    top_features: int = 3
    review_after_days: float = 1.0
    max_review: int = 5

    @classmethod
    def parse(cls, value: Any) -> "ExplainOptions | None":
        """None / False -> None (no explanation); True -> defaults; a mapping of options (or an
        ExplainOptions) -> validated options. Raises :class:`ExplainError`."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            value = asdict(value)
        if not isinstance(value, Mapping):
            raise ExplainError(f"explain: expected true, false or an object with keys among {list(EXPLAIN_KEYS)}, "
                               f"got {type(value).__name__} {value!r}")
        unknown = sorted(set(value) - set(EXPLAIN_KEYS))
        if unknown:
            raise ExplainError(f"explain: unknown key(s) {unknown}; allowed: " + ", ".join(f"'{k}'" for k in EXPLAIN_KEYS))
        kw: dict[str, Any] = {}
        for key in ("top_k", "top_features", "max_review"):
            v = value.get(key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_LISTED:
                raise ExplainError(f"explain.{key}: expected an integer from 0 to {MAX_LISTED}, got {v!r}")
            kw[key] = v
        v = value.get("review_after_days")
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ExplainError(f"explain.review_after_days: expected a number of days >= 0, got {v!r}")
            kw["review_after_days"] = float(v)
        return cls(**kw)


# ---- plain-English formatting (the Node client formats identically: Python's rounding) -------------
def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ago(days: float) -> str:
    s = days * SECONDS_PER_DAY
    if s < 90.0:
        return f"{s:.0f} s"
    if s < 5400.0:
        return f"{s / 60.0:.0f} min"
    if s < 172800.0:
        return f"{s / 3600.0:.1f} h"
    return f"{days:.1f} days"


@dataclass(frozen=True)
class FeatureGroup:
    key: str  # e.g. "belief[b]"
    kind: str  # belief | practice | history | last_response | progress | session
    index: int  # the skill or item index (-1 for scalar groups)
    features: tuple[int, ...]  # positions in the observation vector


def feature_groups(spec: FeatureSpec) -> list[FeatureGroup]:
    """The observation's features grouped as the attribution reports them, in feature order."""
    names = feature_names(spec.skill_ids, spec.item_ids)
    at = {n: k for k, n in enumerate(names)}
    groups = [FeatureGroup(f"belief[{s}]", "belief", k, (at[f"belief[{s}]"],)) for k, s in enumerate(spec.skill_ids)]
    groups += [FeatureGroup(f"practice[{s}]", "practice", k, (at[f"skill_attempts[{s}]"], at[f"skill_accuracy[{s}]"]))
               for k, s in enumerate(spec.skill_ids)]
    groups += [FeatureGroup(f"history[{i}]", "history", k, (at[f"item_attempts[{i}]"], at[f"item_accuracy[{i}]"],
                                                              at[f"item_recency[{i}]"]))
               for k, i in enumerate(spec.item_ids)]
    groups += [FeatureGroup("last_response", "last_response", -1, (at["last_correct"], at["last_rt"])),
               FeatureGroup("progress", "progress", -1, (at["progress"],)),
               FeatureGroup("session", "session", -1, (at["session"], at["session_time"]))]
    return groups


Run = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Constrain = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]


@dataclass(frozen=True)
class _Facts:
    """The learner state as Python values, read once per explanation (float32 values exactly)."""

    belief: list[float]
    skill_attempts: list[int]
    skill_correct: list[int]
    item_attempts: list[int]
    item_correct: list[int]
    days_since: list[float | None]  # days between the decision time and the item's last event
    met: list[bool]  # as a prerequisite
    unlocked: list[bool]  # skills
    item_ok: list[bool]  # items unlocked
    mask: list[bool]  # eligible after the constraints

    @classmethod
    def of(cls, spec: FeatureSpec, h: LearnerState, mask: np.ndarray) -> "_Facts":
        ints = lambda x: [int(v) for v in x.tolist()]  # noqa: E731
        days = np.maximum((h.t - h.item_last_t).astype(np.float32), _F(0)).tolist()
        return cls(belief=h.belief.tolist(), skill_attempts=ints(h.skill_attempts), skill_correct=ints(h.skill_correct),
                   item_attempts=ints(h.item_attempts), item_correct=ints(h.item_correct),
                   days_since=[d if seen else None for d, seen in zip(days, (h.item_last_t >= 0).tolist())],
                   met=prerequisite_met(spec, h.belief).tolist(), unlocked=skills_unlocked(spec, h.belief).tolist(),
                   item_ok=items_unlocked(spec, h.belief).tolist(), mask=np.asarray(mask, bool).tolist())


class Explainer:
    """Builds the explanation of one decision; made once per bundle (groups, baseline)."""

    def __init__(self, spec: FeatureSpec, constraint_keys: Sequence[str]):
        self.spec = spec
        self.constraint_keys = tuple(constraint_keys)
        self.names = feature_names(spec.skill_ids, spec.item_ids)
        self.groups = feature_groups(spec)
        self.baseline = featurize(spec, LearnerState.initial(spec))  # a new learner's observation
        self.prereqs_of = [np.flatnonzero(spec.prereq[s] > 0).tolist() for s in range(spec.n_skills)]
        # the groups' feature positions, padded with a dummy position D (one past the observation)
        width = max(len(g.features) for g in self.groups)
        self._positions = np.full((len(self.groups), width), spec.n_features, np.int64)
        for g, grp in enumerate(self.groups):
            self._positions[g, :len(grp.features)] = grp.features
        self._baseline_ext = np.append(self.baseline, _F(0))

    # ---- pieces ------------------------------------------------------------------------------
    def _skill(self, f: _Facts, s: int) -> dict[str, Any]:
        n, c = f.skill_attempts[s], f.skill_correct[s]
        return {"skill_id": self.spec.skill_ids[s], "belief": f.belief[s], "attempts": n, "correct": c,
                "accuracy": c / n if n else None,
                "prerequisites": [{"skill_id": self.spec.skill_ids[p], "belief": f.belief[p], "met": f.met[p]}
                                  for p in self.prereqs_of[s]],
                "unlocked": f.unlocked[s]}

    def _item_history(self, f: _Facts, i: int) -> str:
        n, c = f.item_attempts[i], f.item_correct[i]
        if n == 0:
            return "new to this learner"
        result = f"{c} correct" if self.spec.observed[i] else "no correctness recorded"
        return f"seen {_plural(n, 'time')} ({result}), last {_ago(f.days_since[i])} ago"

    def _group_text(self, g: FeatureGroup, h: LearnerState, f: _Facts) -> str:
        spec = self.spec
        if g.kind == "belief":
            return f"belief in '{spec.skill_ids[g.index]}' is {f.belief[g.index]:.2f} (a new learner: {float(spec.p_init[g.index]):.2f})"
        if g.kind == "practice":
            return f"{_plural(f.skill_attempts[g.index], 'attempt')} on '{spec.skill_ids[g.index]}', {f.skill_correct[g.index]} correct"
        if g.kind == "history":
            return f"item '{spec.item_ids[g.index]}' {self._item_history(f, g.index)}"
        if g.kind == "last_response":
            verdict = "correct" if float(h.last_correct) > 0 else "not correct"
            return f"the last response was {verdict} and took {float(h.last_rt):.0f} s"
        if g.kind == "progress":
            return f"{_plural(h.step, 'item')} presented so far (horizon {int(spec.horizon)})"
        seconds = float(_F(_F(h.t - h.session_start) * _F(SECONDS_PER_DAY)))
        return f"session {h.session + 1}, {seconds / 60.0:.1f} min since it started"

    def _occluded(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(int[G'] groups that differ from a new learner's, float32[G', D] the observation with each
        of them reset to the new learner's values)."""
        obs_ext = np.append(obs, _F(0))
        pos = self._positions
        groups = np.flatnonzero((obs_ext[pos] != self._baseline_ext[pos]).any(axis=1))
        rows = np.repeat(obs_ext[None], len(groups), axis=0)
        rows[np.arange(len(groups))[:, None], pos[groups]] = self._baseline_ext[pos[groups]]
        return groups, rows[:, :-1]

    # ---- the explanation -----------------------------------------------------------------------
    def explain(self, h: LearnerState, obs: np.ndarray, base_mask: np.ndarray, mask: np.ndarray, scores: np.ndarray,
                action: int, opts: ExplainOptions, run: Run, constrain: Constrain,
                constraints: Mapping[str, Any] | None, spent_today_s: float | None) -> dict[str, Any]:
        """``base_mask``: the prerequisite mask; ``mask``: after the constraints; ``scores`` /
        ``action``: the decision; ``run``: the batched policy; ``constrain(mask, constraints)``:
        the runtime's constraint rule; ``spent_today_s``: time on task today (daily cap)."""
        spec, a = self.spec, int(action)
        item_ids, skill_ids = spec.item_ids, spec.skill_ids
        f = _Facts.of(spec, h, mask)
        score = scores.tolist()
        skills = [self._skill(f, s) for s in range(spec.n_skills)]

        # items due for review
        due = sorted(((d, i) for i, d in enumerate(f.days_since) if d is not None and d >= opts.review_after_days),
                     key=lambda d: (-d[0], d[1]))
        due_set = {i for _, i in due}

        def due_entry(days: float, i: int) -> dict[str, Any]:
            beliefs = [f.belief[s] for s in spec.skills_of[i]]
            return {"item_id": item_ids[i], "days_since_last": days, "attempts": f.item_attempts[i],
                    "accuracy": f.item_correct[i] / f.item_attempts[i], "skills": [skill_ids[s] for s in spec.skills_of[i]],
                    "weakest_belief": min(beliefs) if beliefs else None, "eligible": f.mask[i]}

        # one batched model call: the real observation, each feature group that differs from a new
        # learner's reset to the new learner's values, and (when the constraints removed items) the
        # unconstrained mask
        narrowed = not np.array_equal(mask, base_mask)
        occluded, rows = self._occluded(obs) if opts.top_features > 0 else \
            (np.zeros(0, np.int64), np.zeros((0, len(obs)), np.float32))
        n_rows = 1 + len(occluded) + int(narrowed)
        batch_scores = batch_actions = None
        if n_rows > 1:
            batch_obs = np.concatenate([obs[None], rows] + ([obs[None]] if narrowed else []))
            batch_mask = np.repeat(mask[None], n_rows, axis=0)
            if narrowed:
                batch_mask[-1] = base_mask
            batch_scores, batch_actions = run(batch_obs, batch_mask)

        attribution = None
        if opts.top_features > 0:
            ref = float(batch_scores[0, a]) if batch_scores is not None else score[a]
            floor = ATTRIBUTION_RTOL * max(1.0, abs(ref))
            occluded_scores = batch_scores[1:1 + len(occluded), a].tolist() if len(occluded) else []
            effects = [(int(g), ref - s) for g, s in zip(occluded, occluded_scores)]
            effects = sorted((e for e in effects if abs(e[1]) >= floor), key=lambda e: (-abs(e[1]), e[0]))
            groups = []
            for g, eff in effects[:opts.top_features]:
                grp = self.groups[g]
                groups.append({"group": grp.key, "features": [self.names[k] for k in grp.features], "effect": eff,
                               "text": f"{self._group_text(grp, h, f)}; this {'raises' if eff > 0 else 'lowers'} the "
                                       f"score of '{item_ids[a]}' by {abs(eff):.2f}"})
            attribution = {"method": "occlusion", "baseline": "a new learner (no events)", "item_id": item_ids[a],
                           "groups": groups}

        # alternatives: the next-highest eligible scores (ties: lowest index, as the argmax)
        others = sorted((j for j in range(spec.n_items) if f.mask[j] and j != a), key=lambda j: (-score[j], j))
        alternatives = []
        for j in others[:opts.top_k]:
            gap = score[a] - score[j]
            practises = ", ".join(f"'{skill_ids[s]}' (belief {f.belief[s]:.2f})" for s in spec.skills_of[j])
            reason = f"scored {gap:.2f} below '{item_ids[a]}'; practises {practises}; {self._item_history(f, j)}"
            if j in due_set:
                reason += "; due for review"
            alternatives.append({"item_id": item_ids[j], "score": score[j], "score_gap": gap,
                                 "skills": [skill_ids[s] for s in spec.skills_of[j]], "reason": reason})

        # teacher constraints
        cons = None
        applied = [k for k in self.constraint_keys if constraints and constraints.get(k) is not None
                   and not (k == "review_skills" and not constraints[k])]
        if applied:
            base = np.asarray(base_mask, bool)
            narrowed_by = {}
            for k in applied:
                if k == "daily_minutes":
                    continue
                removed = np.flatnonzero(base & ~np.asarray(constrain(base_mask, {k: constraints[k]}), bool))
                if len(removed):
                    narrowed_by[k] = [item_ids[i] for i in removed]
            free = int(batch_actions[-1]) if narrowed else a
            cons = {"applied": applied, "eligible_without": int(base.sum()), "eligible_with": sum(f.mask),
                    "narrowed_by": narrowed_by, "unconstrained_choice": item_ids[free], "changed_choice": free != a}
            if "daily_minutes" in applied:
                cap = float(constraints["daily_minutes"])
                today = (spent_today_s or 0.0) / 60.0
                cons["daily"] = {"cap_minutes": cap, "minutes_today": today, "minutes_left": max(cap - today, 0.0)}

        chosen = {"item_id": item_ids[a], "score": score[a], "skills": [skills[s] for s in spec.skills_of[a]],
                  "attempts": f.item_attempts[a], "correct": f.item_correct[a], "days_since_last": f.days_since[a],
                  "unlocked": f.item_ok[a], "due_for_review": a in due_set}
        available = spec.item_available.tolist()
        locked = [{"item_id": item_ids[i], "missing": [skill_ids[p] for p in sorted({p for s in spec.skills_of[i]
                                                                                   for p in self.prereqs_of[s]
                                                                                   if not f.met[p]})]}
                  for i in range(spec.n_items) if available[i] and not f.item_ok[i]]
        out = {
            "summary": "",
            "chosen": chosen,
            "alternatives": alternatives,
            "skills": skills,
            "unlock_threshold": float(spec.unlock_threshold),
            "locked_items": locked,
            "due_for_review": {"n_due": len(due), "review_after_days": opts.review_after_days,
                               "items": [due_entry(d, i) for d, i in due[:opts.max_review]]},
            "constraints": cons,
            "attribution": attribution,
        }
        out["summary"] = self._summary(out, sum(f.mask))
        return out

    def _summary(self, ex: dict[str, Any], n_eligible: int) -> str:
        chosen = ex["chosen"]
        parts = []
        for sk in chosen["skills"]:
            practice = "not practised yet" if sk["attempts"] == 0 else \
                f"{_plural(sk['attempts'], 'attempt')}, {sk['correct']} correct"
            parts.append(f"'{sk['skill_id']}' (belief {sk['belief']:.2f}, {practice})")
        text = f"Recommended '{chosen['item_id']}', which practises {' and '.join(parts)}"
        prereqs = [p["skill_id"] for sk in chosen["skills"] for p in sk["prerequisites"]]
        if not chosen["unlocked"]:
            text += "; every item is locked by prerequisites, so all available items were allowed"
        elif prereqs:
            quoted = ", ".join(f"'{p}'" for p in dict.fromkeys(prereqs))
            text += f"; its prerequisites ({quoted}) are met"
        text += "."
        if chosen["due_for_review"]:
            text += f" It is due for review (last seen {_ago(chosen['days_since_last'])} ago)."
        alts = ex["alternatives"]
        if alts:
            text += f" Next best: '{alts[0]['item_id']}', {alts[0]['score_gap']:.2f} lower."
        elif n_eligible == 1:
            text += " It was the only eligible item."
        cons = ex["constraints"]
        if cons is not None and cons["narrowed_by"]:
            text += (f" Teacher constraints ({', '.join(cons['narrowed_by'])}) narrowed the choice from "
                     f"{_plural(cons['eligible_without'], 'item')} to {cons['eligible_with']}")
            text += (f"; without them the policy would have chosen '{cons['unconstrained_choice']}'."
                     if cons["changed_choice"] else ".")
        attr = ex["attribution"]
        if attr is not None and attr["groups"]:
            text += f" Strongest influence: {attr['groups'][0]['text']}."
        return text
