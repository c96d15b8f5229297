// Why the runtime chose an item, in plain terms: a port of pedagogym/deploy/explain.py (same
// definitions, same numbers from the same float32 state, same texts with Python's rounding).
// recommend(events, { explain: true | {top_k, top_features, review_after_days, max_review} }).
import { typeName } from './events.js';
import { featureNames, featurize, itemsUnlocked, prerequisiteMet, replay, skillsUnlocked } from './features.js';
import { pyFixed, pyRepr, pyTruthy } from './pyjson.js';

const f = Math.fround;
export const EXPLAIN_KEYS = ['top_k', 'top_features', 'review_after_days', 'max_review'];
export const EXPLAIN_DEFAULTS = Object.freeze({ top_k: 3, top_features: 3, review_after_days: 1.0, max_review: 5 });
const MAX_LISTED = 100;
const ATTRIBUTION_RTOL = 1e-5;
const SECONDS_PER_DAY = 86400.0;

export class ExplainError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ExplainError';
  }
}

const keyList = `[${EXPLAIN_KEYS.map((k) => `'${k}'`).join(', ')}]`;

/** null / false -> null (no explanation); true -> defaults; an object -> validated options. */
export function parseExplainOptions(value) {
  if (value === null || value === undefined || value === false) return null;
  if (value === true) return { ...EXPLAIN_DEFAULTS };
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ExplainError(`explain: expected true, false or an object with keys among ${keyList}, got ${typeName(value)} ${pyRepr(value)}`);
  }
  const unknown = Object.keys(value).filter((k) => !EXPLAIN_KEYS.includes(k)).sort();
  if (unknown.length) {
    throw new ExplainError(`explain: unknown key(s) ${pyRepr(unknown)}; allowed: ${EXPLAIN_KEYS.map((k) => `'${k}'`).join(', ')}`);
  }
  const out = { ...EXPLAIN_DEFAULTS };
  for (const key of ['top_k', 'top_features', 'max_review']) {
    const v = value[key];
    if (v === null || v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_LISTED) {
      throw new ExplainError(`explain.${key}: expected an integer from 0 to ${MAX_LISTED}, got ${pyRepr(v)}`);
    }
    out[key] = v;
  }
  const v = value.review_after_days;
  if (v !== null && v !== undefined) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new ExplainError(`explain.review_after_days: expected a number of days >= 0, got ${pyRepr(v)}`);
    }
    out.review_after_days = v;
  }
  return out;
}

const plural = (n, word) => (n === 1 ? `${n} ${word}` : `${n} ${word}s`);

function ago(days) {
  const s = days * SECONDS_PER_DAY;
  if (s < 90.0) return `${pyFixed(s, 0)} s`;
  if (s < 5400.0) return `${pyFixed(s / 60.0, 0)} min`;
  if (s < 172800.0) return `${pyFixed(s / 3600.0, 1)} h`;
  return `${pyFixed(days, 1)} days`;
}

/** The observation's feature groups, in feature order (explain.py's feature_groups). */
export function featureGroups(spec) {
  const names = featureNames(spec.skillIds, spec.itemIds);
  const at = new Map(names.map((n, k) => [n, k]));
  const groups = [];
  spec.skillIds.forEach((s, k) => groups.push({ key: `belief[${s}]`, kind: 'belief', index: k, features: [at.get(`belief[${s}]`)] }));
  spec.skillIds.forEach((s, k) => groups.push({
    key: `practice[${s}]`, kind: 'practice', index: k, features: [at.get(`skill_attempts[${s}]`), at.get(`skill_accuracy[${s}]`)],
  }));
  spec.itemIds.forEach((i, k) => groups.push({
    key: `history[${i}]`, kind: 'history', index: k,
    features: [at.get(`item_attempts[${i}]`), at.get(`item_accuracy[${i}]`), at.get(`item_recency[${i}]`)],
  }));
  groups.push({ key: 'last_response', kind: 'last_response', index: -1, features: [at.get('last_correct'), at.get('last_rt')] });
  groups.push({ key: 'progress', kind: 'progress', index: -1, features: [at.get('progress')] });
  groups.push({ key: 'session', kind: 'session', index: -1, features: [at.get('session'), at.get('session_time')] });
  return groups;
}

