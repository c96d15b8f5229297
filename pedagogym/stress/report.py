"""Write a stress report: tidy CSVs, figures drawn from them, findings, ``report.md`` and a
self-contained ``report.html`` (figures embedded as base64 PNG), and ``manifest.json``.
Every file is written atomically (temp file + rename)."""
from __future__ import annotations

import base64
import dataclasses
import html
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pedagogym.io import atomic_write, atomic_write_json, atomic_write_text, git_commit, versions
from pedagogym.stress.findings import Finding, findings, findings_table
from pedagogym.stress.plots import plot_all

if TYPE_CHECKING:
    from pedagogym.stress.runner import Results

CSV_FILES = ("learners", "completion", "skill_curves", "skills", "items", "prereq_gaps", "missing_prereqs", "equity",
             "equity_gaps", "sensitivity", "redundant", "difficulty_outliers", "findings")


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    """Atomically; text cells a spreadsheet would run as formulas are escaped (pedagogym.io.csv_safe)."""
    from pedagogym.io import csv_safe_frame

    safe = csv_safe_frame(df)
    atomic_write(path, lambda p: safe.to_csv(p, index=False, float_format="%.6g"))


# ---- formatting ------------------------------------------------------------------------------------
def pct(x) -> str:
    return f"{100 * x:.0f}%" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def num(digits: int = 1):
    def f(x) -> str:
        return f"{x:.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"
    return f


def signed(scale: float = 1.0, digits: int = 1):
    def f(x) -> str:
        return f"{scale * x:+.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"
    return f


@dataclass
class Table:
    caption: str
    df: pd.DataFrame
    columns: dict[str, tuple[str, object]]  # column -> (header, formatter or None)
    csv: str = ""

    def rows(self) -> list[list[str]]:
        out = []
        for _, r in self.df.iterrows():
            row = []
            for col, (_, fmt) in self.columns.items():
                v = r[col]
                row.append(fmt(v) if fmt else ("" if isinstance(v, float) and math.isnan(v) else str(v)))
            out.append(row)
        return out

    def headers(self) -> list[str]:
        return [h for h, _ in self.columns.values()]


@dataclass
class Section:
    anchor: str
    title: str
    intro: str
    figures: list[str] = field(default_factory=list)  # figure names (keys of plots.FIGURES)
    tables: list[Table] = field(default_factory=list)
    csvs: list[str] = field(default_factory=list)


