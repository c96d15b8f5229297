"""Calibration from learning logs: the log reader's validation rules, pseudonymisation,
parameter recovery on logs simulated by the project's own models, subgroup suppression,
and the privacy of every output file.

Recovery tolerances (each log has >= 50,000 responses):

* BKT (3 skills, 2,000 learners x 30 responses): p_learn, p_guess, p_slip within 0.03 and
  p_init within 0.05 of the truth. Each skill has ~20,000 responses in 2,000 sequences;
  the standard errors are below 0.01, so 0.03 is > 3 SE.
* IRT 2PL (20 items, 1,000 learners x 50 responses, ability sd 1): item location relative
  to its skill's initial ability (``b - theta0``, the identified quantity) within 0.15 RMSE
  and 0.3 at worst; discrimination (geometric mean 1) within 0.3 of the truth; ability sd
  within 0.15 of 1.0; growth per correct response within 0.04 of 0.1. With ~2,500 responses
  an item, SE(b) ~ 0.06 and SE(a) ~ 0.08, so the worst of 20 items stays inside ~3.5 SE.
* PFA (5 skills, 1,000 learners x 50): beta within 0.12, gamma and rho within 0.03: a logistic
  regression with ~10,000 responses a skill (SE(beta) ~ 0.04, SE(gamma) ~ 0.008).
* EFC (8 words, 500 learners x 100 responses): decay rate theta within 12 % relative
  (SE ~ 3-4 % a word).
* IRT 1PL, HLR, ACT-R, FSRS: stated in each test's docstring below. (irt3pl has no fitter.)

Agreement with pyBKT: within 0.02 per parameter on the same log, pyBKT's figures recorded
from benchmarks/pybkt_agreement.py run in its own virtualenv (``test_bkt_em_agrees_with_pybkt``).
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from pedagogym.fitting import (FitError, LogError, apply_fitted_params, fit, from_frame, read_log, simulate_log,
                               synthetic_curriculum)
from pedagogym.fitting.engine import Spec
from pedagogym.fitting.fit import ItemPrior, make_groups, sessions_per_week
from pedagogym.fitting.metrics import auc, metrics
from pedagogym.fitting.population_file import FittedParamsError, dumps_toml
from pedagogym.student_models.bkt import BKT, BKTParams
from pedagogym.student_models.population import Population, Subgroup, load_population

GOOD = """learner_id,item_id,skill_id,correct,timestamp,response_time,rating,group
alice,q1,s1,1,2024-01-01T10:00:00Z,12.5,3,A
alice,q2,s1;s2,0,2024-01-01T10:01:00+00:00,8,,A
bob,q1,s1,0,1704103200,,1,B
bob,q3,s2,1,1704103260.5,3.0,4,B
"""


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def per_skill(log_skill_ids, values: dict[str, float]) -> np.ndarray:
    return np.asarray([values[s] for s in log_skill_ids])


# ---- the log reader ----------------------------------------------------------------------
def test_read_log_good_file(tmp_path):
    log = read_log(write(tmp_path, GOOD), salt="pepper")
    assert (log.n_interactions, log.n_learners, log.n_items, log.n_skills) == (4, 2, 3, 2)
    assert log.skill_ids == ("s1", "s2")
    assert log.q_matrix[log.item_ids.index("q2")].tolist() == [True, True]
    assert log.timestamp[0] == pytest.approx(1704103200.0)  # ISO 8601 and unix seconds agree
    assert log.rating.tolist() == [3, 0, 1, 4]  # blank rating = 0 (not recorded)
    assert np.isnan(log.response_time[2])
    assert log.group_names == ("A", "B")
    assert not {"alice", "bob"} & set(log.learner_ids)


@pytest.mark.parametrize("row, reason", [
    ("carol,q1,s1,2,2024-01-02T10:00:00Z,,,A", "correct must be 0 or 1"),
    ("carol,q1,s1,yes,2024-01-02T10:00:00Z,,,A", "correct must be 0 or 1"),
    ("carol,q1,s1,1,yesterday,,,A", "timestamp is neither ISO 8601 nor unix seconds"),
    ("carol,q1,s1,1,1704103200000,,,A", "timestamp is neither ISO 8601 nor unix seconds"),  # milliseconds
    ("carol,q1,s1,1,,,,A", "empty timestamp"),
    ("carol,q1,s1,1,2024-01-02T10:00:00Z,,5,A", "rating must be 1, 2, 3 or 4"),
    ("carol,q1,s1,1,2024-01-02T10:00:00Z,,0,A", "rating must be 1, 2, 3 or 4"),
    ("carol,q1,s1,1,2024-01-02T10:00:00Z,-3,,A", "response_time must be a number of seconds >= 0"),
    (",q1,s1,1,2024-01-02T10:00:00Z,,,A", "empty learner_id"),
    ("carol,,s1,1,2024-01-02T10:00:00Z,,,A", "empty item_id"),
    ("carol,q9,,1,2024-01-02T10:00:00Z,,,A", "empty skill_id"),
    ("carol,q9,s1;,1,2024-01-02T10:00:00Z,,,A", "empty skill id in skill_id"),
    ("carol,q1,s1,1,2024-01-02T10:00:00Z,,,", "empty group"),
    ("alice,q1,s1,1,2023-12-31T10:00:00Z,,,A", "time goes backwards for this learner"),
    ("alice,q1,s1,1,2024-01-02T10:00:00Z,,,B", "differs from this learner's earlier group"),
    ("carol,q1,s2,1,2024-01-02T10:00:00Z,,,A", "has skills 's2' here but different skills"),
])
def test_read_log_reports_each_bad_row_rule(tmp_path, row, reason):
    with pytest.raises(LogError) as err:
        read_log(write(tmp_path, GOOD + row + "\n"))
    assert err.value.problems == [(6, err.value.problems[0][1])]  # header = line 1, 4 good rows, then ours
    assert reason in err.value.problems[0][1]
    assert "line 6: " in str(err.value) and "nothing was read" in str(err.value)


def test_read_log_missing_column_and_missing_file(tmp_path):
    with pytest.raises(LogError, match=r"missing required column\(s\) \['correct'\]"):
        read_log(write(tmp_path, "learner_id,item_id,skill_id,timestamp\na,q,s,1\n"))
    with pytest.raises(LogError, match="log file not found"):
        read_log(tmp_path / "nope.csv")
    with pytest.raises(LogError, match="unknown log format"):
        read_log(write(tmp_path, GOOD, "log.json"))


def test_log_error_lists_first_20_bad_rows_and_counts_the_rest(tmp_path):
    rows = "".join(f"l{k},q1,s1,7,2024-01-01T10:00:00Z,,,A\n" for k in range(25))
    with pytest.raises(LogError) as err:
        read_log(write(tmp_path, GOOD + rows))
    msg = str(err.value)
    assert "25 bad row(s) of 29" in msg and "... and 5 more bad row(s)" in msg
    assert msg.count("correct must be 0 or 1") == 20 and len(err.value.problems) == 25
    assert "line 6:" in msg and "line 25:" in msg and "line 26:" not in msg


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(LogError, match="pyarrow"):
            read_log(write(tmp_path, "x", "log.parquet"))
    else:  # pyarrow present: a Parquet log reads like the CSV
        df = pd.read_csv(write(tmp_path, GOOD), dtype=str, keep_default_na=False)
        df.to_parquet(tmp_path / "log.parquet")
        assert read_log(tmp_path / "log.parquet", salt="p").n_interactions == 4


def test_pseudonyms_are_salted_and_raw_ids_are_gone(tmp_path):
    path = write(tmp_path, GOOD)
    a, b, c = read_log(path, salt="s1"), read_log(path, salt="s1"), read_log(path, salt="s2")
    assert a.learner_ids == b.learner_ids and a.learner_ids != c.learner_ids
    assert read_log(path).learner_ids != read_log(path).learner_ids  # random salt per run
    frame = a.to_frame().to_csv()
    assert "alice" not in frame and "bob" not in frame


# ---- population pieces -------------------------------------------------------------------
def _grouped_log(sizes: dict[str, int]):
    rows = []
    for g, n in sizes.items():
        for k in range(n):
            for j in range(3):
                rows.append({"learner_id": f"{g}-{k}", "item_id": "q", "skill_id": "s", "correct": j % 2,
                             "timestamp": 1_700_000_000 + j * 86400 * 2, "group": g})
    return from_frame(pd.DataFrame(rows), salt="x")


def test_small_subgroups_are_merged_or_omitted():
    merged = make_groups(_grouped_log({"big": 12, "s1": 4, "s2": 7}), min_group_size=10)
    assert merged.names == ("big", "other") and merged.n_learners == (12, 11)
    assert merged.n_suppressed == 2 and merged.merged and merged.n_omitted_learners == 0
    omitted = make_groups(_grouped_log({"big": 12, "s1": 4}), min_group_size=10)
    assert omitted.names == ("big",) and omitted.n_omitted_learners == 4 and not omitted.merged
    with pytest.raises(FitError, match="no subgroup has 10 or more learners"):
        make_groups(_grouped_log({"a": 3, "b": 4}), min_group_size=10)


def test_too_few_learners_is_refused():
    with pytest.raises(FitError, match="fewer than min_group_size=10"):
        fit(_grouped_log({"a": 6}), "bkt")


def test_sessions_per_week_from_timestamps():
    log = _grouped_log({"g": 10})  # 3 sessions, 2 days apart: 3.5 sessions a week
    assert sessions_per_week(log, np.zeros(10, np.int32), 1)[0] == pytest.approx(3.5)


def test_auc_and_metrics():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 200), np.round(rng.random(200), 1)  # ties
    brute = np.mean([(pi > pj) + 0.5 * (pi == pj) for pi, yi in zip(p, y) if yi for pj, yj in zip(p, y) if not yj])
    assert auc(y, p) == pytest.approx(brute)
    m = metrics(np.array([1, 0]), np.array([0.8, 0.4]))
    assert m["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2) and m["auc"] == 1.0


def test_toml_writer_round_trips():
    data = {"name": "x", "subgroups": [{"name": "a b", "prior": [0.5, 1e-5]}],
            "model": {"bkt": {"skills": ["s.1", "s 2"], "p_init": [0.1, 0.2], "items": {"ids": ["q"]}}}}
    assert tomllib.loads(dumps_toml(data, comment="hi")) == data


def test_apply_fitted_params_maps_by_id():
    from pedagogym.curriculum.spec import Curriculum, Item, Skill
    from pedagogym.student_models.irt import IRT

    curr = Curriculum("c", (Skill("a", "a"), Skill("b", "b")), (Item("q1", ("a",)), Item("q2", ("b",))))
    table = {"model": {"irt2pl": {"skills": ["b"], "theta0": [0.7], "growth": [0.3], "fail_growth": [0.1],
                                  "guess": [0.2], "items": {"ids": ["q2"], "difficulty": [1.5],
                                                            "discrimination": [2.0]}}}}
    applied = apply_fitted_params(IRT(n_pl=2), curr, table)
    assert np.allclose(applied.params.theta0, [-1.0, 0.7]) and np.allclose(applied.params.growth, [0.15, 0.3])
    assert np.allclose(applied.curriculum.difficulty, [0.0, 1.5])
    assert np.allclose(applied.curriculum.discrimination, [1.0, 2.0])
    assert applied.missing_skills == ("a",) and applied.missing_items == ("q1",)
    with pytest.raises(FittedParamsError, match=r"no \[model.bkt\] table of fitted parameters; it has irt2pl"):
        apply_fitted_params(BKT(), curr, table)


# ---- parameter recovery (logs from the project's own models) ------------------------------
def test_bkt_recovery_within_003():
    truth = {"p_init": [0.2, 0.35, 0.1], "p_learn": [0.15, 0.1, 0.25], "p_forget": [0.0, 0.0, 0.0],
             "p_guess": [0.2, 0.25, 0.15], "p_slip": [0.1, 0.08, 0.12]}
    params = BKTParams(**{k: jnp.asarray(v, jnp.float32) for k, v in truth.items()})
    df = simulate_log(BKT(), params, 2000, 30, jax.random.PRNGKey(0))
    assert len(df) >= 50_000
    log = from_frame(df, salt="t")
    res = fit(log, "bkt", holdout=0.0, estimate_traits=False)
    for field, tol in (("p_learn", 0.03), ("p_guess", 0.03), ("p_slip", 0.03), ("p_init", 0.05)):
        want = per_skill(log.skill_ids, {f"s{k}": v for k, v in enumerate(truth[field])})
        np.testing.assert_allclose(res.skill_params[field], want, atol=tol, err_msg=field)
    assert np.all(res.skill_params["p_forget"] == 0.0) and res.converged["em"]


def test_irt2pl_recovery():
    from pedagogym.student_models.irt import IRT, IRTParams

    rng = np.random.default_rng(0)
    S, K = 4, 5
    b, a = rng.normal(0, 0.8, S * K), np.exp(rng.normal(0, 0.25, S * K))
    a = a / np.exp(np.mean(np.log(a)))  # the fit's scale: geometric-mean discrimination 1
    curriculum = synthetic_curriculum(S, K, difficulty=b, discrimination=a)
    theta0 = np.array([-0.5, 0.0, 0.5, -1.0])
    true = IRTParams(theta0=jnp.asarray(theta0, jnp.float32), growth=jnp.full(S, 0.1), fail_growth=jnp.full(S, 0.03),
                     guess=jnp.full(S, 0.2))
    pop = Population("p", (Subgroup("all", prior=(0.0, 1.0), speed=(0, 0), memory=(0, 0), persistence=(0, 0)),))
    df = simulate_log(IRT(n_pl=2), true, 1000, 50, jax.random.PRNGKey(1), curriculum=curriculum, population=pop)
    log = from_frame(df, salt="t")
    res = fit(log, "irt2pl", holdout=0.0, estimate_traits=False)
    item = [curriculum.item_ids.index(i) for i in res.item_ids]
    skill_of_item = [res.skill_ids.index(curriculum.items[i].skills[0]) for i in item]
    true_theta0 = per_skill(res.skill_ids, dict(zip(curriculum.skill_ids, theta0)))
    rel_est = res.item_params["difficulty"] - res.skill_params["theta0"][skill_of_item]
    rel_true = b[item] - true_theta0[skill_of_item]
    assert np.sqrt(np.mean((rel_est - rel_true) ** 2)) < 0.15 and np.max(np.abs(rel_est - rel_true)) < 0.3
    np.testing.assert_allclose(res.item_params["discrimination"], a[item], atol=0.3)
    np.testing.assert_allclose(res.skill_params["growth"], 0.1, atol=0.04)
    assert res.subgroups[0].traits["prior"][1] == pytest.approx(1.0, abs=0.15)


def test_pfa_recovery():
    from pedagogym.student_models.pfa import PFA, PFAParams

    truth = {"beta": [-1.0, -0.5, 0.0, -1.5, -0.8], "gamma": [0.25, 0.15, 0.3, 0.2, 0.1], "rho": [0.05, 0.0, 0.1, -0.05, 0.02]}
    params = PFAParams(**{k: jnp.asarray(v, jnp.float32) for k, v in truth.items()})
    df = simulate_log(PFA(), params, 1000, 50, jax.random.PRNGKey(2), items_per_skill=2)
    log = from_frame(df, salt="t")
    res = fit(log, "pfa", holdout=0.0, estimate_traits=False)
    for field, tol in (("beta", 0.12), ("gamma", 0.03), ("rho", 0.03)):
        want = per_skill(log.skill_ids, {f"s{k}": v for k, v in enumerate(truth[field])})
        np.testing.assert_allclose(res.skill_params[field], want, atol=tol, err_msg=field)


def test_efc_recovery():
    from pedagogym.student_models.efc import EFC, EFCParams

    theta = np.array([0.1, 0.2, 0.3, 0.5, 0.15, 0.25, 0.4, 0.6])
    params = EFCParams(theta=jnp.asarray(theta, jnp.float32), gain=jnp.ones(8), p_unseen=jnp.full(8, 0.05))
    df = simulate_log(EFC(), params, 500, 100, jax.random.PRNGKey(3), items_per_skill=1)
    log = from_frame(df, salt="t")
    res = fit(log, "efc", holdout=0.0, estimate_traits=False)
    want = per_skill(log.skill_ids, {f"s{k}": v for k, v in enumerate(theta)})
    np.testing.assert_allclose(res.skill_params["theta"], want, rtol=0.12)


# ---- end to end: the fit command, privacy, suppression, the envs accept the population ------
def test_fit_command_outputs_are_private_and_loadable(tmp_path):
    from pedagogym.envs.config import EnvConfig, build
    from pedagogym.fitting.cli import fit_command

    params = BKTParams(*(jnp.full(3, v, jnp.float32) for v in (0.25, 0.15, 0.0, 0.2, 0.1)))
    pop = Population("p", (
        Subgroup("weekly", prior=(-0.5, 0.5), speed=(0, 0.3), memory=(0, 0), persistence=(0, 0), sessions_per_week=2.0),
        Subgroup("daily", prior=(0.5, 0.5), speed=(0, 0.3), memory=(0, 0), persistence=(0, 0), sessions_per_week=6.0),
        Subgroup("tiny", weight=0.01),
    ))
    df = simulate_log(BKT(), params, 400, 40, jax.random.PRNGKey(4), population=pop)
    n_tiny = df.loc[df.group == "tiny", "learner_id"].nunique()
    assert 0 < n_tiny < 10
    df["learner_id"] = "student-" + df["learner_id"]  # recognisable raw ids
    df.to_csv(tmp_path / "log.csv", index=False)
    out = tmp_path / "out"
    assert fit_command([tmp_path / "log.csv"], "bkt,pfa", out, quiet=True, max_trait_interactions=8000,
                       workers=1) == 0  # one process: the side-by-side path is tested in test_fitting_leaderboard

    raw_ids = set(df["learner_id"])
    pseudonyms = set(read_log(tmp_path / "log.csv", salt="any").learner_ids)
    files = sorted(out.iterdir())
    assert {f.name for f in files} >= {"population_bkt.toml", "population_pfa.toml", "report.md", "metrics.csv",
                                       "calibration.png", "curriculum.toml", "manifest.json", "params_bkt.csv"}
    for f in files:  # grep every output file: no learner id, raw or hashed, and no group below the threshold
        blob = f.read_bytes()
        assert b"student-" not in blob and b"learner-" not in blob, f.name
        assert not any(p.encode() in blob for p in list(pseudonyms)[:50]), f.name
        assert b"tiny" not in blob, f.name

    report = (out / "report.md").read_text()
    assert "1 group(s) with fewer than 10 learners suppressed: omitted" in report
    metrics_table = pd.read_csv(out / "metrics.csv")
    assert list(metrics_table["model"]) == ["baseline", "bkt", "pfa"]
    assert (metrics_table.set_index("model").loc[["bkt", "pfa"], "log_loss"] < metrics_table.loc[0, "log_loss"]).all()
    assert (out / "calibration.png").read_bytes()[:4] == b"\x89PNG"

    population = load_population(out / "population_bkt.toml")  # the population loader accepts it
    assert population.subgroup_names == ("daily", "weekly")
    spw = {g.name: g.sessions_per_week for g in population.subgroups}
    assert spw["daily"] == pytest.approx(6.0, rel=0.2) and spw["weekly"] == pytest.approx(2.0, rel=0.2)
    prior = {g.name: g.prior[0] for g in population.subgroups}
    assert prior["daily"] > prior["weekly"]  # the better-prepared subgroup is found
    build(EnvConfig(population=str(out / "population_bkt.toml"), horizon=5))  # and so do the envs

    fitted = tomllib.loads((out / "population_bkt.toml").read_text())["model"]["bkt"]
    curriculum = read_log(tmp_path / "log.csv", salt="x").curriculum()
    applied = apply_fitted_params(BKT(), curriculum, out / "population_bkt.toml")
    k = fitted["skills"].index(curriculum.skill_ids[0])
    assert float(applied.params.p_learn[0]) == pytest.approx(fitted["p_learn"][k], rel=1e-5)
    assert applied.missing_skills == ()


# ---- recovery for the remaining fitted models (each log >= 50,000 responses) ---------------
def _truth_by_log_skill(log, values):
    """float[S] in the log's skill order from values listed for s0, s1, ..."""
    return per_skill(log.skill_ids, {f"s{k}": v for k, v in enumerate(values)})


