"""Write the Node client's parity fixture (committed; rerun only when the bundle format or the
featurizer changes):

    python clients/node/test/make_fixture.py              # everything below
    python clients/node/test/make_fixture.py --derived    # only the files derived from the committed
                                                          # bundle and parity.json (constraints.json,
                                                          # explain.json)

(with this checkout's ``pedagogym`` importable: an editable install of it, or ``PYTHONPATH=.``)

- ``fixtures/bundle/``: a small deterministic policy (a random-weight MLP 32 -> 16 -> 6 with
  observation normalisation) on the ``tiny`` curriculum, exported by ``pedagogym export``'s code,
  with an early-warning model (``risk.onnx``; trained on the same env with engagement on, so that
  learners drop out);
- ``fixtures/parity.json``: event logs of learners simulated under hand-written policies
  (round_robin, mastery; epoch-second, ISO 8601 and relative timestamps), decision points with the Python runtime's
  features, masks, scores, actions and risks, and bad inputs with the error each must raise;
- ``fixtures/constraints.json``: teacher constraints of every kind (only, exclude, pin,
  forbid_skills, review_skills, daily_minutes) at decision points of parity.json's learners, with
  the Python runtime's item and eligible items, or its error (type and message) for infeasible,
  unknown or malformed constraints and a reached daily cap;
- ``fixtures/explain.json``: the Python runtime's explanations (``explain=True`` and option sets)
  at decision points of parity.json's learners, with every constraint kind, on constructed logs
  (a learner failing a skill, one succeeding, items due for review, a new learner), on a
  curriculum where every item is locked, and malformed ``explain`` values with their errors.
  Decisions whose ranking or rounding is within 1e-4 of a tie are left out (the runtimes agree
  to 1e-5, not bit for bit, across onnxruntime versions).
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
N_LEARNERS, N_STEPS = 8, 30
ENV = dict(curriculum="tiny", horizon=N_STEPS, unlock_threshold=0.5, session_minutes=4.0)
EPOCH_ORIGIN = 1714550400.0  # 2024-05-01T08:00:00Z


def _iso(seconds: float) -> str:
    whole = int(np.floor(seconds))
    frac = seconds - whole
    stamp = dt.datetime.fromtimestamp(whole, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{int(round(frac * 1e6)):06d}Z" if frac else f"{stamp}Z"


def restyle(events: list[dict], style: str, origin: float) -> list[dict]:
    out = []
    for e in events:
        e = dict(e)
        if style == "epoch":
            e["timestamp"] = origin + e["timestamp"]
        elif style == "iso":
            e["timestamp"] = _iso(origin + e["timestamp"])
        out.append(e)
    return out


def restyle_now(now: float, style: str, origin: float):
    return origin + now if style == "epoch" else (_iso(origin + now) if style == "iso" else now)


def _answer(rec, events, now, constraints, **kw) -> dict:
    """The Python runtime's answer, or the error it raises (type and message)."""
    try:
        out = rec.recommend(events, constraints, now=now, **kw)
    except ValueError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"item_id": out["item_id"], "eligible": out["eligible"], **({"explanation": out["explanation"]}
                                                                       if "explanation" in out else {})}


