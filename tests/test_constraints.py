"""Teacher constraints through the action mask: in the simulator (every constraint kind
changes the chosen action as specified, the daily cap ends the day) and in the deployed
runtime and HTTP service (same kinds; infeasible sets -> a clear 4xx, service stays up)."""
from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pedagogym.curriculum import resolve_curriculum
from pedagogym.deploy.recommender import ConstraintError, DailyCapReached, Recommender
from pedagogym.envs import make
from pedagogym.envs.constraints import ConstraintSpecError, build_constraints
from pedagogym.policies import POLICIES, PolicyView

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_BUNDLE = ROOT / "clients" / "node" / "test" / "fixtures" / "bundle"  # as in test_export


def _events():
    return json.loads((FIXTURE_BUNDLE.parent / "parity.json").read_text())["learners"][0]["events"][:4]

TINY = resolve_curriculum("tiny")  # a -> b -> c; items a1 a2 b1 b2 c1 c2
BUILT = make("pedagogym/PrereqBKT-v0", curriculum="tiny", horizon=40, unlock_threshold=0.0, terminate_on_mastery=False)
POLICY = POLICIES.get("designer")  # designer order: a1 a2 b1 b2 c1 c2, two presentations each


def _choose(constraints=None) -> str:
    params = BUILT.params if constraints is None else BUILT.params._replace(constraints=constraints)
    _, state = BUILT.env.reset(jax.random.PRNGKey(0), params)
    view = PolicyView(state.history, BUILT.env.action_mask(state, params), jnp.zeros(1))
    a, _ = POLICY.act(jax.random.PRNGKey(1), POLICY.init(params), view, params, BUILT.env)
    assert bool(view.action_mask[a])
    return TINY.item_ids[int(a)]


def test_each_constraint_kind_changes_the_simulator_choice():
    c = lambda **kw: build_constraints(TINY, **kw)  # noqa: E731
    assert _choose() == "a1"
    assert _choose(c(pin="c2")) == "c2"
    assert _choose(c(forbid_items=["a1"])) == "a2"
    assert _choose(c(forbid_skills=["a"])) == "b1"
    assert _choose(c(review_skills=["c"])) == "c1"
    assert _choose(c(review_skills=["b", "c"], forbid_items=["b1"])) == "b2"


def test_infeasible_or_unknown_constraints_are_refused_when_built():
    for kw, match in ((dict(forbid_skills=["a", "b", "c"]), "no item satisfies"),
                      (dict(pin="a1", forbid_items=["a1"]), "no item satisfies"),
                      (dict(review_skills=["a"], forbid_skills=["a"]), "no item satisfies"),
                      (dict(pin="zz"), "unknown item"), (dict(forbid_skills=["q"]), "unknown skill"),
                      (dict(daily_minutes=0), "daily_minutes")):
        with pytest.raises(ConstraintSpecError, match=match):
            build_constraints(TINY, **kw)


def test_constraints_hold_over_whole_rollouts_for_every_kind_of_policy():
    from pedagogym.policies.rollout import evaluate, learner_keys

    params = BUILT.params._replace(constraints=build_constraints(TINY, forbid_skills=["b"], forbid_items=["a2"]))
    keys = learner_keys(jax.random.PRNGKey(2), 16)
    for name in ("random", "greedy_gain"):
        res = evaluate(BUILT.env, POLICIES.get(name), 40, params, keys)
        assert float(np.min(np.asarray(res.valid_actions))) == 1.0
    # replay one learner and check no forbidden item was ever presented
    _, state = BUILT.env.reset(jax.random.PRNGKey(3), params)
    step = jax.jit(lambda k, s, a: BUILT.env.step(k, s, a, params))
    rnd = POLICIES.get("random")
    for t in range(30):
        view = PolicyView(state.history, BUILT.env.action_mask(state, params), jnp.zeros(1))
        a, _ = rnd.act(jax.random.PRNGKey(t), rnd.init(params), view, params, BUILT.env)
        _, state, *_ = step(jax.random.PRNGKey(100 + t), state, a)
    att = np.asarray(state.history.item_attempts)
    assert att[[1, 2, 3]].sum() == 0 and att.sum() == 30


