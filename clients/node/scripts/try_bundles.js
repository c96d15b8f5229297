#!/usr/bin/env node
// For tests/test_reliability_bundles.py: load each bundle of a JSON list of cases
// [{dir, events?}] and answer one recommendation, printing one JSON line per case:
// {"ok": true, "item_id", "action"} or {"ok": false, "error": class name, "message"}.
import { readFileSync } from 'node:fs';

import { Recommender } from '../src/index.js';

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = [];
for (const c of cases) {
  try {
    const rec = await Recommender.load(c.dir, { expectSha256: c.expect_sha256 ?? null });
    const r = await rec.recommend(c.events ?? [], { constraints: c.constraints ?? null });
    out.push({ ok: true, item_id: r.item_id, action: r.action });
  } catch (err) {
    out.push({ ok: false, error: err.name, message: err.message });
  }
}
console.log(JSON.stringify(out));