export class Explainer {
  constructor(spec, constraintKeys) {
    this.spec = spec;
    this.constraintKeys = constraintKeys;
    this.names = featureNames(spec.skillIds, spec.itemIds);
    this.groups = featureGroups(spec);
    this.baseline = featurize(spec, replay(spec, [])); // a new learner's observation
    this.prereqsOf = spec.prereq.map((row) => [...row.keys()].filter((p) => row[p]));
  }

  daysSince(h, i) {
    if (h.itemLastT[i] < 0) return null;
    return Math.max(f(h.t - h.itemLastT[i]), 0);
  }

  skill(h, s, met, unlocked) {
    const n = h.skillAttempts[s];
    const c = h.skillCorrect[s];
    return {
      skill_id: this.spec.skillIds[s], belief: h.belief[s], attempts: n, correct: c, accuracy: n ? c / n : null,
      prerequisites: this.prereqsOf[s].map((p) => ({ skill_id: this.spec.skillIds[p], belief: h.belief[p], met: met[p] })),
      unlocked: unlocked[s],
    };
  }

  itemHistory(h, i) {
    const n = h.itemAttempts[i];
    const c = h.itemCorrect[i];
    if (n === 0) return 'new to this learner';
    const result = this.spec.observed[i] ? `${c} correct` : 'no correctness recorded';
    return `seen ${plural(n, 'time')} (${result}), last ${ago(this.daysSince(h, i))} ago`;
  }

  groupText(g, h) {
    const { spec } = this;
    if (g.kind === 'belief') {
      return `belief in '${spec.skillIds[g.index]}' is ${pyFixed(h.belief[g.index], 2)} (a new learner: ${pyFixed(spec.pInit[g.index], 2)})`;
    }
    if (g.kind === 'practice') {
      return `${plural(h.skillAttempts[g.index], 'attempt')} on '${spec.skillIds[g.index]}', ${h.skillCorrect[g.index]} correct`;
    }
    if (g.kind === 'history') return `item '${spec.itemIds[g.index]}' ${this.itemHistory(h, g.index)}`;
    if (g.kind === 'last_response') {
      return `the last response was ${h.lastCorrect > 0 ? 'correct' : 'not correct'} and took ${pyFixed(h.lastRt, 0)} s`;
    }
    if (g.kind === 'progress') return `${plural(h.step, 'item')} presented so far (horizon ${spec.horizon})`;
    const seconds = f(f(h.t - h.sessionStart) * f(SECONDS_PER_DAY));
    return `session ${h.session + 1}, ${pyFixed(seconds / 60.0, 1)} min since it started`;
  }

