"""Explanations of deployed recommendations (``recommend(..., explain=True)``): content on
constructed event logs (beliefs, prerequisite status, review, alternatives, constraint
narrowing, occlusion attribution), the HTTP field and its 422s."""
from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pedagogym.deploy import Recommender
from pedagogym.deploy.bundle import Bundle, curriculum_hash
from pedagogym.deploy.explain import ExplainError, ExplainOptions, feature_groups

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "clients" / "node" / "test" / "fixtures"
REC = Recommender(FIXTURES / "bundle")  # tiny curriculum (a -> b -> c), unlock threshold 0.5, small random MLP
PARITY = json.loads((FIXTURES / "parity.json").read_text())


def ev(item: str, correct: bool | None, t: float, rt: float = 30.0) -> dict:
    return {"item_id": item, "correct": correct, "response_time": rt, "timestamp": t}


def explain(events, constraints=None, now=None, **options) -> tuple[dict, dict]:
    out = REC.recommend(events, constraints, now=now, explain=options or True)
    return out, out["explanation"]


def skill(ex: dict, sid: str) -> dict:
    return next(s for s in ex["skills"] if s["skill_id"] == sid)


def fixture_points(step: int = 5):
    for c in PARITY["cases"][::step]:
        yield PARITY["learners"][c["learner"]]["events"][: c["n_events"]], c["now"], c["constraints"]


# ---- content on constructed logs ---------------------------------------------------------------
def test_a_learner_failing_a_skill_shows_low_belief_and_its_dependents_locked():
    log = [ev(i, False, 40.0 * k) for k, i in enumerate(["a1", "a2"] * 3)]
    out, ex = explain(log)
    h = REC.state(REC.parse(log))
    a = skill(ex, "a")
    assert a["attempts"] == 6 and a["correct"] == 0 and a["accuracy"] == 0.0
    assert a["belief"] == float(h.belief[0]) < 0.2 < ex["unlock_threshold"] == 0.5  # below p_init, below the threshold
    b = skill(ex, "b")
    assert b["prerequisites"] == [{"skill_id": "a", "belief": a["belief"], "met": False}] and b["unlocked"] is False
    assert ex["locked_items"] == [{"item_id": "b1", "missing": ["a"]}, {"item_id": "b2", "missing": ["a"]},
                                  {"item_id": "c1", "missing": ["b"]}, {"item_id": "c2", "missing": ["b"]}]
    assert out["eligible"] == ["a1", "a2"] and ex["chosen"]["item_id"] in ("a1", "a2")
    assert ex["chosen"]["unlocked"] is True and ex["chosen"]["skills"] == [a]
    assert f"'a' (belief {a['belief']:.2f}, 6 attempts, 0 correct)" in ex["summary"]
    assert ex["constraints"] is None


def test_a_learner_succeeding_unlocks_the_next_skill_and_says_so():
    log = [ev(i, True, 40.0 * k) for k, i in enumerate(["a1", "a2"] * 3)]
    out, ex = explain(log)
    a, b = skill(ex, "a"), skill(ex, "b")
    assert a["belief"] > 0.9 and a["accuracy"] == 1.0
    assert b["prerequisites"] == [{"skill_id": "a", "belief": a["belief"], "met": True}] and b["unlocked"] is True
    assert skill(ex, "c")["prerequisites"][0]["met"] is False
    assert [x["item_id"] for x in ex["locked_items"]] == ["c1", "c2"] and out["eligible"] == ["a1", "a2", "b1", "b2"]
    # a b item chosen here is explained with its met prerequisite
    _, ex_b = explain(log, {"pin": "b1"})
    assert ex_b["chosen"]["skills"][0]["prerequisites"][0]["met"] is True
    assert "its prerequisites ('a') are met" in ex_b["summary"]


