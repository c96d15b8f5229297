// The recommender: event log -> features -> ONNX policy -> next item (as pedagogym/deploy/recommender.py);
// with an early-warning model in the bundle, the same features -> risk.onnx -> the learner's risks.
import ort from 'onnxruntime-node';

import { loadBundle, BundleError } from './bundle.js';
import { EventError, parseEvents, parseTimestamp, timeOnTaskToday, typeName } from './events.js';
import { Explainer, parseExplainOptions } from './explain.js';
import { actionMask, featureSpec, featurize, replay } from './features.js';
import { pyFixed, pyG, pyRepr, pyTruthy } from './pyjson.js';

/** Constraints that name unknown items or skills, or leave no item to recommend (HTTP 422). */
export class ConstraintError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConstraintError';
  }
}

/** The learner's time on task today has reached the teacher's daily cap (HTTP 409). */
export class DailyCapReached extends ConstraintError {
  constructor(message) {
    super(message);
    this.name = 'DailyCapReached';
  }
}

export const CONSTRAINT_KEYS = ['only', 'exclude', 'pin', 'forbid_skills', 'review_skills', 'daily_minutes'];
const quotedKeys = CONSTRAINT_KEYS.map((k) => `'${k}'`).join(', ');

export class NoEarlyWarning extends Error {
  constructor(message) {
    super(message);
    this.name = 'NoEarlyWarning';
  }
}

export const SESSION_OPTIONS = {
  intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  logSeverityLevel: 3,
};

export class Recommender {
  /** Use `await Recommender.load(dir)`. */
  constructor(bundle, session, spec, riskSession = null) {
    this.bundle = bundle;
    this.riskSession = riskSession;
    this.riskTargets = bundle.manifest.early_warning ? bundle.manifest.early_warning.targets.map((t) => t.name) : [];
    this.manifest = bundle.manifest;
    this.session = session;
    this.spec = spec;
    this.itemIds = bundle.manifest.actions.item_ids;
    this.itemIndex = new Map(this.itemIds.map((id, k) => [id, k]));
    this.skillIndex = new Map(spec.skillIds.map((id, k) => [id, k]));
    this.explainer = new Explainer(spec, CONSTRAINT_KEYS);
    this.featureNames = bundle.manifest.observation.feature_names;
    // batch-1 buffers reused by every decision
    this.obs = new Float32Array(spec.nFeatures);
    this.mask = new Uint8Array(spec.nI);
    this.feeds = {
      obs: new ort.Tensor('float32', this.obs, [1, spec.nFeatures]),
      action_mask: new ort.Tensor('bool', this.mask, [1, spec.nI]),
    };
  }

  static async load(dir, { idleGapS = null, expectSha256 = null } = {}) {
    if (idleGapS !== null && !(typeof idleGapS === 'number' && Number.isFinite(idleGapS) && idleGapS > 0)) {
      throw new BundleError(`idle_gap_s: expected a finite number of seconds > 0, got ${JSON.stringify(idleGapS)}`);
    }
    const bundle = loadBundle(dir, { expectSha256 });
    const spec = featureSpec(bundle.manifest, idleGapS);
    let session;
    try {
      session = await ort.InferenceSession.create(bundle.modelBytes, SESSION_OPTIONS);
    } catch (err) {
      throw new BundleError(`${dir}/${bundle.manifest.model.file ?? 'policy.onnx'}: not a loadable ONNX model (${err.message})`.slice(0, 600));
    }
    const ins = [...session.inputNames].sort().join(',');
    const outs = [...session.outputNames].sort().join(',');
    if (ins !== 'action_mask,obs' || outs !== 'action,scores') {
      throw new BundleError(`${dir}: policy.onnx has inputs [${ins}] and outputs [${outs}]; expected obs, action_mask -> scores, action`);
    }
    let riskSession = null;
    if (bundle.riskBytes) {
      const where = `${dir}/${bundle.manifest.early_warning.file}`;
      try {
        riskSession = await ort.InferenceSession.create(bundle.riskBytes, SESSION_OPTIONS);
      } catch (err) {
        throw new BundleError(`${where}: not a loadable ONNX model (${err.message})`);
      }
      const nT = bundle.manifest.early_warning.targets.length;
      const inShape = riskSession.inputMetadata?.[0]?.shape;
      const outShape = riskSession.outputMetadata?.[0]?.shape;
      if (riskSession.inputNames.join(',') !== 'obs' || riskSession.outputNames.join(',') !== 'risk'
          || (inShape && inShape[1] !== spec.nFeatures) || (outShape && outShape[1] !== nT)) {
        throw new BundleError(`${where}: has inputs [${riskSession.inputNames}] ${JSON.stringify(inShape)} and outputs [${riskSession.outputNames}] ${JSON.stringify(outShape)}; expected obs[batch, ${spec.nFeatures}] -> risk[batch, ${nT}]`);
      }
    }
    return new Recommender(bundle, session, spec, riskSession);
  }