  /** explain.py's Explainer.explain; run(obsFlat, maskFlat, n) is the batched policy,
   * constrain(mask, constraints) the runtime's constraint rule. */
  async explain(h, obs, baseMask, mask, scores, action, opts, run, constrain, constraints, spentTodayS) {
    const { spec } = this;
    const a = action;
    const { itemIds, skillIds, nI, nS } = spec;
    const met = prerequisiteMet(spec, h.belief);
    const unlocked = skillsUnlocked(spec, h.belief);
    const itemOk = itemsUnlocked(spec, h.belief);
    const skills = [];
    for (let s = 0; s < nS; s++) skills.push(this.skill(h, s, met, unlocked));

    // items due for review
    const due = [];
    for (let i = 0; i < nI; i++) {
      const days = this.daysSince(h, i);
      if (days !== null && days >= opts.review_after_days) due.push([days, i]);
    }
    due.sort((x, y) => y[0] - x[0] || x[1] - y[1]);
    const dueSet = new Set(due.map(([, i]) => i));
    const dueEntry = ([days, i]) => {
      const beliefs = spec.skillsOf[i].map((s) => h.belief[s]);
      return {
        item_id: itemIds[i], days_since_last: days, attempts: h.itemAttempts[i], accuracy: h.itemCorrect[i] / h.itemAttempts[i],
        skills: spec.skillsOf[i].map((s) => skillIds[s]), weakest_belief: beliefs.length ? Math.min(...beliefs) : null,
        eligible: Boolean(mask[i]),
      };
    };

    // one batched model call: the real observation, each differing group reset to a new
    // learner's values, and (when the constraints removed items) the unconstrained mask
    const narrowed = mask.some((v, i) => Boolean(v) !== Boolean(baseMask[i]));
    const rows = [obs];
    const masks = [mask];
    const occluded = [];
    if (opts.top_features > 0) {
      this.groups.forEach((grp, g) => {
        if (grp.features.every((k) => obs[k] === this.baseline[k])) return;
        const o = Float32Array.from(obs);
        for (const k of grp.features) o[k] = this.baseline[k];
        rows.push(o);
        masks.push(mask);
        occluded.push(g);
      });
    }
    if (narrowed) {
      rows.push(obs);
      masks.push(baseMask);
    }
    let batch = null;
    if (rows.length > 1) {
      const d = spec.nFeatures;
      const o = new Float32Array(rows.length * d);
      const m = new Uint8Array(rows.length * nI);
      rows.forEach((r, k) => { o.set(r, k * d); m.set(masks[k], k * nI); });
      batch = await run(o, m, rows.length);
    }

    let attribution = null;
    if (opts.top_features > 0) {
      const ref = batch ? batch.scores[a] : scores[a];
      const floor = ATTRIBUTION_RTOL * Math.max(1.0, Math.abs(ref));
      const effects = occluded.map((g, k) => [g, ref - batch.scores[(k + 1) * nI + a]])
        .filter(([, e]) => Math.abs(e) >= floor)
        .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]) || x[0] - y[0]);
      const groups = effects.slice(0, opts.top_features).map(([g, eff]) => {
        const grp = this.groups[g];
        return {
          group: grp.key, features: grp.features.map((k) => this.names[k]), effect: eff,
          text: `${this.groupText(grp, h)}; this ${eff > 0 ? 'raises' : 'lowers'} the score of '${itemIds[a]}' by ${pyFixed(Math.abs(eff), 2)}`,
        };
      });
      attribution = { method: 'occlusion', baseline: 'a new learner (no events)', item_id: itemIds[a], groups };
    }

    // alternatives: the next-highest eligible scores (ties: lowest index, as the argmax)
    const chosenScore = scores[a];
    const others = [];
    for (let j = 0; j < nI; j++) if (mask[j] && j !== a) others.push(j);
    others.sort((x, y) => scores[y] - scores[x] || x - y);
    const alternatives = others.slice(0, opts.top_k).map((j) => {
      const gap = chosenScore - scores[j];
      const practises = spec.skillsOf[j].map((s) => `'${skillIds[s]}' (belief ${pyFixed(h.belief[s], 2)})`).join(', ');
      let reason = `scored ${pyFixed(gap, 2)} below '${itemIds[a]}'; practises ${practises}; ${this.itemHistory(h, j)}`;
      if (dueSet.has(j)) reason += '; due for review';
      return { item_id: itemIds[j], score: scores[j], score_gap: gap, skills: spec.skillsOf[j].map((s) => skillIds[s]), reason };
    });

    // teacher constraints
    let cons = null;
    const given = (k) => constraints && constraints[k] !== undefined && constraints[k] !== null;
    const applied = this.constraintKeys.filter((k) => given(k) && !(k === 'review_skills' && !pyTruthy(constraints[k])));
    if (applied.length) {
      const narrowedBy = {};
      for (const k of applied) {
        if (k === 'daily_minutes') continue;
        const alone = constrain(baseMask, { [k]: constraints[k] });
        const removed = [];
        for (let i = 0; i < nI; i++) if (baseMask[i] && !alone[i]) removed.push(itemIds[i]);
        if (removed.length) narrowedBy[k] = removed;
      }
      const free = narrowed ? batch.actions[batch.actions.length - 1] : a;
      const count = (m) => m.reduce((acc, v) => acc + (v ? 1 : 0), 0);
      cons = {
        applied, eligible_without: count(baseMask), eligible_with: count(mask), narrowed_by: narrowedBy,
        unconstrained_choice: itemIds[free], changed_choice: free !== a,
      };
      if (applied.includes('daily_minutes')) {
        const cap = constraints.daily_minutes;
        const today = (spentTodayS || 0.0) / 60.0;
        cons.daily = { cap_minutes: cap, minutes_today: today, minutes_left: Math.max(cap - today, 0.0) };
      }
    }

    const chosen = {
      item_id: itemIds[a], score: chosenScore, skills: spec.skillsOf[a].map((s) => skills[s]),
      attempts: h.itemAttempts[a], correct: h.itemCorrect[a], days_since_last: this.daysSince(h, a),
      unlocked: itemOk[a], due_for_review: dueSet.has(a),
    };
    const locked = [];
    for (let i = 0; i < nI; i++) {
      if (!spec.itemAvailable[i] || itemOk[i]) continue;
      const missing = new Set();
      for (const s of spec.skillsOf[i]) for (const p of this.prereqsOf[s]) if (!met[p]) missing.add(p);
      locked.push({ item_id: itemIds[i], missing: [...missing].sort((x, y) => x - y).map((p) => skillIds[p]) });
    }
    const out = {
      summary: '',
      chosen,
      alternatives,
      skills,
      unlock_threshold: spec.unlockThreshold,
      locked_items: locked,
      due_for_review: {
        n_due: due.length, review_after_days: opts.review_after_days, items: due.slice(0, opts.max_review).map(dueEntry),
      },
      constraints: cons,
      attribution,
    };
    out.summary = this.summary(out, mask.reduce((acc, v) => acc + (v ? 1 : 0), 0));
    return out;
  }

  summary(ex, nEligible) {
    const { chosen } = ex;
    const parts = chosen.skills.map((sk) => {
      const practice = sk.attempts === 0 ? 'not practised yet' : `${plural(sk.attempts, 'attempt')}, ${sk.correct} correct`;
      return `'${sk.skill_id}' (belief ${pyFixed(sk.belief, 2)}, ${practice})`;
    });
    let text = `Recommended '${chosen.item_id}', which practises ${parts.join(' and ')}`;
    const prereqs = [...new Set(chosen.skills.flatMap((sk) => sk.prerequisites.map((p) => p.skill_id)))];
    if (!chosen.unlocked) text += '; every item is locked by prerequisites, so all available items were allowed';
    else if (prereqs.length) text += `; its prerequisites (${prereqs.map((p) => `'${p}'`).join(', ')}) are met`;
    text += '.';
    if (chosen.due_for_review) text += ` It is due for review (last seen ${ago(chosen.days_since_last)} ago).`;
    const alts = ex.alternatives;
    if (alts.length) text += ` Next best: '${alts[0].item_id}', ${pyFixed(alts[0].score_gap, 2)} lower.`;
    else if (nEligible === 1) text += ' It was the only eligible item.';
    const cons = ex.constraints;
    if (cons !== null && Object.keys(cons.narrowed_by).length) {
      text += ` Teacher constraints (${Object.keys(cons.narrowed_by).join(', ')}) narrowed the choice from ${plural(cons.eligible_without, 'item')} to ${cons.eligible_with}`;
      text += cons.changed_choice ? `; without them the policy would have chosen '${cons.unconstrained_choice}'.` : '.';
    }
    const attr = ex.attribution;
    if (attr !== null && attr.groups.length) text += ` Strongest influence: ${attr.groups[0].text}.`;
    return text;
  }
}