def _code(text: str) -> str:
    """Markdown-ish `code` -> HTML <code>, everything else escaped."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(f"<code>{html.escape(p[1:-1])}</code>" if p.startswith("`") and p.endswith("`") else html.escape(p)
                   for p in parts)


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


# ---- sections ----------------------------------------------------------------------------------------
def sections(t: dict[str, pd.DataFrame], figs: dict[str, Path | None], facts: dict) -> list[Section]:
    S: list[Section] = []
    skills, items = t["skills"], t["items"]
    S.append(Section("completion", "Completion", (
        "Share of learners who have mastered every skill (true mastery at or above the threshold, all at once), who are "
        "still learning, and who have dropped out, after each item; the dashed line is the mean share of skills "
        "mastered. Below: when each skill is mastered across the cohort."),
        ["completion", "skill_mastery"], [], ["completion.csv", "skill_curves.csv", "learners.csv"]))
    S.append(Section("time-to-mastery", "Time to mastery per skill", (
        "Items presented (from the start of the unit) until a skill is first mastered, among learners who learnt it "
        "during the unit; 'practice' counts only the items exercising the skill. 'known' = mastered before the first "
        "item."), ["time_to_mastery"],
        [Table("Per skill, in the order the designer's sequence introduces them", skills, {
            "student_model": ("model", None), "skill": ("skill", None), "known_at_start": ("known", pct),
            "reached": ("reached", pct), "mastered": ("mastered", pct), "items_p10": ("p10", num(0)),
            "items_p50": ("median", num(0)), "items_p90": ("p90", num(0)), "minutes_p50": ("median min", num(0)),
            "practice_p50": ("practice p50", num(0)), "practice_p90": ("practice p90", num(0))}, "skills.csv")],
        ["skills.csv"]))
    drop = items.sort_values("dropout_share", ascending=False).groupby("student_model", sort=False).head(10)
    S.append(Section("funnel", "Funnel and dropout along the designer's order", (
        "For each item in the designer's order: the share of learners who reached it, and of those who did not, why "
        "(mastered everything, dropped out, or the horizon ended first). The line is the share of all dropouts whose "
        "last item was this one."), ["funnel"],
        [Table("Items after which most learners drop out", drop, {
            "student_model": ("model", None), "position": ("#", None), "item": ("item", None),
            "skills": ("skills", None), "kind": ("kind", None), "reached": ("reached", pct),
            "dropout_share": ("of dropouts", pct), "accuracy": ("accuracy", pct)}, "items.csv")], ["items.csv"]))
    stall = skills.sort_values("stalled_stayed", ascending=False).groupby("student_model", sort=False).head(8)
    hard = items.dropna(subset=["mastered_fail_rate"]).sort_values("mastered_fail_rate", ascending=False)
    hard = hard.groupby("student_model", sort=False).head(8)
    S.append(Section("bottlenecks", "Bottlenecks: where learners stall", (
        "Left: skills that learners practise (without knowing them at the start, and without dropping out) but never "
        "master. Right: items that learners fail even after mastering every skill the item exercises — too hard, or "
        "testing something the curriculum does not declare. Red bars are flagged."), ["bottlenecks"],
        [Table("Skills where learners stall", stall, {
            "student_model": ("model", None), "skill": ("skill", None), "stalled_stayed": ("never mastered", pct),
            "practice_p50": ("practice p50", num(0)), "streak_p90": ("fail run p90", num(0)),
            "streak5": ("5+ fail run", pct)}, "skills.csv"),
         Table("Items failed by learners who mastered their skills", hard, {
             "student_model": ("model", None), "item": ("item", None), "skills": ("skills", None),
             "difficulty": ("difficulty", num(1)), "mastered_fail_rate": ("fail rate (mastered)", pct),
             "mastered_attempts": ("such attempts", num(0)), "accuracy": ("overall accuracy", pct),
             "streak_max": ("longest fail run", num(0))}, "items.csv")], ["skills.csv", "items.csv"]))
    gaps = t["prereq_gaps"].sort_values("gap_rate", ascending=False).groupby("student_model", sort=False).head(10)
    S.append(Section("prereq-gaps", "Prerequisite gaps", (
        "How often learners reach a skill (first practice) without a declared prerequisite mastered, under this "
        "sequence. The dotted line marks 30%."), ["prereq_gaps"],
        [Table("Edges most often skipped", gaps, {
            "student_model": ("model", None), "edge": ("prerequisite -> skill", None),
            "reached_skill": ("learners reaching the skill", None), "gap_rate": ("without the prerequisite", pct),
            "gap_ci_low": ("95% CI low", pct), "gap_ci_high": ("95% CI high", pct)}, "prereq_gaps.csv")],
        ["prereq_gaps.csv"]))
    mp = t["missing_prereqs"].groupby("student_model", sort=False).head(10) if len(t["missing_prereqs"]) else t["missing_prereqs"]
    truth_note = ("The simulated learners obey a separate true curriculum (`--true-curriculum`), so prerequisites "
                  "missing from the designer's file can show up here. " if facts.get("has_truth") else
                  "The simulated learners obey the designer's own file, so a missing prerequisite cannot be simulated "
                  "here; pass `--true-curriculum` to test one (and expect nothing flagged without it). ")
    S.append(Section("missing-prereqs", "Possible missing prerequisites", truth_note + (
        "For each skill, practice while it is unmastered but all its declared prerequisites are mastered is split by "
        "whether another skill (not declared, directly or indirectly) was mastered too. Able learners master "
        "everything sooner, so every ratio is somewhat above 1; a hidden prerequisite makes it large."),
        ["missing_prereqs"],
        [Table("Strongest candidates", mp, {
            "student_model": ("model", None), "candidate": ("candidate", None), "skill": ("-> skill", None),
            "rate_with": ("with", pct), "rate_without": ("without", pct), "ratio": ("ratio", num(1)),
            "z": ("z", num(1)), "flagged": ("flagged", None)}, "missing_prereqs.csv")] if len(mp) else [],
        ["missing_prereqs.csv"]))
    S.append(Section("equity", "Equity: outcomes by population subgroup", (
        "Mean outcome per subgroup of the population with 95% confidence intervals (Wilson for proportions), and the "
        "gap between the best and the worst subgroup."), ["equity"],
        [Table("Subgroups", t["equity"], {
            "student_model": ("model", None), "subgroup": ("subgroup", None), "n": ("learners", None),
            "completed": ("completed", pct), "dropped": ("dropped", pct),
            "skills_mastered": ("skills mastered", num(1)), "post_test": ("post-test", num(2))}, "equity.csv"),
         Table("Gaps (highest - lowest subgroup)", t["equity_gaps"], {
             "student_model": ("model", None), "label": ("outcome", None), "highest": ("highest", None),
             "lowest": ("lowest", None), "gap": ("gap", num(3)), "gap_lo": ("95% CI low", num(3)),
             "gap_hi": ("95% CI high", num(3))}, "equity_gaps.csv")] if len(t["equity_gaps"]) else [],
        ["equity.csv", "equity_gaps.csv"]))
    sens = t["sensitivity"]
    if len(sens):
        n_var, m = facts.get("variants", 0), facts.get("whatif_learners", 0)
        top = sens.sort_values("rank").groupby("student_model", sort=False).head(15)
        n_conf = int((sens.stage == "confirmed").sum()) // max(sens.student_model.nunique(), 1)
        confirmed = (f"The {n_conf} most promising changes were re-measured on fresh learners ('confirmed'). "
                     if n_conf else "")
        S.append(Section("sensitivity", "Sensitivity: one-at-a-time what-if changes", (
            f"{n_var} variants of the curriculum — each item removed (unless it is the only item of a skill) or made "
            f"easier, each prerequisite edge dropped, each block of the order moved one block earlier — each simulated "
            f"with the same {m} learners as the unchanged curriculum (common random numbers), compared learner by "
            f"learner. Ranked by the change in the mean items to master a skill (capped at the horizon; it moves with "
            f"both completion and speed), significant changes first. {confirmed}'Significant' means beyond a Bonferroni bound for the number of changes "
            f"compared (bars show plain 95% CIs) and at least 1 point of completion or 0.1 item per skill."),
            ["sensitivity"],
            [Table("Most influential changes", top, {
                "student_model": ("model", None), "rank": ("#", None), "change": ("change", None),
                "d_completed": ("Δ completion (pts)", signed(100)),
                "d_skill_time": ("Δ items per skill", signed()), "d_dropped": ("Δ dropout (pts)", signed(100)),
                "d_post_test": ("Δ post-test", signed(1, 3)), "learners": ("learners", None),
                "stage": ("stage", None), "significant": ("significant", None)},
                "sensitivity.csv")], ["sensitivity.csv"]))
    rare = items[items.reached < 0.05]
    S.append(Section("reach", "Items never or rarely reached", (
        "Items that fewer than 5% of learners ever see, and why the others never got there."), [],
        [Table("Rarely reached items", rare, {
            "student_model": ("model", None), "position": ("#", None), "item": ("item", None),
            "reached": ("reached", pct), "completed_before": ("mastered all before", pct),
            "dropped_before": ("dropped before", pct), "horizon_before": ("horizon before", pct)}, "items.csv")]
        if len(rare) else [], ["items.csv"]))
    S.append(Section("redundant", "Redundant items", (
        "Pairs of items the simulated learners cannot tell apart: the same skills and kind, difficulty within 0.1 "
        "logit, discrimination within 0.3, the same guess/slip. The sensitivity table shows whether removing one "
        "matters."), [],
        [Table("Near-duplicate pairs", t["redundant"], {
            "item": ("item", None), "twin": ("twin", None), "skills": ("skills", None), "kind": ("kind", None),
            "difficulty": ("difficulty", num(1)), "twin_difficulty": ("twin difficulty", num(1))}, "redundant.csv")]
        if len(t["redundant"]) else [], ["redundant.csv"]))
    return S


METHOD = """\
- **Simulation.** Each learner is drawn from the population (subgroups with their own prior knowledge, learning speed, \
memory, persistence and study schedule) and taught by the policy for up to the horizon's items. The episode ends early \
when every skill is mastered at once, or when the learner drops out (engagement model: boredom, frustration, flow). \
Learners and their luck are drawn from the seed: the same seed gives the same report.
- **Mastery** is the student model's true (latent) mastery at or above the threshold; for BKT, the skill is known.
- **Time to mastery** of a skill: items until it was first mastered. **Practice**: items exercising it until then.
- **Prerequisite gap**: at the first item exercising a skill, a declared prerequisite was not mastered.
- **Stall**: a learner practised a skill they did not know, did not drop out, and never mastered it.
- **Failure rate of learners who mastered an item's skills**: observed responses to the item by learners who had \
mastered every skill it exercises; a well-tagged item of the right difficulty is failed only by slips.
- **What-ifs** run on fewer learners (the first learners of the main run), each change on the same learners, and \
report paired differences with 95% CIs; the strongest are re-measured on further, fresh learners. A change is called \
significant when its z-score passes a Bonferroni bound for the number of changes compared at that stage.
- **Thresholds** behind the findings are named constants in `pedagogym/stress/findings.py`.
"""


def _header(results: "Results", wall_s: float) -> tuple[str, list[tuple[str, str]]]:
    prep, cfg = results.prepared, results.prepared.config
    c = prep.designer
    facts = [("Curriculum", f"{c.name} ({c.n_skills} skills, {c.n_items} items) — {c.source}"),
             ("Simulated learners obey", prep.truth.source if prep.has_truth else "the designer's file"),
             ("Student model(s)", ", ".join(cfg.models)),
             ("Population", f"{prep.population.name} ({', '.join(prep.population.subgroup_names)})"),
             ("Policy", cfg.policy), ("Learners", f"{cfg.learners:,} (seed {cfg.seed})"),
             ("Horizon", f"{cfg.horizon} items; sessions of {cfg.session_minutes:g} min; "
                         f"engagement/dropout {'on' if cfg.engagement else 'off'}"),
             ("Mastery threshold", f"{cfg.mastery_threshold:g}"),
             ("Run time", f"{wall_s:.1f} s")]
    return f"Stress test: {c.name}", facts


def render_markdown(title: str, facts: list[tuple[str, str]], fs: list[Finding], secs: list[Section],
                    figs: dict[str, Path | None]) -> str:
    L = [f"# {title}", ""]
    L += [f"- **{k}:** {v}" for k, v in facts] + ["", "## Findings", ""]
    for k, f in enumerate(fs, 1):
        L.append(f"{k}. **{f.severity}** — {f.text} → [{f.ref}](#{f.ref})")
    if not fs:
        L.append("Nothing notable.")
    for s in secs:
        L += ["", f"## {s.title}", f'<a id="{s.anchor}"></a>', "", s.intro, ""]
        for name in s.figures:
            if figs.get(name):
                L += [f"![{name}](figures/{figs[name].name})", ""]
        for tb in s.tables:
            L += [f"**{tb.caption}** (`{tb.csv}`)", "", "| " + " | ".join(tb.headers()) + " |",
                  "|" + "---|" * len(tb.columns)]
            L += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in tb.rows()]
            L.append("")
        if not s.tables and not any(figs.get(n) for n in s.figures):
            L += ["Nothing to show.", ""]
        L.append("Data: " + ", ".join(f"`{c}`" for c in s.csvs))
    L += ["", "## Method", "", METHOD]
    return "\n".join(L) + "\n"


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:24px auto;padding:0 18px;
color:#222;line-height:1.45}
h1{font-size:26px;margin-bottom:4px} h2{font-size:20px;margin-top:38px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 18px 0} th,td{border:1px solid #ddd;padding:3px 7px;
text-align:left} th{background:#f3f3f3} tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto;border:1px solid #eee;margin:6px 0}
code{background:#f2f2f2;padding:0 3px;border-radius:3px;font-size:90%}
.facts td:first-child{font-weight:600;background:#f7f7f7} .sev{display:inline-block;min-width:58px;text-align:center;
border-radius:4px;color:#fff;font-size:12px;padding:1px 6px;margin-right:6px}
.high{background:#c62828}.medium{background:#ef6c00}.info{background:#546e7a}
ol.findings li{margin-bottom:8px} .muted{color:#666;font-size:13px} nav a{margin-right:12px;font-size:14px}
"""


