// Event log -> observation vector: a line-by-line port of pedagogym/deploy/features.py, which
// itself reproduces the simulator (History.record, the env clock and sessions, the 'platform'
// featurizer, the action mask) in float32. Every float32 operation is Math.fround of the
// double result, which equals the float32 result for + - * / (both operands float32).

const f = Math.fround;
export const SECONDS_PER_DAY = 86400.0;
export const RT_SCALE_S = 600.0;
export const DEFAULT_IDLE_GAP_S = 1800.0;

// float32 a * b + c with one rounding, as XLA computes it on CPUs with FMA (features.py's _fma):
// the float32 product is exact in a double; the sum is rounded to double, then to float32.
const fma = (a, b, c) => f(a * b + c);
// XLA computes x / c for a scalar c broadcast over the batch as x * (1 / c) (features.py).
const INV_LOG1P_RT_SCALE = f(1 / f(Math.log1p(RT_SCALE_S)));

// The observation layout this client computes (pedagogym/schema.py's, as features.py's FEATURE_GROUPS);
// a bundle's manifest carries the schema it was exported with and loadBundle refuses one that differs.
export const FEATURE_GROUPS = [
  ['belief', 'skill'], ['skill_attempts', 'skill'], ['skill_accuracy', 'skill'],
  ['item_attempts', 'item'], ['item_accuracy', 'item'], ['item_recency', 'item'],
  ['last_correct', 'scalar'], ['last_rt', 'scalar'], ['progress', 'scalar'], ['session', 'scalar'],
  ['session_time', 'scalar'],
];

export function featureNames(skillIds, itemIds) {
  const names = [];
  for (const [group, per] of FEATURE_GROUPS) {
    if (per === 'scalar') names.push(group);
    else for (const id of (per === 'skill' ? skillIds : itemIds)) names.push(`${group}[${id}]`);
  }
  return names;
}

/** What differs between a manifest's observation schema and this client's (null: nothing). */
export function schemaMismatch(observation) {
  const groups = observation.groups;
  if (groups !== undefined && groups !== null) {
    const got = Array.isArray(groups) ? groups.map((g) => [g && g.name, g && g.per]) : groups;
    if (JSON.stringify(got) !== JSON.stringify(FEATURE_GROUPS)) {
      return `observation.groups ${JSON.stringify(Array.isArray(groups) ? groups.map((g) => g && g.name) : groups)} differ from this client's ${JSON.stringify(FEATURE_GROUPS.map((g) => g[0]))}`;
    }
  }
  for (const [key, ours] of [['rt_scale_s', RT_SCALE_S], ['seconds_per_day', SECONDS_PER_DAY]]) {
    if (key in observation && observation[key] !== ours) return `observation.${key} is ${JSON.stringify(observation[key])}; this client computes with ${ours}`;
  }
  return null;
}

/** What the featurizer needs from a manifest (FeatureSpec.from_manifest). */
export function featureSpec(manifest, idleGapS = null) {
  const spec = manifest.curriculum.spec;
  const skillIds = spec.skills.map((s) => s.id);
  const itemIds = spec.items.map((it) => it.id);
  const sIdx = new Map(skillIds.map((s, k) => [s, k]));
  const nS = skillIds.length;
  const nI = itemIds.length;
  const q = spec.items.map((it) => { const row = new Uint8Array(nS); for (const s of it.skills) row[sIdx.get(s)] = 1; return row; });
  const skillsOf = q.map((row) => [...row.keys()].filter((s) => row[s]));
  const prereq = spec.skills.map((s) => { const row = new Uint8Array(nS); for (const p of s.prerequisites ?? []) row[sIdx.get(p)] = 1; return row; });
  const observedKinds = new Set(manifest.curriculum.observed_kinds);
  const observed = spec.items.map((it) => observedKinds.has(it.kind ?? 'practice'));
  const ob = manifest.observer;
  const env = manifest.env;
  return {
    skillIds, itemIds, nS, nI, nFeatures: 3 * nS + 3 * nI + 5, q, skillsOf, prereq, observed,
    pInit: Float32Array.from(ob.p_init), pLearn: Float32Array.from(ob.p_learn), pForget: Float32Array.from(ob.p_forget),
    pGuess: Float32Array.from(ob.p_guess), pSlip: Float32Array.from(ob.p_slip),
    horizon: f(env.horizon), sessionS: f(env.session_s), unlockThreshold: f(env.unlock_threshold),
    itemAvailable: env.item_available.map(Boolean),
    idleGapS: idleGapS ?? manifest.sessions?.idle_gap_s ?? DEFAULT_IDLE_GAP_S,
  };
}

function initial(spec) {
  return {
    itemAttempts: new Float32Array(spec.nI), itemCorrect: new Float32Array(spec.nI),
    itemLastT: new Float32Array(spec.nI).fill(-1), skillAttempts: new Float32Array(spec.nS),
    skillCorrect: new Float32Array(spec.nS), belief: Float32Array.from(spec.pInit), lastItem: -1, lastCorrect: 0,
    lastRt: 0, step: 0, session: 0, t: 0, sessionStart: 0,
  };
}