def test_irt1pl_recovery():
    """1PL (20 items, 1,000 learners x 50, ability sd 1): item location relative to its
    skill's initial ability within 0.15 RMSE and 0.3 at worst; growth and fail_growth within
    0.04; ability sd within 0.15 of 1 (the 2PL test's tolerances; SE(b) ~ 0.05 an item)."""
    from pedagogym.student_models.irt import IRT, IRTParams

    rng = np.random.default_rng(10)
    S, K = 4, 5
    b = rng.normal(0, 0.8, S * K)
    curriculum = synthetic_curriculum(S, K, difficulty=b)
    theta0 = np.array([-0.5, 0.0, 0.5, -1.0])
    true = IRTParams(theta0=jnp.asarray(theta0, jnp.float32), growth=jnp.full(S, 0.1), fail_growth=jnp.full(S, 0.03),
                     guess=jnp.full(S, 0.2))
    pop = Population("p", (Subgroup("all", prior=(0.0, 1.0), speed=(0, 0), memory=(0, 0), persistence=(0, 0)),))
    df = simulate_log(IRT(n_pl=1), true, 1000, 50, jax.random.PRNGKey(11), curriculum=curriculum, population=pop)
    assert len(df) >= 50_000
    log = from_frame(df, salt="t")
    res = fit(log, "irt1pl", holdout=0.0, estimate_traits=False)
    item = [curriculum.item_ids.index(i) for i in res.item_ids]
    skill_of_item = [res.skill_ids.index(curriculum.items[i].skills[0]) for i in item]
    true_theta0 = per_skill(res.skill_ids, dict(zip(curriculum.skill_ids, theta0)))
    rel_est = res.item_params["difficulty"] - res.skill_params["theta0"][skill_of_item]
    rel_true = b[item] - true_theta0[skill_of_item]
    assert np.sqrt(np.mean((rel_est - rel_true) ** 2)) < 0.15 and np.max(np.abs(rel_est - rel_true)) < 0.3
    np.testing.assert_allclose(res.skill_params["growth"], 0.1, atol=0.04)
    np.testing.assert_allclose(res.skill_params["fail_growth"], 0.03, atol=0.04)
    assert res.subgroups[0].traits["prior"][1] == pytest.approx(1.0, abs=0.15)
    assert not any("only right or only wrong" in n for n in res.notes)  # ~2,500 responses an item
    # the difficulty prior's width, estimated from the log (empirical Bayes), is the items' spread
    prior = ItemPrior.estimate(log, np.asarray([int(np.flatnonzero(r)[0]) for r in log.q_matrix]),
                               Spec(item_difficulty=True))
    centred = rel_true - np.asarray([rel_true[np.asarray(skill_of_item) == s].mean() for s in skill_of_item])
    assert prior.difficulty_sd == pytest.approx(centred.std(), abs=0.1)
    assert any(n.startswith("item parameters by maximum a posteriori") for n in res.notes)
    # one item answered only right: no finite ML difficulty; the prior keeps it finite, the fit
    # converges (without a prior it drifts until max_iter), and the report names such items
    df.loc[df.item_id == curriculum.item_ids[0], "correct"] = 1
    one_sided = fit(from_frame(df, salt="t"), "irt1pl", holdout=0.0, estimate_traits=False)
    assert one_sided.converged["parameters"] and one_sided.iterations["parameters"] < 200
    b0 = one_sided.item_params["difficulty"][list(one_sided.item_ids).index(curriculum.item_ids[0])]
    assert np.isfinite(b0) and b0 < np.min(np.delete(one_sided.item_params["difficulty"],
                                                      list(one_sided.item_ids).index(curriculum.item_ids[0])))
    assert any(n.startswith("1 of 20 items (5%) were answered only right or only wrong") for n in one_sided.notes)


