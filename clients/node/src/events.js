// Event logs: validation and timestamps, as pedagogym/deploy/events.py.
//
// One event: {learner_id?, item_id, correct (true|false|null), response_time (seconds >= 0),
//             timestamp (epoch seconds or ISO 8601; UTC when no offset)}; events in time order.

export class EventError extends Error {
  constructor(message) {
    super(message);
    this.name = 'EventError';
  }
}

import { pyRepr } from './pyjson.js';

export const TS_MIN = -62135596800.0; // 0001-01-01T00:00:00Z
export const TS_MAX = 253402300799.0; // 9999-12-31T23:59:59Z
export const MAX_RESPONSE_S = 365 * 86400.0;
const MAX_OFFSET_MIN = 18 * 60;

function inRange(ts, value, where) {
  if (!(ts >= TS_MIN && ts <= TS_MAX)) {
    throw new EventError(`${where}: ${pyRepr(value)} is outside years 1..9999 (epoch seconds from ${TS_MIN} to ${TS_MAX})`);
  }
  return ts;
}

const ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})?$/;

function daysInMonth(y, m) {
  return new Date(Date.UTC(y, m, 0)).getUTCDate();
}

export function typeName(v) {
  if (v === null) return 'NoneType';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'string') return 'str';
  return typeof v === 'object' ? 'dict' : typeof v;
}

/** Epoch seconds from a number or an ISO 8601 string: whole seconds from the calendar fields
 * plus the fraction parsed as a decimal (the Python runtime does the same, so both agree). */
export function parseTimestamp(value, where = 'timestamp') {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new EventError(`${where}: must be finite, got ${value}`);
    return inRange(value, value, where);
  }
  if (typeof value !== 'string') {
    throw new EventError(`${where}: expected epoch seconds (a number) or an ISO 8601 string, got ${typeName(value)} ${JSON.stringify(value)}`);
  }
  const m = ISO.exec(value.trim());
  if (!m) throw new EventError(`${where}: '${value}' is not an ISO 8601 timestamp like 2024-05-01T09:30:00Z`);
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  if (!(mo >= 1 && mo <= 12 && d >= 1 && d <= daysInMonth(y, mo) && h <= 23 && mi <= 59 && s <= 59)) {
    throw new EventError(`${where}: '${value}' is not a valid date and time`);
  }
  const dt = new Date(0); // setUTCFullYear, unlike Date.UTC, does not map years 0..99 to 19xx
  dt.setUTCFullYear(y, mo - 1, d);
  dt.setUTCHours(h, mi, s, 0);
  let whole = dt.getTime() / 1000;
  const tz = m[8];
  if (tz && tz !== 'Z' && tz !== 'z') {
    const sign = tz[0] === '-' ? -1 : 1;
    const digits = tz.slice(1).replace(':', '');
    const hours = Number(digits.slice(0, 2));
    const minutes = Number(digits.slice(2));
    if (minutes > 59 || hours * 60 + minutes > MAX_OFFSET_MIN) {
      throw new EventError(`${where}: '${value}' has an impossible UTC offset ${tz} (at most 18:00 either way)`);
    }
    whole -= sign * (hours * 3600 + minutes * 60);
  }
  const frac = m[7] ? Number('0' + m[7]) : 0.0;
  return inRange(whole + frac, value, where);
}

/** Validate raw events (an array of objects) for one learner -> [{item, correct, responseTime, timestamp}]. */
export function parseEvents(raw, itemIndex, learnerId = null) {
  if (!Array.isArray(raw)) throw new EventError(`events: expected a list of event objects, got ${typeName(raw)}`);
  const out = [];
  let seen = learnerId;
  let prev = -Infinity;
  raw.forEach((ev, k) => {
    const at = `events[${k}]`;
    if (ev === null || typeof ev !== 'object' || Array.isArray(ev)) {
      throw new EventError(`${at}: expected an object with item_id, correct, response_time, timestamp; got ${typeName(ev)}`);
    }
    const missing = ['item_id', 'correct', 'response_time', 'timestamp'].filter((f) => !(f in ev));
    if (missing.length) throw new EventError(`${at}: missing field(s) [${missing.map((f) => `'${f}'`).join(', ')}]`);
    const lid = ev.learner_id;
    if (lid !== undefined && lid !== null) {
      if (typeof lid !== 'string') throw new EventError(`${at}.learner_id: expected a string, got ${typeName(lid)} ${JSON.stringify(lid)}`);
      if (seen !== null && lid !== seen) {
        throw new EventError(`${at}.learner_id: '${lid}' differs from '${seen}'; send one learner's events per request`);
      }
      seen = lid;
    }
    const itemId = ev.item_id;
    if (typeof itemId !== 'string') throw new EventError(`${at}.item_id: expected a string, got ${typeName(itemId)} ${JSON.stringify(itemId)}`);
    if (!itemIndex.has(itemId)) {
      throw new EventError(`${at}.item_id: unknown item '${itemId}'; the bundle's curriculum has ${itemIndex.size} items`);
    }
    const correct = ev.correct;
    if (correct !== null && typeof correct !== 'boolean') {
      throw new EventError(`${at}.correct: expected true, false or null, got ${typeName(correct)} ${JSON.stringify(correct)}`);
    }
    const rt = ev.response_time;
    if (typeof rt !== 'number' || !(rt >= 0 && rt <= MAX_RESPONSE_S)) {
      throw new EventError(`${at}.response_time: expected a finite number of seconds from 0 to ${MAX_RESPONSE_S}, got ${pyRepr(rt)}`);
    }
    const ts = parseTimestamp(ev.timestamp, `${at}.timestamp`);
    if (ts < prev) {
      throw new EventError(`${at}.timestamp: time goes backwards (${JSON.stringify(ev.timestamp)} is before the previous event); send events in time order`);
    }
    prev = ts;
    out.push({ item: itemIndex.get(itemId), correct, responseTime: rt, timestamp: ts });
  });
  return out;
}

const SECONDS_PER_DAY = 86400.0;

/** Seconds on task (sum of response_time) of the events that started on the UTC calendar day of
 * the decision time `nowS` (default: the end of the last event), up to `nowS`; null when there is
 * neither an event nor a decision time (events.py's time_on_task_today; same order of additions). */
export function timeOnTaskToday(events, nowS = null) {
  if (nowS === null || nowS === undefined) {
    if (!events.length) return null;
    const last = events[events.length - 1];
    nowS = last.timestamp + last.responseTime;
  }
  const dayStart = Math.floor(nowS / SECONDS_PER_DAY) * SECONDS_PER_DAY;
  let spent = 0.0;
  for (const e of events) if (dayStart <= e.timestamp && e.timestamp <= nowS) spent += e.responseTime;
  return spent;
}