def test_daily_cap_ends_the_day_in_the_simulator():
    cap_min = 3.0
    params = BUILT.params._replace(constraints=build_constraints(TINY, daily_minutes=cap_min))
    _, state = BUILT.env.reset(jax.random.PRNGKey(4), params)
    step = jax.jit(lambda k, s, a: BUILT.env.step(k, s, a, params))
    per_day: dict[int, float] = {}
    last_rt = 0.0
    for t in range(40):
        day = int(np.floor(float(state.history.t)))
        _, state, _, _, _, info = step(jax.random.PRNGKey(t), state, jnp.int32(t % 6))
        per_day[day] = per_day.get(day, 0.0) + float(info["response_time"])
        last_rt = max(last_rt, float(info["response_time"]))
    assert len(per_day) >= 3  # the cap spread 40 items over several days
    # at most the cap plus the item in progress when it was reached
    assert max(per_day.values()) <= 60 * cap_min + last_rt
    uncapped = BUILT.params
    _, s2 = BUILT.env.reset(jax.random.PRNGKey(4), uncapped)
    for t in range(40):
        _, s2, *_ = BUILT.env.step(jax.random.PRNGKey(t), s2, jnp.int32(t % 6), uncapped)
    assert float(s2.history.t) < float(state.history.t)


# ---- deployed runtime and HTTP ----------------------------------------------------------------
REC = Recommender(FIXTURE_BUNDLE)  # tiny curriculum, unlock threshold 0.5


def test_each_constraint_kind_changes_the_runtime_choice():
    ev = _events()
    free = REC.recommend(ev)
    elig = free["eligible"]
    assert len(elig) >= 3
    other = next(i for i in elig if i != free["item_id"])
    assert REC.recommend(ev, {"pin": other})["item_id"] == other
    assert REC.recommend(ev, {"pin": other})["eligible"] == [other]
    skill_of = {it["id"]: it["skills"][0] for it in REC.manifest["curriculum"]["spec"]["items"]}
    s_free = skill_of[free["item_id"]]
    out = REC.recommend(ev, {"forbid_skills": [s_free]})
    assert skill_of[out["item_id"]] != s_free and all(skill_of[i] != s_free for i in out["eligible"])
    s_other = next(skill_of[i] for i in elig if skill_of[i] != s_free)
    out = REC.recommend(ev, {"review_skills": [s_other]})
    assert skill_of[out["item_id"]] == s_other and out["item_id"] != free["item_id"]
    assert REC.recommend(ev, {"exclude": [free["item_id"]]})["item_id"] != free["item_id"]


def test_runtime_daily_cap_and_infeasible_sets():
    ev = _events()  # ~90 s on task, all on 1970-01-01 UTC
    assert REC.recommend(ev, {"daily_minutes": 2})["item_id"]
    with pytest.raises(DailyCapReached, match="daily cap of 1 min is reached"):
        REC.recommend(ev, {"daily_minutes": 1})
    assert REC.recommend(ev, {"daily_minutes": 1}, now=86400.0 + 10)["item_id"]  # the next UTC day
    skills = REC.spec.skill_ids
    for bad, match in (({"forbid_skills": list(skills)}, "no item satisfies"), ({"pin": "zz"}, "unknown item"),
                       ({"review_skills": ["nope"]}, "unknown skill"), ({"daily_minutes": -1}, "daily_minutes"),
                       ({"pin": "a1", "exclude": ["a1"]}, "excluded by another constraint")):
        with pytest.raises(ConstraintError, match=match):
            REC.recommend(ev, bad)


