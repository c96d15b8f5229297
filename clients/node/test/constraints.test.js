// node --test: teacher constraints (only, exclude, pin, forbid_skills, review_skills, daily_minutes)
// give the Python runtime's answers and errors on the committed fixture (test/make_fixture.py
// writes fixtures/constraints.json from the bundle and parity.json's learners).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { ConstraintError, DailyCapReached, Recommender } from '../src/index.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const read = (name) => JSON.parse(readFileSync(path.join(FIXTURES, name), 'utf8'));
const { learners } = read('parity.json');
const { cases } = read('constraints.json');
const eventsOf = (c) => learners[c.learner].events.slice(0, c.n_events);
const where = (c) => `${c.name} (learner ${c.learner} after ${c.n_events} events): ${JSON.stringify(c.constraints)}`;

test('every constraint case gives the Python runtime\'s item, eligible items or error message', async () => {
  const rec = await Recommender.load(path.join(FIXTURES, 'bundle'));
  assert.ok(cases.length > 200);
  for (const c of cases) {
    const call = rec.recommend(eventsOf(c), { now: c.now, constraints: c.constraints });
    if (c.expected.error) {
      await assert.rejects(call, (err) => {
        assert.equal(err.name, c.expected.error, where(c));
        assert.equal(err.message, c.expected.message, where(c));
        assert.ok(err instanceof ConstraintError, where(c));
        assert.equal(err instanceof DailyCapReached, c.expected.error === 'DailyCapReached', where(c));
        return true;
      }, where(c));
      continue;
    }
    const out = await call;
    assert.equal(out.item_id, c.expected.item_id, where(c));
    assert.deepEqual(out.eligible, c.expected.eligible, where(c));
  }
});

test('each constraint kind changes the chosen item as specified', async () => {
  const rec = await Recommender.load(path.join(FIXTURES, 'bundle'));
  const skillsOf = new Map(rec.manifest.curriculum.spec.items.map((it) => [it.id, it.skills]));
  const changed = new Map();
  for (const c of cases) {
    if (c.expected.error || c.free === null) continue;
    const out = await rec.recommend(eventsOf(c), { now: c.now, constraints: c.constraints });
    const k = c.constraints;
    const has = (item, skills) => skillsOf.get(item).some((s) => skills.includes(s));
    if (k.only) assert.ok(out.eligible.every((i) => k.only.includes(i)), where(c));
    if (k.exclude) assert.ok(!k.exclude.some((i) => out.eligible.includes(i)), where(c));
    if (k.pin) assert.deepEqual([out.item_id, out.eligible], [k.pin, [k.pin]], where(c));
    if (k.forbid_skills) assert.ok(!out.eligible.some((i) => has(i, k.forbid_skills)), where(c));
    if (k.review_skills?.length) assert.ok(out.eligible.every((i) => has(i, k.review_skills)), where(c));
    assert.ok(out.eligible.includes(out.item_id), where(c));
    if (out.item_id !== c.free) changed.set(c.name, (changed.get(c.name) ?? 0) + 1);
  }
  // excluding, forbidding the skill of, pinning another or restricting away from the free choice moves it
  for (const kind of ['only', 'exclude', 'pin', 'forbid_skills', 'review_skills', 'several']) {
    assert.ok(changed.get(kind) > 0, `${kind} never changed the chosen item`);
  }
  assert.equal(changed.get('review_skills empty (ignored)'), undefined);
  assert.equal(changed.get('daily_minutes not reached'), undefined);
});

test('an infeasible set, a reached cap and malformed constraints are refused with a clear error', async () => {
  const rec = await Recommender.load(path.join(FIXTURES, 'bundle'));
  const events = learners[0].events.slice(0, 4); // about 90 s on task on 1970-01-01 (relative timestamps)
  const skills = rec.spec.skillIds;
  await assert.rejects(rec.recommend(events, { constraints: { forbid_skills: skills } }), /no item satisfies every constraint/);
  await assert.rejects(rec.recommend(events, { constraints: { daily_minutes: 1 } }),
    (err) => err instanceof DailyCapReached && /daily cap of 1 min is reached/.test(err.message));
  const nextDay = await rec.recommend(events, { constraints: { daily_minutes: 1 }, now: 86400 + 10 });
  assert.ok(nextDay.item_id);
  await assert.rejects(rec.recommend(events, { constraints: { pin: 'a1', exclude: ['a1'] } }), /excluded by another constraint/);
  await assert.rejects(rec.recommend(events, { constraints: { review_skills: ['nope'] } }), /unknown skill\(s\) \['nope'\]/);
  await assert.rejects(rec.recommend(events, { constraints: { daily_minutes: Infinity } }), /positive number of minutes/);
});
