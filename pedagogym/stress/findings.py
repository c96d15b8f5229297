"""Findings in plain words, each pointing at the figure or table that shows it.

Each rule reads the tidy tables (never the raw arrays) and returns zero or more
:class:`Finding`. Thresholds are module constants, named and documented here, so a designer
can see why something was (not) flagged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pedagogym.curriculum.spec import Curriculum
from pedagogym.stress.tables import ancestors

SEVERITY_ORDER = {"high": 0, "medium": 1, "info": 2}

DROPOUT_NOTABLE = 0.10  # report dropout when at least this share of learners drops out
STALL_MIN = 0.25  # a bottleneck skill: at least this share of learners who stay never master it ...
STALL_FACTOR = 1.5  # ... and at least this many times the median skill's share
HARD_FAIL_MIN = 0.40  # a too-hard item: learners who mastered its skills fail it at least this often ...
HARD_FAIL_FACTOR = 2.5  # ... and this many times the median item's rate ...
HARD_MIN_ATTEMPTS = 30  # ... over at least this many such attempts
PEER_FACTOR = 2.0  # flagged alone if also this many times the rate of the other items of its skill
GAP_NOTABLE = 0.30  # a prerequisite gap: at least this share of learners first practise a skill without it
RARE_REACH = 0.05  # an item reached by fewer learners than this is "rarely reached"
EQUITY_MIN = {"completed": 0.05, "dropped": 0.05, "skills_mastered": 1.0, "post_test": 0.05}


@dataclass(frozen=True)
class Finding:
    severity: str  # "high", "medium" or "info"
    topic: str
    text: str  # plain words; item and skill ids in `backticks`
    ref: str  # anchor of the report section (figure + table) that shows it
    subjects: tuple[str, ...] = ()  # the item / skill ids (or edges) it names

    def as_row(self) -> dict:
        return {"severity": self.severity, "topic": self.topic, "finding": self.text, "see": self.ref,
                "subjects": "; ".join(self.subjects)}  # "; ": edges ("p -> s") contain spaces


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if math.isfinite(x) else "–"


def _ids(xs) -> str:
    return ", ".join(f"`{x}`" for x in xs)


def _dependants(c: Curriculum, skill: str) -> list[str]:
    anc = ancestors(c)
    return [s for s in c.skill_ids if skill in anc[s]]


def completion_findings(model: str, t: dict[str, pd.DataFrame], horizon: int, n_skills: int) -> list[Finding]:
    ln = t["learners"][t["learners"].student_model == model]
    done = ln.completed.mean()
    sev = "high" if done < 0.5 else "medium" if done < 0.8 else "info"
    txt = f"{_pct(done)} of learners master every skill within {horizon} items"
    if done > 0:
        d = ln[ln.completed == 1]
        txt += (f" (those who do need a median of {d.items_to_complete.median():.0f} items, "
                f"{d.minutes.median():.0f} minutes on task)")
    txt += f"; on average a learner ends with {ln.skills_mastered.mean():.1f} of {n_skills} skills mastered."
    return [Finding(sev, "completion", txt, "completion")]


def dropout_findings(model: str, t: dict[str, pd.DataFrame]) -> list[Finding]:
    ln = t["learners"][t["learners"].student_model == model]
    rate = ln.dropped.mean()
    if rate < DROPOUT_NOTABLE:
        return []
    items = t["items"][t["items"].student_model == model].sort_values("dropout_share", ascending=False)
    top = items.head(3)
    where = ", ".join(f"`{r.item}` ({_pct(r.dropout_share)} of dropouts)" for r in top.itertuples())
    half = ln.dropout_step.dropna().median()
    sev = "high" if rate >= 0.3 else "medium"
    return [Finding(sev, "dropout", f"{_pct(rate)} of learners drop out before the end; half of them within the first "
                    f"{half:.0f} items. The most frequent last items before leaving: {where}.", "funnel",
                    tuple(top.item))]


def bottleneck_findings(model: str, t: dict[str, pd.DataFrame]) -> list[Finding]:
    sk = t["skills"][t["skills"].student_model == model].dropna(subset=["stalled_stayed"])
    if sk.empty:
        return []
    med = float(sk.stalled_stayed.median())
    med_practice = float(sk.practice_p50.median())
    bad = sk[(sk.stalled_stayed >= STALL_MIN) & (sk.stalled_stayed >= STALL_FACTOR * med)]
    out = []
    for r in bad.sort_values("stalled_stayed", ascending=False).head(3).itertuples():
        out.append(Finding("high", "bottleneck",
                           f"Skill `{r.skill}` is a bottleneck: {_pct(r.stalled_stayed)} of the learners who practise it "
                           f"(and stay) never master it (median skill: {_pct(med)}); those who do need a median of "
                           f"{r.practice_p50:.0f} items on it (median skill: {med_practice:.0f}), and "
                           f"{_pct(r.streak5)} of learners hit a run of 5+ failures on it.", "bottlenecks", (r.skill,)))
    return out


def hard_item_findings(model: str, t: dict[str, pd.DataFrame], c: Curriculum) -> list[Finding]:
    """Items failed by learners who have mastered every skill they exercise. An item far above
    both the median item and the other items of its skill is flagged on its own; items that are
    hard but in line with their skill's other items are listed together."""
    it = t["items"][t["items"].student_model == model]
    ok = it[(it.mastered_attempts >= HARD_MIN_ATTEMPTS) & it.mastered_fail_rate.notna()]
    if ok.empty:
        return []
    med = float(ok.mastered_fail_rate.median())
    first_skill = {i.id: i.skills[0] for i in c.items}
    rate = dict(zip(ok.item, ok.mastered_fail_rate))
    out, hard_in_line = [], []
    for r in ok.sort_values("mastered_fail_rate", ascending=False).itertuples():
        if not (r.mastered_fail_rate >= HARD_FAIL_MIN and r.mastered_fail_rate >= HARD_FAIL_FACTOR * med):
            continue
        peers = [rate[o.id] for o in c.items if o.id != r.item and o.id in rate and first_skill[r.item] in o.skills]
        peer_med = float(np.median(peers)) if peers else math.nan
        if peers and r.mastered_fail_rate < PEER_FACTOR * peer_med:
            hard_in_line.append(r)
            continue
        deps = sorted({d for s in r.skills.split() for d in _dependants(c, s)}, key=c.skill_ids.index)
        path = (f" It sits on the prerequisite path to {len(deps)} later skill(s) ({_ids(deps[:4])}"
                f"{', ...' if len(deps) > 4 else ''}).") if deps else ""
        peer = f", other items of `{first_skill[r.item]}`: {_pct(peer_med)}" if peers else ""
        out.append(Finding("high", "hard_item",
                           f"Item `{r.item}` looks far too hard (or tests more than its skills): learners who have "
                           f"mastered {_ids(r.skills.split())} still fail it {_pct(r.mastered_fail_rate)} of the time "
                           f"(median item: {_pct(med)}{peer}). One learner in ten has a run of {r.streak_p90:.0f}+ "
                           f"failures on it, and {_pct(r.dropout_share)} of all dropouts leave right after it." + path,
                           "bottlenecks", (r.item,)))
    if hard_in_line:
        names = ", ".join(f"`{r.item}` ({_pct(r.mastered_fail_rate)})" for r in hard_in_line[:6])
        more = f" and {len(hard_in_line) - 6} more" if len(hard_in_line) > 6 else ""
        out.append(Finding("info", "hard_item",
                           f"The hardest items, failed often even by learners who have mastered their skills (median "
                           f"item: {_pct(med)}), are in line with the other items of their skills: {names}{more}. "
                           "Check that this difficulty is intended.", "bottlenecks",
                           tuple(r.item for r in hard_in_line)))
    named = {f.subjects[0] for f in out if f.severity == "high"}
    for r in t.get("difficulty_outliers", pd.DataFrame()).itertuples():
        if r.item not in named:
            out.append(Finding("medium", "hard_item",
                               f"Item `{r.item}` (difficulty {r.difficulty:+.1f}) is much harder than the other items "
                               f"of `{r.skill}` (median {r.skill_median:+.1f}).", "bottlenecks", (r.item,)))
    return out