def test_when_every_item_is_locked_the_explanation_says_the_mask_fell_back(tmp_path):
    """A curriculum whose every skill has an unmet prerequisite for a new learner (a needs c)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(FIXTURES / "bundle", bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    m["curriculum"]["spec"]["skills"][0]["prerequisites"] = ["c"]
    m["curriculum"]["content_hash"] = curriculum_hash(m["curriculum"]["spec"])
    from pedagogym.deploy.bundle import seal_manifest

    (bundle / "manifest.json").write_bytes(seal_manifest(m))  # re-sealed: the edit is the test's
    out = Recommender(bundle).recommend([], explain=True)
    ex = out["explanation"]
    assert out["eligible"] == list(REC.item_ids) and len(ex["locked_items"]) == 6
    assert ex["chosen"]["unlocked"] is False
    assert ex["chosen"]["skills"][0]["prerequisites"][0]["met"] is False
    assert "every item is locked by prerequisites" in ex["summary"]


def test_alternatives_are_the_next_highest_eligible_scores_in_order():
    n_checked = 0
    for events, now, constraints in fixture_points():
        for k in (0, 1, 3, 5):
            out = REC.recommend(events, constraints, now=now, explain={"top_k": k})
            alts = out["explanation"]["alternatives"]
            others = [i for i in out["eligible"] if i != out["item_id"]]
            ranked = sorted(others, key=lambda i: (-out["scores"][i], REC.item_ids.index(i)))
            assert [a["item_id"] for a in alts] == ranked[:k]
            for a in alts:
                assert a["score"] == out["scores"][a["item_id"]]
                assert a["score_gap"] == out["scores"][out["item_id"]] - a["score"] >= 0
                assert a["reason"].startswith(f"scored {a['score_gap']:.2f} below '{out['item_id']}'")
            n_checked += 1
    assert n_checked > 100


def test_constraint_narrowing_is_reported_per_constraint():
    log = [ev(i, True, 40.0 * k) for k, i in enumerate(["a1", "a2"] * 3)]  # a1 a2 b1 b2 eligible
    free = REC.recommend(log)
    chosen = free["item_id"]
    out, ex = explain(log, {"exclude": [chosen]})
    cons = ex["constraints"]
    assert cons["applied"] == ["exclude"] and cons["narrowed_by"] == {"exclude": [chosen]}
    assert (cons["eligible_without"], cons["eligible_with"]) == (4, 3)
    assert cons["unconstrained_choice"] == chosen and cons["changed_choice"] is True and out["item_id"] != chosen
    assert f"Teacher constraints (exclude) narrowed the choice from 4 items to 3; without them the policy would " \
           f"have chosen '{chosen}'." in ex["summary"]
    # several kinds at once: each is credited with what it alone removes; the daily cap only reports
    out, ex = explain(log, {"daily_minutes": 30, "review_skills": ["b"], "exclude": ["b2"], "only": ["a1", "b1", "b2"]})
    cons = ex["constraints"]
    assert cons["applied"] == ["only", "exclude", "review_skills", "daily_minutes"]
    assert cons["narrowed_by"] == {"only": ["a2"], "exclude": ["b2"], "review_skills": ["a1", "a2"]}
    assert out["eligible"] == ["b1"] and cons["eligible_with"] == 1
    assert cons["daily"] == {"cap_minutes": 30.0, "minutes_today": 3.0, "minutes_left": 27.0}  # 6 x 30 s today
    assert "It was the only eligible item." in ex["summary"] and ex["alternatives"] == []
    # pin and forbidden skills
    _, ex = explain(log, {"pin": "b2"})
    assert ex["constraints"]["narrowed_by"] == {"pin": ["a1", "a2", "b1"]} and ex["chosen"]["item_id"] == "b2"
    _, ex = explain(log, {"forbid_skills": ["a"]})
    assert ex["constraints"]["narrowed_by"] == {"forbid_skills": ["a1", "a2"]}
    # a constraint that removes nothing eligible: applied, but nothing narrowed, the choice unchanged
    out, ex = explain(log, {"exclude": ["c1"], "review_skills": []})
    assert ex["constraints"]["applied"] == ["exclude"] and ex["constraints"]["narrowed_by"] == {}
    assert ex["constraints"]["changed_choice"] is False and out["item_id"] == chosen
    assert "Teacher constraints" not in ex["summary"]


def test_items_due_for_review_are_the_longest_unpractised():
    day = 86400.0
    log = [ev("a1", True, 0.0), ev("a2", False, 0.5 * day), ev("b1", True, 2 * day), ev("a1", True, 2.5 * day)]
    now = 3 * day
    _, ex = explain(log, now=now)  # default: due one day after the last presentation
    due = ex["due_for_review"]
    assert due["review_after_days"] == 1.0 and due["n_due"] == 2
    assert [(d["item_id"], d["days_since_last"]) for d in due["items"]] == [("a2", 2.5), ("b1", 1.0)]
    a2 = due["items"][0]
    assert (a2["attempts"], a2["accuracy"], a2["skills"]) == (1, 0.0, ["a"])
    assert a2["weakest_belief"] == skill(ex, "a")["belief"]
    assert a2["eligible"] is True and due["items"][1]["eligible"] is (skill(ex, "a")["belief"] >= 0.5)
    _, ex = explain(log, now=now, review_after_days=0, max_review=3)  # every practised item, most overdue first
    assert ex["due_for_review"]["n_due"] == 3 and [d["item_id"] for d in ex["due_for_review"]["items"]] == ["a2", "b1", "a1"]
    _, ex = explain(log, now=now, review_after_days=2.0, max_review=0)
    assert ex["due_for_review"] == {"n_due": 1, "review_after_days": 2.0, "items": []}
    assert ex["chosen"]["due_for_review"] is (ex["chosen"]["item_id"] == "a2")
    out, ex = explain(log, {"pin": "a2"}, now=now)
    assert ex["chosen"]["due_for_review"] is True and "It is due for review (last seen 2.5 days ago)." in ex["summary"]


def _occlusion_effects(events, now, out) -> dict[str, float]:
    """Every group's effect on the chosen item, recomputed here one perturbed observation at a time."""
    obs, _ = REC.features(events, now)
    mask = np.asarray([i in out["eligible"] for i in REC.item_ids])
    a = out["action"]
    ref = float(REC.run(obs[None], mask[None])[0][0, a])
    baseline = REC.explainer.baseline
    effects = {}
    for g in feature_groups(REC.spec):
        idx = list(g.features)
        if np.array_equal(obs[idx], baseline[idx]):
            continue
        o = obs.copy()
        o[idx] = baseline[idx]
        effects[g.key] = ref - float(REC.run(o[None], mask[None])[0][0, a])
    return effects


