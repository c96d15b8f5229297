"""Early warning (issue 11, part 2): the metrics, the predictor on held-out simulated learners,
ONNX vs JAX, the bundle (with and without ``risk.onnx``), and the risks answered by the Python
runtime, the HTTP service and the Node client.

One population is simulated once per module: ``pedagogym/EngagedBKT-v0`` on the ``tiny``
curriculum (horizon 60 items), 400 training + 400 held-out learners per policy under random,
designer and mastery. Bounds were set from six seeds of that setting (held-out dropout AUC
0.737-0.772, not-mastered AUC 0.738-0.772, ECE 0.016-0.061; the progress-only baseline 0.52-0.60).
"""
from __future__ import annotations

import asyncio
import json
import sys
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from pedagogym.deploy import BundleError, NoEarlyWarning, Recommender, load_bundle
from pedagogym.deploy.server import create_app
from pedagogym.export import ExportError, export_bundle, resolve
from pedagogym.export.cli import main as export_cli
from pedagogym.export.record import decision_points, event_logs, obs_index, record_episodes
from pedagogym.fitting.metrics import average_ranks
from pedagogym.warning import (TARGETS, WarningConfig, WarningConfigError, WarningModelError, auc, brier, ece,
                               env_config, reliability, risk_jax, risk_model_bytes, train_warning)
from pedagogym.warning.bundle import check_risk, load_trained
from pedagogym.warning.model import RiskModel

ROOT = Path(__file__).resolve().parents[1]
ENV = {"curriculum": "tiny", "horizon": 60}
POLICIES = ("random", "designer", "mastery")
LEARNERS = 400  # per policy, for training and again for the held-out evaluation
VERIFY_LEARNERS, VERIFY_SEED = 16, 20240501  # the export's verification learners (recorded again below: same compile)


class AppClient:
    """The FastAPI app in process through httpx's ASGI transport (starlette's TestClient warns that
    its httpx support is deprecated, and warnings are errors here)."""

    def __init__(self, app):
        self.app = app

    def _call(self, method: str, url: str, **kw) -> httpx.Response:
        async def go():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test") as c:
                return await c.request(method, url, **kw)
        return asyncio.run(go())

    def get(self, url: str) -> httpx.Response:
        return self._call("GET", url)

    def post(self, url: str, json=None) -> httpx.Response:
        return self._call("POST", url, json=json)


def _config(**changes) -> WarningConfig:
    return WarningConfig(env=env_config("pedagogym/EngagedBKT-v0", ENV), policies=POLICIES, learners=LEARNERS,
                         heldout_learners=LEARNERS, seed=0).replace(**changes)


@pytest.fixture(scope="module")
def trained():
    return train_warning(_config())


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):
    """policy:designer on the same env, with the trained early-warning model, verified."""
    source = resolve("policy:designer", {"id": "pedagogym/EngagedBKT-v0", **ENV})
    out = tmp_path_factory.mktemp("ew") / "bundle"
    report = export_bundle(source, out, verify_learners=VERIFY_LEARNERS, early_warning=trained)
    return {"path": out, "report": report, "source": source}


@pytest.fixture(scope="module")
def recorded(bundle, trained):
    """Learners taught by the bundle's policy: their event logs and, per decision, what the
    simulator's JAX side says (observation, the policy's scores and item, the JAX risk)."""
    source = bundle["source"]
    built = source.built
    rec = record_episodes(built.env, built.params, source.policy, VERIFY_LEARNERS, ENV["horizon"], seed=VERIFY_SEED)
    model = trained.model
    risk = np.asarray(risk_jax(model, rec.obs))
    logs = event_logs(rec, built.curriculum.item_ids)
    learners, cases = [], []
    for n in range(VERIFY_LEARNERS):
        learners.append({"learner_id": f"L{n}", "timestamp_style": "relative", "events": logs[n]})
        for (j, now), k in list(zip(decision_points(rec, n), obs_index(rec, n)))[:-1]:
            a = int(rec.action[n, k])
            cases.append({"learner": n, "n_events": j, "now": now, "constraints": None, "expected": {
                "action": a, "item_id": built.curriculum.item_ids[a], "session": int(rec.history.session[n, k]),
                "scores": rec.scores[n, k].tolist(), "features": rec.obs[n, k].tolist(),
                "mask": rec.mask[n, k].astype(int).tolist(),
                "risk": {t: float(risk[n, k, c]) for c, t in enumerate(model.targets)}}})
    return {"learners": learners, "cases": cases, "targets": list(model.targets), "rec": rec}