  requireRisk() {
    if (!this.riskSession) {
      throw new NoEarlyWarning(`${this.bundle.dir}: this bundle has no early-warning model; export it with \`pedagogym export ... --early-warning\``);
    }
  }

  /** A batch of observations Float32Array[N*D] -> Float32Array[N*T] risks (riskTargets order). */
  async runRisk(obs, n = 1) {
    this.requireRisk();
    const out = await this.riskSession.run({ obs: new ort.Tensor('float32', Float32Array.from(obs), [n, this.spec.nFeatures]) });
    return out.risk.data;
  }

  riskObject(risk, offset = 0) {
    return Object.fromEntries(this.riskTargets.map((t, k) => [t, risk[offset + k]]));
  }

  /** {target: probability} for one learner at decision time `now` (same answer as the Python Recommender.risk). */
  async risk(events, { now = null, learnerId = null } = {}) {
    this.requireRisk();
    const { obs } = this.features(events, { now, learnerId });
    return this.riskObject(await this.runRisk(obs));
  }

  /** Several learners in one model call: {learnerId: events} -> {learnerId: {target: probability}}. */
  async riskMany(logs, { now = null } = {}) {
    this.requireRisk();
    const ids = Object.keys(logs);
    if (!ids.length) return {};
    const d = this.spec.nFeatures;
    const obs = new Float32Array(ids.length * d);
    ids.forEach((id, k) => obs.set(this.features(logs[id], { now, learnerId: id }).obs, k * d));
    const risk = await this.runRisk(obs, ids.length);
    return Object.fromEntries(ids.map((id, k) => [id, this.riskObject(risk, k * this.riskTargets.length)]));
  }

  /** The model's action, if it is an item index the mask allows (Recommender._check_action in Python). */
  checkAction(action, mask, offset = 0) {
    const n = this.spec.nI;
    if (!(Number.isInteger(action) && action >= 0 && action < n)) {
      throw new BundleError(`${this.bundle.dir}: the policy model chose action ${action}, outside the ${n} items; the model is broken or was replaced; re-export the bundle`);
    }
    if (!mask[offset + action]) {
      throw new BundleError(`${this.bundle.dir}: the policy model chose item ${pyRepr(this.itemIds[action])}, which the action mask forbids (locked or excluded); the model ignores the mask; re-export the bundle`);
    }
    return action;
  }

  async runModel(feeds) {
    try {
      return await this.session.run(feeds);
    } catch (err) {
      throw new BundleError(`${this.bundle.dir}: the policy model failed to run (${err.message})`.slice(0, 600));
    }
  }

  /** One decision: Float32Array[D], Uint8Array[I] -> {scores: Float32Array[I], action}. */
  async decide(obs, mask) {
    this.obs.set(obs);
    this.mask.set(mask);
    const out = await this.runModel(this.feeds);
    const action = Number(out.action.data[0]);
    return { scores: out.scores.data, action: this.checkAction(action, mask) };
  }

