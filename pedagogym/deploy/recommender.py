"""The recommender: event log -> features -> ONNX policy -> next item (numpy + onnxruntime)."""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pedagogym.deploy.bundle import Bundle, BundleError, load_bundle
from pedagogym.deploy.events import Event, EventError, parse_events, parse_timestamp
from pedagogym.deploy.features import FeatureSpec, LearnerState, action_mask, featurize, replay


class ConstraintError(ValueError):
    """Constraints that name unknown items or leave no item to recommend."""


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

    def __init__(self, bundle: str | Path | Bundle, *, idle_gap_s: float | None = None, threads: int = 1):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        m = self.bundle.manifest
        self.manifest = m
        self.spec = FeatureSpec.from_manifest(m, idle_gap_s)
        self.item_ids: list[str] = self.bundle.item_ids
        self.item_index = {iid: k for k, iid in enumerate(self.item_ids)}
        self.session = make_session(self.bundle.model_bytes, threads)
        d, n = self.spec.n_features, self.spec.n_items
        ins = {i.name: i.shape for i in self.session.get_inputs()}
        outs = {o.name for o in self.session.get_outputs()}
        if set(ins) != {"obs", "action_mask"} or ins["obs"][1] != d or ins["action_mask"][1] != n \
                or outs != {"scores", "action"}:
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

    # ---- model --------------------------------------------------------------------------
    def decide(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, int]:
        """One decision: float32[D], bool[I] -> (float32[I] masked scores, action)."""
        with self._lock:
            self._obs[0] = obs
            self._mask[0] = mask
            self.session.run_with_iobinding(self._binding)
            return self._scores[0].copy(), int(self._action[0])

    def run(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A batch: float32[N, D], bool[N, I] -> (float32[N, I] masked scores, int64[N] actions)."""
        scores, action = self.session.run(["scores", "action"], {"obs": np.ascontiguousarray(obs, np.float32),
                                                                 "action_mask": np.ascontiguousarray(mask, bool)})
        return scores, action

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

    def constrain(self, mask: np.ndarray, constraints: Mapping[str, Any] | None) -> np.ndarray:
        """Restrict the mask: ``{"only": [item ids]}`` and / or ``{"exclude": [item ids]}``."""
        if not constraints:
            return mask
        if not isinstance(constraints, Mapping):
            raise ConstraintError(f"constraints: expected an object with 'only' and/or 'exclude', got {type(constraints).__name__}")
        unknown_keys = sorted(set(constraints) - {"only", "exclude"})
        if unknown_keys:
            raise ConstraintError(f"constraints: unknown key(s) {unknown_keys}; allowed: 'only', 'exclude'")
        out = mask.copy()
        for key in ("only", "exclude"):
            ids = constraints.get(key)
            if ids is None:
                continue
            if isinstance(ids, str) or not isinstance(ids, Sequence) or not all(isinstance(i, str) for i in ids):
                raise ConstraintError(f"constraints.{key}: expected a list of item ids")
            bad = [i for i in ids if i not in self.item_index]
            if bad:
                raise ConstraintError(f"constraints.{key}: unknown item(s) {bad}")
            sel = np.zeros_like(mask)
            sel[[self.item_index[i] for i in ids]] = True
            out &= sel if key == "only" else ~sel
        if not out.any():
            raise ConstraintError("constraints: no unlocked item is left to recommend")
        return out

    def recommend(self, events: Any, constraints: Mapping[str, Any] | None = None, *, now: Any = None,
                  learner_id: str | None = None, include_features: bool = False) -> dict[str, Any]:
        """The next item for one learner.

        events: the learner's whole log (see :mod:`pedagogym.deploy.events`), in time order.
        now: decision time (epoch seconds or ISO 8601); default the end of the last event.
        Returns item_id, action, scores ({item_id: score}, masked items at ``masked_score``),
        eligible (item ids the policy could choose), session, n_events, and optionally features.
        """
        evs = self.parse(events, learner_id)
        lid = learner_id
        if lid is None and not isinstance(events, (str, bytes)):
            lid = next((e.get("learner_id") for e in events if isinstance(e, Mapping) and e.get("learner_id")), None)
        h = self.state(evs, now)
        obs = featurize(self.spec, h)
        mask = self.constrain(action_mask(self.spec, h), constraints)
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
        if include_features:
            out["features"] = {n: float(v) for n, v in zip(self.bundle.feature_names, obs)}
        return out

    def recommend_many(self, logs: Mapping[str, Any], *, now: Any = None) -> dict[str, dict[str, Any]]:
        """Several learners in one batched model call: {learner_id: events} -> {learner_id: {item_id, action, scores}}."""
        ids = list(logs)
        if not ids:
            return {}
        feats = [self.features(logs[lid], now, lid) for lid in ids]
        scores, actions = self.run(np.stack([f[0] for f in feats]), np.stack([f[1] for f in feats]))
        return {lid: {"item_id": self.item_ids[int(a)], "action": int(a),
                      "scores": {iid: float(v) for iid, v in zip(self.item_ids, s)}}
                for lid, s, a in zip(ids, scores, actions)}
