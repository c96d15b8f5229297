#!/usr/bin/env node
// pedagogym-recommend BUNDLE_DIR [EVENTS.json]  (events from the file, or stdin) -> JSON answer
import { readFileSync } from 'node:fs';

import { Recommender } from './index.js';

const [dir, file] = process.argv.slice(2);
if (!dir) {
  console.error('usage: pedagogym-recommend BUNDLE_DIR [EVENTS.json]   (a JSON list of events, or {"events": [...], "now"?, "constraints"?, "explain"?})');
  process.exit(2);
}
try {
  const body = JSON.parse(readFileSync(file ?? 0, 'utf8'));
  const req = Array.isArray(body) ? { events: body } : body;
  const rec = await Recommender.load(dir);
  const out = await rec.recommend(req.events, {
    constraints: req.constraints ?? null, now: req.now ?? null, learnerId: req.learner_id ?? null, explain: req.explain ?? false,
  });
  console.log(JSON.stringify(out));
} catch (err) {
  console.error(`pedagogym-recommend: error: ${err.message}`);
  process.exit(2);
}
