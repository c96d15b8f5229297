// Loading and verifying a bundle (manifest.json + policy.onnx [+ risk.onnx]), as pedagogym/deploy/bundle.py.
import { createHash } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';

import { featureNames, schemaMismatch } from './features.js';
import { pyCanonical } from './pyjson.js';

export const FORMAT = 'pedagogym.policy-bundle';
export const FORMAT_VERSION = 2; // 2: bundle_sha256 (whole-bundle hash); format 1 bundles are refused
export const BUNDLE_HASH_KEY = 'bundle_sha256';
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
const MAX_MODEL_BYTES = 1024 * 1024 * 1024;

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
  if (v < FORMAT_VERSION) {
    throw new BundleError(`${where}: bundle format version ${v} has no whole-bundle hash and is no longer trusted; re-export it with this pedagogym (format ${FORMAT_VERSION})`);
  }
  if (typeof m.pedagogym_version !== 'string') throw new BundleError(`${where}: key 'pedagogym_version' missing or not a str`);
  for (const k of KEYS) {
    if (m[k] === null || typeof m[k] !== 'object' || Array.isArray(m[k])) throw new BundleError(`${where}: key '${k}' missing or not a dict`);
  }
  const spec = m.curriculum.spec;
  if (!isObject(spec) || !Array.isArray(spec.items) || !Array.isArray(spec.skills)) {
    throw new BundleError(`${where}: curriculum.spec must hold the curriculum's skills and items`);
  }
  checkNumbers(m, where);
  if (m.model.file !== undefined && typeof m.model.file !== 'string') throw new BundleError(`${where}: model.file: expected a file name`);
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
const isFinite = (v) => typeof v === 'number' && Number.isFinite(v);
const isStr = (v) => typeof v === 'string';

/** The curriculum spec's shape and the observer / env / sessions numbers (check_numbers in bundle.py). */
export function checkNumbers(m, where) {
  const { skills, items } = m.curriculum.spec;
  if (!skills.length || !skills.every((s) => isObject(s) && isStr(s.id) && s.id)) {
    throw new BundleError(`${where}: curriculum.spec.skills: expected a non-empty list of objects with string ids`);
  }
  const skillIds = skills.map((s) => s.id);
  if (new Set(skillIds).size !== skillIds.length) throw new BundleError(`${where}: curriculum.spec.skills: duplicate skill ids`);
  const known = new Set(skillIds);
  skills.forEach((s, k) => {
    const pre = s.prerequisites === undefined ? [] : s.prerequisites;
    if (!Array.isArray(pre) || !pre.every((p) => isStr(p) && known.has(p))) {
      throw new BundleError(`${where}: curriculum.spec.skills[${k}].prerequisites: expected a list of known skill ids`);
    }
  });
  if (!items.length || !items.every((it) => isObject(it) && isStr(it.id) && it.id)) {
    throw new BundleError(`${where}: curriculum.spec.items: expected a non-empty list of objects with string ids`);
  }
  const itemIds = items.map((it) => it.id);
  if (new Set(itemIds).size !== itemIds.length) throw new BundleError(`${where}: curriculum.spec.items: duplicate item ids`);
  items.forEach((it, k) => {
    if (!Array.isArray(it.skills) || !it.skills.length || !it.skills.every((x) => isStr(x) && known.has(x))) {
      throw new BundleError(`${where}: curriculum.spec.items[${k}].skills: expected a non-empty list of known skill ids`);
    }
    if (it.kind !== undefined && !isStr(it.kind)) throw new BundleError(`${where}: curriculum.spec.items[${k}].kind: expected a string`);
  });
  const kinds = m.curriculum.observed_kinds;
  if (!Array.isArray(kinds) || !kinds.every(isStr)) throw new BundleError(`${where}: curriculum.observed_kinds: expected a list of strings`);
  for (const key of ['p_init', 'p_learn', 'p_forget', 'p_guess', 'p_slip']) {
    const v = m.observer[key];
    if (!Array.isArray(v) || v.length !== skills.length || !v.every((x) => isFinite(x) && x >= 0 && x <= 1)) {
      throw new BundleError(`${where}: observer.${key}: expected ${skills.length} probabilities in [0, 1] (one per skill)`);
    }
  }
  const env = m.env;
  if (!(Number.isInteger(env.horizon) && env.horizon >= 1 && env.horizon <= 1e9)) {
    throw new BundleError(`${where}: env.horizon: expected an integer from 1 to 1e9`);
  }
  if (!(isFinite(env.session_s) && env.session_s > 0 && env.session_s <= 1e9)) {
    throw new BundleError(`${where}: env.session_s: expected a finite number of seconds > 0`);
  }
  if (!(isFinite(env.unlock_threshold) && env.unlock_threshold >= 0 && env.unlock_threshold <= 1)) {
    throw new BundleError(`${where}: env.unlock_threshold: expected a number in [0, 1]`);
  }
  if (!Array.isArray(env.item_available) || env.item_available.length !== items.length
      || !env.item_available.every((x) => typeof x === 'boolean')) {
    throw new BundleError(`${where}: env.item_available: expected ${items.length} booleans (one per item)`);
  }
  const gap = m.sessions.idle_gap_s === undefined ? 1800.0 : m.sessions.idle_gap_s;
  if (!(isFinite(gap) && gap > 0)) throw new BundleError(`${where}: sessions.idle_gap_s: expected a finite number of seconds > 0`);
}