def test_http_constraints_and_clear_errors_keep_the_service_up():
    import asyncio

    import httpx

    from pedagogym.deploy.server import create_app

    ev = _events()

    async def run():
        transport = httpx.ASGITransport(app=create_app(REC))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            post = lambda body: client.post("/recommend", json=body)  # noqa: E731
            free = (await post({"events": ev})).json()
            other = next(i for i in free["eligible"] if i != free["item_id"])
            r = await post({"events": ev, "constraints": {"pin": other}})
            assert r.status_code == 200 and r.json()["item_id"] == other
            r = await post({"events": ev, "constraints": {"forbid_skills": list(REC.spec.skill_ids)}})
            assert r.status_code == 422 and "no item satisfies" in r.json()["detail"]
            r = await post({"events": ev, "constraints": {"daily_minutes": 1}})
            assert r.status_code == 409 and "daily cap" in r.json()["detail"]
            r = await post({"events": ev, "constraints": {"daily_minutes": "x"}})
            assert r.status_code == 422
            assert (await client.get("/health")).status_code == 200
            assert (await post({"events": ev})).json() == free

    asyncio.run(run())


# ---- one rule in the simulator and the runtime -------------------------------------------------
@pytest.mark.parametrize("constraints", [
    {"pin": "c2"},  # a locked item, pinned: presented (the teacher overrides the prerequisites)
    {"review_skills": ["c"]},  # locks hide every allowed item: the allowed items, ignoring the locks
    {"review_skills": ["b", "a"]},  # some allowed items unlocked: only those
    {"only": ["b1", "c1"]}, {"exclude": ["a1", "a2"]}, {"forbid_skills": ["a"]},
])
def test_simulator_and_runtime_apply_the_same_constraint_rule(constraints):
    """The bundle's own env (tiny; b needs a, c needs b; unlock at belief 0.5) before any event:
    only a's items are unlocked. Both sides must allow the same items."""
    from pedagogym.deploy.features import action_mask, replay
    from pedagogym.envs.config import EnvConfig, build

    built = build(EnvConfig.from_dict(REC.manifest["env"]["config"]))
    items = built.curriculum.item_ids
    sim_kw = {"pin": constraints.get("pin"), "forbid_skills": constraints.get("forbid_skills", ()),
              "review_skills": constraints.get("review_skills", ()),
              "forbid_items": [i for i in items if i in constraints.get("exclude", ())
                               or ("only" in constraints and i not in constraints["only"])]}
    params = built.params._replace(constraints=build_constraints(built.curriculum, **sim_kw))
    _, state = built.env.reset(jax.random.PRNGKey(0), params)
    sim = [i for i, ok in zip(items, np.asarray(built.env.action_mask(state, params))) if ok]
    base = action_mask(REC.spec, replay(REC.spec, []))
    assert [i for i, ok in zip(REC.item_ids, base) if ok] == ["a1", "a2"]  # the setting the cases assume
    deployed = [i for i, ok in zip(REC.item_ids, REC.constrain(base, constraints)) if ok]
    assert sim == deployed


# ---- the Node client: the same constraints, answers and errors --------------------------------------
def test_node_constraint_fixture_matches_the_current_python_runtime():
    """clients/node/test/fixtures/constraints.json holds what this runtime answers for every
    constraint kind, infeasible set and malformed value (else rerun make_fixture.py --derived)."""
    fixtures = FIXTURE_BUNDLE.parent
    learners = json.loads((fixtures / "parity.json").read_text())["learners"]
    cases = json.loads((fixtures / "constraints.json").read_text())["cases"]
    errors = set()
    for c in cases:
        events = learners[c["learner"]]["events"][: c["n_events"]]
        try:
            out = REC.recommend(events, c["constraints"], now=c["now"])
            got = {"item_id": out["item_id"], "eligible": out["eligible"]}
        except ConstraintError as exc:
            got = {"error": type(exc).__name__, "message": str(exc)}
            errors.add(got["error"])
        assert got == c["expected"], c["name"]
    assert errors == {"ConstraintError", "DailyCapReached"}
    assert {c["name"] for c in cases} >= {"only", "exclude", "pin", "forbid_skills", "review_skills", "several",
                                          "daily_minutes reached", "forbid every skill", "unknown key"}


def test_node_client_constraints_equal_the_python_runtime():
    from node_client import node_test

    node_test(["test/constraints.test.js"])
