#!/usr/bin/env node
// Per-decision latency of the Node client at batch 1, printed as JSON.
//   node bench/latency.js BUNDLE_DIR [INPUTS.json] [N]
// INPUTS.json (optional): {"obs": [[...D], ...], "mask": [[0/1 ...I], ...], "events": [...one learner's log...]}
// Without it, inputs are the fixture's decision points.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Recommender } from '../src/index.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const [dir = path.join(HERE, '..', 'test', 'fixtures', 'bundle'), inputsPath = null, nArg = '20000'] = process.argv.slice(2);
const N = Number(nArg);

function quantiles(ns) {
  const s = Float64Array.from(ns).sort();
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))] / 1000; // microseconds
  return { p50_us: q(0.5), p90_us: q(0.9), p99_us: q(0.99), n: s.length };
}

const rec = await Recommender.load(dir);
let obs;
let mask;
let events;
if (inputsPath) {
  const inp = JSON.parse(readFileSync(inputsPath, 'utf8'));
  obs = inp.obs.map((o) => Float32Array.from(o));
  mask = inp.mask.map((m) => Uint8Array.from(m));
  events = inp.events ?? [];
} else {
  const fx = JSON.parse(readFileSync(path.join(HERE, '..', 'test', 'fixtures', 'parity.json'), 'utf8'));
  obs = fx.cases.map((c) => Float32Array.from(c.expected.features));
  mask = fx.cases.map((c) => Uint8Array.from(c.expected.mask));
  events = fx.learners[0].events;
}

for (let i = 0; i < 2000; i++) await rec.decide(obs[i % obs.length], mask[i % mask.length]); // warm up
const decide = new Array(N);
for (let i = 0; i < N; i++) {
  const t0 = process.hrtime.bigint();
  await rec.decide(obs[i % obs.length], mask[i % mask.length]);
  decide[i] = Number(process.hrtime.bigint() - t0);
}
const nRec = Math.max(1, Math.floor(N / 10));
async function timed(options) {
  const out = new Array(nRec);
  for (let i = 0; i < nRec; i++) {
    const t0 = process.hrtime.bigint();
    await rec.recommend(events, options);
    out[i] = Number(process.hrtime.bigint() - t0);
  }
  return out;
}
const full = await timed({});
const explained = await timed({ explain: true });
const noAttribution = await timed({ explain: { top_features: 0 } });
console.log(JSON.stringify({
  node: process.version, onnxruntime_node: (await import('onnxruntime-node')).default.env.versions.node,
  decide_batch1: quantiles(decide), recommend_from_events: { ...quantiles(full), events: events.length },
  recommend_explained: quantiles(explained), recommend_explained_without_attribution: quantiles(noAttribution),
}));