def test_attribution_is_the_score_change_when_a_feature_group_is_reset_to_a_new_learners():
    n_groups = 0
    for events, now, constraints in fixture_points(step=11):
        out = REC.recommend(events, constraints, now=now, explain={"top_features": 100})
        groups = out["explanation"]["attribution"]["groups"]
        want = _occlusion_effects(events, now, out)
        assert {g["group"] for g in groups} <= set(want)
        for g in groups:
            assert g["effect"] == pytest.approx(want[g["group"]], abs=1e-5)
            assert g["text"].endswith(f"{'raises' if g['effect'] > 0 else 'lowers'} the score of '{out['item_id']}' "
                                      f"by {abs(g['effect']):.2f}")
        assert [abs(g["effect"]) for g in groups] == sorted((abs(g["effect"]) for g in groups), reverse=True)
        assert len(groups) == sum(abs(e) >= 1e-5 * max(1.0, abs(out["scores"][out["item_id"]])) for e in want.values())
        n_groups += len(groups)
        top = REC.recommend(events, constraints, now=now, explain={"top_features": 2})["explanation"]["attribution"]
        assert top["groups"] == groups[:2]
    assert n_groups > 50


def test_attribution_texts_name_the_values_in_plain_words():
    log = [ev("a1", True, 0.0, 20.0), ev("a2", False, 60.0, 45.0), ev("a1", True, 180.0, 12.0)]
    _, ex = explain(log, top_features=100)
    texts = {g["group"]: g["text"] for g in ex["attribution"]["groups"]}
    a = skill(ex, "a")
    expected = {
        "belief[a]": f"belief in 'a' is {a['belief']:.2f} (a new learner: 0.20)",
        "practice[a]": "3 attempts on 'a', 2 correct",
        "history[a2]": "item 'a2' seen 1 time (0 correct), last 2 min ago",
        "last_response": "the last response was correct and took 12 s",
        "progress": "3 items presented so far (horizon 30)",
        "session": "session 1, 3.2 min since it started",
    }
    for group, start in expected.items():
        if group in texts:
            assert texts[group].startswith(start + "; this "), texts[group]
    assert len(set(expected) & set(texts)) >= 3
    assert ex["attribution"]["method"] == "occlusion"