def write_constraint_fixture(rec, learners: list[dict], cases: list[dict]) -> int:
    """fixtures/constraints.json: every constraint kind at decision points of parity.json's learners."""
    skill_of = {it["id"]: it["skills"] for it in rec.manifest["curriculum"]["spec"]["items"]}
    skills = list(rec.spec.skill_ids)
    out = []
    for c in cases[::9]:
        events = learners[c["learner"]]["events"][: c["n_events"]]
        free = rec.recommend(events, now=c["now"])
        chosen, elig = free["item_id"], free["eligible"]
        other = next((i for i in elig if i != chosen), None)
        other_skill = next((s for i in elig for s in skill_of[i] if s not in skill_of[chosen]), None)
        kinds = {
            "only": {"only": [i for i in elig if i != chosen][:2] or [chosen]},
            "exclude": {"exclude": [chosen]},
            "pin": {"pin": other or chosen},
            "forbid_skills": {"forbid_skills": skill_of[chosen]},
            "review_skills": {"review_skills": [other_skill or skill_of[chosen][0]]},
            "review_skills empty (ignored)": {"review_skills": []},
            "daily_minutes not reached": {"daily_minutes": 600},
            "daily_minutes reached": {"daily_minutes": 0.5},
            "several": {"exclude": [chosen], "review_skills": [other_skill or skill_of[chosen][0]], "daily_minutes": 90},
            "pin a locked item": {"pin": next((i for i in rec.item_ids if i not in elig), chosen)},
            "pin an excluded item": {"pin": chosen, "exclude": [chosen]},
            "forbid every skill": {"forbid_skills": skills},
            "only nothing": {"only": []},
        }
        for name, cons in kinds.items():
            out.append({"name": name, "learner": c["learner"], "n_events": c["n_events"], "now": c["now"],
                        "constraints": cons, "free": chosen, "expected": _answer(rec, events, c["now"], cons)})
    events = learners[0]["events"][:4]
    now = learners[0]["events"][3]["timestamp"]
    for name, cons in (("unknown item", {"only": ["zz9"]}), ("unknown skill", {"forbid_skills": ["nope"]}),
                       ("unknown pin", {"pin": "zz9"}), ("unknown key", {"avoid": ["a1"], "ban": []}),
                       ("only not a list", {"only": "a1"}), ("skills not strings", {"review_skills": [1]}),
                       ("pin not a string", {"pin": ["a1"]}), ("daily_minutes negative", {"daily_minutes": -1}),
                       ("daily_minutes zero", {"daily_minutes": 0}), ("daily_minutes a string", {"daily_minutes": "30"}),
                       ("daily_minutes a bool", {"daily_minutes": True}), ("not an object", ["a1"]),
                       ("null values ignored", {"only": None, "pin": None}), ("the next UTC day", {"daily_minutes": 0.5})):
        at = 86400.0 + 10 if name == "the next UTC day" else None
        out.append({"name": name, "learner": 0, "n_events": 4, "now": at, "constraints": cons, "free": None,
                    "expected": _answer(rec, events, at, cons)})
    assert now is not None
    kinds_ok = {c["name"] for c in out if "item_id" in c["expected"]}
    kinds_err = {c["expected"]["error"] for c in out if "error" in c["expected"]}
    assert {"only", "exclude", "pin", "forbid_skills", "review_skills", "several"} <= kinds_ok, kinds_ok
    assert kinds_err == {"ConstraintError", "DailyCapReached"}, kinds_err
    (FIXTURES / "constraints.json").write_text(json.dumps({"generated_by": "clients/node/test/make_fixture.py",
                                                            "cases": out}, separators=(",", ":")) + "\n")
    return len(out)


LOCKED_EDIT = {"skill": "a", "prerequisites": ["c"]}  # every skill then has an unmet prerequisite


def locked_manifest(manifest: dict) -> dict:
    """The bundle's manifest with LOCKED_EDIT applied (the Node test makes the same edit)."""
    from pedagogym.deploy.bundle import curriculum_hash

    m = json.loads(json.dumps(manifest))
    next(s for s in m["curriculum"]["spec"]["skills"] if s["id"] == LOCKED_EDIT["skill"])["prerequisites"] = \
        LOCKED_EDIT["prerequisites"]
    m["curriculum"]["content_hash"] = curriculum_hash(m["curriculum"]["spec"])
    return m


def _near_tie(rec, events, now, constraints, options) -> bool:
    """Whether the ranking of alternatives or attribution groups, or a rounded number in a text,
    is within 1e-4 of changing."""
    full = rec.recommend(events, constraints, now=now, explain={**options, "top_features": 100})
    ex = full["explanation"]
    scores = sorted((full["scores"][i] for i in full["eligible"]), reverse=True)
    effects = [abs(g["effect"]) for g in ex["attribution"]["groups"]]
    k, m = options.get("top_k", 3), options.get("top_features", 3)
    gaps = [a - b for a, b in zip(scores[: k + 2], scores[1: k + 2])] + \
           [a - b for a, b in zip(effects[: m + 1], effects[1: m + 1])]
    floor = 1e-5 * max(1.0, abs(full["scores"][full["item_id"]]))
    rounded = [a["score_gap"] for a in ex["alternatives"]] + effects
    return (min(gaps, default=1.0) < 1e-4 or any(abs(e - floor) < 1e-4 for e in effects)
            or any(abs((100 * x) % 1 - 0.5) < 1e-2 for x in rounded))


