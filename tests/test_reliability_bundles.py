"""Tampered bundles through all three loaders (Python runtime, HTTP service, Node client): every
case is refused with the same error by each, or (for a model that misbehaves at decision time)
refused at the decision, never answered with a forbidden item.

Every tampered manifest is re-sealed (its bundle_sha256 recomputed, as an attacker who knows the
rule would), so each check is reached on its own; one case edits without re-sealing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from node_client import NODE_DIR, node, npm_ci
from pedagogym.deploy import BundleError, Recommender, load_bundle
from pedagogym.deploy.bundle import seal_manifest, sha256_bytes

FIXTURE_BUNDLE = NODE_DIR / "test" / "fixtures" / "bundle"


def http(app, method: str, url: str, **kw):
    """One request to the FastAPI app in process (httpx's ASGI transport; starlette's
    TestClient warns that its httpx support is deprecated, and warnings are errors here)."""
    import asyncio

    import httpx

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await c.request(method, url, **kw)
    return asyncio.run(go())


def _copy(tmp: Path, name: str) -> Path:
    dst = tmp / name / "bundle"
    shutil.copytree(FIXTURE_BUNDLE, dst)
    return dst


def _reseal(bundle: Path, edit) -> None:
    p = bundle / "manifest.json"
    m = json.loads(p.read_text())
    m.pop("bundle_sha256")
    m.pop("bundle_hash_rule")
    edit(m)
    p.write_bytes(seal_manifest(m))


def _constant_action_model(action: int, n_features: int = 32, n_items: int = 6) -> bytes:
    """A graph with the policy's inputs and outputs that ignores obs and the mask: scores = mask
    as floats, action = ``action`` for every row."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Cast", ["action_mask"], ["scores"], to=TensorProto.FLOAT),
         helper.make_node("Shape", ["obs"], ["shape"]),
         helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
         helper.make_node("ConstantOfShape", ["batch"], ["action"],
                          value=helper.make_tensor("v", TensorProto.INT64, [1], [action]))],
        "swapped",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", n_features]),
         helper.make_tensor_value_info("action_mask", TensorProto.BOOL, ["batch", n_items])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n_items]),
         helper.make_tensor_value_info("action", TensorProto.INT64, ["batch"])],
        [helper.make_tensor("zero", TensorProto.INT64, [1], [0]), helper.make_tensor("one", TensorProto.INT64, [1], [1])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _swap_model(bundle: Path, data: bytes) -> None:
    (bundle / "policy.onnx").write_bytes(data)
    _reseal(bundle, lambda m: m["model"].update(sha256=sha256_bytes(data)))


# ---- the cases: (name, make(tmp) -> bundle dir, expected substring of the error) ----
def _traversal(tmp: Path) -> Path:
    b = _copy(tmp, "traversal")
    other = b.parent / "other"
    other.mkdir()
    shutil.copy(b / "policy.onnx", other / "policy.onnx")  # a real model, sha matching, outside the bundle
    _reseal(b, lambda m: m["model"].update(file="../other/policy.onnx"))
    return b


def _absolute(tmp: Path) -> Path:
    b = _copy(tmp, "absolute")
    _reseal(b, lambda m: m["model"].update(file="/dev/zero"))
    return b


def _symlink(tmp: Path) -> Path:
    b = _copy(tmp, "symlink")
    real = b.parent / "real.onnx"
    (b / "policy.onnx").rename(real)
    (b / "policy.onnx").symlink_to(real)
    return b


def _dev_zero(tmp: Path) -> Path:
    b = _copy(tmp, "devzero")
    (b / "policy.onnx").unlink()
    (b / "policy.onnx").symlink_to("/dev/zero")
    return b


def _fifo(tmp: Path) -> Path:
    b = _copy(tmp, "fifo")
    (b / "policy.onnx").unlink()
    os.mkfifo(b / "policy.onnx")
    return b


def _risk_fifo(tmp: Path) -> Path:
    b = _copy(tmp, "riskfifo")
    (b / "risk.onnx").unlink()
    os.mkfifo(b / "risk.onnx")
    return b


def _risk_traversal(tmp: Path) -> Path:
    b = _copy(tmp, "risktraversal")
    _reseal(b, lambda m: m["early_warning"].update(file="../risk.onnx"))
    return b


def _edited_not_resealed(tmp: Path) -> Path:
    b = _copy(tmp, "edited")
    p = b / "manifest.json"
    p.write_text(p.read_text().replace('"name": "tiny"', '"name": "tinY"', 1))
    return b


def _manifest_symlink(tmp: Path) -> Path:
    b = _copy(tmp, "manifestlink")
    (b / "manifest.json").rename(b.parent / "m.json")
    (b / "manifest.json").symlink_to(b.parent / "m.json")
    return b


def _edit(name: str, edit):
    def make(tmp: Path) -> Path:
        b = _copy(tmp, name)
        _reseal(b, edit)
        return b
    return make


def _model(name: str, data):
    def make(tmp: Path) -> Path:
        b = _copy(tmp, name)
        _swap_model(b, data() if callable(data) else data)
        return b
    return make


def _format_1(m):
    m["format_version"] = 1


LOAD_CASES = [
    ("model_file_traversal", _traversal, "model.file: expected a file name inside the bundle folder"),
    ("model_file_absolute", _absolute, "model.file: expected a file name inside the bundle folder"),
    ("model_symlink", _symlink, "model.file is a symbolic link"),
    ("model_dev_zero_symlink", _dev_zero, "model.file is a symbolic link"),
    ("model_fifo", _fifo, "model.file is not a regular file"),
    ("risk_fifo", _risk_fifo, "early_warning.file is not a regular file"),
    ("risk_traversal", _risk_traversal, "early_warning.file: expected a file name inside the bundle"),
    ("manifest_symlink", _manifest_symlink, "the manifest is a symbolic link"),
    ("edited_not_resealed", _edited_not_resealed, "the manifest's content does not match its bundle_sha256"),
    ("format_1", _edit("format1", _format_1), "has no whole-bundle hash"),
    ("p_guess_5", _edit("pguess", lambda m: m["observer"]["p_guess"].__setitem__(0, 5.0)),
     "observer.p_guess: expected 3 probabilities in [0, 1]"),
    ("p_init_short", _edit("pinit", lambda m: m["observer"]["p_init"].pop()), "observer.p_init: expected 3 probabilities"),
    ("horizon_0", _edit("horizon", lambda m: m["env"].update(horizon=0)), "env.horizon: expected an integer"),
    ("session_negative", _edit("session", lambda m: m["env"].update(session_s=-5.0)), "env.session_s: expected"),
    ("unlock_2", _edit("unlock", lambda m: m["env"].update(unlock_threshold=2.0)), "env.unlock_threshold: expected"),
    ("available_short", _edit("avail", lambda m: m["env"]["item_available"].pop()), "env.item_available: expected 6"),
    ("idle_gap_0", _edit("gap", lambda m: m["sessions"].update(idle_gap_s=0)), "sessions.idle_gap_s: expected"),
    ("garbage_model_sha_updated", _model("garbage", b"\x08\x01garbage not a graph"), "not a loadable ONNX model"),
]
DECISION_CASES = [  # models that load but misbehave: refused at the decision
    ("action_out_of_range", _model("range", lambda: _constant_action_model(6)), "chose action 6, outside the 6 items"),
    ("action_ignores_mask", _model("mask", lambda: _constant_action_model(5)), "which the action mask forbids"),
]


def _nan_case(tmp: Path) -> Path:
    b = _copy(tmp, "nan")
    _reseal(b, lambda m: m["observer"]["p_slip"].__setitem__(0, float("nan")))  # json.dumps writes NaN
    return b


ALL = LOAD_CASES + DECISION_CASES + [("nan_in_observer", _nan_case, "not valid JSON")]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tampered")
    return {name: (make(tmp), needle) for name, make, needle in ALL}


@pytest.fixture(scope="module")
def node_answers(cases):
    node()
    npm_ci()
    spec = [{"dir": str(d)} for d, _ in cases.values()]
    path = Path(next(iter(cases.values()))[0]).parents[1] / "cases.json"
    path.write_text(json.dumps(spec))
    res = subprocess.run([node(), "scripts/try_bundles.js", str(path)], cwd=NODE_DIR, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(zip(cases, json.loads(res.stdout)))


def _python_answer(bundle: Path) -> dict:
    try:
        r = Recommender(bundle).recommend([])
    except BundleError as exc:
        return {"ok": False, "error": "BundleError", "message": str(exc)}
    return {"ok": True, "item_id": r["item_id"], "action": r["action"]}


@pytest.mark.parametrize("name", [c[0] for c in ALL])
def test_python_and_node_refuse_each_tampered_bundle_with_the_same_error(name, cases, node_answers):
    bundle, needle = cases[name]
    py = _python_answer(bundle)
    js = node_answers[name]
    assert py["ok"] is False and py["error"] == "BundleError" and needle in py["message"], py
    assert js["ok"] is False and js["error"] == "BundleError" and needle in js["message"], js


def test_the_untampered_fixture_answers_the_same_in_python_and_node(tmp_path):
    b = _copy(tmp_path, "clean")
    (tmp_path / "cases.json").write_text(json.dumps([{"dir": str(b)}, {"dir": str(b), "expect_sha256": "0" * 64}]))
    res = subprocess.run([node(), "scripts/try_bundles.js", str(tmp_path / "cases.json")], cwd=NODE_DIR,
                         capture_output=True, text=True, timeout=120)
    ok, pinned = json.loads(res.stdout)
    assert ok == {**_python_answer(b), "ok": True}
    assert pinned["error"] == "BundleError" and "not the expected" in pinned["message"]
    with pytest.raises(BundleError, match="not the expected"):
        load_bundle(b, expected_sha256="0" * 64)
    sha = json.loads((b / "manifest.json").read_text())["bundle_sha256"]
    assert load_bundle(b, expected_sha256=sha).manifest["bundle_sha256"] == sha


def test_a_model_that_ignores_the_mask_is_refused_in_batches_too(cases):
    rec = Recommender(cases["action_ignores_mask"][0])
    obs, mask = rec.features([])
    with pytest.raises(BundleError, match="forbids"):
        rec.run(np.stack([obs, obs]), np.stack([mask, mask]))


@pytest.mark.parametrize("name", ["action_ignores_mask", "action_out_of_range"])
def test_http_service_refuses_a_misbehaving_model_without_a_forbidden_item(name, cases):
    from pedagogym.deploy.server import create_app

    bundle, needle = cases[name]
    app = create_app(Recommender(bundle))
    r = http(app, "POST", "/recommend", json={"events": []})
    assert r.status_code == 500 and needle in r.json()["detail"] and "item_id" not in r.json()
    assert http(app, "GET", "/health").status_code == 200


def test_serve_refuses_a_tampered_bundle_in_one_line(cases):
    import sys

    from test_reliability import _cli

    r = _cli("serve", str(cases["model_file_traversal"][0]), "--port", "8765", cwd=Path.cwd(), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "model.file: expected a file name inside the bundle folder" in r.stderr
