// Loading and verifying a bundle (manifest.json + policy.onnx [+ risk.onnx]), as pedagogym/deploy/bundle.py.
import { createHash } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';

import { featureNames, schemaMismatch } from './features.js';
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
  const mismatch = schemaMismatch(m.observation);
  if (mismatch) throw new BundleError(`${where}: ${mismatch}; export the bundle again with this version`);
  const names = featureNames(spec.skills.map((s) => s.id), itemIds);
  if (JSON.stringify(m.observation.feature_names) !== JSON.stringify(names)) {
    throw new BundleError(`${where}: observation.feature_names differ from the 'platform' featurizer's for this curriculum`);
  }
  if (m.early_warning !== undefined && m.early_warning !== null) checkEarlyWarning(m.early_warning, names.length, where);
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The optional early_warning section (check_early_warning in pedagogym/deploy/bundle.py). */
export function checkEarlyWarning(ew, nFeatures, where = 'manifest.json') {
  const at = `${where}: early_warning`;
  if (!isObject(ew)) throw new BundleError(`${at}: expected an object`);
  for (const [key, kind] of [['file', 'string'], ['sha256', 'string'], ['targets', 'list'], ['inputs', 'object'], ['outputs', 'object']]) {
    const v = ew[key];
    const ok = kind === 'string' ? typeof v === 'string' : kind === 'list' ? Array.isArray(v) : isObject(v);
    if (!ok) throw new BundleError(`${at}: key '${key}' missing or not a ${kind === 'string' ? 'str' : kind === 'list' ? 'list' : 'dict'}`);
  }
  const names = ew.targets.map((t) => (isObject(t) ? t.name : null));
  if (!names.length || !names.every((n) => typeof n === 'string' && n) || new Set(names).size !== names.length) {
    throw new BundleError(`${at}.targets: expected a non-empty list of objects with distinct names`);
  }
  if (JSON.stringify(ew.inputs) !== JSON.stringify({ obs: ['batch', nFeatures] })) {
    throw new BundleError(`${at}.inputs: expected {'obs': ['batch', ${nFeatures}]} (the observation), got ${JSON.stringify(ew.inputs)}`);
  }
  if (JSON.stringify(ew.outputs) !== JSON.stringify({ risk: ['batch', names.length] })) {
    throw new BundleError(`${at}.outputs: expected {'risk': ['batch', ${names.length}]} (one probability per target), got ${JSON.stringify(ew.outputs)}`);
  }
  if (ew.file.includes('/') || ew.file.includes('\\') || ['', '.', '..'].includes(ew.file)) {
    throw new BundleError(`${at}.file: expected a file name inside the bundle, got '${ew.file}'`);
  }
}

/** {dir, manifest, modelBytes, riskBytes (null without early warning)} after every check. */
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
  let riskBytes = null;
  const ew = manifest.early_warning;
  if (ew !== undefined && ew !== null) {
    const riskPath = path.join(dir, ew.file);
    if (!existsSync(riskPath)) throw new BundleError(`${dir}: missing ${ew.file} (the manifest's early_warning model)`);
    riskBytes = readFileSync(riskPath);
    const d = sha256(riskBytes);
    if (d !== ew.sha256) {
      throw new BundleError(`${riskPath}: sha256 ${d} does not match the manifest's early_warning.sha256 ${ew.sha256}; the early-warning model was modified or replaced; re-export the bundle`);
    }
  }
  return { dir, manifest, modelBytes, riskBytes };
}
