"""Write the Node client's parity fixture (committed; rerun only when the bundle format or the
featurizer changes):

    python clients/node/test/make_fixture.py

- ``fixtures/bundle/``: a small deterministic policy (a random-weight MLP 32 -> 16 -> 6 with
  observation normalisation) on the ``tiny`` curriculum, exported by ``pedagogym export``'s code,
  with an early-warning model (``risk.onnx``; trained on the same env with engagement on, so that
  learners drop out);
- ``fixtures/parity.json``: event logs of learners simulated under hand-written policies
  (round_robin, mastery; epoch-second, ISO 8601 and relative timestamps), decision points with the Python runtime's
  features, masks, scores, actions and risks, and bad inputs with the error each must raise.
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
    size = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"wrote {FIXTURES}: {len(learners)} learners, {len(cases)} decisions, {len(bad)} bad inputs; "
          f"smallest top-2 score gap {min(gaps):.3g}; {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