# ---- metrics ------------------------------------------------------------------------------------
def _pairwise_auc(s: np.ndarray, y: np.ndarray) -> float:
    pos, neg = s[y], s[~y]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auc_is_the_pairwise_probability_with_ties_counted_half():
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # by hand: 3 of the 4 (pos, neg) pairs ordered
    assert auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert auc([0.2, 0.7, 0.7, 0.9], [0, 0, 1, 1]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)  # one tied pair
    assert auc([1, 2, 3], [False, True, True]) == 1.0 and auc([3, 2, 1], [0, 1, 1]) == 0.0
    rng = np.random.default_rng(0)
    for n in (7, 50, 400):
        s = rng.integers(0, 5, n).astype(float)  # many ties
        y = rng.random(n) < 0.3
        y[:2] = [True, False]
        assert auc(s, y) == pytest.approx(_pairwise_auc(s, y), abs=1e-12)
    np.testing.assert_array_equal(average_ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])
    with pytest.raises(ValueError, match="positive and negative"):
        auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="0/1"):
        auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="2 scores for 3 labels"):
        auc([0.1, 0.2], [0, 1, 1])


def test_brier_and_calibration_by_hand():
    p, y = np.array([0.05, 0.15, 0.15, 0.95, 1.0]), np.array([0, 0, 1, 1, 1])
    assert brier(p, y) == pytest.approx((0.05**2 + 0.15**2 + 0.85**2 + 0.05**2 + 0) / 5)
    rows = reliability(p, y, bins=10)
    assert [r["n"] for r in rows] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]  # p = 1 falls in the last bin
    assert rows[1]["mean_predicted"] == pytest.approx(0.15) and rows[1]["observed"] == 0.5 and rows[2]["observed"] is None
    # ECE = (1 * |0.05 - 0| + 2 * |0.15 - 0.5| + 2 * |0.975 - 1|) / 5
    assert ece(p, y, bins=10) == pytest.approx((0.05 + 0.7 + 0.05) / 5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ece([1.5], [1])


# ---- targets (registry contract) ----------------------------------------------------------------------
@pytest.mark.parametrize("name", TARGETS.names())
def test_every_target_labels_each_learner_with_the_episodes_final_state(recorded, name):
    rec = recorded["rec"]
    target = TARGETS.get(name)
    labels = target(rec)
    assert labels.dtype == bool and labels.shape == (VERIFY_LEARNERS,) and len(target.definition) > 40
    final = {"dropout": rec.dropped[:, -1], "not_mastered": ~rec.mastered[:, -1]}[name]  # a finished episode is frozen
    np.testing.assert_array_equal(labels, final)
    assert 0 < labels.sum() < VERIFY_LEARNERS  # both outcomes occur among these 16 learners


# ---- the predictor on held-out learners --------------------------------------------------------
def test_heldout_discrimination_and_calibration_on_engaged_bkt(trained):
    h = trained.heldout
    assert h["learners"] == LEARNERS * len(POLICIES) and trained.training["learners"] == LEARNERS * len(POLICIES)
    for target in ("dropout", "not_mastered"):
        m = h["targets"][target]
        assert 0.2 < m["base_rate"] < 0.8 and m["learners_positive"] > 100  # both outcomes are common
        assert m["auc"] > 0.70, m  # chance is 0.5
        assert m["auc"] > m["progress_only_auc"] + 0.1, m  # better than "how far along is the learner"
        assert m["brier"] < m["brier_of_base_rate"] - 0.02, m  # better than predicting the base rate
        assert m["ece"] < 0.08, m
        assert set(m["by_policy"]) == set(POLICIES) and all(v["auc"] > 0.6 for v in m["by_policy"].values())
    rows = [r for r in trained.calibration if r["target"] == "dropout"]
    assert len(rows) == 10 and sum(r["n"] for r in rows) == h["decisions"]


def test_training_is_deterministic_and_split_by_learner(trained):
    again = train_warning(_config())
    assert again.model.to_dict() == trained.model.to_dict()
    assert again.heldout == trained.heldout
    other = train_warning(_config(seed=1, steps=200))
    assert other.model.to_dict() != trained.model.to_dict()


def test_onnx_risk_matches_jax(trained):
    data = risk_model_bytes(trained.model)
    assert data == risk_model_bytes(trained.model)  # deterministic bytes
    report = check_risk(trained.model, data, trained.verification_obs)
    assert report["decisions"] >= 1000 and report["max_abs_diff"] <= 1e-5
    # observations off the training distribution (extreme values hit the normaliser's clip)
    rng = np.random.default_rng(1)
    obs = rng.uniform(-3, 5, (256, trained.model.n_features)).astype(np.float32)
    assert check_risk(trained.model, data, obs)["max_abs_diff"] <= 1e-5
    model = RiskModel.from_dict(json.loads(json.dumps(trained.model.to_dict())))
    assert risk_model_bytes(model) == data  # the JSON form round-trips exactly


# ---- the bundle -----------------------------------------------------------------------------------
def test_bundle_manifest_and_verification(bundle, trained):
    m = load_bundle(bundle["path"]).manifest
    ew = m["early_warning"]
    assert ew["file"] == "risk.onnx" and [t["name"] for t in ew["targets"]] == ["dropout", "not_mastered"]
    assert all(t["definition"] for t in ew["targets"]) and ew["horizon"]["items"] == ENV["horizon"]
    assert ew["inputs"] == {"obs": ["batch", len(m["observation"]["feature_names"])]}
    assert ew["outputs"] == {"risk": ["batch", 2]}
    assert ew["heldout"]["targets"]["dropout"]["auc"] == trained.heldout["targets"]["dropout"]["auc"]
    assert ew["training"]["policies"] == list(POLICIES) and ew["training"]["engagement"] is True
    v = ew["verification"]
    assert v["bundle_policy"]["decisions"] > 100 and v["bundle_policy"]["max_abs_diff"] <= 1e-5
    assert v["event_logs"]["decisions"] > 50 and v["event_logs"]["max_abs_diff"] <= 1e-5
    assert bundle["report"]["early_warning"]["sha256"] == ew["sha256"]
    assert m["verification"]["action_agreement"] == 1.0  # the policy's own verification is unchanged


def test_python_runtime_risks_from_event_logs_match_jax(bundle, recorded):
    r = Recommender(bundle["path"])
    assert r.risk_targets == ["dropout", "not_mastered"]
    learners, cases = recorded["learners"], recorded["cases"]
    assert len(cases) > 200
    worst = 0.0
    for c in cases:
        events = learners[c["learner"]]["events"][: c["n_events"]]
        out = r.recommend(events, now=c["now"])
        assert out["item_id"] == c["expected"]["item_id"]
        assert out["risk"] == r.risk(events, now=c["now"])
        worst = max(worst, max(abs(out["risk"][t] - p) for t, p in c["expected"]["risk"].items()))
    assert worst <= 1e-5, worst
    logs = {lr["learner_id"]: [dict(e, learner_id=lr["learner_id"]) for e in lr["events"]] for lr in learners}
    many, risks = r.recommend_many(logs), r.risk_many(logs)
    for lid, events in logs.items():
        one = r.risk(events)
        assert many[lid]["risk"] == pytest.approx(one, abs=1e-6) and risks[lid] == pytest.approx(one, abs=1e-6)


def test_http_returns_the_runtime_risks(bundle, recorded):
    r = Recommender(bundle["path"])
    client = AppClient(create_app(r))
    health = client.get("/health").json()
    assert health["early_warning"] == ["dropout", "not_mastered"]
    learners, cases = recorded["learners"], recorded["cases"]
    for c in cases[::4]:
        events = learners[c["learner"]]["events"][: c["n_events"]]
        got = client.post("/recommend", json={"events": events, "now": c["now"]})
        assert got.status_code == 200, got.text
        assert got.json()["risk"] == r.risk(events, now=c["now"])
        for t, p in c["expected"]["risk"].items():
            assert abs(got.json()["risk"][t] - p) <= 1e-5
        lid = f"L{c['learner']}"
        got = client.post("/risk", json={"learner_id": lid, "events": events, "now": c["now"]})
        assert got.status_code == 200 and got.json() == {"learner_id": lid, "n_events": c["n_events"],
                                                         "risk": r.risk(events, now=c["now"])}
    other = client.post("/risk", json={"learner_id": "u1", "events": learners[0]["events"][:2]})
    assert other.status_code == 422 and "one learner" in other.json()["detail"]
    bad = client.post("/risk", json={"events": [{"item_id": "zz", "correct": True, "response_time": 1, "timestamp": 0}]})
    assert bad.status_code == 422 and "unknown item" in bad.json()["detail"]
    assert client.post("/risk", json={"events": [], "extra": 1}).status_code == 422


def test_node_client_returns_the_same_risks(bundle, recorded, tmp_path):
    """Node: event log -> features -> risk.onnx on every recorded decision, risks to 1e-5 of JAX
    (and the policy's answers), through the client's own test suite on this fixture."""
    from node_client import node_test
    from test_export import _fixture

    shutil.copytree(bundle["path"], tmp_path / "bundle")
    path = tmp_path / "recorded.json"
    path.write_text(json.dumps({"bundle": "bundle", "learners": recorded["learners"], "cases": recorded["cases"],
                                "tolerance": {"features_atol": 1e-6, "scores_atol": 1e-5, "risk_atol": 1e-5},
                                "bad_inputs": _fixture()["bad_inputs"]}))
    out = node_test(["test/parity.test.js"], fixture=path)
    assert f"{len(recorded['cases'])} risks: max diff" in out


def test_committed_node_fixture_risks_are_the_runtimes():
    """The committed Node fixture carries risks, and they are what this runtime answers."""
    from test_export import FIXTURE, FIXTURE_BUNDLE, _fixture

    fx = _fixture()
    r = Recommender(FIXTURE_BUNDLE)
    assert r.risk_targets == ["dropout", "not_mastered"] and fx["tolerance"]["risk_atol"] == 1e-6
    for c in fx["cases"]:
        events = fx["learners"][c["learner"]]["events"][: c["n_events"]]
        got = r.risk(events, now=c["now"])
        assert got == pytest.approx(c["expected"]["risk"], abs=1e-6), (FIXTURE, c["learner"], c["n_events"])


def test_bundle_without_early_warning_still_works(tmp_path):
    source = resolve("policy:designer", {"id": "pedagogym/EngagedBKT-v0", **ENV})
    export_bundle(source, tmp_path / "plain", verify_learners=0)
    assert not (tmp_path / "plain" / "risk.onnx").exists()
    r = Recommender(tmp_path / "plain")
    assert "early_warning" not in r.manifest and r.risk_targets == [] and r.bundle.risk_bytes is None
    ev = [{"item_id": "a1", "correct": True, "response_time": 20.0, "timestamp": 0.0}]
    assert "risk" not in r.recommend(ev) and "risk" not in r.recommend_many({"u": ev})["u"]
    with pytest.raises(NoEarlyWarning, match="no early-warning model"):
        r.risk(ev)
    client = AppClient(create_app(r))
    assert client.get("/health").json()["early_warning"] is None
    assert "risk" not in client.post("/recommend", json={"events": ev}).json()
    got = client.post("/risk", json={"events": ev})
    assert got.status_code == 404 and "--early-warning" in got.json()["detail"]


def _copy(bundle, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle["path"], dst)
    return dst


def _edit(path: Path, edit) -> None:
    from pedagogym.deploy.bundle import seal_manifest

    m = json.loads((path / "manifest.json").read_text())
    edit(m)
    (path / "manifest.json").write_bytes(seal_manifest(m))  # re-sealed: each test reaches the check it means


def test_corrupted_or_missing_risk_model_is_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    data = bytearray((b / "risk.onnx").read_bytes())
    data[-5] ^= 0xFF
    (b / "risk.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"risk\.onnx: sha256 .* does not match the manifest's early_warning\.sha256"):
        Recommender(b)
    (b / "risk.onnx").unlink()
    with pytest.raises(BundleError, match=r"missing risk\.onnx"):
        load_bundle(b)
    # bytes that are not a model, with a matching hash (a consistently edited manifest): the runtime says so
    from pedagogym.deploy.bundle import sha256_bytes

    (b / "risk.onnx").write_bytes(b"not an onnx model")
    _edit(b, lambda m: m["early_warning"].update(sha256=sha256_bytes(b"not an onnx model")))
    with pytest.raises(BundleError, match="not a loadable ONNX model"):
        Recommender(b)


@pytest.mark.parametrize("edit, match", [
    (lambda ew: ew.update(outputs={"risk": ["batch", 3]}), r"early_warning\.outputs"),
    (lambda ew: ew.update(inputs={"obs": ["batch", 5]}), r"early_warning\.inputs"),
    (lambda ew: ew.update(targets=[]), r"early_warning\.targets"),
    (lambda ew: ew.update(targets=[{"name": "dropout"}, {"name": "dropout"}]), r"early_warning\.targets"),
    (lambda ew: ew.pop("sha256"), "'sha256' missing"),
    (lambda ew: ew.update(file="../policy.onnx"), r"early_warning\.file"),
])
def test_malformed_early_warning_sections_are_refused(bundle, tmp_path, edit, match):
    b = _copy(bundle, tmp_path)
    _edit(b, lambda m: edit(m["early_warning"]))
    with pytest.raises(BundleError, match=match):
        load_bundle(b)


def test_graph_with_other_targets_than_the_manifest_is_refused(bundle, trained, tmp_path):
    """A consistent manifest whose risk.onnx has one output too few: the shape check catches it."""
    from pedagogym.deploy.bundle import sha256_bytes
    from pedagogym.export.graph import Dense, MLPSpec

    b = _copy(bundle, tmp_path)
    model = trained.model
    last = model.mlp.layers[-1]
    one = RiskModel(model.feature_names, model.summaries,
                    MLPSpec(model.mlp.layers[:-1] + (Dense(last.kernel[:, :1], last.bias[:1]),), model.mlp.activation,
                            model.mlp.normalizer), ("dropout",), model.observation_signature)
    data = risk_model_bytes(one)
    (b / "risk.onnx").write_bytes(data)
    _edit(b, lambda m: m["early_warning"].update(sha256=sha256_bytes(data)))
    with pytest.raises(BundleError, match=r"expected obs\[batch, \d+\] -> risk\[batch, 2\]"):
        Recommender(b)


# ---- the CLI ------------------------------------------------------------------------------------------
def _pedagogym(argv: list[str]) -> int:
    from pedagogym.cli import main

    return main(argv)


def test_cli_warn_train_evaluate_and_export(tmp_path, capsys):
    sets = [x for k, v in ENV.items() for x in ("--set", f"{k}={v}")]
    common = ["--policies", *POLICIES, "--quiet"]
    out = tmp_path / "warn"
    assert _pedagogym(["warn", "train", "--out", str(out), *sets, *common, "--learners", str(LEARNERS),
                       "--heldout-learners", str(LEARNERS)]) == 0
    assert "| dropout |" in capsys.readouterr().out
    for name in ("model.json", "risk.onnx", "metrics.json", "calibration.csv", "calibration.png", "summary.md",
                 "manifest.json"):
        assert (out / name).is_file(), name
    assert (out / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["onnx_vs_jax"]["max_abs_diff"] <= 1e-5 and metrics["heldout"]["targets"]["dropout"]["auc"] > 0.7
    assert "| dropout |" in (out / "summary.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["git_commit"] and manifest["config"]["seed"] == 0 and manifest["timings"]["total_s"] > 0

    ev = tmp_path / "eval"  # new learners: seed 1, same env
    assert _pedagogym(["warn", "evaluate", str(out), "--out", str(ev), *common, "--learners", str(2 * LEARNERS)]) == 0
    assert "evaluation on new learners" in capsys.readouterr().out
    em = json.loads((ev / "metrics.json").read_text())
    assert em["kind"] == "evaluate" and em["population"]["seed"] == 1 and em["heldout"]["learners"] == 2 * LEARNERS * 3
    assert em["heldout"]["targets"]["dropout"]["auc"] > 0.7 and em["heldout"]["targets"]["dropout"]["ece"] < 0.08

    b = tmp_path / "bundle"  # ship the trained model: --early-warning-from
    assert export_cli(["export", "policy:designer", "--env", "pedagogym/EngagedBKT-v0", *sets, "--out", str(b),
                       "--early-warning-from", str(out), "--verify-learners", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["early_warning"]["sha256"] == metrics["risk_onnx_sha256"]
    assert Recommender(b).risk([])["dropout"] > 0  # the risk of a learner who has not started

    b2 = tmp_path / "bundle2"  # train while exporting: --early-warning
    assert export_cli(["export", "policy:designer", "--env", "pedagogym/EngagedBKT-v0", *sets, "--out", str(b2),
                       "--early-warning", "--early-warning-learners", str(LEARNERS), "--early-warning-policies",
                       *POLICIES, "--verify-learners", "0", "--json"]) == 0
    report2 = json.loads(capsys.readouterr().out)
    assert report2["early_warning"]["sha256"] == metrics["risk_onnx_sha256"]  # same population and seed: same model
    assert load_trained(out).model.to_dict() == json.loads((out / "model.json").read_text())


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    sets = [x for k, v in ENV.items() for x in ("--set", f"{k}={v}")]
    out = tmp_path / "w"
    cases = [
        (["warn", "train", "--out", str(out), "--policies", "nope"], "unknown policy 'nope'"),
        (["warn", "train", "--out", str(out), "--policies", "upper_bound"], "reads latent state"),
        (["warn", "train", "--out", str(out), "--targets", "happiness"], "unknown target 'happiness'"),
        (["warn", "train", "--out", str(out), "--learners", "0"], "learners: must be a positive integer"),
        (["warn", "train", "--out", str(out), "--set", "engagement=false", *sets], "never drop out"),
        (["warn", "train", "--out", str(out), "--set", "horizon=-3"], "horizon"),
        (["warn", "evaluate", str(tmp_path / "missing"), "--out", str(out)], "no model.json"),
    ]
    for argv, match in cases:
        assert _pedagogym(argv) == 2, argv
        err = capsys.readouterr().err
        assert "pedagogym warn: error: " in err and match in err, (argv, err)
    for argv, match in (
        (["export", "policy:designer", "--env", "pedagogym/PrereqBKT-v0", *sets, "--out", str(tmp_path / "b"),
          "--early-warning"], "never drop out"),
        (["export", "policy:designer", "--env", "pedagogym/EngagedBKT-v0", *sets, "--out", str(tmp_path / "b"),
          "--early-warning", "--early-warning-set", "horizon=30"], "horizon"),
        (["export", "policy:designer", "--env", "pedagogym/EngagedBKT-v0", *sets, "--out", str(tmp_path / "b"),
          "--early-warning-set", "engagement=true"], "need --early-warning"),
        (["export", "policy:designer", "--env", "pedagogym/EngagedBKT-v0", *sets, "--out", str(tmp_path / "b"),
          "--early-warning-from", str(tmp_path)], "no model.json"),
    ):
        assert export_cli(argv) == 2, argv
        assert match in capsys.readouterr().err, argv


def test_a_model_for_another_observation_is_refused(trained):
    source = resolve("policy:designer", {"id": "pedagogym/EngagedBKT-v0", "curriculum": "tiny", "horizon": 30})
    with pytest.raises(ExportError, match="horizon: model 60 vs 30"):
        export_bundle(source, "/nonexistent/never-written", verify_learners=0, early_warning=trained)
    with pytest.raises(WarningModelError, match="different curriculum"):
        from pedagogym.warning.model import check_compatible

        check_compatible(trained.model, ["belief[x]"], {}, "test")
    with pytest.raises(WarningConfigError, match="policies"):
        _config(policies=())
    with pytest.raises(WarningModelError, match="format 'pedagogym.risk-model'"):
        RiskModel.from_dict({"format": "other"})


def test_cli_names_the_extra_when_an_optional_dependency_is_missing(monkeypatch, capsys, tmp_path):
    """`pedagogym warn train` without onnx installed: one line naming the package and the extra
    (pip install 'pedagogym[export]'), exit code 2, no traceback."""
    import builtins

    from pedagogym.cli import main

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ModuleNotFoundError("No module named 'onnx'", name="onnx")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    for mod in [m for m in sys.modules if m == "onnx" or m.startswith(("onnx.", "pedagogym.warning", "pedagogym.export"))]:
        monkeypatch.delitem(sys.modules, mod)
    assert main(["warn", "train", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "'onnx' is not installed" in err and "pedagogym[export]" in err
    assert not (tmp_path / "w").exists()
