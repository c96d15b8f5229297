// Loading and verifying a bundle (manifest.json + policy.onnx), as pedagogym/deploy/bundle.py.
import { createHash } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';

import { featureNames } from './features.js';
import { pyCanonical } from './pyjson.js';

export const FORMAT = 'pedagogym.policy-bundle';
export const FORMAT_VERSION = 1;

export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BundleError';
  }
}

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

export function curriculumHash(spec) {
  return sha256(Buffer.from(pyCanonical(spec), 'utf8'));
}

const KEYS = ['policy', 'model', 'observation', 'actions', 'curriculum', 'observer', 'env', 'sessions', 'training'];

export function checkManifest(m, where = 'manifest.json') {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new BundleError(`${where}: expected a JSON object`);
  if (m.format !== FORMAT) throw new BundleError(`${where}: format is ${JSON.stringify(m.format)}, expected '${FORMAT}': not a pedagogym policy bundle`);
  const v = m.format_version;
  if (!Number.isInteger(v)) throw new BundleError(`${where}: format_version must be an integer, got ${JSON.stringify(v)}`);
  if (v > FORMAT_VERSION) {
    throw new BundleError(`${where}: bundle format version ${v} is newer than this client supports (${FORMAT_VERSION}); upgrade pedagogym-client (exported by pedagogym ${m.pedagogym_version})`);
  }
  if (v < 1) throw new BundleError(`${where}: unknown bundle format version ${v}`);
  for (const k of KEYS) {
    if (m[k] === null || typeof m[k] !== 'object' || Array.isArray(m[k])) throw new BundleError(`${where}: key '${k}' missing or not an object`);
  }
  const spec = m.curriculum.spec;
  if (!spec || !Array.isArray(spec.items) || !Array.isArray(spec.skills)) {
    throw new BundleError(`${where}: curriculum.spec must hold the curriculum's skills and items`);
  }
  if (curriculumHash(spec) !== m.curriculum.content_hash) {
    throw new BundleError(`${where}: curriculum.content_hash does not match the embedded curriculum spec (the manifest was edited or corrupted)`);
  }
  const itemIds = spec.items.map((it) => it.id);
  if (JSON.stringify(m.actions.item_ids) !== JSON.stringify(itemIds)) throw new BundleError(`${where}: actions.item_ids differ from the curriculum's items`);
  if (m.observation.featurizer !== 'platform') throw new BundleError(`${where}: observation.featurizer '${m.observation.featurizer}' has no client featurizer`);
  const names = featureNames(spec.skills.map((s) => s.id), itemIds);
  if (JSON.stringify(m.observation.feature_names) !== JSON.stringify(names)) {
    throw new BundleError(`${where}: observation.feature_names differ from the 'platform' featurizer's for this curriculum`);
  }
}

/** {dir, manifest, modelBytes} after every check. */
export function loadBundle(dir) {
  const mpath = path.join(dir, 'manifest.json');
  if (!existsSync(mpath)) throw new BundleError(`${dir}: no manifest.json; is this a bundle written by \`pedagogym export\`?`);
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(mpath, 'utf8'));
  } catch (err) {
    throw new BundleError(`${mpath}: not valid JSON: ${err.message}`);
  }
  checkManifest(manifest, mpath);
  const modelPath = path.join(dir, manifest.model.file ?? 'policy.onnx');
  if (!existsSync(modelPath)) throw new BundleError(`${dir}: missing ${path.basename(modelPath)}`);
  const modelBytes = readFileSync(modelPath);
  const digest = sha256(modelBytes);
  if (digest !== manifest.model.sha256) {
    throw new BundleError(`${modelPath}: sha256 ${digest} does not match the manifest's ${manifest.model.sha256}; the model file was modified or replaced; re-export the bundle`);
  }
  return { dir, manifest, modelBytes };
}