def test_item_prior_floors_at_no_item_effect_and_is_moot_with_one_item_per_skill():
    """Items that differ only by chance get a narrow prior (difficulties shrunk to their skill's);
    with one item per skill the width is not estimable and irrelevant (centred difficulty 0)."""
    rng = np.random.default_rng(3)
    L, S, K, n = 300, 3, 6, 40
    item = rng.integers(0, S * K, (L, n))
    ability = rng.normal(0, 1, L)[:, None]
    correct = rng.random((L, n)) < 1 / (1 + np.exp(-(0.5 + ability)))
    df = pd.DataFrame({"learner_id": np.repeat([f"u{i}" for i in range(L)], n), "item_id": [f"i{k}" for k in item.ravel()],
                       "skill_id": [f"s{k // K}" for k in item.ravel()], "correct": correct.ravel().astype(int),
                       "timestamp": np.tile(np.arange(n) * 60.0, L)})
    log = from_frame(df, salt="t")
    primary = np.asarray([int(np.flatnonzero(r)[0]) for r in log.q_matrix])
    assert ItemPrior.estimate(log, primary, Spec(item_difficulty=True)).difficulty_sd < 0.2
    one = df.assign(item_id=df.skill_id)
    log1 = from_frame(one, salt="t")
    prior1 = ItemPrior.estimate(log1, np.asarray([int(np.flatnonzero(r)[0]) for r in log1.q_matrix]),
                                Spec(item_difficulty=True, item_discrimination=True))
    assert prior1.difficulty_sd == 1.0 and prior1.log_discrimination_sd == ItemPrior.LOG_A_SD