def test_a_new_learner_has_no_attribution_and_zero_top_features_skips_it():
    out, ex = explain([])
    assert ex["attribution"]["groups"] == [] and ex["due_for_review"]["n_due"] == 0
    assert all(s["attempts"] == 0 and s["accuracy"] is None for s in ex["skills"])
    assert ex["chosen"]["days_since_last"] is None and "not practised yet" in ex["summary"]
    _, ex = explain(PARITY["learners"][0]["events"][:6], top_features=0)
    assert ex["attribution"] is None and "Strongest influence" not in ex["summary"]


def test_explaining_leaves_the_answer_unchanged_and_is_deterministic():
    for events, now, constraints in fixture_points(step=7):
        plain = REC.recommend(events, constraints, now=now)
        out = REC.recommend(events, constraints, now=now, explain=True)
        assert {k: v for k, v in out.items() if k != "explanation"} == plain and "explanation" not in plain
        assert REC.recommend(events, constraints, now=now, explain=True) == out
        assert json.loads(json.dumps(out)) == out  # plain JSON types
        assert out["explanation"]["chosen"]["item_id"] == out["item_id"]
        assert out["explanation"]["chosen"]["score"] == out["scores"][out["item_id"]]


# ---- options and errors -----------------------------------------------------------------------------
def test_explain_options():
    assert ExplainOptions.parse(False) is None and ExplainOptions.parse(None) is None
    assert ExplainOptions.parse(True) == ExplainOptions() == ExplainOptions(3, 3, 1.0, 5)
    assert ExplainOptions.parse({}) == ExplainOptions()
    assert ExplainOptions.parse({"top_k": 0, "review_after_days": 2}) == ExplainOptions(top_k=0, review_after_days=2.0)
    assert ExplainOptions.parse(ExplainOptions(top_k=7)) == ExplainOptions(top_k=7)


BAD_EXPLAIN = {
    "a string": ("yes", "explain: expected true, false or an object"),
    "a number": (1, "explain: expected true, false or an object"),
    "a list": ([True], "explain: expected true, false or an object"),
    "unknown option": ({"top": 3}, r"explain: unknown key\(s\) \['top'\]"),
    "negative top_k": ({"top_k": -1}, "explain.top_k: expected an integer from 0 to 100, got -1"),
    "top_k too large": ({"top_k": 101}, "explain.top_k: expected an integer from 0 to 100"),
    "top_k a float": ({"top_k": 2.5}, "explain.top_k: expected an integer"),
    "top_k a bool": ({"top_k": True}, "explain.top_k: expected an integer"),
    "top_features a string": ({"top_features": "3"}, "explain.top_features: expected an integer"),
    "max_review negative": ({"max_review": -2}, "explain.max_review"),
    "review_after_days negative": ({"review_after_days": -1}, "explain.review_after_days: expected a number of days >= 0"),
    "review_after_days nan": ({"review_after_days": float("nan")}, "explain.review_after_days"),
    "review_after_days a string": ({"review_after_days": "1"}, "explain.review_after_days"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPLAIN))
def test_bad_explain_parameters_raise_a_clear_error(case):
    value, match = BAD_EXPLAIN[case]
    with pytest.raises(ExplainError, match=match):
        REC.recommend(PARITY["learners"][0]["events"][:3], explain=value)


# ---- HTTP ------------------------------------------------------------------------------------------------
def _post_all(bodies: list[dict]) -> list[tuple[int, dict]]:
    import httpx

    from pedagogym.deploy.server import create_app

    async def run():
        transport = httpx.ASGITransport(app=create_app(REC))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            out = []
            for body in bodies:
                r = await client.post("/recommend", json=body)
                out.append((r.status_code, r.json()))
            out.append(((await client.get("/health")).status_code, {}))
            return out

    return asyncio.run(run())


