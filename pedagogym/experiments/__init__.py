"""The experiment runner: policies x envs x student models x populations x seeds."""
from pedagogym.experiments.config import ExperimentConfig, ExperimentConfigError, experiment_from_dict, load_experiment
from pedagogym.policies.rollout import EpisodeResult, evaluate, learner_keys
from pedagogym.experiments.runner import run_experiment

__all__ = ["ExperimentConfig", "ExperimentConfigError", "EpisodeResult", "evaluate", "experiment_from_dict",
           "learner_keys", "load_experiment", "run_experiment"]