def test_hlr_recovery():
    """HLR (4 words, 1,000 learners x 50 = 12,500 reviews a word): p_unseen within 0.03,
    w_right within 0.3, and the log2 half-life the fit implies within 0.3 (a factor 1.23 in
    days) over the histories the log's reviews mostly follow (1-10 right, 0-3 wrong: the
    10th-90th percentiles). The separate
    weights are not pinned down tightly: over 0-6 lapses sqrt(1 + wrong) varies little, so
    w_bias and w_wrong trade off (their own errors reach ~0.5); the half-life they give
    together, which is all a prediction uses, is recovered."""
    from pedagogym.student_models.hlr import HLR, HLRParams, log2_half_life

    truth = {"w_bias": [-1.0, -0.5, -1.5, -0.8], "w_right": [1.2, 1.5, 1.0, 1.8], "w_wrong": [-0.3, -0.5, -0.2, -0.6],
             "p_unseen": [0.05, 0.1, 0.02, 0.08]}
    params = HLRParams(w_lexeme=jnp.zeros(4), gain=jnp.ones(4),
                       **{k: jnp.asarray(v, jnp.float32) for k, v in truth.items()})
    df = simulate_log(HLR(), params, 1000, 50, jax.random.PRNGKey(5), items_per_skill=1)
    assert len(df) >= 50_000
    log = from_frame(df, salt="t")
    res = fit(log, "hlr", holdout=0.0, estimate_traits=False)
    want = HLRParams(w_lexeme=jnp.zeros(4), gain=jnp.ones(4),
                     **{k: jnp.asarray(_truth_by_log_skill(log, v), jnp.float32) for k, v in truth.items()})
    got = want._replace(**{k: jnp.asarray(res.skill_params[k], jnp.float32) for k in truth})
    np.testing.assert_allclose(got.p_unseen, want.p_unseen, atol=0.03)
    np.testing.assert_allclose(got.w_right, want.w_right, atol=0.3)
    for right in (1.0, 4.0, 7.0, 10.0):
        for wrong in (0.0, 1.0, 2.0, 3.0):
            np.testing.assert_allclose(log2_half_life(got, right, wrong), log2_half_life(want, right, wrong), atol=0.3,
                                       err_msg=f"right={right}, wrong={wrong}")


