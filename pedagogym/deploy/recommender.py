"""The recommender: event log -> features -> ONNX policy -> next item (numpy + onnxruntime); and,
when the bundle has an early-warning model, the same features -> ``risk.onnx`` -> the learner's
risks (e.g. of dropping out and of not reaching mastery by the horizon)."""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pedagogym.deploy.bundle import Bundle, BundleError, load_bundle
from pedagogym.deploy.events import Event, EventError, parse_events, parse_timestamp, time_on_task_today
from pedagogym.deploy.explain import ExplainOptions, Explainer
from pedagogym.deploy.features import FeatureSpec, LearnerState, action_mask, featurize, replay


class ConstraintError(ValueError):
    """Constraints that name unknown items or leave no item to recommend."""


class DailyCapReached(ConstraintError):
    """The learner's time on task today has reached the teacher's daily cap (HTTP 409)."""


class NoEarlyWarning(LookupError):
    """Risks were asked of a bundle exported without an early-warning model (HTTP 404)."""


CONSTRAINT_KEYS = ("only", "exclude", "pin", "forbid_skills", "review_skills", "daily_minutes")


def make_session(model_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    """A CPU session tuned for single decisions: one thread, sequential, full graph optimisation."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


class Recommender:
    """Load a bundle once, then ``recommend(events)`` per decision.

    >>> rec = Recommender("bundle/")
    >>> rec.recommend([{"learner_id": "u1", "item_id": "a1", "correct": True,
    ...                 "response_time": 35.0, "timestamp": "2024-05-01T09:30:00Z"}])
    {'learner_id': 'u1', 'item_id': 'a2', 'action': 1, 'scores': {'a1': ..., ...}, ...}
    """

    def __init__(self, bundle: str | Path | Bundle, *, idle_gap_s: float | None = None, threads: int = 1,
                 expected_sha256: str | None = None):
        import math

        if idle_gap_s is not None and (isinstance(idle_gap_s, bool) or not isinstance(idle_gap_s, (int, float))
                                       or not math.isfinite(idle_gap_s) or idle_gap_s <= 0):
            raise BundleError(f"idle_gap_s: expected a finite number of seconds > 0, got {idle_gap_s!r}")
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, expected_sha256)
        m = self.bundle.manifest
        self.manifest = m
        self.spec = FeatureSpec.from_manifest(m, idle_gap_s)
        self.item_ids: list[str] = self.bundle.item_ids
        self.item_index = {iid: k for k, iid in enumerate(self.item_ids)}
        try:
            self.session = make_session(self.bundle.model_bytes, threads)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise BundleError(f"{self.bundle.path}/{m['model'].get('file', 'policy.onnx')}: not a loadable ONNX model "
                              f"({type(exc).__name__}: {str(exc)[:300]})") from None
        self.explainer = Explainer(self.spec, CONSTRAINT_KEYS)
        d, n = self.spec.n_features, self.spec.n_items
        ins = {i.name: i.shape for i in self.session.get_inputs()}
        outs = {o.name for o in self.session.get_outputs()}
        if set(ins) != {"obs", "action_mask"} or len(ins["obs"]) != 2 or len(ins["action_mask"]) != 2 \
                or ins["obs"][1] != d or ins["action_mask"][1] != n or outs != {"scores", "action"}:
            raise BundleError(f"{self.bundle.path}: policy.onnx has inputs {ins} and outputs {sorted(outs)}; expected "
                              f"obs[batch, {d}], action_mask[batch, {n}] -> scores, action")
        # batch-1 fast path: inputs and outputs bound once to buffers we reuse
        self._obs = np.zeros((1, d), np.float32)
        self._mask = np.zeros((1, n), bool)
        self._scores = np.zeros((1, n), np.float32)
        self._action = np.zeros((1,), np.int64)
        self._lock = threading.Lock()  # the bound buffers are shared: one decision at a time
        self._binding = self.session.io_binding()
        for name, arr in (("obs", self._obs), ("action_mask", self._mask)):
            self._binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
        for name, arr in (("scores", self._scores), ("action", self._action)):
            self._binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(arr))
        # the early-warning model (optional): obs[batch, D] -> risk[batch, T]
        self.risk_targets: list[str] = self.bundle.risk_targets
        self.risk_session = None
        if self.bundle.risk_bytes is not None:
            where = f"{self.bundle.path}/{m['early_warning']['file']}"
            try:
                self.risk_session = make_session(self.bundle.risk_bytes, threads)
            except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
                raise BundleError(f"{where}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from None
            r_ins = {i.name: i.shape for i in self.risk_session.get_inputs()}
            r_outs = {o.name: o.shape for o in self.risk_session.get_outputs()}
            if set(r_ins) != {"obs"} or r_ins["obs"][1] != d or set(r_outs) != {"risk"} \
                    or r_outs["risk"][1] != len(self.risk_targets):
                raise BundleError(f"{where}: has inputs {r_ins} and outputs {r_outs}; expected obs[batch, {d}] -> "
                                  f"risk[batch, {len(self.risk_targets)}] (targets {self.risk_targets})")

    # ---- model --------------------------------------------------------------------------
    def _check_action(self, action: int, mask: np.ndarray) -> int:
        """The model's action, if it is an item index the mask allows; else :class:`BundleError`
        (a tampered or broken graph must never recommend an item the teacher excluded)."""
        n = self.spec.n_items
        if not 0 <= action < n:
            raise BundleError(f"{self.bundle.path}: the policy model chose action {action}, outside the {n} items; "
                              f"the model is broken or was replaced; re-export the bundle")
        if not mask[action]:
            raise BundleError(f"{self.bundle.path}: the policy model chose item {self.item_ids[action]!r}, which the "
                              f"action mask forbids (locked or excluded); the model ignores the mask; re-export the bundle")
        return action

    def decide(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, int]:
        """One decision: float32[D], bool[I] -> (float32[I] masked scores, action)."""
        with self._lock:
            self._obs[0] = obs
            self._mask[0] = mask
            try:
                self.session.run_with_iobinding(self._binding)
            except Exception as exc:  # onnxruntime's own exception types: a graph that does not run
                raise BundleError(f"{self.bundle.path}: the policy model failed to run ({type(exc).__name__}: "
                                  f"{str(exc)[:300]})") from None
            scores, action = self._scores[0].copy(), int(self._action[0])
        return scores, self._check_action(action, mask)

    def run(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A batch: float32[N, D], bool[N, I] -> (float32[N, I] masked scores, int64[N] actions)."""
        mask = np.ascontiguousarray(mask, bool)
        try:
            scores, action = self.session.run(["scores", "action"], {"obs": np.ascontiguousarray(obs, np.float32),
                                                                     "action_mask": mask})
        except Exception as exc:  # onnxruntime's own exception types: a graph that does not run
            raise BundleError(f"{self.bundle.path}: the policy model failed to run ({type(exc).__name__}: "
                              f"{str(exc)[:300]})") from None
        action = np.asarray(action).reshape(-1)
        if action.shape != (mask.shape[0],):
            raise BundleError(f"{self.bundle.path}: the policy model returned {action.shape} actions for "
                              f"{mask.shape[0]} observations")
        for a, m in zip(action.tolist(), mask):
            self._check_action(int(a), m)
        return scores, action

    def run_risk(self, obs: np.ndarray) -> np.ndarray:
        """A batch of observations float32[N, D] -> float32[N, T] risks (``risk_targets`` order)."""
        self._require_risk()
        return self.risk_session.run(["risk"], {"obs": np.ascontiguousarray(np.atleast_2d(obs), np.float32)})[0]

    def _require_risk(self) -> None:
        if self.risk_session is None:
            raise NoEarlyWarning(f"{self.bundle.path}: this bundle has no early-warning model; export it with "
                                 f"`pedagogym export ... --early-warning`")

    def _risk_dict(self, risk: np.ndarray) -> dict[str, float]:
        return {t: float(p) for t, p in zip(self.risk_targets, risk)}

    # ---- event logs -----------------------------------------------------------------------
    def parse(self, events: Any, learner_id: str | None = None) -> list[Event]:
        return parse_events(events, self.item_index, learner_id)

    def state(self, events: Sequence[Event], now: Any = None) -> LearnerState:
        now_s = None if now is None else parse_timestamp(now, "now")
        if now_s is not None and events and now_s < events[-1].timestamp:
            raise EventError(f"now: {now!r} is before the last event's timestamp (time goes backwards)")
        return replay(self.spec, events, now_s)

    def features(self, events: Any, now: Any = None, learner_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(float32[D] observation, bool[I] action mask) for a raw event log."""
        h = self.state(self.parse(events, learner_id), now)
        return featurize(self.spec, h), action_mask(self.spec, h)

    def constrain(self, mask: np.ndarray, constraints: Mapping[str, Any] | None,
                  events: Sequence[Event] = (), now_s: float | None = None) -> np.ndarray:
        """Restrict the mask with a teacher's constraints (the simulator's
        :mod:`pedagogym.envs.constraints`, for an event log):

        ``only`` / ``exclude``: lists of item ids to keep / drop; ``pin``: the item id to present
        next; ``forbid_skills``: skill ids none of whose items may be presented;
        ``review_skills``: skill ids, present only items exercising one of them;
        ``daily_minutes``: cap on the time on task (sum of ``response_time``) of events that
        started on the UTC calendar day of the decision time ``now_s`` (default: the end of
        the last event). Unknown ids or keys, and a set that leaves no available item, raise
        :class:`ConstraintError`; a reached cap raises :class:`DailyCapReached`.

        The rule is the simulator's (:meth:`pedagogym.envs.core.PedagogyEnv.action_mask`): the
        constraints select the allowed items among the available ones; prerequisite locks
        (``mask``) then apply among them, and when the locks hide every allowed item the allowed
        items are offered anyway (a pinned item is presented even if it is locked: the teacher
        overrides the prerequisites). ``tests/test_constraints.py`` checks the two agree.
        """
        if not constraints:
            return mask
        if not isinstance(constraints, Mapping):
            raise ConstraintError(f"constraints: expected an object with keys among {list(CONSTRAINT_KEYS)}, "
                                  f"got {type(constraints).__name__}")
        unknown_keys = sorted(set(constraints) - set(CONSTRAINT_KEYS))
        if unknown_keys:
            raise ConstraintError(f"constraints: unknown key(s) {unknown_keys}; allowed: "
                                  + ", ".join(f"'{k}'" for k in CONSTRAINT_KEYS))
        spec = self.spec

        def ids_of(key: str, known: Mapping[str, int], what: str) -> list[int]:
            ids = constraints[key]
            if isinstance(ids, str) or not isinstance(ids, Sequence) or not all(isinstance(i, str) for i in ids):
                raise ConstraintError(f"constraints.{key}: expected a list of {what} ids")
            bad = [i for i in ids if i not in known]
            if bad:
                raise ConstraintError(f"constraints.{key}: unknown {what}(s) {bad}")
            return [known[i] for i in ids]

        skill_index = {sid: k for k, sid in enumerate(spec.skill_ids)}
        q = spec.q > 0
        out = spec.item_available.copy()  # the allowed items; the locks in ``mask`` come last
        for key in ("only", "exclude"):
            if constraints.get(key) is not None:
                sel = np.zeros_like(mask)
                sel[ids_of(key, self.item_index, "item")] = True
                out &= sel if key == "only" else ~sel
        if constraints.get("forbid_skills") is not None:
            out &= ~q[:, ids_of("forbid_skills", skill_index, "skill")].any(axis=1)
        if constraints.get("review_skills"):
            out &= q[:, ids_of("review_skills", skill_index, "skill")].any(axis=1)
        if constraints.get("pin") is not None:
            pin = constraints["pin"]
            if not isinstance(pin, str):
                raise ConstraintError(f"constraints.pin: expected an item id, got {pin!r}")
            if pin not in self.item_index:
                raise ConstraintError(f"constraints.pin: unknown item {pin!r}")
            if not out[self.item_index[pin]]:
                raise ConstraintError(f"constraints.pin: item {pin!r} is excluded by another constraint "
                                      "(or not available)")
            out = np.zeros_like(mask)
            out[self.item_index[pin]] = True
        cap = constraints.get("daily_minutes")
        if cap is not None:
            if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap > 0 or not np.isfinite(cap):
                raise ConstraintError(f"constraints.daily_minutes: expected a positive number of minutes, got {cap!r}")
            spent = time_on_task_today(events, now_s)
            if spent is not None:
                if spent >= 60.0 * cap:
                    raise DailyCapReached(f"constraints.daily_minutes: the daily cap of {cap:g} min is reached "
                                          f"({spent / 60.0:.1f} min on task today, UTC); next item tomorrow")
        if not out.any():
            raise ConstraintError("constraints: no item satisfies every constraint (only, exclude, pin, forbidden "
                                  "skills, review skills) among the available items")
        unlocked = out & mask
        return unlocked if unlocked.any() else out

    def recommend(self, events: Any, constraints: Mapping[str, Any] | None = None, *, now: Any = None,
                  learner_id: str | None = None, include_features: bool = False,
                  explain: bool | Mapping[str, Any] | ExplainOptions = False) -> dict[str, Any]:
        """The next item for one learner.

        events: the learner's whole log (see :mod:`pedagogym.deploy.events`), in time order.
        now: decision time (epoch seconds or ISO 8601); default the end of the last event.
        explain: True (or options such as ``{"top_k": 5}``) adds ``explanation``: why this item,
        in plain terms (:mod:`pedagogym.deploy.explain`); off by default.
        Returns item_id, action, scores ({item_id: score}, masked items at ``masked_score``),
        eligible (item ids the policy could choose), session, n_events, risk ({target: probability},
        when the bundle has an early-warning model), and optionally features and explanation.
        """
        opts = ExplainOptions.parse(explain)
        evs = self.parse(events, learner_id)
        lid = learner_id
        if lid is None and not isinstance(events, (str, bytes)):
            lid = next((e.get("learner_id") for e in events if isinstance(e, Mapping) and e.get("learner_id")), None)
        h = self.state(evs, now)
        obs = featurize(self.spec, h)
        now_s = None if now is None else parse_timestamp(now, "now")
        base_mask = action_mask(self.spec, h)
        mask = self.constrain(base_mask, constraints, evs, now_s)
        scores, action = self.decide(obs, mask)
        out = {
            "learner_id": lid,
            "item_id": self.item_ids[action],
            "action": action,
            "scores": {iid: float(s) for iid, s in zip(self.item_ids, scores)},
            "eligible": [iid for iid, ok in zip(self.item_ids, mask) if ok],
            "session": h.session,
            "n_events": len(evs),
            "policy": self.manifest["policy"].get("name"),
        }
        if self.risk_session is not None:
            out["risk"] = self._risk_dict(self.run_risk(obs)[0])
        if include_features:
            out["features"] = {n: float(v) for n, v in zip(self.bundle.feature_names, obs)}
        if opts is not None:
            spent = time_on_task_today(evs, now_s) if constraints and constraints.get("daily_minutes") is not None else None
            out["explanation"] = self.explainer.explain(h, obs, base_mask, mask, scores, action, opts, self.run,
                                                        self.constrain, constraints, spent)
        return out

    def risk(self, events: Any, now: Any = None, learner_id: str | None = None) -> dict[str, float]:
        """The learner's risks at decision time ``now`` (default: the end of the last event):
        ``{target: probability}``, e.g. ``{"dropout": 0.31, "not_mastered": 0.62}``; the targets
        and what they mean are in the manifest's ``early_warning`` section.
        :class:`NoEarlyWarning` if the bundle has no early-warning model."""
        self._require_risk()
        obs, _ = self.features(events, now, learner_id)
        return self._risk_dict(self.run_risk(obs)[0])

    def risk_many(self, logs: Mapping[str, Any], *, now: Any = None) -> dict[str, dict[str, float]]:
        """Several learners in one batched call of the early-warning model: {learner_id: events} ->
        {learner_id: {target: probability}}."""
        self._require_risk()
        ids = list(logs)
        if not ids:
            return {}
        risks = self.run_risk(np.stack([self.features(logs[lid], now, lid)[0] for lid in ids]))
        return {lid: self._risk_dict(r) for lid, r in zip(ids, risks)}

    def recommend_many(self, logs: Mapping[str, Any], *, now: Any = None) -> dict[str, dict[str, Any]]:
        """Several learners in one batched model call: {learner_id: events} -> {learner_id: {item_id, action,
        scores[, risk]}}."""
        ids = list(logs)
        if not ids:
            return {}
        feats = [self.features(logs[lid], now, lid) for lid in ids]
        obs = np.stack([f[0] for f in feats])
        scores, actions = self.run(obs, np.stack([f[1] for f in feats]))
        out = {lid: {"item_id": self.item_ids[int(a)], "action": int(a),
                     "scores": {iid: float(v) for iid, v in zip(self.item_ids, s)}}
               for lid, s, a in zip(ids, scores, actions)}
        if self.risk_session is not None:
            for lid, r in zip(ids, self.run_risk(obs)):
                out[lid]["risk"] = self._risk_dict(r)
        return out