/** The bytes of dir/name: a plain file name inside the bundle folder, and a regular file (no symlink,
 * FIFO, socket or device: opened with O_NOFOLLOW | O_NONBLOCK and checked with fstat). */
export function readBundleFile(dir, name, what, limit = MAX_MODEL_BYTES) {
  if (!isStr(name) || !name || name === '.' || name === '..' || name.includes('/') || name.includes('\\') || name.includes('\0')) {
    throw new BundleError(`${dir}: ${what}: expected a file name inside the bundle folder, got ${JSON.stringify(name)}`);
  }
  const p = path.join(dir, name);
  let fd;
  try {
    fd = openSync(p, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0));
  } catch (err) {
    if (err.code === 'ENOENT') throw new BundleError(`${dir}: missing ${name} (${what})`);
    let link = false;
    try { link = lstatSync(p).isSymbolicLink(); } catch { /* gone */ }
    throw new BundleError(`${p}: ${what} is ${link ? 'a symbolic link' : `unreadable (${err.code})`}; a bundle holds regular files only`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new BundleError(`${p}: ${what} is not a regular file (a FIFO, device, socket or folder); a bundle holds regular files only`);
    if (st.size > limit) throw new BundleError(`${p}: ${what} is ${st.size} bytes, more than the limit of ${limit}`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < st.size) {
      const n = readSync(fd, buf, off, st.size - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/** The bytes of manifest.json for the object `m`, with bundle_sha256 filled in (seal_manifest in bundle.py;
 * the hash is over the bytes, so any JSON layout seals). */
export function sealManifest(m) {
  const copy = { ...m, [BUNDLE_HASH_KEY]: '0'.repeat(64) };
  const raw = Buffer.from(`${JSON.stringify(copy, null, 1)}\n`, 'utf8');
  const digest = sha256(raw);
  const at = raw.indexOf(Buffer.from(`"${BUNDLE_HASH_KEY}": "${'0'.repeat(64)}"`, 'utf8'));
  raw.write(digest, at + BUNDLE_HASH_KEY.length + 5, 'latin1');
  return raw;
}

/** Check the whole-bundle hash of the manifest bytes (bundle_digest in bundle.py); returns it. */
export function bundleDigest(raw, m, where) {
  const claimed = m[BUNDLE_HASH_KEY];
  if (!isStr(claimed) || !/^[0-9a-f]{64}$/.test(claimed)) {
    throw new BundleError(`${where}: ${BUNDLE_HASH_KEY} missing or not 64 lowercase hex digits; re-export the bundle`);
  }
  const needle = Buffer.from(claimed, 'latin1');
  let count = 0;
  for (let at = raw.indexOf(needle); at >= 0; at = raw.indexOf(needle, at + 1)) count++;
  if (count !== 1) throw new BundleError(`${where}: ${BUNDLE_HASH_KEY} must appear exactly once in the manifest`);
  const copy = Buffer.from(raw);
  copy.fill('0', raw.indexOf(needle), raw.indexOf(needle) + 64);
  const digest = sha256(copy);
  if (digest !== claimed) {
    throw new BundleError(`${where}: the manifest's content does not match its ${BUNDLE_HASH_KEY} (sha256 ${digest}); the manifest was edited or corrupted; re-export the bundle`);
  }
  return claimed;
}

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

/** {dir, manifest, modelBytes, riskBytes (null without early warning), sha256} after every check;
 * expectSha256: the bundle_sha256 the bundle must have (pinning). */
export function loadBundle(dir, { expectSha256 = null } = {}) {
  const mpath = path.join(dir, 'manifest.json');
  let isLink = false;
  try { isLink = lstatSync(mpath).isSymbolicLink(); } catch { /* missing */ }
  if (!existsSync(mpath) && !isLink) throw new BundleError(`${dir}: no manifest.json; is this a bundle written by \`pedagogym export\`?`);
  const raw = readBundleFile(dir, 'manifest.json', 'the manifest', MAX_MANIFEST_BYTES);
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch (err) {
    throw new BundleError(`${mpath}: not valid JSON: ${err.message}`);
  }
  if (!isObject(manifest)) throw new BundleError(`${mpath}: expected a JSON object`);
  checkManifest(manifest, mpath);
  const sha = bundleDigest(raw, manifest, mpath);
  if (expectSha256 !== null && sha !== String(expectSha256).trim().toLowerCase()) {
    throw new BundleError(`${mpath}: bundle_sha256 is ${sha}, not the expected ${expectSha256}; this is not the bundle that was exported`);
  }
  const modelName = manifest.model.file ?? 'policy.onnx';
  const modelBytes = readBundleFile(dir, modelName, 'model.file');
  const digest = sha256(modelBytes);
  if (digest !== manifest.model.sha256) {
    throw new BundleError(`${path.join(dir, modelName)}: sha256 ${digest} does not match the manifest's ${manifest.model.sha256}; the model file was modified or replaced; re-export the bundle`);
  }
  let riskBytes = null;
  const ew = manifest.early_warning;
  if (ew !== undefined && ew !== null) {
    riskBytes = readBundleFile(dir, ew.file, 'early_warning.file');
    const d = sha256(riskBytes);
    if (d !== ew.sha256) {
      throw new BundleError(`${path.join(dir, ew.file)}: sha256 ${d} does not match the manifest's early_warning.sha256 ${ew.sha256}; the early-warning model was modified or replaced; re-export the bundle`);
    }
  }
  return { dir, manifest, modelBytes, riskBytes, sha256: sha };
}