def test_actr_recovery():
    """ACT-R (3 facts, 2,500 learners x 20): decay intercept a within 0.03, noise s within
    0.04, threshold tau within 0.15, p_unseen within 0.02 (c and h are held at Pavlik &
    Anderson's values by the fitter, and in the simulation)."""
    from pedagogym.student_models.actr import ACTR

    truth = {"a": [0.15, 0.2, 0.25], "tau": [-0.7, -0.5, -0.9], "s": [0.25, 0.3, 0.2], "p_unseen": [0.05, 0.1, 0.02]}
    base = ACTR().default_params(synthetic_curriculum(3, 1).arrays())
    params = base._replace(**{k: jnp.asarray(v, jnp.float32) for k, v in truth.items()})
    df = simulate_log(ACTR(), params, 2500, 20, jax.random.PRNGKey(6), items_per_skill=1)
    assert len(df) >= 50_000
    log = from_frame(df, salt="t")
    res = fit(log, "actr", holdout=0.0, estimate_traits=False)
    for field, tol in (("a", 0.03), ("s", 0.04), ("tau", 0.15), ("p_unseen", 0.02)):
        want = _truth_by_log_skill(log, truth[field])
        np.testing.assert_allclose(res.skill_params[field], want, atol=tol, err_msg=field)