/** The learner's state at decision time `now` (epoch seconds; null: when the last event ended). */
export function replay(spec, events, now = null) {
  const h = initial(spec);
  const n = events.length;
  if (!n) return h;
  const t0 = events[0].timestamp;
  const day = f(SECONDS_PER_DAY);
  let session = 0;
  let sessionStart = 0;
  let ended = false;
  let prevEnd = t0;
  let tEnd = 0;
  for (let k = 0; k < n; k++) {
    const ev = events[k];
    const tPres = f((ev.timestamp - t0) / SECONDS_PER_DAY);
    if (k === 0) sessionStart = tPres;
    else if (ended || ev.timestamp - prevEnd >= spec.idleGapS) {
      session += 1;
      sessionStart = tPres;
    }
    const i = ev.item;
    const observed = spec.observed[i] && ev.correct !== null;
    const correct = ev.correct === true;
    const got = correct && observed ? 1 : 0;
    const rt = f(ev.responseTime);
    // History.record
    h.itemAttempts[i] += 1;
    h.itemCorrect[i] += got;
    h.itemLastT[i] = tPres;
    for (const s of spec.skillsOf[i]) {
      h.skillAttempts[s] += 1;
      h.skillCorrect[s] += got;
      // bkt.observe: posterior (when a response was recorded), then transition
      let p = h.belief[s];
      if (observed) {
        const likeKnown = correct ? f(1 - spec.pSlip[s]) : spec.pSlip[s];
        const likeUnknown = correct ? spec.pGuess[s] : f(1 - spec.pGuess[s]);
        const num = f(p * likeKnown);
        p = f(num / fma(f(1 - p), likeUnknown, num)); // bkt.posterior
      }
      h.belief[s] = fma(p, f(1 - spec.pForget[s]), f(f(1 - p) * spec.pLearn[s])); // bkt.transition
    }
    h.lastItem = i;
    h.lastCorrect = got;
    h.lastRt = rt;
    // the env clock and "session over?" in float32 days
    tEnd = f(tPres + f(rt / day));
    ended = f(f(tEnd - sessionStart) * day) >= spec.sessionS;
    prevEnd = ev.timestamp + ev.responseTime;
  }
  h.step = n;
  h.session = session;
  h.sessionStart = sessionStart;
  let tNow = tEnd;
  let idle = false;
  if (now !== null && now !== undefined) {
    if (now < events[n - 1].timestamp) throw new Error('now: the decision time is before the last event');
    tNow = f((now - t0) / SECONDS_PER_DAY);
    idle = now - prevEnd >= spec.idleGapS;
  }
  if (ended || idle) {
    h.session += 1;
    h.sessionStart = tNow;
  }
  h.t = tNow;
  return h;
}

/** Float32Array[D]: PlatformFeatures on the replayed state. */
export function featurize(spec, h) {
  const { nS, nI } = spec;
  const out = new Float32Array(spec.nFeatures);
  let o = 0;
  for (let s = 0; s < nS; s++) out[o++] = h.belief[s];
  for (let s = 0; s < nS; s++) out[o++] = f(Math.log1p(h.skillAttempts[s]));
  for (let s = 0; s < nS; s++) out[o++] = f(f(h.skillCorrect[s] + 1) / f(h.skillAttempts[s] + 2));
  for (let i = 0; i < nI; i++) out[o++] = f(Math.log1p(h.itemAttempts[i]));
  for (let i = 0; i < nI; i++) out[o++] = f(f(h.itemCorrect[i] + 1) / f(h.itemAttempts[i] + 2));
  for (let i = 0; i < nI; i++) {
    out[o++] = h.itemLastT[i] >= 0 ? f(1 / f(1 + Math.max(f(h.t - h.itemLastT[i]), 0))) : 0;
  }
  const clip01 = (x) => Math.min(Math.max(x, 0), 1);
  out[o++] = h.lastCorrect;
  out[o++] = clip01(f(f(Math.log1p(h.lastRt)) * INV_LOG1P_RT_SCALE));
  out[o++] = f(f(h.step) * f(1 / spec.horizon));
  out[o++] = f(Math.log1p(h.session));
  out[o++] = clip01(f(f(f(h.t - h.sessionStart) * f(SECONDS_PER_DAY)) / spec.sessionS));
  return out;
}

/** boolean[S]: skill p counts as met when it is a prerequisite: belief[p] >= unlock_threshold. */
export function prerequisiteMet(spec, belief) {
  return Array.from(belief, (b) => b >= spec.unlockThreshold);
}

/** boolean[S]: every prerequisite of the skill is met. */
export function skillsUnlocked(spec, belief) {
  const met = prerequisiteMet(spec, belief);
  return spec.prereq.map((row) => row.every((p, k) => !p || met[k]));
}

/** boolean[I]: every skill of the item is unlocked (availability aside). */
export function itemsUnlocked(spec, belief) {
  const unlocked = skillsUnlocked(spec, belief);
  return spec.skillsOf.map((skills) => skills.every((s) => unlocked[s]));
}

/** Uint8Array[I] (1 = allowed): PedagogyEnv.action_mask. */
export function actionMask(spec, h) {
  const unlocked = itemsUnlocked(spec, h.belief);
  const mask = new Uint8Array(spec.nI);
  let any = false;
  for (let i = 0; i < spec.nI; i++) {
    const ok = spec.itemAvailable[i] && unlocked[i];
    mask[i] = ok ? 1 : 0;
    any ||= ok;
  }
  if (!any) for (let i = 0; i < spec.nI; i++) mask[i] = spec.itemAvailable[i] ? 1 : 0;
  return mask;
}
