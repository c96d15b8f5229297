// pedagogym-client: run an exported pedagogym policy bundle from Node.js.
//
//   import { Recommender } from 'pedagogym-client';
//   const rec = await Recommender.load('bundle/');          // verifies format version and model sha256
//   const { item_id, scores } = await rec.recommend(events);
export { BundleError, FORMAT, FORMAT_VERSION, checkManifest, curriculumHash, loadBundle } from './bundle.js';
export { EventError, parseEvents, parseTimestamp } from './events.js';
export { EXPLAIN_KEYS, ExplainError, Explainer, parseExplainOptions } from './explain.js';
export { actionMask, featureNames, featureSpec, featurize, itemsUnlocked, prerequisiteMet, replay, skillsUnlocked } from './features.js';
export { CONSTRAINT_KEYS, ConstraintError, DailyCapReached, Recommender, SESSION_OPTIONS } from './recommender.js';