def render_html(title: str, facts: list[tuple[str, str]], fs: list[Finding], secs: list[Section],
                figs: dict[str, Path | None]) -> str:
    H = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
         f"<style>{CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>", '<table class="facts">']
    H += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts]
    H += ["</table>", "<nav>" + "".join(f'<a href="#{s.anchor}">{html.escape(s.title.split(":")[0])}</a>' for s in secs)
          + '<a href="#method">Method</a></nav>', '<h2 id="findings">Findings</h2>', '<ol class="findings">']
    for f in fs:
        H.append(f'<li><span class="sev {f.severity}">{f.severity}</span>{_code(f.text)} '
                 f'<a href="#{f.ref}">→ {html.escape(f.ref)}</a></li>')
    H.append("</ol>" if fs else "</ol><p>Nothing notable.</p>")
    for s in secs:
        H += [f'<h2 id="{s.anchor}">{html.escape(s.title)}</h2>', f"<p>{_code(s.intro)}</p>"]
        for name in s.figures:
            path = figs.get(name)
            if path:
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                H.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        for tb in s.tables:
            H += [f"<p><b>{html.escape(tb.caption)}</b> <span class='muted'>({html.escape(tb.csv)})</span></p>",
                  "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in tb.headers()) + "</tr>"]
            H += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in tb.rows()]
            H.append("</table>")
        if not s.tables and not any(figs.get(n) for n in s.figures):
            H.append("<p class='muted'>Nothing to show.</p>")
        H.append("<p class='muted'>Data: " + ", ".join(f"<code>{html.escape(c)}</code>" for c in s.csvs) + "</p>")
    method = "".join(f"<li>{_code(line[2:]).replace('**', '')}</li>" for line in
                     re.sub(r"\\\n", "", METHOD).splitlines() if line.startswith("- "))
    H += ['<h2 id="method">Method</h2>', f"<ul>{method}</ul>", "</body></html>"]
    return "\n".join(H) + "\n"


