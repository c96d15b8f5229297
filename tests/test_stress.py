"""``pedagogym stress``: planted curriculum defects are named by the findings (each against a
control without the defect, so the test can fail), curriculum validation errors come before
any simulation, and the command writes every promised file (an HTML report with embedded
figures, report.md, the CSVs, manifest.json).

The planted-defect runs share one shape (5 skills, 20 items, the same learners and horizon),
so each pytest worker compiles the stress rollout once."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pedagogym.stress.cli import main  # `pedagogym stress ...` without the verb
from pedagogym.stress import StressConfig, prepare, simulate
from pedagogym.stress.findings import findings
from pedagogym.stress.plots import FIGURES
from pedagogym.stress.report import CSV_FILES
from pedagogym.stress.tables import wilson

# s1 -> s2 -> s3 and s4 -> s5, four practice items per skill
CHAIN = {"s1": [], "s2": ["s1"], "s3": ["s2"], "s4": [], "s5": ["s4"]}
LEARNERS, HORIZON = 1500, 60


def write_curriculum(path: Path, prereqs: dict[str, list[str]] = CHAIN, difficulty: dict[str, object] | None = None,
                     name: str = "planted") -> Path:
    """A TOML curriculum: ``prereqs`` skill -> its prerequisites; items ``<skill>_0 .. _3`` of
    gently rising difficulty, overridden by ``difficulty`` (item id -> value, written as is)."""
    difficulty = difficulty or {}
    lines = [f'name = "{name}"', 'description = "a test curriculum"', ""]
    for sid, pre in prereqs.items():
        lines += ["[[skills]]", f'id = "{sid}"']
        if pre:
            lines.append("prerequisites = [" + ", ".join(f'"{p}"' for p in pre) + "]")
        lines.append("")
    for k, sid in enumerate(prereqs):
        for j in range(4):
            iid = f"{sid}_{j}"
            d = difficulty.get(iid, round(-1.0 + 0.2 * k + 0.15 * j, 2))
            d = f'"{d}"' if isinstance(d, str) else d
            lines += ["[[items]]", f'id = "{iid}"', f'skills = ["{sid}"]', f"difficulty = {d}", "duration = 40", ""]
    path.write_text("\n".join(lines))
    return path


def stress_findings(curriculum: Path, truth: Path | None = None) -> pd.DataFrame:
    """Simulate (no what-ifs) and return the findings as a table (severity, topic, finding, subjects)."""
    prep = prepare(StressConfig(curriculum=str(curriculum), true_curriculum=None if truth is None else str(truth),
                                learners=LEARNERS, horizon=HORIZON, sensitivity=False))
    res = simulate(prep)
    fs = findings(res.tables, prep.config.models, prep.designer, HORIZON)
    return pd.DataFrame([f.as_row() for f in fs])


def named(fs: pd.DataFrame, topic: str, subject: str, severity: str = "high") -> pd.DataFrame:
    return fs[(fs.topic == topic) & (fs.severity == severity) & fs.subjects.str.split("; ").apply(lambda s: subject in s)]


# ---- planted defects -----------------------------------------------------------------------------
def test_planted_too_hard_item_on_a_prerequisite_path_is_named(tmp_path):
    """``s2_1`` is far harder than every other item of ``s2``, which ``s3`` needs: the findings
    say that learners who mastered ``s2`` still fail it, and that it sits on the path to ``s3``."""
    hard = stress_findings(write_curriculum(tmp_path / "hard.toml", difficulty={"s2_1": 4.5}))
    hit = named(hard, "hard_item", "s2_1")
    assert len(hit) == 1, hard.finding.tolist()
    text = hit.finding.iloc[0]
    assert "`s2_1`" in text and "still fail it" in text and "prerequisite path" in text and "`s3`" in text
    # the same curriculum without the defect: no item is called far too hard
    clean = stress_findings(write_curriculum(tmp_path / "clean.toml"))
    assert not len(clean[(clean.topic == "hard_item") & (clean.severity == "high")]), clean.finding.tolist()


def test_planted_missing_prerequisite_edge_is_named(tmp_path):
    """The learners really need ``s2`` for ``s5``; the designer's file does not say so. With
    ``--true-curriculum`` the findings name the missing edge ``s2 -> s5``; when the learners obey
    the designer's file, no edge is suggested."""
    designer = write_curriculum(tmp_path / "designer.toml")
    truth = write_curriculum(tmp_path / "truth.toml", prereqs={**CHAIN, "s5": ["s4", "s2"]})
    fs = stress_findings(designer, truth)
    hit = named(fs, "missing_prereq", "s2 -> s5")
    assert len(hit) == 1, fs.finding.tolist()
    assert "`s2 -> s5`" in hit.finding.iloc[0]
    assert fs[fs.topic == "missing_prereq"].shape[0] == 1  # and nothing else is suggested
    control = stress_findings(designer, designer)
    assert not (control.topic == "missing_prereq").any(), control.finding.tolist()