def write_explain_fixture(rec, learners: list[dict], cases: list[dict]) -> tuple[int, int]:
    """fixtures/explain.json: explanations at parity.json's decision points and on constructed logs."""
    from pedagogym.deploy import Recommender
    from pedagogym.deploy.bundle import Bundle

    options = [True, {"top_k": 5, "review_after_days": 0.0}, {"top_features": 8, "max_review": 2,
                                                               "review_after_days": 0.002}, {"top_k": 0, "top_features": 0}]
    skill_of = {it["id"]: it["skills"] for it in rec.manifest["curriculum"]["spec"]["items"]}
    out, ambiguous = [], 0

    def add(name, events_ref, events, now, constraints, explain):
        nonlocal ambiguous
        if _near_tie(rec, events, now, constraints, explain if isinstance(explain, dict) else {}):
            ambiguous += 1
            return
        out.append({"name": name, **events_ref, "now": now, "constraints": constraints, "explain": explain,
                    "expected": _answer(rec, events, now, constraints, explain=explain)})

    for k, c in enumerate(cases[::3]):
        events = learners[c["learner"]]["events"][: c["n_events"]]
        ref = {"learner": c["learner"], "n_events": c["n_events"]}
        add("decision point", ref, events, c["now"], c["constraints"], options[k % len(options)])
    for c in cases[1::15]:
        events = learners[c["learner"]]["events"][: c["n_events"]]
        ref = {"learner": c["learner"], "n_events": c["n_events"]}
        free = rec.recommend(events, now=c["now"])
        chosen, elig = free["item_id"], free["eligible"]
        other = next((i for i in elig if i != chosen), chosen)
        other_skill = next((s for i in elig for s in skill_of[i] if s not in skill_of[chosen]), skill_of[chosen][0])
        for name, cons in (("exclude", {"exclude": [chosen]}), ("pin", {"pin": other}),
                           ("only", {"only": [i for i in elig if i != chosen][:2] or [chosen]}),
                           ("forbid_skills", {"forbid_skills": skill_of[chosen]}),
                           ("review_skills", {"review_skills": [other_skill]}), ("daily_minutes", {"daily_minutes": 600}),
                           ("several", {"exclude": [chosen], "review_skills": [other_skill], "daily_minutes": 90})):
            if "error" not in _answer(rec, events, c["now"], cons):
                add(f"constraint {name}", ref, events, c["now"], cons, True)

    def ev(item, correct, t, rt=30.0):
        return {"item_id": item, "correct": correct, "response_time": rt, "timestamp": t}

    day = 86400.0
    constructed = {
        "failing skill a": ([ev(i, False, 40.0 * k) for k, i in enumerate(["a1", "a2"] * 3)], None),
        "succeeding on skill a": ([ev(i, True, 40.0 * k) for k, i in enumerate(["a1", "a2"] * 3)], None),
        "due for review (epoch)": ([ev("a1", True, EPOCH_ORIGIN), ev("a2", False, EPOCH_ORIGIN + 0.5 * day),
                                    ev("b1", True, EPOCH_ORIGIN + 2 * day), ev("a1", True, EPOCH_ORIGIN + 2.5 * day)],
                                   EPOCH_ORIGIN + 3 * day),
        "due for review (ISO 8601)": ([ev("a2", True, "2024-05-01T08:00:00Z"), ev("a1", None, "2024-05-03T09:30:00+01:00"),
                                       ev("b2", False, "2024-05-04T10:00:00.5Z", 41.25)], "2024-05-09T12:00:00Z"),
        "new learner": ([], None),
    }
    for name, (events, now) in constructed.items():
        for explain in (True, {"review_after_days": 0.5, "top_k": 5, "top_features": 6}):
            add(name, {"events": events}, events, now, None, explain)
    # a curriculum where every item is locked: the mask falls back to all available items
    locked = Recommender(Bundle(path=FIXTURES / "bundle", manifest=locked_manifest(rec.manifest),
                                model_bytes=(FIXTURES / "bundle" / "policy.onnx").read_bytes()))
    locked_cases = [{"name": "every item locked", "events": events, "now": None, "explain": True,
                     "expected": _answer(locked, events, None, None, explain=True)}
                    for events in ([], [ev("a1", False, 0.0), ev("c2", False, 45.0)])]
    assert not any(c["expected"]["explanation"]["chosen"]["unlocked"] for c in locked_cases)
    bad = []
    for value in ("yes", 1, [True], {"top": 3}, {"top_k": -1}, {"top_k": 101}, {"top_k": 2.5}, {"top_k": True},
                  {"top_features": "3"}, {"max_review": -2}, {"review_after_days": -1}, {"review_after_days": "1"}):
        bad.append({"explain": value, "expected": _answer(rec, learners[0]["events"][:3], None, None, explain=value)})
    assert all(b["expected"]["error"] == "ExplainError" for b in bad)
    kinds = {c["name"] for c in out}
    assert {"constraint exclude", "constraint pin", "constraint several", "failing skill a", "new learner"} <= kinds, kinds
    (FIXTURES / "explain.json").write_text(json.dumps({
        "generated_by": "clients/node/test/make_fixture.py", "tolerance": {"numbers_atol": 1e-5},
        "locked_edit": LOCKED_EDIT, "cases": out, "locked_cases": locked_cases, "bad_explain": bad},
        separators=(",", ":")) + "\n")
    return len(out) + len(locked_cases), ambiguous