def write_report(results: "Results", out: Path, started: float) -> dict:
    prep, cfg, t = results.prepared, results.prepared.config, results.tables
    out.mkdir(parents=True, exist_ok=True)
    t_report = time.perf_counter()
    fs = findings(t, cfg.models, prep.designer, cfg.horizon)
    t["findings"] = findings_table(fs)
    for name in CSV_FILES:
        _write_csv(t.get(name, pd.DataFrame()), out / f"{name}.csv")
    figs = plot_all(out)
    facts = dict(results.facts, has_truth=prep.has_truth)
    secs = sections(t, figs, facts)
    wall = time.perf_counter() - started
    title, header = _header(results, wall)
    atomic_write_text(out / "report.md", render_markdown(title, header, fs, secs, figs))
    atomic_write_text(out / "report.html", render_html(title, header, fs, secs, figs))
    timings = dict(results.facts.get("timings", {}), report_s=time.perf_counter() - t_report)
    manifest = {
        "config": dataclasses.asdict(cfg), "curriculum": prep.designer.name,
        "curriculum_hash": prep.designer.content_hash(),
        "true_curriculum_hash": prep.truth.content_hash() if prep.has_truth else None,
        "versions": versions(), "git_commit": git_commit(), "timings": timings,
        "wall_time_s": time.perf_counter() - started, "findings": len(fs),
        "files": sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")),
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
