"""Export for deployment: ONNX bundles, the numpy runtime, the Node client and the HTTP service.

Parity is checked on recorded simulator episodes: 256 learners x up to 50 steps under an MLP
policy (over 10,000 decisions) on the ``tiny`` curriculum with prerequisite unlocking, so masks vary,
and short sessions, so session features change."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pedagogym.deploy import (FORMAT_VERSION, BundleError, ConstraintError, EventError, Recommender, load_bundle,
                              parse_events, replay, featurize, action_mask)
from pedagogym.deploy.features import RT_SCALE_S, FeatureSpec
from pedagogym.envs import make
from pedagogym.envs.observations import RT_SCALE_S as SIM_RT_SCALE_S
from pedagogym.export import (EXPORTERS, NOT_EXPORTABLE, OPSET, ExportError, ExportSource, MLPPolicy, export_bundle,
                              linear_scorer, policy_model, random_mlp, resolve, save_mlp_npz, scorer_for)
from pedagogym.export.cli import add_export_parsers, main as cli_main
from pedagogym.export.record import decision_points, event_logs, obs_index, record_episodes

from node_client import node_test

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "clients" / "node"
FIXTURE_BUNDLE = NODE_DIR / "test" / "fixtures" / "bundle"
FIXTURE = NODE_DIR / "test" / "fixtures" / "parity.json"
ENV = dict(curriculum="tiny", horizon=50, unlock_threshold=0.5, session_minutes=6.0)
N_LEARNERS, N_STEPS = 256, 50  # episodes end early (all mastered): ~10,200 decisions


# ---- shared recording ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    built = make("pedagogym/PrereqBKT-v0", **ENV)
    d, n_items = len(built.feature_names), built.curriculum.n_items
    spec = random_mlp(d, n_items, hidden=(64, 64), seed=3)
    policy = MLPPolicy(spec)
    rec = record_episodes(built.env, built.params, policy, N_LEARNERS, N_STEPS, seed=0)
    out = tmp_path_factory.mktemp("bundle_mlp")
    report = export_bundle(ExportSource("mlp", "random_mlp", spec, policy, built), out, verify_learners=0)
    return {"built": built, "spec": spec, "policy": policy, "rec": rec, "bundle": out, "report": report,
            "logs": event_logs(rec, built.curriculum.item_ids)}


@pytest.fixture
def fixture_bundle(tmp_path):
    """A writable copy of the committed Node fixture bundle (tiny curriculum, small MLP)."""
    dst = tmp_path / "bundle"
    shutil.copytree(FIXTURE_BUNDLE, dst)
    return dst


def _fixture() -> dict:
    with open(FIXTURE) as fh:
        return json.load(fh)


# ---- recorded decisions as a parity fixture (the simulator's observations, the JAX policy's answers) ----
def _recorded_cases(recorded) -> tuple[list[dict], list[dict]]:
    """(learners, cases) in the Node fixture's format for every recorded decision: the event log
    up to it, the decision time, and what the simulator and the JAX policy saw and did."""
    if "cases" in recorded:
        return recorded["learners"], recorded["cases"]
    rec, logs, item_ids = recorded["rec"], recorded["logs"], recorded["built"].curriculum.item_ids
    learners, cases = [], []
    for n in range(N_LEARNERS):
        learners.append({"learner_id": f"L{n}", "timestamp_style": "relative", "events": logs[n]})
        for (j, now), k in list(zip(decision_points(rec, n), obs_index(rec, n)))[:-1]:  # the last has no action
            a = int(rec.action[n, k])
            cases.append({"learner": n, "n_events": j, "now": now, "constraints": None, "expected": {
                "action": a, "item_id": item_ids[a], "session": int(rec.history.session[n, k]),
                "scores": rec.scores[n, k].tolist(), "features": rec.obs[n, k].tolist(),
                "mask": rec.mask[n, k].astype(int).tolist()}})
    recorded["learners"], recorded["cases"] = learners, cases
    return learners, cases


def test_recorded_decisions_are_10000_with_varied_masks_and_sessions(recorded):
    learners, cases = _recorded_cases(recorded)
    assert len(cases) == int(recorded["rec"].active.sum()) >= 10_000
    assert len({tuple(c["expected"]["mask"]) for c in cases}) > 1
    assert max(c["expected"]["session"] for c in cases) >= 2


# ---- the graph -------------------------------------------------------------------------------------
def test_onnx_graph_contract(tmp_path):
    d, n = 7, 5
    model = policy_model(linear_scorer(np.zeros((d, n), np.float32)).build_scores, d, n)
    assert model.opset_import[0].version == OPSET == 17
    ins = {i.name: i for i in model.graph.input}
    outs = {o.name: o for o in model.graph.output}
    assert set(ins) == {"obs", "action_mask"} and set(outs) == {"scores", "action"}
    assert ins["obs"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert ins["action_mask"].type.tensor_type.elem_type == onnx.TensorProto.BOOL
    assert outs["action"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert ins["obs"].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch axis
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    mask = np.array([[True] * 5, [False, False, True, True, False], [False] * 4 + [True]])
    scores, action = sess.run(None, {"obs": np.ones((3, d), np.float32), "action_mask": mask})
    assert scores.dtype == np.float32 and action.dtype == np.int64 and scores.shape == (3, n)
    np.testing.assert_array_equal(scores[~mask], np.float32(-1e9))  # masked -> exactly -1e9
    np.testing.assert_array_equal(action, [0, 2, 4])  # all-zero scores: ties -> lowest allowed index


def test_runtime_constants_match_the_simulator(recorded):
    assert RT_SCALE_S == SIM_RT_SCALE_S
    assert FeatureSpec.from_manifest(load_bundle(recorded["bundle"]).manifest).n_features == len(recorded["built"].feature_names)


# ---- parity on recorded simulator episodes -------------------------------------------------------------
def test_onnx_matches_jax_policy_on_10000_recorded_observations(recorded):
    rec, built = recorded["rec"], recorded["built"]
    active = rec.active
    obs, mask = rec.obs[:, :-1][active], rec.mask[:, :-1][active]
    assert len(obs) >= 10_000
    assert 0.0 < mask.mean() < 1.0  # prerequisite unlocking makes masks vary
    scores, actions = Recommender(recorded["bundle"]).run(obs, mask)
    np.testing.assert_array_equal(actions, rec.action[active])  # 100% the same item
    ref = rec.scores[active]
    np.testing.assert_allclose(scores[mask], ref[mask], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(scores[~mask], np.float32(-1e9))
    assert scores.shape == (len(obs), built.curriculum.n_items)


def test_featurizer_reproduces_simulator_observations_from_event_logs(recorded):
    rec, built, logs = recorded["rec"], recorded["built"], recorded["logs"]
    spec = FeatureSpec.from_manifest(load_bundle(recorded["bundle"]).manifest)
    index = {iid: k for k, iid in enumerate(built.curriculum.item_ids)}
    worst, n_checked, sessions = 0.0, 0, set()
    for n in range(N_LEARNERS):
        events = parse_events(logs[n], index)
        for (j, now), k in zip(decision_points(rec, n), obs_index(rec, n)):
            h = replay(spec, events[:j], now)
            got = featurize(spec, h)
            worst = max(worst, float(np.max(np.abs(got - rec.obs[n, k]))))
            assert np.array_equal(action_mask(spec, h), rec.mask[n, k]), (n, j)
            sessions.add(h.session)
            n_checked += 1
    assert worst <= 1e-6, worst
    assert n_checked > 5000 and max(sessions) >= 2  # several sessions per learner were exercised


def test_featurizer_on_a_curriculum_with_unrecorded_item_kinds():
    """maths_fractions has videos and worked examples (no correct / incorrect is recorded)."""
    from pedagogym.policies import POLICIES

    built = make("pedagogym/PrereqBKT-v0", curriculum="maths_fractions", horizon=80, session_minutes=10.0)
    rec = record_episodes(built.env, built.params, POLICIES.get("designer"), 12, 80, seed=2)
    manifest = {"curriculum": {"spec": built.curriculum.to_dict(), "observed_kinds": ["practice", "hint", "assessment"]},
                "observer": {k: np.asarray(getattr(built.params.observer, k)).tolist() for k in
                             ("p_init", "p_learn", "p_forget", "p_guess", "p_slip")},
                "env": {"horizon": 80, "session_s": 600.0, "unlock_threshold": 0.0, "item_available": [True] * 91},
                "sessions": {}}
    spec = FeatureSpec.from_manifest(manifest)
    assert not spec.observed.all()
    logs = event_logs(rec, built.curriculum.item_ids)
    assert any(e["correct"] is None for log in logs for e in log)  # unrecorded kinds were presented
    index = {iid: k for k, iid in enumerate(built.curriculum.item_ids)}
    worst = 0.0
    for n in range(12):
        events = parse_events(logs[n], index)
        for (j, now), k in zip(decision_points(rec, n), obs_index(rec, n)):
            worst = max(worst, float(np.max(np.abs(featurize(spec, replay(spec, events[:j], now)) - rec.obs[n, k]))))
    assert worst <= 1e-6, worst


def test_recommender_on_event_logs_picks_the_jax_policys_items_on_10000_recorded_decisions(recorded):
    """Python runtime, end to end: event log -> features -> ONNX -> the JAX policy's item on every
    recorded decision, scores to 1e-5."""
    r = Recommender(recorded["bundle"])
    learners, cases = _recorded_cases(recorded)
    worst = 0.0
    for c in cases:
        out = r.recommend(learners[c["learner"]]["events"][: c["n_events"]], now=c["now"])
        want = c["expected"]
        assert (out["action"], out["item_id"], out["session"]) == (want["action"], want["item_id"], want["session"]), c
        worst = max(worst, float(np.max(np.abs(np.asarray([out["scores"][i] for i in r.item_ids]) - want["scores"]))))
    assert len(cases) >= 10_000 and worst <= 1e-5, worst


# ---- the manifest and bundle checks -------------------------------------------------------------------
def test_manifest_describes_everything_the_features_depend_on(recorded):
    built, m = recorded["built"], load_bundle(recorded["bundle"]).manifest
    assert m["format_version"] == FORMAT_VERSION
    assert m["observation"]["feature_names"] == built.feature_names
    assert [f["name"] for f in m["observation"]["features"]] == built.feature_names
    assert all(f["definition"] for f in m["observation"]["features"])
    assert m["actions"]["item_ids"] == list(built.curriculum.item_ids)
    assert m["curriculum"]["content_hash"] == built.curriculum.content_hash()
    assert m["env"]["horizon"] == ENV["horizon"] and m["env"]["session_s"] == ENV["session_minutes"] * 60
    assert m["observer"]["p_learn"] == pytest.approx(np.asarray(built.params.observer.p_learn).tolist())
    assert m["sessions"]["rule"] and m["sessions"]["idle_gap_s"] > 0
    assert m["model"]["opset"] == 17 and m["model"]["masked_score"] == -1e9
    assert m["policy"]["architecture"]["normalization"]["in_graph"] is True
    assert m["pedagogym_version"]


def test_tampered_model_file_is_refused(fixture_bundle):
    p = fixture_bundle / "policy.onnx"
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 .* does not match"):
        Recommender(fixture_bundle)


def _edit_manifest(bundle: Path, edit) -> None:
    p = bundle / "manifest.json"
    m = json.loads(p.read_text())
    edit(m)
    p.write_text(json.dumps(m))


def test_newer_format_version_is_refused(fixture_bundle):
    _edit_manifest(fixture_bundle, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match="newer than this runtime supports"):
        load_bundle(fixture_bundle)


def test_edited_curriculum_and_non_bundles_are_refused(fixture_bundle, tmp_path):
    _edit_manifest(fixture_bundle, lambda m: m["curriculum"]["spec"]["items"][0].update(difficulty=3.0))
    with pytest.raises(BundleError, match="content_hash"):
        load_bundle(fixture_bundle)
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path / "nothing")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text('{"format": "something else"}')
    with pytest.raises(BundleError, match="not a pedagogym policy bundle"):
        load_bundle(tmp_path / "x")


# ---- event logs ------------------------------------------------------------------------------------------
def _events():
    return _fixture()["learners"][0]["events"][:4]


BAD_EVENTS = {
    "unknown item": (lambda ev: [dict(ev[0], item_id="zz9")], "unknown item 'zz9'"),
    "correct is a string": (lambda ev: [dict(ev[0], correct="yes")], r"events\[0\]\.correct"),
    "correct is an int": (lambda ev: [dict(ev[0], correct=1)], r"events\[0\]\.correct"),
    "response_time is a string": (lambda ev: [dict(ev[0], response_time="5")], "response_time"),
    "response_time negative": (lambda ev: [dict(ev[0], response_time=-1.0)], "response_time"),
    "response_time nan": (lambda ev: [dict(ev[0], response_time=float("nan"))], "response_time"),
    "timestamp is a bool": (lambda ev: [dict(ev[0], timestamp=True)], "timestamp"),
    "timestamp not ISO": (lambda ev: [dict(ev[0], timestamp="yesterday")], "ISO 8601"),
    "impossible date": (lambda ev: [dict(ev[0], timestamp="2024-02-30T10:00:00Z")], "valid date"),
    "time goes backwards": (lambda ev: [ev[1], ev[0]], "time goes backwards"),
    "two learners": (lambda ev: [ev[0], dict(ev[1], learner_id="someone else")], "one learner"),
    "missing field": (lambda ev: [{k: v for k, v in ev[0].items() if k != "timestamp"}], "missing field"),
    "item_id not a string": (lambda ev: [dict(ev[0], item_id=3)], "item_id"),
    "not a list": (lambda ev: {"events": ev}, "list of event objects"),
    "event not an object": (lambda ev: ["a1"], "expected an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_bad_event_logs_raise_clear_errors(case):
    make_events, match = BAD_EVENTS[case]
    with pytest.raises(EventError, match=match):
        Recommender(FIXTURE_BUNDLE).recommend(make_events(_events()))


def test_decision_time_before_the_last_event_is_refused():
    with pytest.raises(EventError, match="before the last event"):
        Recommender(FIXTURE_BUNDLE).recommend(_events(), now=-1e9)


def test_constraints():
    r = Recommender(FIXTURE_BUNDLE)
    ev = _events()
    free = r.recommend(ev)
    out = r.recommend(ev, {"exclude": [free["item_id"]]})
    assert out["item_id"] != free["item_id"] and free["item_id"] not in out["eligible"]
    assert out["scores"][free["item_id"]] == -1e9
    only = [i for i in free["eligible"] if i != free["item_id"]][:1]
    assert r.recommend(ev, {"only": only})["item_id"] == only[0]
    for bad, match in (({"only": []}, "no item satisfies"), ({"only": ["zz"]}, "unknown item"),
                       ({"avoid": ["a1"]}, "unknown key"), ({"only": "a1"}, "list of item ids")):
        with pytest.raises(ConstraintError, match=match):
            r.recommend(ev, bad)


def test_epoch_iso_and_offset_timestamps_give_the_same_features():
    r = Recommender(FIXTURE_BUNDLE)
    base = 1714550400.0  # 2024-05-01T08:00:00Z
    rel = [dict(e, timestamp=t) for e, t in zip(_events(), (0.0, 40.5, 95.25, 7200.0))]
    epoch = [dict(e, timestamp=base + e["timestamp"]) for e in rel]
    iso = [dict(e, timestamp=s) for e, s in zip(rel, ("2024-05-01T08:00:00Z", "2024-05-01T08:00:40.5Z",
                                                      "2024-05-01T10:01:35.250+02:00", "2024-05-01 10:00:00"))]
    feats = [r.features(log, now=now)[0] for log, now in ((rel, 9000.0), (epoch, base + 9000.0),
                                                             (iso, "2024-05-01T10:30:00Z"))]
    np.testing.assert_array_equal(feats[0], feats[1])
    np.testing.assert_array_equal(feats[0], feats[2])


def test_sessions_are_inferred_from_gaps_and_session_length():
    r = Recommender(FIXTURE_BUNDLE)
    names = r.bundle.feature_names
    session, session_time = names.index("session"), names.index("session_time")
    ev = lambda t, rt=30.0: {"item_id": "a1", "correct": True, "response_time": rt, "timestamp": t}  # noqa: E731
    # back to back, well within a session: one session, session_time grows
    h = r.state(r.parse([ev(0), ev(30), ev(60)]))
    assert h.session == 0
    # a break of an hour (>= idle_gap_s) opens a new session at the next event
    assert r.state(r.parse([ev(0), ev(30), ev(3630)])).session == 1
    # items adding up to the session length end the session (as the simulator does)
    session_s = r.spec.session_s
    h = r.state(r.parse([ev(0, float(session_s))]))
    assert h.session == 1 and r.features([ev(0, float(session_s))])[0][session_time] == 0.0
    # the decision time counts as well: coming back the next day is a new session
    obs, _ = r.features([ev(0), ev(30)], now=86400.0)
    assert obs[session] == pytest.approx(np.log1p(1.0)) and obs[session_time] == 0.0
    # no events: the initial observation
    obs, mask = r.features([])
    assert obs[names.index("progress")] == 0.0 and mask.dtype == bool


def test_deploy_and_serve_import_neither_jax_nor_torch():
    code = (
        "import sys, json\n"
        "from pedagogym.deploy import Recommender\n"
        "import pedagogym.deploy.recommender, pedagogym.deploy.features, pedagogym.deploy.events\n"
        "import pedagogym.deploy.server, pedagogym.export.cli  # what `pedagogym serve` loads\n"
        f"r = Recommender({str(FIXTURE_BUNDLE)!r})\n"
        f"r.recommend(json.load(open({str(FIXTURE)!r}))['learners'][0]['events'][:5])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'torch', 'flax', 'tensorflow'))\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# ---- the Node client ------------------------------------------------------------------------------------
def test_node_client_gives_the_python_answers():
    """The committed fixture: epoch, ISO 8601 and relative timestamps, constraints, bad inputs."""
    out = node_test()  # every Node test file: parity, constraints, explanations
    assert f"{FIXTURE}: {len(_fixture()['cases'])} decisions" in out


def test_node_client_matches_the_jax_policy_on_10000_recorded_decisions(recorded, tmp_path):
    """Node: event log -> features (== the simulator's observations to 1e-6) -> ONNX -> the JAX
    policy's action on every one of the 10,000 recorded decisions, scores to 1e-5."""
    learners, cases = _recorded_cases(recorded)
    shutil.copytree(recorded["bundle"], tmp_path / "bundle")
    path = tmp_path / "recorded.json"
    path.write_text(json.dumps({"bundle": "bundle", "tolerance": {"features_atol": 1e-6, "scores_atol": 1e-5},
                                "learners": learners, "cases": cases, "bad_inputs": _fixture()["bad_inputs"]}))
    out = node_test(["test/parity.test.js"], fixture=path)
    assert f"{path}: {len(cases)} decisions" in out and len(cases) >= 10_000


def test_node_fixture_matches_the_current_python_runtime():
    """The committed fixture's expectations are what this runtime answers (else rerun
    clients/node/test/make_fixture.py)."""
    fx = _fixture()
    r = Recommender(FIXTURE_BUNDLE)
    for c in fx["cases"]:
        events = fx["learners"][c["learner"]]["events"][: c["n_events"]]
        obs, mask = r.features(events, now=c["now"])
        np.testing.assert_allclose(obs, c["expected"]["features"], atol=1e-6, rtol=0)
        out = r.recommend(events, c["constraints"], now=c["now"])
        assert out["action"] == c["expected"]["action"] and out["session"] == c["expected"]["session"]
        np.testing.assert_allclose([out["scores"][i] for i in r.item_ids], c["expected"]["scores"], atol=1e-5, rtol=0)
    assert (NODE_DIR / "package-lock.json").is_file()
    assert sum(p.stat().st_size for p in FIXTURE.parent.rglob("*") if p.is_file()) < 1_000_000


# ---- HTTP: `pedagogym serve` on 127.0.0.1 ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Http:
    """One keep-alive connection; JSON in, (status, JSON) out."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def __call__(self, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        self.conn.request(method, path, body=data, headers={"content-type": "application/json"})
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def close(self) -> None:
        self.conn.close()


def _serve(bundle: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """``pedagogym serve BUNDLE --port N`` (the real verb) in a subprocess, once /health answers."""
    port = _free_port()
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pedagogym.cli", "serve", str(bundle), "--port", str(port)],
                                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"pedagogym serve exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"pedagogym serve did not start in 120 s: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(recorded, tmp_path_factory):
    """`pedagogym serve` on the recorded bundle (same curriculum as the fixture's events)."""
    proc, port = _serve(recorded["bundle"], tmp_path_factory.mktemp("serve") / "serve.log")
    client = _Http(port)
    try:
        yield {"http": client, "port": port, "proc": proc, "recommender": Recommender(recorded["bundle"])}
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_http_health_and_manifest(served, recorded):
    http = served["http"]
    status, health = http("GET", "/health")
    m = load_bundle(recorded["bundle"]).manifest
    assert status == 200 and health["status"] == "ok"
    assert health["model_sha256"] == m["model"]["sha256"] and health["curriculum_hash"] == m["curriculum"]["content_hash"]
    assert http("GET", "/manifest") == (200, m)


def test_http_matches_the_jax_policy_on_10000_recorded_decisions(served, recorded):
    """Every recorded decision through HTTP: the JAX policy's item 100% of the time, scores to 1e-5."""
    http, item_ids = served["http"], list(recorded["built"].curriculum.item_ids)
    learners, cases = _recorded_cases(recorded)
    assert len(cases) >= 10_000
    worst = 0.0
    for c in cases:
        status, got = http("POST", "/recommend", {"events": learners[c["learner"]]["events"][: c["n_events"]],
                                                  "now": c["now"]})
        assert status == 200, got
        want = c["expected"]
        assert got["action"] == want["action"] and got["item_id"] == want["item_id"], c
        assert got["session"] == want["session"] and got["n_events"] == c["n_events"]
        worst = max(worst, float(np.max(np.abs(np.asarray([got["scores"][i] for i in item_ids]) - want["scores"]))))
    assert worst <= 1e-5, worst


def test_http_answers_the_fixture_logs_like_the_runtime(served):
    """ISO 8601 / epoch timestamps, constraints, features and explanations over HTTP = the Python runtime."""
    http, r = served["http"], served["recommender"]
    fx = _fixture()
    for k, c in enumerate(fx["cases"][::3]):
        events = fx["learners"][c["learner"]]["events"][: c["n_events"]]
        explain = [False, True, {"top_k": 5, "review_after_days": 0}][k % 3]
        status, got = http("POST", "/recommend", {"events": events, "now": c["now"], "constraints": c["constraints"],
                                                  "include_features": True, "explain": explain})
        assert status == 200, got
        want = r.recommend(events, c["constraints"], now=c["now"], include_features=True, explain=explain)
        assert got == {k: v for k, v in want.items() if v is not None}  # (the service omits nulls)


@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_http_bad_input_is_a_422_with_a_message_and_the_service_stays_up(served, case):
    http = served["http"]
    make_events, _ = BAD_EVENTS[case]
    status, got = http("POST", "/recommend", {"events": make_events(_events())})
    assert status == 422, got
    detail = got["detail"]
    assert isinstance(detail, str) and "events" in detail, detail
    assert http("GET", "/health")[0] == 200 and served["proc"].poll() is None
    assert http("POST", "/recommend", {"events": _events()})[0] == 200


def test_http_rejects_malformed_bodies(served):
    http = served["http"]
    for body, match in (({"events": _events(), "extra": 1}, "extra"), ({}, "events"), ([], "body"),
                        ({"events": _events(), "constraints": {"only": []}}, "no item satisfies"),
                        ({"events": _events(), "constraints": {"only": ["zz9"]}}, "unknown item"),
                        ({"events": _events(), "constraints": {"avoid": ["a1"]}}, "extra"),
                        ({"events": _events(), "now": [1]}, "now"),
                        ({"events": _events(), "now": -1e9}, "before the last event"),
                        ({"events": _events(), "include_features": "yes"}, "include_features"),
                        ({"events": _events(), "explain": "yes"}, "explain"),
                        ({"events": _events(), "explain": {"top_k": -1}}, "explain.top_k")):
        status, got = http("POST", "/recommend", body)
        assert status == 422 and match in got["detail"].lower(), (body, got)
    status, got = http("POST", "/recommend", raw=b"{not json")
    assert status == 422 and "json" in got["detail"].lower(), got
    assert http("GET", "/health")[0] == 200 and served["proc"].poll() is None


def test_pedagogym_serve_refuses_a_tampered_bundle(fixture_bundle, tmp_path):
    p = fixture_bundle / "policy.onnx"
    p.write_bytes(p.read_bytes() + b"\0")
    res = subprocess.run([sys.executable, "-m", "pedagogym.cli", "serve", str(fixture_bundle), "--port",
                          str(_free_port())], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 2 and "does not match the manifest" in res.stderr, res.stderr[-2000:]


# ---- exporting each kind of policy ----------------------------------------------------------------------
def _small_env():
    return make("pedagogym/PrereqBKT-v0", curriculum="tiny", horizon=30, unlock_threshold=0.5)


def _fake_jax_ppo_run(run_dir: Path) -> None:
    """A run directory as ``pedagogym train`` (algo jax_ppo) writes it, with random weights:
    written with the agents package's own config, network and checkpoint functions."""
    from pedagogym.agents.checkpoint import run_identity, save_pytree
    from pedagogym.agents.config import train_config_from_dict
    from pedagogym.agents.networks import ObsNorm
    from pedagogym.agents.ppo import network_spec

    config = train_config_from_dict({"name": "fake", "algo": "jax_ppo", "seeds": [0, 1], "hidden": [32, 32],
                                     "activation": "relu", "env": {"id": "pedagogym/PrereqBKT-v0", "curriculum": "tiny",
                                                                   "horizon": 30, "unlock_threshold": 0.5}})
    built = config.build_env()
    spec = network_spec(config, built)
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(spec.init_params, jax.random.PRNGKey(0))  # the network's own parameter tree

    def weights(leaf):  # two agents; random weights large enough that logits are not near-ties
        scale = np.sqrt(2.0 / leaf.shape[0]) if len(leaf.shape) == 2 else 0.1
        return (scale * rng.standard_normal((2, *leaf.shape))).astype(np.float32)

    params = jax.tree.map(weights, shapes)
    d = spec.obs_size
    norm = ObsNorm(rng.uniform(0, 0.5, (2, d)).astype(np.float32), rng.uniform(0.01, 0.3, (2, d)).astype(np.float32),
                   np.full((2,), 50.0, np.float32))
    ident = run_identity(config, built)
    run_dir.mkdir(parents=True)
    save_pytree(run_dir / "policy.msgpack", {"params": params, "obs_norm": norm},
                {**ident, "config": config.to_dict(), "update": 1, "env_steps_per_agent": 0, "kind": "jax_ppo_policy",
                 "n_agents": 2, "network": spec.to_dict(), "normalize_obs": True, "agents": config.agents()})
    (run_dir / "manifest.json").write_text(json.dumps({
        "name": config.name, "algo": config.algo, **ident, "config": config.to_dict(), "agents": config.agents(),
        "final_eval_post_test": {"0": 0.4, "1": 0.6}, "env_steps_per_agent": 0, "complete": True}))


def test_export_jax_ppo_agent_from_a_run_directory(tmp_path):
    _fake_jax_ppo_run(tmp_path / "run")
    out = tmp_path / "bundle"
    rc = cli_main(["export", f"agent:{tmp_path / 'run'}#best", "--out", str(out), "--verify-learners", "16", "--json"])
    assert rc == 0
    m = load_bundle(out).manifest
    assert m["policy"]["kind"] == "jax_ppo" and m["training"]["agent"] == 1 and m["training"]["algo"] == "jax_ppo"
    assert m["policy"]["architecture"]["activation"] == "relu" and m["policy"]["architecture"]["layer_sizes"][1:] == [32, 32, 6]
    v = m["verification"]
    assert v["action_agreement"] == 1.0 and v["scores_within_tolerance"] and v["featurizer_max_abs_diff"] <= 1e-6
    assert v["decisions"] > 200


def test_export_sb3_agent_matches_sb3_and_its_jax_copy(recorded, tmp_path):
    """An SB3 PPO agent: ONNX vs SB3's own predict (all items allowed) and vs the JAX copy that
    `pedagogym run` evaluates (with the recorded masks), on the 10,000 recorded observations."""
    import torch
    from stable_baselines3 import PPO

    from pedagogym.agents.sb3_agents import convert
    from pedagogym.envs.sb3 import PedagogySB3VecEnv
    from pedagogym.policies.base import masked_argmax

    built, rec = _small_env(), recorded["rec"]
    model = PPO("MlpPolicy", PedagogySB3VecEnv(built, 2, seed=0), seed=0, device="cpu", policy_kwargs={"net_arch": [32, 32]})
    with torch.no_grad():  # spread the untrained action head's logits
        model.policy.action_net.weight.mul_(100.0)
    policy = convert(model, tag="sb3-test")
    kind, scorer = scorer_for(policy, built)
    assert kind == "sb3" and scorer.describe()["activation"] == "tanh"
    export_bundle(ExportSource(kind, "sb3_ppo", scorer, policy, built), tmp_path / "b", verify_learners=0)
    r = Recommender(tmp_path / "b")
    obs = rec.obs[:, :-1].reshape(-1, rec.obs.shape[-1])
    mask = rec.mask[:, :-1].reshape(-1, rec.mask.shape[-1])
    _, actions = r.run(obs, np.ones_like(mask))
    np.testing.assert_array_equal(actions, model.predict(obs, deterministic=True)[0])
    scores, actions = r.run(obs, mask)
    ref = jax.jit(jax.vmap(lambda o, m: masked_argmax(policy.logits(o), m)))(obs, mask)
    np.testing.assert_array_equal(actions, np.asarray(ref))
    logits = jax.jit(jax.vmap(policy.logits))(obs)
    np.testing.assert_allclose(scores[mask], np.asarray(logits)[mask], atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(EXPORTERS))
def test_handwritten_policy_graphs_match_the_jax_policy(recorded, name):
    """ONNX vs the policy's own JAX scores on the recorded views (histories, masks, observations)."""
    from pedagogym.policies import POLICIES
    from pedagogym.policies.base import NEG, PolicyView

    built, rec = recorded["built"], recorded["rec"]
    policy = POLICIES.get(name)
    _, scorer = scorer_for(policy, built)
    model = policy_model(scorer.build_scores, len(built.feature_names), built.curriculum.n_items)
    n, t = rec.action.shape
    flat = lambda x: np.asarray(x).reshape(n * t, *np.shape(x)[2:])  # noqa: E731
    history = jax.tree.map(flat, rec.history)
    obs, mask = flat(rec.obs[:, :-1]), flat(rec.mask[:, :-1])

    @jax.jit
    def jax_scores(h, m, o):
        def one(h, m, o):
            view = PolicyView(history=h, action_mask=m, obs=o)
            s, _ = policy.scores(jax.random.PRNGKey(0), policy.init(built.params), view, built.params, built.env)
            a, _ = policy.act(jax.random.PRNGKey(0), policy.init(built.params), view, built.params, built.env)
            return jax.numpy.where(m, s, NEG), a
        return jax.vmap(one)(h, m, o)

    ref, ref_actions = jax.device_get(jax_scores(history, mask, obs))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    scores, actions = sess.run(None, {"obs": obs, "action_mask": mask})
    np.testing.assert_array_equal(actions, ref_actions)
    np.testing.assert_allclose(scores, ref, atol=1e-5, rtol=1e-6)


def test_recurrent_agents_are_refused_with_a_reason():
    from pedagogym.agents.networks import NetworkSpec
    from pedagogym.agents.policy import TrainedPolicy

    built = _small_env()
    spec = NetworkSpec(obs_size=len(built.feature_names), n_actions=built.curriculum.n_items, hidden=(8,), recurrent=True)
    with pytest.raises(ExportError, match="recurrent"):
        scorer_for(TrainedPolicy(spec, params={}, obs_norm=None), built)


def test_every_registered_policy_is_exportable_or_says_why_not():
    from pedagogym.policies import POLICIES

    built = _small_env()
    for name, policy in POLICIES.items():
        if name in EXPORTERS:
            assert scorer_for(policy, built)[0] == "handwritten"
        else:
            with pytest.raises(ExportError, match="cannot be exported|privileged"):
                scorer_for(policy, built)
            assert name in NOT_EXPORTABLE, f"policy {name!r}: add an exporter or a reason to NOT_EXPORTABLE"


def test_cli_export_npz_mlp_and_errors(tmp_path, capsys):
    built = _small_env()
    spec = random_mlp(len(built.feature_names), built.curriculum.n_items, hidden=(8,), activation="relu", seed=5)
    path = save_mlp_npz(tmp_path / "mlp.npz", spec, env={"id": "pedagogym/PrereqBKT-v0", "curriculum": "tiny",
                                                          "horizon": 30, "unlock_threshold": 0.5})
    out = tmp_path / "bundle"
    assert cli_main(["export", str(path), "--out", str(out), "--verify-learners", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "mlp" and report["sha256"] == load_bundle(out).manifest["model"]["sha256"]
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, 1, (64, spec.n_inputs)).astype(np.float32)
    scores, _ = Recommender(out).run(obs, np.ones((64, spec.n_outputs), bool))
    np.testing.assert_allclose(scores, spec.scores(obs), atol=1e-5)
    # errors: one line each, exit code 2
    for argv, match in (
        (["export", str(path), "--out", str(out), "--verify-learners", "0"], "already holds a bundle"),
        (["export", "policy:leitner", "--env", "pedagogym/PrereqBKT-v0", "--set", "curriculum=tiny", "--out",
          str(tmp_path / "x")], "cannot be exported"),
        (["export", "policy:mastery", "--out", str(tmp_path / "y")], "--env"),
        (["export", "no_such_thing", "--out", str(tmp_path / "z")], "no such file"),
        (["export", "policy:designer", "--env", "pedagogym/PrereqBKT-v0", "--set", "curriculum=nope", "--out",
          str(tmp_path / "w")], "curriculum"),
    ):
        assert cli_main(argv) == 2
        assert match in capsys.readouterr().err
    assert resolve(str(path)).kind == "mlp"


def test_add_export_parsers_adds_both_verbs():
    import argparse

    p = argparse.ArgumentParser()
    add_export_parsers(p.add_subparsers(dest="verb", required=True))
    args = p.parse_args(["export", "policy:designer", "--out", "b", "--env", "pedagogym/PrereqBKT-v0", "--set", "horizon=40"])
    assert args.verb == "export" and args.set == [("horizon", 40)] and callable(args.func)
    args = p.parse_args(["serve", "b", "--port", "8123"])
    assert args.verb == "serve" and args.port == 8123 and args.host == "127.0.0.1"