def test_http_explanation_equals_the_runtime():
    points = list(fixture_points(step=6))
    options = [True, {"top_k": 5, "review_after_days": 0}, {"top_features": 0, "max_review": 1}, {}]
    bodies = [{"events": e, "now": now, "constraints": c, "explain": options[k % 4]}
              for k, (e, now, c) in enumerate(points)]
    answers = _post_all(bodies + [{"events": points[0][0], "now": points[0][1], "explain": False}])
    for body, (status, got) in zip(bodies, answers):
        assert status == 200, got
        want = REC.recommend(body["events"], body["constraints"], now=body["now"], explain=body["explain"])
        assert got == {k: v for k, v in want.items() if v is not None}  # nulls inside the explanation are kept
    assert "explanation" not in answers[len(bodies)][1]  # explain: false


@pytest.mark.parametrize("case", sorted(k for k in BAD_EXPLAIN if "nan" not in k))  # NaN is not JSON
def test_http_malformed_explain_is_a_422_naming_the_parameter(case):
    value, _ = BAD_EXPLAIN[case]
    (status, got), (health, _) = _post_all([{"events": PARITY["learners"][0]["events"][:3], "explain": value}])
    assert status == 422 and got["detail"].startswith("explain"), got
    assert health == 200


# ---- the Node client: the same explanations ----------------------------------------------------------
def _close(got, want, at="explanation") -> list[str]:
    """Differences between two JSON values: numbers to 1e-5 (onnxruntime versions), the rest equal."""
    if isinstance(want, (int, float)) and not isinstance(want, bool) and isinstance(got, (int, float)) \
            and not isinstance(got, bool):
        return [] if abs(got - want) <= 1e-5 else [f"{at}: {got} != {want}"]
    if isinstance(want, dict) and isinstance(got, dict):
        return [d for k in sorted(set(got) | set(want)) for d in _close(got.get(k, "<missing>"), want.get(k, "<missing>"),
                                                                       f"{at}.{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return [d for k, (g, w) in enumerate(zip(got, want)) for d in _close(g, w, f"{at}[{k}]")]
    return [] if got == want else [f"{at}: {got!r} != {want!r}"]


def test_node_explain_fixture_matches_the_current_python_runtime():
    """clients/node/test/fixtures/explain.json holds what this runtime explains (else rerun
    `python clients/node/test/make_fixture.py --derived` from the repository root with this package)."""
    fx = json.loads((FIXTURES / "explain.json").read_text())
    assert len(fx["cases"]) > 80 and fx["locked_cases"] and fx["bad_explain"]
    for c in fx["cases"]:
        events = c["events"] if "events" in c else PARITY["learners"][c["learner"]]["events"][: c["n_events"]]
        out = REC.recommend(events, c["constraints"], now=c["now"], explain=c["explain"])
        assert (out["item_id"], out["eligible"]) == (c["expected"]["item_id"], c["expected"]["eligible"]), c["name"]
        assert _close(out["explanation"], c["expected"]["explanation"]) == [], c["name"]
    m = json.loads(json.dumps(REC.manifest))  # the fixture's curriculum edit that locks every item
    edit = fx["locked_edit"]
    next(s for s in m["curriculum"]["spec"]["skills"] if s["id"] == edit["skill"])["prerequisites"] = edit["prerequisites"]
    m["curriculum"]["content_hash"] = curriculum_hash(m["curriculum"]["spec"])
    locked = Recommender(Bundle(path=REC.bundle.path, manifest=m, model_bytes=REC.bundle.model_bytes))
    for c in fx["locked_cases"]:
        out = locked.recommend(c["events"], now=c["now"], explain=c["explain"])
        assert _close(out["explanation"], c["expected"]["explanation"]) == [] and not out["explanation"]["chosen"]["unlocked"]
    for b in fx["bad_explain"]:
        with pytest.raises(ExplainError) as err:
            REC.recommend(PARITY["learners"][0]["events"][:3], explain=b["explain"])
        assert str(err.value) == b["expected"]["message"]


def test_node_client_explanations_equal_the_python_runtime():
    from node_client import node_test

    node_test(["test/explain.test.js"])
