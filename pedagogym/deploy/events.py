"""Event logs: what a platform records per presentation, validated into typed events.

One event (a JSON object / dict)::

    {"learner_id": "u42",            # optional; all events of one call must name the same learner
     "item_id": "a1",                # an item of the bundle's curriculum
     "correct": true,                # true / false; null when no response was recorded
     "response_time": 41.5,          # seconds on the item (>= 0)
     "timestamp": 1718000000.0}      # when the item was presented: epoch seconds or ISO 8601

ISO 8601 timestamps: ``YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM|-HH:MM]`` (a space may replace
``T``); without an offset the time is read as UTC; offsets are at most 18:00 either way. Every
time (numeric or ISO) must lie in years 1..9999 (epoch seconds ``TS_MIN``..``TS_MAX``), and
``response_time`` is at most ``MAX_RESPONSE_S`` (one year). Events must be in time order
(equal timestamps are allowed). Extra keys are ignored.
"""
from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class EventError(ValueError):
    """An event log that cannot be used; the message names the event and the field."""


@dataclass(frozen=True)
class Event:
    item: int  # action index of the item
    correct: bool | None
    response_time: float  # seconds
    timestamp: float  # epoch seconds (or any origin shared by the learner's events)


SECONDS_PER_DAY = 86400.0  # the deploy runtime's one definition (= pedagogym.schema.SECONDS_PER_DAY; checked)
TS_MIN, TS_MAX = -62135596800.0, 253402300799.0  # 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
MAX_RESPONSE_S = 365 * SECONDS_PER_DAY  # one year on one item: anything longer is a broken clock
MAX_OFFSET_MIN = 18 * 60
_FIELDS = ("item_id", "correct", "response_time", "timestamp")
_REQUIRED = frozenset(_FIELDS)
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})?$")


def parse_timestamp(value: Any, where: str = "timestamp") -> float:
    """Epoch seconds from a number or an ISO 8601 string (the Node client parses identically:
    whole seconds from the calendar fields, plus the fraction parsed as a decimal)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise EventError(f"{where}: expected epoch seconds (a number) or an ISO 8601 string, got {type(value).__name__} {value!r}")
    if isinstance(value, str):
        m = _ISO.match(value.strip())
        if not m:
            raise EventError(f"{where}: {value!r} is not an ISO 8601 timestamp like 2024-05-01T09:30:00Z")
        y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
        if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and h <= 23 and mi <= 59 and s <= 59):
            raise EventError(f"{where}: {value!r} is not a valid date and time")
        whole = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
        tz = m.group(8)
        if tz and tz not in "Zz":
            sign = -1 if tz[0] == "-" else 1
            digits = tz[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:])
            if minutes > 59 or hours * 60 + minutes > MAX_OFFSET_MIN:
                raise EventError(f"{where}: {value!r} has an impossible UTC offset {tz} (at most 18:00 either way)")
            whole -= sign * (hours * 3600 + minutes * 60)
        frac = float("0" + m.group(7)) if m.group(7) else 0.0
        return _in_range(float(whole) + frac, value, where)
    try:
        out = float(value)
    except OverflowError:  # an integer beyond any float
        raise EventError(f"{where}: {value!r} is outside years 1..9999") from None
    if not math.isfinite(out):
        raise EventError(f"{where}: must be finite, got {value!r}")
    return _in_range(out, value, where)


def _in_range(ts: float, value: Any, where: str) -> float:
    if not TS_MIN <= ts <= TS_MAX:
        raise EventError(f"{where}: {value!r} is outside years 1..9999 (epoch seconds from {TS_MIN:.0f} to {TS_MAX:.0f})")
    return ts


def parse_events(raw: Any, item_index: Mapping[str, int], learner_id: str | None = None) -> list[Event]:
    """Validate ``raw`` (a list of event dicts) for one learner; raises :class:`EventError`."""
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
        raise EventError(f"events: expected a list of event objects, got {type(raw).__name__}")
    events: list[Event] = []
    seen_learner = learner_id
    prev_ts = -math.inf
    for k, ev in enumerate(raw):
        at = f"events[{k}]"
        if not isinstance(ev, Mapping):
            raise EventError(f"{at}: expected an object with item_id, correct, response_time, timestamp; got {type(ev).__name__}")
        if not _REQUIRED.issubset(ev.keys()):
            raise EventError(f"{at}: missing field(s) {[f for f in _FIELDS if f not in ev]}")
        lid = ev.get("learner_id")
        if lid is not None:
            if not isinstance(lid, str):
                raise EventError(f"{at}.learner_id: expected a string, got {type(lid).__name__} {lid!r}")
            if seen_learner is not None and lid != seen_learner:
                raise EventError(f"{at}.learner_id: {lid!r} differs from {seen_learner!r}; send one learner's events per request")
            seen_learner = lid
        item_id = ev["item_id"]
        if not isinstance(item_id, str):
            raise EventError(f"{at}.item_id: expected a string, got {type(item_id).__name__} {item_id!r}")
        if item_id not in item_index:
            raise EventError(f"{at}.item_id: unknown item {item_id!r}; the bundle's curriculum has {len(item_index)} items "
                             f"(e.g. {', '.join(list(item_index)[:5])})")
        correct = ev["correct"]
        if correct is not None and not isinstance(correct, bool):
            raise EventError(f"{at}.correct: expected true, false or null, got {type(correct).__name__} {correct!r}")
        rt = ev["response_time"]
        if isinstance(rt, bool) or not isinstance(rt, (int, float)) or not 0 <= rt <= MAX_RESPONSE_S:
            raise EventError(f"{at}.response_time: expected a finite number of seconds from 0 to {MAX_RESPONSE_S:.0f}, "
                             f"got {rt!r}")
        raw_ts = ev["timestamp"]
        ts = float(raw_ts) if type(raw_ts) is float and TS_MIN <= raw_ts <= TS_MAX else \
            parse_timestamp(raw_ts, f"{at}.timestamp")
        if ts < prev_ts:
            raise EventError(f"{at}.timestamp: time goes backwards ({ev['timestamp']!r} is before the previous event); "
                             f"send events in time order")
        prev_ts = ts
        events.append(Event(item=item_index[item_id], correct=correct, response_time=float(rt), timestamp=ts))
    return events


def time_on_task_today(events: Sequence[Event], now_s: float | None = None) -> float | None:
    """Seconds on task (sum of ``response_time``) of the events that started on the UTC calendar
    day of the decision time ``now_s`` (default: the end of the last event), up to ``now_s``;
    None when there is neither an event nor a decision time. What a teacher's daily cap measures."""
    if now_s is None:
        now_s = events[-1].timestamp + events[-1].response_time if events else None
    if now_s is None:
        return None
    day_start = math.floor(now_s / SECONDS_PER_DAY) * SECONDS_PER_DAY
    spent = 0.0
    for e in events:  # a plain left-to-right float sum (the Node client adds in the same order)
        if day_start <= e.timestamp <= now_s:
            spent += e.response_time
    return spent
