// node --test: explanations (recommend(events, {explain})) equal the Python runtime's on the
// committed fixture (test/make_fixture.py writes fixtures/explain.json): every field, every text;
// numbers from the model (scores, gaps, effects) to 1e-5, the rest exactly.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  ExplainError, Recommender, curriculumHash, parseExplainOptions, sealManifest,
} from '../src/index.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const read = (name) => JSON.parse(readFileSync(path.join(FIXTURES, name), 'utf8'));
const { learners } = read('parity.json');
const fixture = read('explain.json');
const ATOL = fixture.tolerance.numbers_atol;

/** Differences between two JSON values: numbers within ATOL, everything else equal. */
function diff(got, want, at = 'explanation', out = []) {
  if (typeof got === 'number' && typeof want === 'number') {
    if (!(Math.abs(got - want) <= ATOL)) out.push(`${at}: ${got} != ${want}`);
  } else if (got === null || want === null || typeof got !== 'object' || typeof want !== 'object') {
    if (got !== want) out.push(`${at}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
  } else if (Array.isArray(got) !== Array.isArray(want)) {
    out.push(`${at}: array vs object`);
  } else {
    const keys = Array.isArray(want) ? [...Array(Math.max(got.length, want.length)).keys()] : [...new Set([...Object.keys(got), ...Object.keys(want)])];
    for (const k of keys) diff(got[k], want[k], `${at}.${k}`, out);
  }
  return out;
}

const eventsOf = (c) => c.events ?? learners[c.learner].events.slice(0, c.n_events);

test('explanations equal the Python runtime\'s, field for field and text for text', async () => {
  const rec = await Recommender.load(path.join(FIXTURES, 'bundle'));
  assert.ok(fixture.cases.length > 80);
  const seen = new Set();
  for (const c of fixture.cases) {
    const where = `${c.name} (${c.learner ?? 'constructed'}, ${JSON.stringify(c.constraints)}, explain ${JSON.stringify(c.explain)})`;
    const out = await rec.recommend(eventsOf(c), { now: c.now, constraints: c.constraints, explain: c.explain });
    assert.equal(out.item_id, c.expected.item_id, where);
    assert.deepEqual(out.eligible, c.expected.eligible, where);
    const problems = diff(out.explanation, c.expected.explanation);
    assert.deepEqual(problems, [], where);
    seen.add(c.name);
  }
  for (const name of ['constraint exclude', 'constraint pin', 'constraint several', 'failing skill a', 'new learner']) {
    assert.ok(seen.has(name), name);
  }
});

test('the explanation when every item is locked by prerequisites (the mask falls back to all)', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pedagogym-locked-'));
  try {
    cpSync(path.join(FIXTURES, 'bundle'), dir, { recursive: true });
    const mpath = path.join(dir, 'manifest.json');
    const m = JSON.parse(readFileSync(mpath, 'utf8'));
    m.curriculum.spec.skills.find((s) => s.id === fixture.locked_edit.skill).prerequisites = fixture.locked_edit.prerequisites;
    m.curriculum.content_hash = curriculumHash(m.curriculum.spec);
    writeFileSync(mpath, sealManifest(m)); // re-sealed: the edit is the test's, not tampering
    const rec = await Recommender.load(dir);
    for (const c of fixture.locked_cases) {
      const out = await rec.recommend(c.events, { now: c.now, explain: c.explain });
      assert.equal(out.explanation.chosen.unlocked, false);
      assert.deepEqual(diff(out.explanation, c.expected.explanation), [], c.name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('malformed explain values throw ExplainError with the Python message; false and null explain nothing', async () => {
  const rec = await Recommender.load(path.join(FIXTURES, 'bundle'));
  const events = learners[0].events.slice(0, 3);
  assert.ok(fixture.bad_explain.length >= 10);
  for (const b of fixture.bad_explain) {
    await assert.rejects(rec.recommend(events, { explain: b.explain }), (err) => {
      assert.ok(err instanceof ExplainError, JSON.stringify(b.explain));
      assert.equal(err.message, b.expected.message);
      return true;
    });
  }
  for (const off of [false, null, undefined]) {
    assert.equal('explanation' in await rec.recommend(events, { explain: off }), false);
  }
  assert.deepEqual(parseExplainOptions(true), { top_k: 3, top_features: 3, review_after_days: 1, max_review: 5 });
  assert.deepEqual(parseExplainOptions({ top_k: 0 }), { top_k: 0, top_features: 3, review_after_days: 1, max_review: 5 });
});