def gap_findings(model: str, t: dict[str, pd.DataFrame]) -> list[Finding]:
    g = t["prereq_gaps"][t["prereq_gaps"].student_model == model]
    bad = g[g.gap_rate >= GAP_NOTABLE].sort_values("gap_rate", ascending=False)
    if bad.empty:
        return []
    sk = t["skills"][t["skills"].student_model == model].set_index("skill")
    top = bad.head(3)
    parts = []
    for r in top.itertuples():
        cost = ""
        if r.skill in sk.index and math.isfinite(sk.at[r.skill, "practice_p50_gap"]) and math.isfinite(
                sk.at[r.skill, "practice_p50_no_gap"]):
            cost = (f"; they then need {sk.at[r.skill, 'practice_p50_gap']:.0f} items on it instead of "
                    f"{sk.at[r.skill, 'practice_p50_no_gap']:.0f}")
        parts.append(f"{_pct(r.gap_rate)} reach `{r.skill}` without `{r.prerequisite}` mastered{cost}")
    return [Finding("medium", "prereq_gap",
                    f"Under this sequence, learners often meet a skill before its declared prerequisites are "
                    f"mastered ({len(bad)} of {len(g)} edges for at least {_pct(GAP_NOTABLE)} of learners): "
                    + "; ".join(parts) + ".", "prereq-gaps", tuple(top.edge))]


