// node --test: the Node client gives the Python runtime's answers on the committed fixture
// (written by test/make_fixture.py), and refuses bad bundles and bad event logs clearly.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  BundleError, ConstraintError, EventError, NoEarlyWarning, Recommender, loadBundle, sealManifest,
} from '../src/index.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
// PEDAGOGYM_PARITY_FIXTURE: another fixture in the same format (tests/test_export.py writes one with
// the simulator's own observations and the JAX policy's answers on 10,000 recorded decisions).
const FIXTURE_FILE = process.env.PEDAGOGYM_PARITY_FIXTURE || path.join(HERE, 'fixtures', 'parity.json');
const fixture = JSON.parse(readFileSync(FIXTURE_FILE, 'utf8'));
const BUNDLE = path.resolve(path.dirname(FIXTURE_FILE), fixture.bundle);

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('features, masks, scores and actions equal the Python runtime on every fixture decision', async () => {
  const rec = await Recommender.load(BUNDLE);
  const { features_atol: fTol, scores_atol: sTol } = fixture.tolerance;
  let worstF = 0;
  let worstS = 0;
  let worstR = 0;
  let nRisk = 0;
  const rTol = fixture.tolerance.risk_atol ?? 1e-6;
  assert.ok(fixture.cases.length > 100);
  for (const c of fixture.cases) {
    const learner = fixture.learners[c.learner];
    const events = learner.events.slice(0, c.n_events);
    const where = `learner ${c.learner} (${learner.timestamp_style} timestamps) after ${c.n_events} events`;
    const { obs, mask } = rec.features(events, { now: c.now });
    const constrained = rec.constrain(mask, c.constraints);
    const dF = maxAbsDiff(obs, c.expected.features);
    worstF = Math.max(worstF, dF);
    assert.ok(dF <= fTol, `${where}: features differ by ${dF}`);
    assert.deepEqual(Array.from(constrained), c.expected.mask, `${where}: action mask`);
    const out = await rec.recommend(events, { now: c.now, constraints: c.constraints });
    const scores = rec.itemIds.map((id) => out.scores[id]);
    const dS = maxAbsDiff(scores, c.expected.scores);
    worstS = Math.max(worstS, dS);
    assert.ok(dS <= sTol, `${where}: scores differ by ${dS}`);
    assert.equal(out.action, c.expected.action, `${where}: action`);
    assert.equal(out.item_id, c.expected.item_id, `${where}: item`);
    assert.equal(out.session, c.expected.session, `${where}: session index`);
    if (c.expected.risk) { // bundles with an early-warning model: the risks the Python runtime gave
      assert.deepEqual(Object.keys(out.risk), Object.keys(c.expected.risk), `${where}: risk targets`);
      for (const [t, p] of Object.entries(c.expected.risk)) {
        const dR = Math.abs(out.risk[t] - p);
        worstR = Math.max(worstR, dR);
        assert.ok(dR <= rTol, `${where}: ${t} risk differs by ${dR}`);
      }
      nRisk += 1;
    } else {
      assert.equal(out.risk, undefined, `${where}: a risk the fixture does not expect`);
    }
  }
  console.log(`# ${FIXTURE_FILE}: ${fixture.cases.length} decisions: max feature diff ${worstF}, max score diff ${worstS}; `
    + `${nRisk} risks: max diff ${worstR}`);
});

test('batched run equals one decision at a time', async () => {
  const rec = await Recommender.load(BUNDLE);
  const cases = fixture.cases.slice(0, 16);
  const d = rec.spec.nFeatures;
  const n = rec.spec.nI;
  const obs = new Float32Array(cases.length * d);
  const mask = new Uint8Array(cases.length * n);
  cases.forEach((c, k) => { obs.set(c.expected.features, k * d); mask.set(c.expected.mask, k * n); });
  const { actions } = await rec.run(obs, mask, cases.length);
  assert.deepEqual(actions, cases.map((c) => c.expected.action));
});

test('bad event logs raise EventError with a message naming the problem', async () => {
  const rec = await Recommender.load(BUNDLE);
  for (const b of fixture.bad_inputs) {
    await assert.rejects(rec.recommend(b.events), (err) => {
      assert.equal(err.name, b.error, `${b.name}: ${err.message}`);
      assert.ok(err.message.includes(b.match), `${b.name}: '${err.message}' should mention '${b.match}'`);
      return true;
    }, b.name);
  }
  const ev = fixture.learners[0].events;
  await assert.rejects(rec.recommend(ev.slice(0, 2), { now: -1e12 }), EventError);
  await assert.rejects(rec.recommend(ev.slice(0, 2), { constraints: { only: ['nope'] } }), ConstraintError);
  await assert.rejects(rec.recommend(ev.slice(0, 2), { constraints: { only: [] } }), ConstraintError);
});

