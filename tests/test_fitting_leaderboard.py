"""Train/test files and the model leaderboard (issue 21, items 2-3).

* The weighted AUC of the bootstrap equals the rank AUC (:func:`pedagogym.fitting.metrics.auc`)
  at unit weights and equals it on an explicitly resampled copy (integer weights = repeats).
* ``fit TRAIN --test TEST`` scores exactly the test file's responses (each learner online,
  from their own earlier responses), every model on the same responses, and writes a sorted
  leaderboard with bootstrap intervals that contain the point estimates.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from pedagogym.fitting import simulate_log
from pedagogym.fitting.leaderboard import _WeightedAUC, ece, leaderboard
from pedagogym.fitting.metrics import auc
from pedagogym.student_models.bkt import BKT, BKTParams


def test_weighted_auc_matches_rank_auc_on_repeats():
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, 300), np.round(rng.random(300), 1)  # ties
    w = rng.integers(0, 4, 300).astype(float)
    wa = _WeightedAUC(y, p)
    assert wa(np.ones(300)) == pytest.approx(auc(y, p))
    rep = np.repeat(np.arange(300), w.astype(int))
    assert wa(w) == pytest.approx(auc(y[rep], p[rep]))
    assert ece(y[rep], p[rep]) == pytest.approx(ece(y, p, w=w))


def test_leaderboard_sorts_and_brackets_point_estimates():
    rng = np.random.default_rng(2)
    learner = np.repeat(np.arange(40), 10)
    truth = rng.random(400)
    y = (rng.random(400) < truth).astype(float)
    rows = leaderboard([("noisy", y, np.clip(truth + rng.normal(0, 0.08, 400), 0.02, 0.98)), ("true", y, truth),
                        ("flat", y, np.full(400, y.mean()))], learner, n_boot=100)
    assert [r["model"] for r in rows] == ["true", "noisy", "flat"] and [r["rank"] for r in rows] == [1, 2, 3]
    for r in rows[:2]:
        for m in ("log_loss", "auc", "rmse"):  # (ECE is biased upward under resampling: its interval may sit above)
            assert r[f"{m}_lo"] <= r[m] <= r[f"{m}_hi"], (r["model"], m)
        assert 0 <= r["ece_lo"] <= r["ece_hi"] < 0.2
    with pytest.raises(ValueError, match="different responses"):
        leaderboard([("a", y, truth), ("b", y[::-1], truth)], learner)


def test_fit_with_a_test_file_writes_the_leaderboard(tmp_path):
    from pedagogym.fitting.cli import fit_command

    params = BKTParams(*(jnp.full(2, v, jnp.float32) for v in (0.3, 0.2, 0.0, 0.2, 0.1)))
    df = simulate_log(BKT(), params, 60, 15, jax.random.PRNGKey(3))
    cols = ["learner_id", "item_id", "skill_id", "correct", "timestamp"]
    train, test = df[df.learner_id < "learner-00040"][cols], df[df.learner_id >= "learner-00040"][cols]
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "out"
    assert fit_command([tmp_path / "train.csv"], "bkt,pfa", out, test=[tmp_path / "test.csv"], quiet=True,
                       num_fits=2, max_trait_interactions=2000) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["model"]) == {"bkt", "pfa", "baseline"}
    assert (board["n_responses"] == len(test)).all() and (board["n_learners"] == 20).all()  # exactly the test file
    assert list(board["log_loss"]) == sorted(board["log_loss"]) and list(board["rank"]) == [1, 2, 3]
    assert (board["log_loss_lo"] <= board["log_loss"]).all() and (board["log_loss"] <= board["log_loss_hi"]).all()
    assert board.set_index("model").loc["bkt", "log_loss"] < board.set_index("model").loc["baseline", "log_loss"]
    md = (out / "leaderboard.md").read_text()
    assert "a separate test file" in md and "| 1 |" in md and "†" not in md  # a log with a clock: nothing marked
    report = (out / "report.md").read_text()
    assert "separate test file" in report and "Reading the log" not in report  # pedagogym's own format: no notes
    # the models fitted side by side (workers=2) give the same files as one after the other
    one = tmp_path / "one"
    assert fit_command([tmp_path / "train.csv"], "bkt,pfa", one, test=[tmp_path / "test.csv"], quiet=True,
                       num_fits=2, max_trait_interactions=2000, workers=1) == 0
    for name in ("leaderboard.csv", "params_bkt.csv", "params_pfa.csv", "population_pfa.toml"):
        assert (one / name).read_text() == (out / name).read_text(), name
    timeless = lambda d: pd.read_csv(d / "metrics.csv").filter(regex="^(?!.*seconds)")  # noqa: E731
    pd.testing.assert_frame_equal(timeless(one), timeless(out))


def test_time_models_are_marked_not_applicable_on_a_log_without_timestamps(tmp_path):
    # pyBKT's layout has no clock: time is the row order, 1 s apart, on which a model of
    # forgetting over time says nothing (HLR floors the half-life at 15 minutes)
    from pedagogym.fitting import read_log
    from pedagogym.fitting.fit import FITTERS, NOT_TIMED, applicability_notes
    from pedagogym.fitting.leaderboard import leaderboard_markdown

    (tmp_path / "bkt.csv").write_text("user_id,skill_name,correct\nu1,add,1\nu1,add,0\nu2,add,1\n")
    (tmp_path / "own.csv").write_text("learner_id,item_id,skill_id,correct,timestamp\nu1,i1,add,1,0\nu1,i1,add,0,60\n")
    untimed, timed = read_log(tmp_path / "bkt.csv"), read_log(tmp_path / "own.csv")
    assert not untimed.timed and timed.timed
    assert any(n.startswith("no timestamps in this format") for n in untimed.notes)
    assert {m for m, f in FITTERS.items() if f.uses_time} == {"hlr", "efc", "actr", "fsrs"}
    assert applicability_notes(FITTERS["hlr"], untimed) == [NOT_TIMED]
    assert applicability_notes(FITTERS["hlr"], timed) == applicability_notes(FITTERS["bkt"], untimed) == []
    rng = np.random.default_rng(0)
    y, who = rng.integers(0, 2, 200).astype(float), np.repeat(np.arange(20), 10)
    rows = leaderboard([("bkt", y, np.full(200, 0.5)), ("hlr", y, np.full(200, 0.9))], who, n_boot=20)
    md = leaderboard_markdown(rows, "test", n_boot=20, not_applicable=("hlr",))
    assert "| hlr † |" in md and "| bkt |" in md and "| bkt † |" not in md and "\n† Not applicable" in md
    assert "†" not in leaderboard_markdown(rows, "test", n_boot=20)
    from pedagogym.fitting.report import report_markdown

    summary = {"learners": 2, "interactions": 3, "items": 1, "skills": 1, "span_days": 0.0, "reading": list(untimed.notes)}
    options = {"holdout": 0.2, "seed": 0, "min_group_size": 10}
    assert "Reading the log:\n\n- read as pybkt" in report_markdown([], summary, options, [])