# ---- validation before simulation -----------------------------------------------------------------
@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if a simulation starts."""
    def boom(*args, **kwargs):
        raise AssertionError("a simulation started before validation finished")

    monkeypatch.setattr("pedagogym.stress.runner.simulate", boom)


BROKEN = [  # (what to change in the clean test curriculum, the key and problem the message must name)
    ({"prereqs": {**CHAIN, "s2": ["s9"]}}, "skills[1].prerequisites[0]", "unknown skill 's9'"),
    ({"prereqs": {"s1": ["s3"], **{k: v for k, v in CHAIN.items() if k != "s1"}}}, "prerequisites", "cycle"),
    ({"difficulty": {"s1_0": "hard"}}, "items[0].difficulty", "expected a number"),
]


@pytest.mark.parametrize("change, key, problem", BROKEN, ids=["unknown-prereq", "cycle", "bad-type"])
def test_invalid_curriculum_fails_first_naming_file_and_key(tmp_path, capsys, no_simulation, change, key, problem):
    bad = write_curriculum(tmp_path / "bad.toml", **change)
    out = tmp_path / "never"
    # a bad setting too: the curriculum's error is the one reported
    assert main([str(bad), "--learners", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "invalid curriculum" in err and str(bad) in err and key in err and problem in err, err
    assert "learners" not in err
    assert not out.exists()


def test_missing_file_and_mismatched_true_curriculum_fail_before_simulation(tmp_path, capsys, no_simulation):
    assert main([str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o1")]) == 2
    assert "nope.toml" in capsys.readouterr().err
    designer = write_curriculum(tmp_path / "designer.toml")
    assert main([str(designer), "--true-curriculum", "tiny", "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "tiny.toml: skills: the true curriculum must have the designer's skill ids" in err, err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.parametrize("args, needle", [
    (["--learners", "1"], "learners: must be from 2 to 100,000,000"),
    (["--policy", "telepathy"], "unknown policy 'telepathy'"),
    (["--model", "nope"], "unknown student_model 'nope'"),
    (["--population", "martians"], "unknown population 'martians'"),
])
def test_bad_setting_fails_before_simulation(tmp_path, capsys, no_simulation, args, needle):
    assert main(["tiny", *args, "--out", str(tmp_path / "o")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_wilson_interval_contains_the_estimate_at_the_edges():
    for k, n in ((0, 470), (470, 470), (3, 10), (1, 1)):
        lo, hi = wilson(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert wilson(0, 470)[0] == 0.0 and wilson(470, 470)[1] == 1.0
    assert wilson(3, 10) == pytest.approx((0.1078, 0.6032), abs=1e-4)  # the textbook values


# ---- the whole command ----------------------------------------------------------------------------
def test_cli_writes_every_promised_file(tmp_path, capsys):
    """End to end, with what-ifs, on the planted hard item: every CSV and figure, a self-contained
    HTML report whose images are embedded PNGs, report.md linking existing figures, a manifest,
    equity CIs around their estimates, and ranked what-ifs, the strongest confirmed on more learners."""
    cur = write_curriculum(tmp_path / "hard.toml", difficulty={"s2_1": 4.5})
    out = tmp_path / "report"
    rc = main([str(cur), "--learners", "400", "--horizon", str(HORIZON), "--whatif-learners", "64",
               "--out", str(out), "--quiet"])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert "s2_1" in stdout and str(out / "report.html") in stdout

    for name in CSV_FILES:
        assert (out / f"{name}.csv").is_file(), name
    learners = pd.read_csv(out / "learners.csv")
    assert len(learners) == 400 and set(learners.subgroup) >= {"high_prior_daily", "low_prior_weekly"}
    figures = sorted((out / "figures").glob("*.png"))
    assert {p.stem for p in figures} == {"completion", "time_to_mastery", "skill_mastery", "funnel", "bottlenecks",
                                         "prereq_gaps", "missing_prereqs", "equity", "sensitivity"} <= set(FIGURES)

    html = (out / "report.html").read_text()
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert len(srcs) == len(figures)
    for src in srcs:  # embedded, decodable PNGs: no file or network reference to break
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html
    for anchor in set(re.findall(r'href="#([\w-]+)"', html)):  # every finding / nav link has its section
        assert f'id="{anchor}"' in html, anchor
    assert "<code>s2_1</code>" in html

    md = (out / "report.md").read_text()
    for rel in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (out / rel).is_file(), rel
    assert "## Findings" in md and "## Sensitivity" in md

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["learners"] == 400 and manifest["findings"] >= 1
    assert {"report.html", "report.md", "findings.csv", "figures/funnel.png"} <= set(manifest["files"])

    eq = pd.read_csv(out / "equity.csv")
    assert eq.n.sum() == 400
    for m in ("completed", "dropped", "post_test"):
        assert np.all((eq[f"{m}_lo"] <= eq[m] + 1e-6) & (eq[m] <= eq[f"{m}_hi"] + 1e-6))

    sens = pd.read_csv(out / "sensitivity.csv")
    assert {"remove_item", "easier_item", "remove_edge", "move_earlier"} <= set(sens.kind)
    assert sorted(sens["rank"]) == list(range(1, len(sens) + 1))
    confirmed = sens[sens.stage == "confirmed"]
    assert len(confirmed) and (confirmed.learners > 64).all() and (sens[sens.stage == "screening"].learners == 64).all()
    assert ((sens.d_skill_time_lo <= sens.d_skill_time) & (sens.d_skill_time <= sens.d_skill_time_hi)).all()