  /** A batch: Float32Array[N*D], Uint8Array[N*I] -> {scores: Float32Array[N*I], actions: number[]}. */
  async run(obs, mask, n) {
    const out = await this.runModel({
      obs: new ort.Tensor('float32', obs, [n, this.spec.nFeatures]),
      action_mask: new ort.Tensor('bool', mask, [n, this.spec.nI]),
    });
    const actions = Array.from(out.action.data, Number);
    if (actions.length !== n) throw new BundleError(`${this.bundle.dir}: the policy model returned ${actions.length} actions for ${n} observations`);
    actions.forEach((a, k) => this.checkAction(a, mask, k * this.spec.nI));
    return { scores: out.scores.data, actions };
  }

  state(events, now = null) {
    const nowS = now === null || now === undefined ? null : parseTimestamp(now, 'now');
    if (nowS !== null && events.length && nowS < events[events.length - 1].timestamp) {
      throw new EventError(`now: ${JSON.stringify(now)} is before the last event's timestamp (time goes backwards)`);
    }
    return replay(this.spec, events, nowS);
  }

  /** {obs: Float32Array[D], mask: Uint8Array[I], state} for a raw event log. */
  features(events, { now = null, learnerId = null } = {}) {
    const h = this.state(parseEvents(events, this.itemIndex, learnerId), now);
    return { obs: featurize(this.spec, h), mask: actionMask(this.spec, h), state: h };
  }

  /** Restrict the mask with a teacher's constraints (Recommender.constrain in Python, same rules
   * and messages): only / exclude (item ids), pin (item id), forbid_skills / review_skills (skill
   * ids), daily_minutes (time on task per UTC day of the decision time `nowS`, default the end of
   * the last event). Throws ConstraintError, or DailyCapReached when the cap is reached. When the
   * prerequisite locks hide every allowed item, the allowed items are offered (a pinned locked item
   * is presented), as in the simulator. */
  constrain(mask, constraints, events = [], nowS = null) {
    if (!pyTruthy(constraints)) return mask;
    if (typeof constraints !== 'object' || Array.isArray(constraints)) {
      throw new ConstraintError(`constraints: expected an object with keys among [${quotedKeys}], got ${typeName(constraints)}`);
    }
    const unknownKeys = Object.keys(constraints).filter((k) => !CONSTRAINT_KEYS.includes(k)).sort();
    if (unknownKeys.length) throw new ConstraintError(`constraints: unknown key(s) ${pyRepr(unknownKeys)}; allowed: ${quotedKeys}`);
    const given = (k) => constraints[k] !== undefined && constraints[k] !== null;
    const idsOf = (key, known, what) => {
      const ids = constraints[key];
      if (!Array.isArray(ids) || !ids.every((i) => typeof i === 'string')) throw new ConstraintError(`constraints.${key}: expected a list of ${what} ids`);
      const bad = ids.filter((i) => !known.has(i));
      if (bad.length) throw new ConstraintError(`constraints.${key}: unknown ${what}(s) ${pyRepr(bad)}`);
      return ids.map((i) => known.get(i));
    };
    const { q } = this.spec;
    const exercises = (i, skills) => skills.some((s) => q[i][s]);
    const out = Uint8Array.from(this.spec.itemAvailable); // the allowed items; the locks in `mask` come last
    for (const key of ['only', 'exclude']) {
      if (!given(key)) continue;
      const sel = new Set(idsOf(key, this.itemIndex, 'item'));
      for (let i = 0; i < out.length; i++) if (sel.has(i) !== (key === 'only')) out[i] = 0;
    }
    if (given('forbid_skills')) {
      const skills = idsOf('forbid_skills', this.skillIndex, 'skill');
      for (let i = 0; i < out.length; i++) if (exercises(i, skills)) out[i] = 0;
    }
    if (pyTruthy(constraints.review_skills)) {
      const skills = idsOf('review_skills', this.skillIndex, 'skill');
      for (let i = 0; i < out.length; i++) if (!exercises(i, skills)) out[i] = 0;
    }
    if (given('pin')) {
      const pin = constraints.pin;
      if (typeof pin !== 'string') throw new ConstraintError(`constraints.pin: expected an item id, got ${pyRepr(pin)}`);
      if (!this.itemIndex.has(pin)) throw new ConstraintError(`constraints.pin: unknown item ${pyRepr(pin)}`);
      const k = this.itemIndex.get(pin);
      if (!out[k]) {
        throw new ConstraintError(`constraints.pin: item ${pyRepr(pin)} is excluded by another constraint (or not available)`);
      }
      out.fill(0);
      out[k] = 1;
    }
    if (given('daily_minutes')) {
      const cap = constraints.daily_minutes;
      if (typeof cap !== 'number' || !(cap > 0) || !Number.isFinite(cap)) {
        throw new ConstraintError(`constraints.daily_minutes: expected a positive number of minutes, got ${pyRepr(cap)}`);
      }
      const spent = timeOnTaskToday(events, nowS);
      if (spent !== null && spent >= 60.0 * cap) {
        throw new DailyCapReached(`constraints.daily_minutes: the daily cap of ${pyG(cap)} min is reached (${pyFixed(spent / 60.0, 1)} min on task today, UTC); next item tomorrow`);
      }
    }
    if (!out.some(Boolean)) {
      throw new ConstraintError('constraints: no item satisfies every constraint (only, exclude, pin, forbidden skills, review skills) among the available items');
    }
    // the simulator's rule: prerequisite locks apply among the allowed items, unless they hide all of them
    const unlocked = out.map((v, i) => v & mask[i]);
    return unlocked.some(Boolean) ? unlocked : out;
  }

