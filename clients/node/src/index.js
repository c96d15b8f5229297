// pedagogym-client: run an exported pedagogym policy bundle from Node.js.
//
//   import { Recommender } from 'pedagogym-client';
//   const rec = await Recommender.load('bundle/');          // verifies format, whole-bundle hash, files and numbers
//   const { item_id, scores, risk } = await rec.recommend(events);   // risk: bundles exported with --early-warning
//   const { dropout, not_mastered } = await rec.risk(events);
export {
  BUNDLE_HASH_KEY, BundleError, FORMAT, FORMAT_VERSION, bundleDigest, checkEarlyWarning, checkManifest, checkNumbers, curriculumHash,
  loadBundle, readBundleFile, sealManifest,
} from './bundle.js';
export { EventError, parseEvents, parseTimestamp } from './events.js';
export { EXPLAIN_KEYS, ExplainError, Explainer, parseExplainOptions } from './explain.js';
export { actionMask, featureNames, featureSpec, featurize, itemsUnlocked, prerequisiteMet, replay, skillsUnlocked } from './features.js';
export { CONSTRAINT_KEYS, ConstraintError, DailyCapReached, NoEarlyWarning, Recommender, SESSION_OPTIONS } from './recommender.js';