def missing_prereq_findings(model: str, t: dict[str, pd.DataFrame]) -> list[Finding]:
    mp = t["missing_prereqs"]
    mp = mp[(mp.student_model == model) & mp.flagged]
    out = []
    for skill, g in mp.groupby("skill", sort=False):
        r = g.sort_values("ratio", ascending=False).iloc[0]
        others = [c for c in g.candidate if c != r.candidate][:3]
        also = f" (also associated: {_ids(others)}, probably through `{r.candidate}`)" if others else ""
        out.append(Finding("high", "missing_prereq",
                           f"Learning of `{skill}` stalls unless `{r.candidate}` is mastered, although every declared "
                           f"prerequisite of `{skill}` is: one practice item masters it {_pct(r.rate_with)} of the time "
                           f"with `{r.candidate}` mastered and {_pct(r.rate_without)} without ({r.ratio:.1f}x){also}. "
                           f"`{r.candidate}` is not a declared prerequisite of `{skill}`: a missing edge "
                           f"`{r.candidate} -> {skill}`?", "missing-prereqs",
                           (skill, str(r.candidate), f"{r.candidate} -> {skill}")))
    return out


def equity_findings(model: str, t: dict[str, pd.DataFrame]) -> list[Finding]:
    g = t["equity_gaps"]
    if g.empty:
        return []
    g = g[g.student_model == model]
    out = []
    for r in g.itertuples():
        if r.gap_lo > 0 and r.gap >= EQUITY_MIN[r.metric]:
            fmt = (lambda x: _pct(x)) if r.metric in ("completed", "dropped", "post_test") else (lambda x: f"{x:.1f}")
            unit = " points" if r.metric in ("completed", "dropped", "post_test") else ""
            scale = 100 if unit else 1
            out.append(Finding("medium", "equity",
                               f"{r.label.capitalize()}: `{r.highest}` {fmt(r.highest_value)} vs `{r.lowest}` "
                               f"{fmt(r.lowest_value)}, a gap of {scale * r.gap:.1f}{unit} "
                               f"(95% CI {scale * r.gap_lo:.1f} to {scale * r.gap_hi:.1f}).", "equity",
                               (r.highest, r.lowest)))
    return out[:2]