  /** The next item for one learner; same answer as the Python Recommender.recommend.
   * explain: true, or options {top_k, top_features, review_after_days, max_review}, adds
   * `explanation` (src/explain.js; the Python runtime's, field for field). */
  async recommend(events, { constraints = null, now = null, learnerId = null, includeFeatures = false, explain = false } = {}) {
    const opts = parseExplainOptions(explain);
    const evs = parseEvents(events, this.itemIndex, learnerId);
    const lid = learnerId ?? (Array.isArray(events) ? events.find((e) => e && e.learner_id)?.learner_id ?? null : null);
    const h = this.state(evs, now);
    const obs = featurize(this.spec, h);
    const nowS = now === null || now === undefined ? null : parseTimestamp(now, 'now');
    const baseMask = actionMask(this.spec, h);
    const mask = this.constrain(baseMask, constraints, evs, nowS);
    const { scores, action } = await this.decide(obs, mask);
    const out = {
      learner_id: lid,
      item_id: this.itemIds[action],
      action,
      scores: Object.fromEntries(this.itemIds.map((id, k) => [id, scores[k]])),
      eligible: this.itemIds.filter((_, k) => mask[k]),
      session: h.session,
      n_events: evs.length,
      policy: this.manifest.policy.name ?? null,
    };
    if (this.riskSession) out.risk = this.riskObject(await this.runRisk(obs));
    if (includeFeatures) out.features = Object.fromEntries(this.featureNames.map((n, k) => [n, obs[k]]));
    if (opts !== null) {
      const spent = constraints && constraints.daily_minutes !== undefined && constraints.daily_minutes !== null
        ? timeOnTaskToday(evs, nowS) : null;
      out.explanation = await this.explainer.explain(h, obs, baseMask, mask, scores, action, opts,
        (o, m, n) => this.run(o, m, n), (m, c) => this.constrain(m, c), constraints, spent);
    }
    return out;
  }
}