test('early warning: risk() and riskMany() equal recommend().risk; a bundle without one says so', async () => {
  const rec = await Recommender.load(BUNDLE);
  const withRisk = fixture.cases.filter((c) => c.expected.risk);
  if (rec.riskSession) {
    assert.equal(withRisk.length, fixture.cases.length, 'every case of a bundle with early warning expects risks');
    for (const c of withRisk.slice(0, 40)) {
      const events = fixture.learners[c.learner].events.slice(0, c.n_events);
      assert.deepEqual(await rec.risk(events, { now: c.now }), (await rec.recommend(events, { now: c.now, constraints: c.constraints })).risk);
    }
    // keyed by learner: the fixture's events name the learner of their own recording, so drop that id
    const logs = Object.fromEntries(fixture.learners.map((l) => [l.learner_id, l.events.map(({ learner_id: _, ...e }) => e)]));
    const many = await rec.riskMany(logs);
    assert.deepEqual(Object.keys(many), Object.keys(logs));
    for (const [id, events] of Object.entries(logs)) {
      const one = await rec.risk(events);
      for (const t of rec.riskTargets) assert.ok(Math.abs(many[id][t] - one[t]) <= 1e-6, `${id} ${t}: batched ${many[id][t]} vs ${one[t]}`);
    }
  } else {
    assert.equal(withRisk.length, 0);
    const events = fixture.learners[0].events.slice(0, 3);
    assert.equal((await rec.recommend(events)).risk, undefined);
    await assert.rejects(rec.risk(events), NoEarlyWarning);
  }
});

function tmpBundle(edit) {
  const dir = mkdtempSync(path.join(tmpdir(), 'pedagogym-bundle-'));
  cpSync(BUNDLE, dir, { recursive: true });
  edit(dir);
  return dir;
}

test('a tampered model file is refused (sha256 mismatch)', () => {
  const dir = tmpBundle((d) => {
    const p = path.join(d, 'policy.onnx');
    const bytes = readFileSync(p);
    bytes[bytes.length - 5] ^= 0xff;
    writeFileSync(p, bytes);
  });
  try {
    assert.throws(() => loadBundle(dir), (err) => err instanceof BundleError && /sha256/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a newer bundle format version is refused', () => {
  const dir = tmpBundle((d) => {
    const p = path.join(d, 'manifest.json');
    const m = JSON.parse(readFileSync(p, 'utf8'));
    m.format_version += 1;
    writeFileSync(p, JSON.stringify(m));
  });
  try {
    assert.throws(() => loadBundle(dir), (err) => err instanceof BundleError && /newer/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an edited curriculum in the manifest is refused (content hash)', () => {
  const dir = tmpBundle((d) => {
    const p = path.join(d, 'manifest.json');
    const m = JSON.parse(readFileSync(p, 'utf8'));
    m.curriculum.spec.items[0].difficulty += 0.5;
    writeFileSync(p, JSON.stringify(m));
  });
  try {
    assert.throws(() => loadBundle(dir), (err) => err instanceof BundleError && /content_hash/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('early warning: a bundle without the section loads; a tampered or missing risk.onnx is refused', async () => {
  const editManifest = (d, edit) => { // an edit re-sealed (bundle_sha256 recomputed), so each check is reached
    const p = path.join(d, 'manifest.json');
    const m = JSON.parse(readFileSync(p, 'utf8'));
    edit(m);
    writeFileSync(p, sealManifest(m));
  };
  const dirs = [];
  try {
    const plain = tmpBundle((d) => editManifest(d, (m) => { delete m.early_warning; }));
    dirs.push(plain);
    const rec = await Recommender.load(plain);
    const events = fixture.learners[0].events.slice(0, 3);
    assert.equal((await rec.recommend(events)).risk, undefined);
    await assert.rejects(rec.risk(events), (err) => err instanceof NoEarlyWarning && /no early-warning model/.test(err.message));
    const hasRisk = loadBundle(BUNDLE).riskBytes !== null;
    const tampered = tmpBundle((d) => {
      if (!hasRisk) { // give the plain bundle a section whose file is not there
        editManifest(d, (m) => { m.early_warning = { file: 'risk.onnx', sha256: '0'.repeat(64), targets: [{ name: 'dropout' }], inputs: { obs: ['batch', m.observation.size] }, outputs: { risk: ['batch', 1] } }; });
        return;
      }
      const p = path.join(d, 'risk.onnx');
      const bytes = readFileSync(p);
      bytes[bytes.length - 5] ^= 0xff;
      writeFileSync(p, bytes);
    });
    dirs.push(tampered);
    assert.throws(() => loadBundle(tampered), (err) => err instanceof BundleError && (hasRisk ? /risk\.onnx: sha256/ : /missing risk\.onnx/).test(err.message));
    const badShape = tmpBundle((d) => editManifest(d, (m) => {
      m.early_warning = { ...(m.early_warning ?? { file: 'risk.onnx', sha256: '0'.repeat(64), targets: [{ name: 'dropout' }] }), outputs: { risk: ['batch', 7] }, inputs: { obs: ['batch', m.observation.size] } };
    }));
    dirs.push(badShape);
    assert.throws(() => loadBundle(badShape), (err) => err instanceof BundleError && /early_warning\.outputs/.test(err.message));
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});
