"""Event log -> observation vector, exactly as the simulator computes it (numpy, float32).

This re-implements, for logged events, :meth:`pedagogym.envs.observations.History.record`,
the clock and session logic of :meth:`pedagogym.envs.core.PedagogyEnv.step`, the
``platform`` featurizer (:class:`pedagogym.envs.observations.PlatformFeatures`) and
:meth:`PedagogyEnv.action_mask`. ``tests/test_export.py`` replays recorded simulator
episodes through it and requires the simulator's observations to atol 1e-6; the Node client
(``clients/node/src/features.js``) is a line-by-line port checked against a Python fixture
(the two agree bit for bit).

Float32 arithmetic follows what XLA does on CPU: ``x * y + z`` in the BKT update is one fused
multiply-add (:func:`_fma`), and division by a scalar broadcast over the batch is a multiply by
its reciprocal. With that the belief, counts, accuracies, recency, progress, session and mask
are the simulator's bit for bit on recorded episodes; the log1p features (attempts, last_rt,
session) can differ by one float32 ulp, because XLA's float32 log is its own approximation.

Clock. The simulator keeps time as float32 days since the learner started; an event log has
timestamps. Here the clock is ``float32((timestamp - first_timestamp) / 86400)``: the
learner's first event is day 0 and every time comparison is done in float32, as in the env.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from pedagogym.deploy.events import SECONDS_PER_DAY, Event

# The observation layout this runtime computes: pedagogym.schema's, which the deploy runtime cannot
# import (it imports nothing from pedagogym). A bundle's manifest carries the schema it was exported
# with (observation.groups, rt_scale_s, seconds_per_day); load_bundle refuses one that differs
# (check_schema), and tests/test_architecture.py checks these equal pedagogym.schema.
FEATURE_GROUPS: tuple[tuple[str, str], ...] = (
    ("belief", "skill"), ("skill_attempts", "skill"), ("skill_accuracy", "skill"),
    ("item_attempts", "item"), ("item_accuracy", "item"), ("item_recency", "item"),
    ("last_correct", "scalar"), ("last_rt", "scalar"), ("progress", "scalar"), ("session", "scalar"),
    ("session_time", "scalar"),
)
RT_SCALE_S = 600.0
DEFAULT_IDLE_GAP_S = 1800.0
SESSION_RULE = (
    "The simulator ends a session after the item whose end (presentation time + response_time) is at least "
    "session_s seconds after the session's start; the learner's next item opens a new session. From a log: the "
    "first event opens session 0; event k+1 opens a new session when event k ended the session by that rule "
    "(computed in float32 days, as the simulator does), or when event k+1 starts idle_gap_s or more after event k "
    "ended (a break a real learner took; the simulator never idles within a session). The decision time ('now', "
    "default: the end of the last event) opens a new session by the same two rules. A new session starts at the "
    "time of the event (or decision) that opens it."
)

_F = np.float32
_DAY = _F(SECONDS_PER_DAY)
_ONE = _F(1.0)


def feature_names(skill_ids: Sequence[str], item_ids: Sequence[str]) -> list[str]:
    """The ``platform`` featurizer's names, in order (identical to ``PlatformFeatures.feature_names``)."""
    names: list[str] = []
    for group, per in FEATURE_GROUPS:
        ids = {"skill": skill_ids, "item": item_ids}.get(per)
        names += [group] if ids is None else [f"{group}[{i}]" for i in ids]
    return names


def schema_mismatch(observation: Mapping[str, Any]) -> str | None:
    """What differs between a manifest's ``observation`` schema and this runtime's (None: nothing).
    Bundles exported before the manifest carried ``groups`` are read by their feature names."""
    groups = observation.get("groups")
    if groups is not None and [(g.get("name"), g.get("per")) for g in groups] != list(FEATURE_GROUPS):
        return f"observation.groups {[g.get('name') for g in groups]} differ from this runtime's {[g for g, _ in FEATURE_GROUPS]}"
    for key, ours in (("rt_scale_s", RT_SCALE_S), ("seconds_per_day", SECONDS_PER_DAY)):
        if key in observation and observation[key] != ours:
            return f"observation.{key} is {observation[key]!r}; this runtime computes with {ours!r}"
    return None


