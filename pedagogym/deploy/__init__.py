"""Deployment runtime for exported policy bundles: numpy + onnxruntime only (no JAX, no PyTorch).

    from pedagogym.deploy import Recommender
    rec = Recommender("bundle/")                 # verifies format version and model hash
    rec.recommend(events)                        # -> {"item_id", "action", "scores", ..., "risk"?}
    rec.recommend(events, explain=True)          # ... + "explanation": why this item, in plain terms
    rec.risk(events)                             # -> {"dropout": p, "not_mastered": p} (bundles with early warning)

A bundle is what ``pedagogym export`` writes: ``policy.onnx`` and ``manifest.json``. The
featurizer (:mod:`pedagogym.deploy.features`) turns a learner's event log into the exact
observation the policy saw in the simulator. The HTTP service is
:mod:`pedagogym.deploy.server` (``pedagogym serve``; needs the ``serve`` extra).
"""
from pedagogym.deploy.bundle import FORMAT, FORMAT_VERSION, Bundle, BundleError, load_bundle
from pedagogym.deploy.events import Event, EventError, parse_events, parse_timestamp
from pedagogym.deploy.explain import ExplainError, ExplainOptions
from pedagogym.deploy.features import FeatureSpec, LearnerState, action_mask, feature_names, featurize, replay
from pedagogym.deploy.recommender import ConstraintError, DailyCapReached, NoEarlyWarning, Recommender

__all__ = ["FORMAT", "FORMAT_VERSION", "Bundle", "BundleError", "ConstraintError", "DailyCapReached", "Event",
           "EventError", "ExplainError", "ExplainOptions", "FeatureSpec", "LearnerState", "NoEarlyWarning", "Recommender",
           "action_mask", "feature_names", "featurize", "load_bundle", "parse_events", "parse_timestamp", "replay"]
