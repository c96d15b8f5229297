"""``pedagogym validate``: posterior predictive checks of a fitted simulator (issue 21, item 4).

A log simulated by BKT with known parameters, fitted with BKT, passes every check; a log
simulated by PFA (success and failure counts move the logit: a learner who fails keeps
failing, which BKT's two states cannot produce) and fitted with BKT fails at least one.
The tolerance is the simulator's own noise at the log's size (module doc of
pedagogym.fitting.validate), so neither verdict is a hard-coded threshold.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from pedagogym.fitting import simulate_log, synthetic_curriculum
from pedagogym.fitting.validate import ValidateError, _per_sequence, _runs
from pedagogym.student_models.bkt import BKT, BKTParams
from pedagogym.student_models.pfa import PFA

N_LEARNERS, N_STEPS = 120, 24


def test_run_statistics_by_hand():
    start = np.array([1, 0, 0, 0, 0, 0, 1, 0, 0], bool)
    y = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0], float)
    assert _runs(y > 0, start).tolist() == [0, 1, 2, 3, 0, 0, 1, 2, 0]
    first3, longest = _per_sequence(y, start)
    assert first3.tolist() == [4.0, 4.0]  # the second never has three in a row: length 3 + 1
    assert longest.tolist() == [2.0, 1.0]


def _fit_and_validate(tmp_path, df, name):
    from pedagogym.fitting.cli import fit_command
    from pedagogym.fitting.validate import validate_command

    df.to_csv(tmp_path / f"{name}.csv", index=False)
    fit_command([tmp_path / f"{name}.csv"], "bkt", tmp_path / f"fit_{name}", quiet=True, num_fits=2,
                max_trait_interactions=2000)
    rc = validate_command(tmp_path / f"fit_{name}", [tmp_path / f"{name}.csv"], tmp_path / f"val_{name}",
                          replicas=30, quiet=True)
    checks = pd.read_csv(tmp_path / f"val_{name}" / "checks.csv")
    return rc, checks


def test_truth_passes_every_check_and_pfa_data_fails_one(tmp_path):
    bkt = BKTParams(*(jnp.full(2, v, jnp.float32) for v in (0.3, 0.2, 0.0, 0.2, 0.1)))
    rc, checks = _fit_and_validate(tmp_path, simulate_log(BKT(), bkt, N_LEARNERS, N_STEPS, jax.random.PRNGKey(5)),
                                   "bkt")
    assert set(checks["check"]) == {"learning_curves", "learner_accuracy", "attempts_to_three_correct",
                                    "longest_error_run"}
    assert (checks["verdict"] == "pass").all(), checks
    assert rc == 0
    html = (tmp_path / "val_bkt" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "4 of 4 checks pass" in html

    pfa = PFA()
    pp = pfa.default_params(synthetic_curriculum(2).arrays())._replace(
        beta=jnp.full(2, -1.0), gamma=jnp.full(2, 0.25), rho=jnp.full(2, -0.25))
    rc, checks = _fit_and_validate(tmp_path, simulate_log(pfa, pp, N_LEARNERS, N_STEPS, jax.random.PRNGKey(6)), "pfa")
    assert (checks["verdict"] == "fail").any(), checks
    assert rc == 1
    assert (checks["distance"] > checks["tolerance"]).sum() == (checks["verdict"] == "fail").sum()


def test_validate_rejects_what_it_cannot_check(tmp_path):
    from pedagogym.fitting.validate import validate_command

    with pytest.raises(ValidateError, match="not a fit directory"):
        validate_command(tmp_path, [tmp_path / "x.csv"], tmp_path / "o")
    with pytest.raises(ValidateError, match="replicas must be an integer >= 10"):
        validate_command(tmp_path, [tmp_path / "x.csv"], tmp_path / "o", replicas=3)