@dataclass(frozen=True)
class FeatureSpec:
    """What the featurizer needs from a manifest (``S`` skills, ``I`` items)."""

    skill_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    q: np.ndarray  # float32[I, S]
    prereq: np.ndarray  # float32[S, S]; prereq[s, p] = 1 if p is a prerequisite of s
    observed: np.ndarray  # bool[I]: the item's kind records correct / incorrect
    p_init: np.ndarray  # float32[S] observer params
    p_learn: np.ndarray
    p_forget: np.ndarray
    p_guess: np.ndarray
    p_slip: np.ndarray
    horizon: np.float32
    session_s: np.float32
    unlock_threshold: np.float32
    item_available: np.ndarray  # bool[I]
    idle_gap_s: float = DEFAULT_IDLE_GAP_S

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_skills(self) -> int:
        return len(self.skill_ids)

    @property
    def n_features(self) -> int:
        return 3 * self.n_skills + 3 * self.n_items + 5

    @cached_property
    def skills_of(self) -> list[list[int]]:
        """The skills of each item (ascending), computed once."""
        return [np.flatnonzero(self.q[i] > 0).tolist() for i in range(self.n_items)]

    @cached_property
    def observer_lists(self) -> tuple[list[float], ...]:
        """(p_guess, p_slip, p_learn, p_forget) as Python floats (exact float32 values)."""
        return tuple(a.tolist() for a in (self.p_guess, self.p_slip, self.p_learn, self.p_forget))

    @classmethod
    def from_manifest(cls, m: Mapping[str, Any], idle_gap_s: float | None = None) -> "FeatureSpec":
        spec = m["curriculum"]["spec"]
        skill_ids = tuple(s["id"] for s in spec["skills"])
        item_ids = tuple(it["id"] for it in spec["items"])
        s_idx = {s: k for k, s in enumerate(skill_ids)}
        q = np.zeros((len(item_ids), len(skill_ids)), np.float32)
        for i, it in enumerate(spec["items"]):
            for s in it["skills"]:
                q[i, s_idx[s]] = 1.0
        prereq = np.zeros((len(skill_ids), len(skill_ids)), np.float32)
        for k, s in enumerate(spec["skills"]):
            for p in s.get("prerequisites", ()):
                prereq[k, s_idx[p]] = 1.0
        observed_kinds = set(m["curriculum"]["observed_kinds"])
        observed = np.asarray([it.get("kind", "practice") in observed_kinds for it in spec["items"]], bool)
        ob, env = m["observer"], m["env"]
        arr = lambda key: np.asarray(ob[key], np.float32)  # noqa: E731
        return cls(skill_ids=skill_ids, item_ids=item_ids, q=q, prereq=prereq, observed=observed,
                   p_init=arr("p_init"), p_learn=arr("p_learn"), p_forget=arr("p_forget"), p_guess=arr("p_guess"),
                   p_slip=arr("p_slip"), horizon=_F(env["horizon"]), session_s=_F(env["session_s"]),
                   unlock_threshold=_F(env["unlock_threshold"]), item_available=np.asarray(env["item_available"], bool),
                   idle_gap_s=float(m.get("sessions", {}).get("idle_gap_s", DEFAULT_IDLE_GAP_S) if idle_gap_s is None
                                    else idle_gap_s))


@dataclass
class LearnerState:
    """The simulator's ``History`` for one learner, rebuilt from a log (float32 like the env)."""

    item_attempts: np.ndarray
    item_correct: np.ndarray
    item_last_t: np.ndarray
    skill_attempts: np.ndarray
    skill_correct: np.ndarray
    belief: np.ndarray
    last_item: int
    last_correct: np.float32
    last_rt: np.float32
    step: int
    session: int
    t: np.float32
    session_start: np.float32

    @classmethod
    def initial(cls, spec: FeatureSpec) -> "LearnerState":
        zi, zs = np.zeros(spec.n_items, np.float32), np.zeros(spec.n_skills, np.float32)
        return cls(zi.copy(), zi.copy(), -np.ones(spec.n_items, np.float32), zs.copy(), zs.copy(),
                   spec.p_init.astype(np.float32).copy(), -1, _F(0), _F(0), 0, 0, _F(0), _F(0))


def _fma(a, b, c) -> np.float32:
    """float32 ``a * b + c`` with one rounding, as XLA computes it on CPUs with FMA (it contracts
    ``x * y + z`` in the simulator's BKT update). The float32 product is exact in float64; the
    sum is rounded to float64 and then to float32 (a double rounding that differs from a true
    fused multiply-add only when the float64 sum falls exactly on a float32 rounding tie)."""
    return _F(float(a) * float(b) + float(c))


def _days(seconds: float) -> np.float32:
    return _F(seconds / SECONDS_PER_DAY)