def test_fsrs_recovery_with_fitted_weights():
    """FSRS-6 (6 cards, 1,000 learners x 60), weights S0(Again), S0(Good), the recall
    stability gain w8 and the lapse scale w11 moved from the defaults by factors 1.5, 0.7,
    1.2 and 0.8: fitted (``fsrs_weights="fit"``) within 10 % relative; p_unseen within 0.02.
    The simulated log rates Good or Again only, so S0(Hard) and S0(Easy) have no data and
    must stay at the package's defaults."""
    from pedagogym.student_models.fsrs import FSRS

    model = FSRS()
    base = model.default_params(synthetic_curriculum(6, 1).arrays())
    w = np.asarray(base.w, np.float64).copy()
    default_w = w.copy()
    for i, factor in ((0, 1.5), (2, 0.7), (8, 1.2), (11, 0.8)):
        w[i] *= factor
    p_unseen = [0.05, 0.1, 0.02, 0.08, 0.05, 0.15]
    params = base._replace(w=jnp.asarray(w, jnp.float32), p_unseen=jnp.asarray(p_unseen, jnp.float32))
    df = simulate_log(model, params, 1000, 60, jax.random.PRNGKey(8), items_per_skill=1)
    assert len(df) >= 50_000 and set(df["rating"]) == {1, 3}
    log = from_frame(df, salt="t")
    res = fit(log, "fsrs", holdout=0.0, estimate_traits=False, fsrs_weights="fit")
    fitted_w = np.asarray(res.global_params["w"])
    np.testing.assert_allclose(fitted_w[[0, 2, 8, 11]], w[[0, 2, 8, 11]], rtol=0.10)
    np.testing.assert_allclose(fitted_w[[1, 3]], default_w[[1, 3]], rtol=1e-5)
    np.testing.assert_allclose(res.skill_params["p_unseen"], _truth_by_log_skill(log, p_unseen), atol=0.02)