def sensitivity_findings(model: str, t: dict[str, pd.DataFrame]) -> list[Finding]:
    """Content changes (remove / ease / move) that help are actionable; prerequisite edges whose
    removal helps are assumptions the outcomes depend on (the simulated learners obey them)."""
    s = t.get("sensitivity", pd.DataFrame())
    if s.empty:
        return []
    s = s[(s.student_model == model) & s.significant]
    if s.empty:
        return [Finding("info", "sensitivity", "No single what-if change (removing, easing or moving one item, "
                        "dropping one edge) changed completion or time to mastery detectably.", "sensitivity")]

    def effect(r) -> str:
        txt = (f"a skill is mastered {abs(r.d_skill_time):.1f} items {'sooner' if r.d_skill_time < 0 else 'later'} "
               f"on average (95% CI {abs(r.d_skill_time_hi if r.d_skill_time < 0 else r.d_skill_time_lo):.1f} to "
               f"{abs(r.d_skill_time_lo if r.d_skill_time < 0 else r.d_skill_time_hi):.1f})")
        if r.d_completed_lo > 0 or r.d_completed_hi < 0:
            txt += (f", completion {100 * r.d_completed:+.1f} points (95% CI {100 * r.d_completed_lo:+.1f} to "
                    f"{100 * r.d_completed_hi:+.1f})")
        return txt

    out = []
    content = s[s.kind != "remove_edge"]
    helps = content[content.d_skill_time < 0].sort_values("d_skill_time").head(3)
    if len(helps):
        out.append(Finding("medium", "sensitivity", "Changes that would help most: " + "; ".join(
            f"{r.change} — {effect(r)}" for r in helps.itertuples()) + ".", "sensitivity", tuple(helps.target)))
    hurts = content[content.d_skill_time > 0].sort_values("d_skill_time", ascending=False).head(3)
    if len(hurts):
        out.append(Finding("info", "sensitivity", "Most load-bearing content (changing it hurts most): " + "; ".join(
            f"{r.change} — {effect(r)}" for r in hurts.itertuples()) + ".", "sensitivity", tuple(hurts.target)))
    edges = s[(s.kind == "remove_edge") & (s.d_skill_time < 0)].sort_values("d_skill_time").head(3)
    if len(edges):
        out.append(Finding("info", "sensitivity", "The outcomes depend most on these prerequisite edges (the simulated "
                           "learners obey them; if one is not real, learning is faster than simulated): " + "; ".join(
                               f"`{r.target}` — without it {effect(r)}" for r in edges.itertuples()) + ".",
                           "sensitivity", tuple(edges.target)))
    return out


def reach_findings(model: str, t: dict[str, pd.DataFrame]) -> list[Finding]:
    it = t["items"][t["items"].student_model == model]
    rare = it[it.reached < RARE_REACH]
    if rare.empty:
        return []
    never = rare[rare.reached == 0]
    why = {"dropped_before": "dropped out", "completed_before": "had mastered everything",
           "horizon_before": "ran out of items (the horizon)"}
    main_reason = why[rare[list(why)].mean().idxmax()]
    names = _ids(rare.item.head(8)) + (", ..." if len(rare) > 8 else "")
    return [Finding("medium" if len(rare) > 0.1 * len(it) else "info", "reach",
                    f"{len(rare)} item(s) are reached by fewer than {_pct(RARE_REACH)} of learners"
                    f" ({len(never)} by none): {names}. Most learners {main_reason} before them.", "reach",
                    tuple(rare.item))]


def redundant_findings(t: dict[str, pd.DataFrame], model: str) -> list[Finding]:
    red = t["redundant"]
    if red.empty:
        return []
    s = t.get("sensitivity", pd.DataFrame())
    harmless = set()
    if not s.empty:
        rm = s[(s.student_model == model) & (s.kind == "remove_item")]
        harmless = set(rm[~rm.significant].target)
    rows = red[red.item.isin(harmless) | red.twin.isin(harmless)] if harmless else red
    if rows.empty:
        return []
    pairs = "; ".join(f"`{r.item}` ~ `{r.twin}`" for r in rows.head(5).itertuples())
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    proof = " and removing one of them changes no outcome detectably" if harmless else ""
    return [Finding("info", "redundant", f"{len(rows)} pair(s) of near-duplicate items (same skills and kind, "
                    f"difficulty within 0.1{proof}): {pairs}{more}. Candidates to merge or to differentiate.",
                    "redundant", tuple(np.unique(list(rows.item) + list(rows.twin))))]


def findings(t: dict[str, pd.DataFrame], models: tuple[str, ...], c: Curriculum, horizon: int) -> list[Finding]:
    out: list[Finding] = []
    for model in models:
        per = (completion_findings(model, t, horizon, c.n_skills) + dropout_findings(model, t)
               + missing_prereq_findings(model, t) + hard_item_findings(model, t, c) + bottleneck_findings(model, t)
               + gap_findings(model, t) + equity_findings(model, t) + sensitivity_findings(model, t)
               + reach_findings(model, t) + redundant_findings(t, model))
        if len(models) > 1:
            per = [Finding(f.severity, f.topic, f"[{model}] {f.text}", f.ref, f.subjects) for f in per]
        out += per
    return sorted(out, key=lambda f: SEVERITY_ORDER[f.severity])


def findings_table(fs: list[Finding]) -> pd.DataFrame:
    return pd.DataFrame([f.as_row() for f in fs], columns=["severity", "topic", "finding", "see", "subjects"])
