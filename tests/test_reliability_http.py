"""The HTTP service's limits: body and event caps (413), strict JSON (422 for overflowing
numbers, bad unicode, impossible timestamps and offsets), the bearer token, no local paths in
/manifest, inference off the event loop, and a hypothesis fuzz test (no 500, /health answers)."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pedagogym.deploy import Recommender
from pedagogym.deploy.events import EventError, parse_timestamp
from pedagogym.deploy.server import create_app, redact_paths
from test_reliability_bundles import FIXTURE_BUNDLE, http

REC = Recommender(FIXTURE_BUNDLE)
APP = create_app(REC, max_body_bytes=20_000, max_events=50)
EV = {"learner_id": "u", "item_id": "a1", "correct": True, "response_time": 30.0, "timestamp": 1_700_000_000}


def _post(body, app=APP, **kw):
    if isinstance(body, (bytes, str)):
        return http(app, "POST", "/recommend", content=body, headers={"content-type": "application/json", **kw})
    return http(app, "POST", "/recommend", json=body, headers=kw)


def test_a_valid_request_still_answers():
    r = _post({"events": [EV]})
    assert r.status_code == 200 and r.json()["item_id"] in REC.item_ids


def test_body_and_event_caps_are_413():
    r = _post({"events": [EV] * 51})
    assert r.status_code == 413 and "at most 50" in r.json()["detail"]
    big = json.dumps({"events": [EV], "pad": "x" * 30_000})
    r = _post(big)
    assert r.status_code == 413 and "larger than 20000 bytes" in r.json()["detail"]
    assert http(APP, "GET", "/health").status_code == 200


@pytest.mark.parametrize("raw, field", [
    ('{"events": [{"item_id": "a1", "correct": true, "response_time": 1%s, "timestamp": 0}]}' % ("0" * 400),
     "events[0].response_time"),
    ('{"events": [], "now": 1%s}' % ("0" * 400), "now"),
    ('{"events": [{"item_id": "a1", "correct": true, "response_time": 1e999, "timestamp": 0}]}', "response_time"),
    ('{"events": [{"item_id": "a1", "correct": true, "response_time": NaN, "timestamp": 0}]}', "response_time"),
    ('{"learner_id": "\\ud800", "events": []}', "lone surrogate"),
    (b'{"learner_id": "\xff\xfe", "events": []}', "not valid UTF-8"),
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ('{"events": [', "not valid JSON"),
])
def test_malformed_numbers_and_unicode_are_422(raw, field):
    app = create_app(REC)  # default caps: the nesting case is 200 kB
    r = _post(raw, app=app)
    assert r.status_code == 422 and field in r.json()["detail"], r.text


@pytest.mark.parametrize("ts, needle", [
    ("2024-05-01T09:30:00+99:00", "impossible UTC offset"),
    ("2024-05-01T09:30:00+18:60", "impossible UTC offset"),
    (1e20, "outside years 1..9999"),
    (-1e15, "outside years 1..9999"),
])
def test_impossible_timestamps_are_422(ts, needle):
    r = _post({"events": [{**EV, "timestamp": ts}]})
    assert r.status_code == 422 and needle in r.json()["detail"], r.text
    with pytest.raises(EventError, match=needle.replace(".", r"\.")):
        parse_timestamp(ts)


def test_extreme_response_time_is_422_and_offsets_up_to_18h_pass():
    r = _post({"events": [{**EV, "response_time": 1e308}]})
    assert r.status_code == 422 and "response_time" in r.json()["detail"]
    assert parse_timestamp("2024-05-01T09:30:00+18:00") == parse_timestamp("2024-04-30T15:30:00Z")


def test_bearer_token_guards_everything_but_health():
    app = create_app(REC, token="s3cret")
    assert http(app, "GET", "/health").status_code == 200
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret"}):
        r = http(app, "POST", "/recommend", json={"events": []}, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert http(app, "GET", "/manifest", headers=headers).status_code == 401
    r = http(app, "POST", "/recommend", json={"events": []}, headers={"authorization": "Bearer s3cret"})
    assert r.status_code == 200


def test_token_from_the_environment_is_used_by_serve(monkeypatch):
    import pedagogym.deploy.server as server

    seen = {}
    monkeypatch.setenv("PEDAGOGYM_TOKEN", "from-env")
    monkeypatch.setattr(server, "create_app", lambda rec, **kw: seen.update(kw) or "app")
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(ran=app))
    server.serve(str(FIXTURE_BUNDLE), port=8123)
    assert seen["token"] == "from-env" and seen["ran"] == "app"


def test_manifest_endpoint_hides_local_paths():
    m = {"training": {"run_dir": "/home/me/results/train/x", "win": "C:\\Users\\me\\run", "unc": "\\\\srv\\share",
                      "home": "~/x", "rel": "results/train/x"}, "n": 3}
    out = redact_paths(m)
    assert out == {"training": {"run_dir": "<local path>", "win": "<local path>", "unc": "<local path>",
                                "home": "<local path>", "rel": "results/train/x"}, "n": 3}
    served = http(APP, "GET", "/manifest").json()
    assert "/" not in json.dumps(served["training"]).replace("clients/node/test/make_fixture.py", "")


@pytest.mark.parametrize("value, needle", [({"port": 70000}, "port"), ({"workers": 0}, "workers")])
def test_server_options_are_validated(value, needle):
    from pedagogym.deploy.server import serve

    with pytest.raises(ValueError, match=needle):
        if "port" in value:
            serve(str(FIXTURE_BUNDLE), **value)
        else:
            create_app(REC, **value)


@pytest.mark.parametrize("argv, needle", [
    (["serve", str(FIXTURE_BUNDLE), "--port", "70000"], "--port: expected an integer from 1 to 65535"),
    (["export", "policy:designer", "--out", "x", "--verify-learners", "-3"], "--verify-learners: expected an integer"),
    (["serve", str(FIXTURE_BUNDLE), "--idle-gap-s", "nan"], "--idle-gap-s: expected a finite number"),
])
def test_cli_numeric_options_are_validated(argv, needle, capsys):
    from pedagogym.export.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err


def test_inference_runs_off_the_event_loop_so_health_answers_meanwhile():
    import threading

    release = threading.Event()
    started = threading.Event()

    class Slow(Recommender):
        def recommend(self, *a, **k):
            started.set()
            assert release.wait(30)
            return super().recommend(*a, **k)

    slow = Slow(FIXTURE_BUNDLE)
    app = create_app(slow, workers=1, max_pending=0)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            decision = asyncio.create_task(c.post("/recommend", json={"events": []}))
            while not started.is_set():
                await asyncio.sleep(0.01)
            health = await c.get("/health")  # answered while the decision blocks its worker
            busy = await c.post("/recommend", json={"events": []})  # no worker free, no waiting room
            release.set()
            return health, busy, await decision

    health, busy, decision = asyncio.run(go())
    assert health.status_code == 200
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert decision.status_code == 200


# ---- fuzz -----------------------------------------------------------------------------------------
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                     max_leaves=12)
_event = st.fixed_dictionaries({
    "item_id": st.sampled_from(["a1", "a2", "b1", "zz"]) | _json,
    "correct": st.booleans() | st.none() | _json,
    "response_time": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | _json,
    "timestamp": st.integers() | st.floats() | st.text(max_size=30) | st.sampled_from(
        ["2024-05-01T09:30:00Z", "2024-05-01T09:30:00+99:00", "0000-01-01T00:00:00-18:00", "9999-12-31 23:59:59+00:00"]),
}, optional={"learner_id": st.text(max_size=5) | _json})
_body = st.fixed_dictionaries({"events": st.lists(_event, max_size=4)}, optional={
    "now": _json | st.integers() | st.text(max_size=25), "constraints": _json, "explain": _json,
    "learner_id": _json, "include_features": _json}) | _json


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_body, path=st.sampled_from(["/recommend", "/risk"]))
def test_fuzzed_requests_never_500_and_health_still_answers(body, path):
    raw = json.dumps(body, allow_nan=True)
    r = http(APP, "POST", path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code in (200, 404, 409, 413, 422), (r.status_code, r.text[:500])
    assert "Traceback" not in r.text
    assert http(APP, "GET", "/health").status_code == 200


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=200))
def test_fuzzed_raw_bytes_never_500(raw):
    r = http(APP, "POST", "/recommend", content=raw, headers={"content-type": "application/json"})
    assert r.status_code in (413, 422), (r.status_code, r.text[:300])