def main() -> int:
    from pedagogym.deploy import Recommender
    from pedagogym.envs import make
    from pedagogym.export import ExportSource, MLPPolicy, export_bundle, random_mlp
    from pedagogym.export.record import decision_points, event_logs, record_episodes
    from pedagogym.warning import WarningConfig
    from pedagogym.warning.bundle import train_for_bundle

    built = make("pedagogym/PrereqBKT-v0", **ENV)
    d, n_items = len(built.feature_names), built.curriculum.n_items
    spec = random_mlp(d, n_items, hidden=(16,), seed=7)
    policy = MLPPolicy(spec)
    source = ExportSource(kind="mlp", name="node_fixture_mlp", scorer=spec, policy=policy, built=built,
                          training={"source": "random weights (seed 7) for the Node parity fixture",
                                    "script": "clients/node/test/make_fixture.py"})
    bundle = FIXTURES / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    early_warning = train_for_bundle(source, WarningConfig(env=built.config.replace(engagement=True),
                                                           policies=("random", "designer", "mastery"), learners=256,
                                                           heldout_learners=128, seed=0))
    export_bundle(source, bundle, verify_learners=8, created_utc="2024-05-01T00:00:00+00:00", early_warning=early_warning)
    rec = Recommender(bundle)

    # learners taught by hand-written policies (varied logs); the bundle's MLP answers at every point
    from pedagogym.policies import POLICIES

    recordings = [record_episodes(built.env, built.params, POLICIES.get(name), N_LEARNERS // 2, N_STEPS, seed=11)
                  for name in ("round_robin", "mastery")]
    points = [pt for r in recordings for pt in (lambda r=r: [decision_points(r, n) for n in range(N_LEARNERS // 2)])()]
    logs = [log for r in recordings for log in event_logs(r, built.curriculum.item_ids)]
    styles = ["relative", "epoch", "iso"]
    learners, cases = [], []
    for n, log in enumerate(logs):
        style = styles[n % 3]
        origin = EPOCH_ORIGIN + 3600.0 * n + 0.25 * (n % 2)
        events = restyle(log, style, origin)
        learners.append({"learner_id": f"L{n}", "timestamp_style": style, "events": events})
        for j, now in points[n]:
            now_v = None if (j == len(log) and n % 2) else restyle_now(now, style, origin)
            constraints = {"exclude": [events[j - 1]["item_id"]]} if (j % 7 == 3) else None
            if constraints and j % 2:
                constraints = {"only": list(built.curriculum.item_ids[:4])}
            try:
                out = rec.recommend(events[:j], constraints, now=now_v, include_features=True)
            except ValueError:  # constraints that leave nothing: covered by the error cases
                continue
            obs, mask = rec.features(events[:j], now_v)
            mask = rec.constrain(mask, constraints)
            cases.append({"learner": n, "n_events": j, "now": now_v, "constraints": constraints,
                          "expected": {"action": out["action"], "item_id": out["item_id"], "session": out["session"],
                                       "scores": [out["scores"][i] for i in rec.item_ids],
                                       "features": [float(v) for v in obs], "mask": [int(v) for v in mask],
                                       "risk": out["risk"]}})
    ev0 = learners[0]["events"][:3]
    bad = [
        {"name": "unknown item", "events": [dict(ev0[0], item_id="zz9")], "error": "EventError", "match": "unknown item"},
        {"name": "correct not a bool", "events": [dict(ev0[0], correct="yes")], "error": "EventError", "match": "correct"},
        {"name": "response_time a string", "events": [dict(ev0[0], response_time="5")], "error": "EventError",
         "match": "response_time"},
        {"name": "negative response_time", "events": [dict(ev0[0], response_time=-1)], "error": "EventError",
         "match": "response_time"},
        {"name": "timestamp a bool", "events": [dict(ev0[0], timestamp=True)], "error": "EventError", "match": "timestamp"},
        {"name": "bad ISO timestamp", "events": [dict(ev0[0], timestamp="2024-13-45T99:00:00Z")], "error": "EventError",
         "match": "timestamp"},
        {"name": "time goes backwards", "events": [ev0[1], ev0[0]] if len(ev0) > 1 else [], "error": "EventError",
         "match": "backwards"},
        {"name": "two learners", "events": [ev0[0], dict(ev0[1], learner_id="other")] if len(ev0) > 1 else [],
         "error": "EventError", "match": "learner_id"},
        {"name": "missing field", "events": [{k: v for k, v in ev0[0].items() if k != "correct"}], "error": "EventError",
         "match": "missing"},
        {"name": "not a list", "events": {"item_id": "a1"}, "error": "EventError", "match": "list"},
    ]
    for b in bad:  # the Python runtime must agree on every error case
        try:
            rec.recommend(b["events"])
        except ValueError as exc:
            assert type(exc).__name__ == b["error"] and b["match"] in str(exc), (b, exc)
        else:
            raise AssertionError(f"{b['name']}: no error")
    fixture = {"generated_by": "clients/node/test/make_fixture.py", "bundle": "bundle", "env": ENV,
               "tolerance": {"features_atol": 1e-6, "scores_atol": 1e-5, "risk_atol": 1e-6},
               "learners": learners, "cases": cases, "bad_inputs": bad}
    (FIXTURES / "parity.json").write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    gaps = [sorted(c["expected"]["scores"])[-1] - sorted(c["expected"]["scores"])[-2] for c in cases]
    print(f"wrote {FIXTURES}: {len(learners)} learners, {len(cases)} decisions, {len(bad)} bad inputs; "
          f"smallest top-2 score gap {min(gaps):.3g}")
    return derived()


def derived() -> int:
    """The fixtures computed from the committed bundle and parity.json's learners and decisions."""
    from pedagogym.deploy import Recommender

    rec = Recommender(FIXTURES / "bundle")
    parity = json.loads((FIXTURES / "parity.json").read_text())
    n_constraints = write_constraint_fixture(rec, parity["learners"], parity["cases"])
    n_explain, n_ambiguous = write_explain_fixture(rec, parity["learners"], parity["cases"])
    size = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"wrote {FIXTURES}: {n_constraints} constraint cases, {n_explain} explanations ({n_ambiguous} near-tie "
          f"decisions left out); {size / 1024:.0f} KiB in all")
    return 0


if __name__ == "__main__":
    sys.exit(derived() if sys.argv[1:] == ["--derived"] else main())