def replay(spec: FeatureSpec, events: Sequence[Event], now: float | None = None) -> LearnerState:
    """The learner's state at decision time ``now`` (epoch seconds; default: when the last
    event ended) after ``events`` (validated, in time order)."""
    h = LearnerState.initial(spec)
    if not events:
        return h
    n = len(events)
    items = np.fromiter((e.item for e in events), np.int64, n)
    ts = np.fromiter((e.timestamp for e in events), np.float64, n)
    rt_s = np.fromiter((e.response_time for e in events), np.float64, n)
    has_response = np.fromiter((e.correct is not None for e in events), bool, n)
    correct = np.fromiter((bool(e.correct) for e in events), bool, n)
    observed = spec.observed[items] & has_response  # bkt.observe conditions only on recorded responses
    got = (correct & observed).astype(np.float32)
    rt = rt_s.astype(np.float32)

    # History.record, counts: integer sums are exact in float32, whatever the order
    h.item_attempts = np.bincount(items, minlength=spec.n_items).astype(np.float32)
    h.item_correct = np.bincount(items, weights=got, minlength=spec.n_items).astype(np.float32)
    h.skill_attempts = (h.item_attempts @ spec.q).astype(np.float32)
    h.skill_correct = (h.item_correct @ spec.q).astype(np.float32)

    # the clock: float32 days since the first event, as the env keeps it
    t_pres = ((ts - ts[0]) / SECONDS_PER_DAY).astype(np.float32)
    t_end = (t_pres + (rt / _DAY)).astype(np.float32)
    end_s = ts + rt_s
    idle = np.zeros(n, bool)
    idle[1:] = ts[1:] - end_s[:-1] >= spec.idle_gap_s
    session, session_start, ended = 0, t_pres[0], False
    for k in range(n):
        if k > 0 and (ended or idle[k]):
            session += 1
            session_start = t_pres[k]
        # PedagogyEnv.step: session_over = (t - session_start) * 86400 >= session_s, in float32
        ended = bool(((t_end[k] - session_start) * _DAY) >= spec.session_s)
    last = n - 1 - np.unique(items[::-1], return_index=True)[1]
    h.item_last_t[items[last]] = t_pres[last]

    # the knowledge tracer (bkt.observe), event by event on the item's skills
    belief = h.belief.tolist()
    f32 = _F
    skills_of = spec.skills_of
    g_, s_, l_, f_ = spec.observer_lists
    for i, ob, c in zip(items.tolist(), observed.tolist(), correct.tolist()):
        for s in skills_of[i]:
            p = f32(belief[s])
            if ob:
                like_known = f32(1.0 - s_[s]) if c else f32(s_[s])
                like_unknown = f32(g_[s]) if c else f32(1.0 - g_[s])
                num = p * like_known
                p = num / _fma(_ONE - p, like_unknown, num)  # bkt.posterior
            belief[s] = _fma(p, f32(1.0 - f_[s]), (_ONE - p) * f32(l_[s]))  # bkt.transition
    h.belief = np.asarray(belief, np.float32)

    h.last_item, h.last_correct, h.last_rt, h.step = int(items[-1]), _F(got[-1]), _F(rt[-1]), n
    h.session, h.session_start = session, session_start
    if now is not None:
        if now < ts[-1]:
            raise ValueError("now: the decision time is before the last event")
        t_now = _days(now - ts[0])
        idle_now = now - end_s[-1] >= spec.idle_gap_s
    else:
        t_now, idle_now = t_end[-1], False
    if ended or idle_now:
        h.session += 1
        h.session_start = t_now
    h.t = _F(t_now)
    return h


def _log1p(x) -> np.ndarray:
    """float32 log1p, rounded from float64 (the Node client's ``fround(Math.log1p(x))``).
    XLA's float32 log1p can differ from it by one float32 ulp on non-integers."""
    return np.log1p(np.asarray(x, np.float64)).astype(np.float32)


# XLA rewrites ``x / c`` for a scalar c broadcast over a batch as ``x * (1 / c)``; the batched
# simulator (vmap over learners) computes last_rt and progress that way, and so does this.
_INV_LOG1P_RT_SCALE = _ONE / np.log1p(_F(RT_SCALE_S))


def featurize(spec: FeatureSpec, h: LearnerState) -> np.ndarray:
    """float32[D]: PlatformFeatures.__call__ on the replayed state."""
    seen = h.item_last_t >= 0
    recency = np.where(seen, _ONE / (_ONE + np.maximum(h.t - h.item_last_t, _F(0))), _F(0)).astype(np.float32)
    scalars = np.asarray([
        h.last_correct,
        np.clip(_log1p(h.last_rt) * _INV_LOG1P_RT_SCALE, _F(0), _ONE),
        _F(h.step) * (_ONE / spec.horizon),
        _log1p(_F(h.session)),
        np.clip(_F(_F(h.t - h.session_start) * _DAY) / spec.session_s, _F(0), _ONE),
    ], np.float32)
    return np.concatenate([
        h.belief,
        _log1p(h.skill_attempts),
        (h.skill_correct + _ONE) / (h.skill_attempts + _F(2)),
        _log1p(h.item_attempts),
        (h.item_correct + _ONE) / (h.item_attempts + _F(2)),
        recency,
        scalars,
    ]).astype(np.float32)


def prerequisite_met(spec: FeatureSpec, belief: np.ndarray) -> np.ndarray:
    """bool[S]: skill p counts as met when it is a prerequisite: belief[p] >= unlock_threshold."""
    return belief >= spec.unlock_threshold


def skills_unlocked(spec: FeatureSpec, belief: np.ndarray) -> np.ndarray:
    """bool[S]: every prerequisite of the skill is met (``Prerequisites.met`` in the simulator)."""
    return np.all((spec.prereq <= 0) | prerequisite_met(spec, belief)[None, :], axis=1)


def items_unlocked(spec: FeatureSpec, belief: np.ndarray) -> np.ndarray:
    """bool[I]: every skill of the item is unlocked (availability aside)."""
    return np.all((spec.q <= 0) | skills_unlocked(spec, belief)[None, :], axis=1)


def action_mask(spec: FeatureSpec, h: LearnerState) -> np.ndarray:
    """bool[I]: PedagogyEnv.action_mask (prerequisite unlocking on the belief)."""
    mask = spec.item_available & items_unlocked(spec, h.belief)
    return mask if mask.any() else spec.item_available.copy()