# ---- agreement with pyBKT --------------------------------------------------------------------
def _pybkt_agreement_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pybkt_agreement.py"
    spec = importlib.util.spec_from_file_location("pybkt_agreement", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# pyBKT 1.4.3's fits of benchmarks/pybkt_agreement.py's log, recorded 2026-11-23 with
#   python benchmarks/pybkt_agreement.py write /tmp/pybkt_log.csv
#   /tmp/pybkt_venv/bin/python benchmarks/pybkt_agreement.py pybkt /tmp/pybkt_log.csv [--forgets]
# in a virtualenv with pyBKT 1.4.3, numpy 1.26.4, pandas 2.2.3, scipy 1.14.1, scikit-learn 1.6.1
# (pyBKT's EM fails on numpy 2: "ValueError: setting an array element with a sequence"):
# Model(seed=42, num_fits=5, parallel=True).fit(data_path, skills=skill, forgets=...).
PYBKT_CSV_SHA256 = "94a05a4846acf2140d52ff744b5260d13da431f847be53a01be937307a9bf46c"
PYBKT_FIT = {  # forgets: {skill: (prior, learns, guesses, slips, forgets)}
    False: {
        "s0": (0.195382, 0.156996, 0.204975, 0.103933, 0.0),
        "s1": (0.355999, 0.097825, 0.242789, 0.075225, 0.0),
        "s2": (0.108161, 0.256264, 0.148094, 0.124451, 0.0),
        "s3": (0.490443, 0.051510, 0.311287, 0.050044, 0.0),
    },
    True: {
        "s0": (0.194638, 0.156832, 0.205487, 0.103347, 0.000132),
        "s1": (0.355446, 0.097986, 0.242973, 0.074756, 0.000293),
        "s2": (0.107153, 0.256250, 0.148638, 0.124022, 0.000171),
        "s3": (0.491032, 0.051826, 0.310807, 0.049736, 0.000625),
    },
}


@pytest.mark.parametrize("forgetting", [False, True], ids=["no_forgetting", "forgetting"])
def test_bkt_em_agrees_with_pybkt(forgetting):
    """pedagogym's BKT EM matches pyBKT 1.4.3 within 0.02 per parameter on the same log.

    The log (benchmarks/pybkt_agreement.py: pedagogym's BKT without forgetting, 4 skills,
    2,000 learners x 25 = 50,000 responses, seed 7) is regenerated here and checked byte
    for byte (SHA-256 of the CSV pyBKT read) against the one pyBKT fitted, then fitted with
    ``fit(log, "bkt", forgetting=...)``, matching pyBKT's ``forgets=False`` / ``True``.
    pyBKT ran as a separate script in its own virtualenv (it is not a test dependency): the
    command, versions and date are in the comment above ``PYBKT_FIT``. Both are
    maximum-likelihood EM fits of the same model, so they agree far inside 0.02 (within
    0.001 when recorded)."""
    script = _pybkt_agreement_script()
    df = script.simulate()
    assert len(df) >= 50_000
    digest = script.sha256(script.pybkt_csv(df))
    assert digest == PYBKT_CSV_SHA256, (
        "the synthetic log differs from the one pyBKT fitted (a simulator or JAX PRNG change?): "
        "rerun benchmarks/pybkt_agreement.py and record pyBKT's new figures")
    log = from_frame(df, salt="pybkt")
    res = fit(log, "bkt", holdout=0.0, estimate_traits=False, forgetting=forgetting)
    for k, field in enumerate(("p_init", "p_learn", "p_guess", "p_slip", "p_forget")):
        want = per_skill(log.skill_ids, {s: v[k] for s, v in PYBKT_FIT[forgetting].items()})
        np.testing.assert_allclose(res.skill_params[field], want, atol=0.02, err_msg=field)
    assert res.converged["em"]


# ---- a fitted population drives gymnasium.make and `pedagogym run` --------------------------
def test_fitted_population_drives_gymnasium_make_and_pedagogym_run(tmp_path):
    import gymnasium as gym

    import pedagogym.envs  # noqa: F401  (registers the env ids)
    from pedagogym.cli import main

    truth = BKTParams(*(jnp.asarray(v, jnp.float32) for v in
                        ([0.2, 0.4], [0.3, 0.1], [0.0, 0.0], [0.2, 0.25], [0.1, 0.05])))
    df = simulate_log(BKT(), truth, 200, 20, jax.random.PRNGKey(12))
    df["learner_id"] = "student-" + df["learner_id"]
    df.to_csv(tmp_path / "log.csv", index=False)
    fitted = tmp_path / "fitted"
    assert main(["fit", str(tmp_path / "log.csv"), "--model", "bkt", "--out", str(fitted), "--quiet"]) == 0
    population, curriculum = fitted / "population_bkt.toml", fitted / "curriculum.toml"
    table = tomllib.loads(population.read_text())["model"]["bkt"]

    env = gym.make("pedagogym/PrereqBKT-v0", curriculum=str(curriculum), population=str(population),
                   model="bkt", horizon=6)
    core = env.unwrapped
    skills = core.built.curriculum.skill_ids
    p_learn = np.asarray(core.params.model_params.p_learn)  # the fitted values, not the model's defaults
    np.testing.assert_allclose(p_learn, [table["p_learn"][table["skills"].index(s)] for s in skills], rtol=1e-5)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for _ in range(6):
        obs, reward, terminated, truncated, _ = env.step(int(np.flatnonzero(core.action_masks())[0]))
        assert np.isfinite(reward)
        if terminated or truncated:
            break
    assert truncated or terminated
    env.close()

    config = tmp_path / "fitted_run.toml"
    config.write_text(f"""
name = "fitted"
learners = 20
seeds = [0]
policies = ["random", "round_robin"]
[[envs]]
id = "pedagogym/PrereqBKT-v0"
models = ["bkt"]
populations = ["{population.as_posix()}"]
settings = {{ curriculum = "{curriculum.as_posix()}", horizon = 8 }}
""")
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    episodes = pd.read_csv(out / "episodes.csv")
    assert len(episodes) == 2 * 20 and set(episodes["policy"]) == {"random", "round_robin"}
    assert set(episodes["subgroup"]) <= {g["name"] for g in tomllib.loads(population.read_text())["subgroups"]}
    for f in list(fitted.iterdir()) + [p for p in out.rglob("*") if p.is_file()]:  # no raw id anywhere
        assert b"student-" not in f.read_bytes(), f
