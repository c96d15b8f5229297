"""Learning agents: JAX PPO (PureJaxRL style) and SB3 baselines, training runs, checkpoints.

    from pedagogym.agents import load_train_config, train, load_policy
    config = load_train_config("experiments/train_ppo.toml")
    train(config, "results/train/ppo_bkt")                     # resumes if interrupted
    policy = load_policy("agent:results/train/ppo_bkt")        # a Policy, for evaluate / pedagogym run

The pure core is :func:`pedagogym.agents.ppo.make_train` (``train(key)``, jit + vmap over
seeds and hyperparameters). ``AGENTS`` maps each ``algo`` name to its algorithm.
"""
from __future__ import annotations

import re
from pathlib import Path

from pedagogym.agents.algos import Algorithm, JaxPPO
from pedagogym.agents.checkpoint import CheckpointError
from pedagogym.agents.config import ALGOS, TrainConfig, TrainConfigError, load_train_config, train_config_from_dict
from pedagogym.agents.policy import TorchLSTMPolicy, TorchMLPPolicy, TrainedPolicy
from pedagogym.agents.ppo import HParams, PPOTrainer, make_train
from pedagogym.agents.run import read_run_manifest
from pedagogym.agents.training import train
from pedagogym.agents.registry import AGENTS

AGENT_PREFIX = "agent:"
_NAME = re.compile(r"^agent:(?P<path>.+?)(?:#(?P<index>\d+|best))?$")


def is_agent_name(name: str) -> bool:
    return isinstance(name, str) and name.startswith(AGENT_PREFIX)


def parse_agent_name(name: str) -> tuple[Path, str]:
    """``agent:RUN_DIR[#K|#best]`` -> (run dir, "K" or "best"; default "0")."""
    m = _NAME.match(name)
    if not m:
        raise CheckpointError(f"{name!r}: expected 'agent:RUN_DIR', 'agent:RUN_DIR#K' or 'agent:RUN_DIR#best'")
    return Path(m.group("path")), m.group("index") or "0"


def _best_index(manifest: dict, run_dir: Path) -> int:
    scores = manifest.get("final_eval_post_test") or {}
    if not scores:
        raise CheckpointError(f"{run_dir / 'manifest.json'}: no evaluation yet, cannot pick the best agent")
    return int(max(scores, key=lambda k: scores[k]))


def load_policy(name: str, built=None):
    """The trained agent ``agent:RUN_DIR[#K|#best]`` as a :class:`~pedagogym.policies.base.Policy`.

    ``#best`` picks the agent with the highest post-test in the run's last learning-curve
    evaluation (learners other than those of ``pedagogym run``, but still a selection: report
    it as such). With ``built`` (a :class:`pedagogym.envs.BuiltEnv`), checks that the agent
    was trained on observations and actions of the same sizes."""
    run_dir, which = parse_agent_name(name)
    manifest = read_run_manifest(run_dir)
    index = _best_index(manifest, run_dir) if which == "best" else int(which)
    if built is not None:
        check_compatible(name, manifest, built)
    return AGENTS.get(manifest["algo"]).load_policy(run_dir, manifest, index)


def check_compatible(name: str, manifest: dict, built) -> None:
    obs, n_act = int(built.env.obs_size(built.params)), int(built.env.n_actions(built.params))
    if (manifest.get("obs_size"), manifest.get("n_actions")) != (obs, n_act):
        raise CheckpointError(
            f"{name}: trained on {manifest.get('env_id')} with obs size {manifest.get('obs_size')} and "
            f"{manifest.get('n_actions')} actions; this env has obs size {obs} and {n_act} actions")


def check_agent(name: str, built=None) -> None:
    """Raise :class:`CheckpointError` (naming the file) unless ``name`` loads (used by configs)."""
    load_policy(name, built)


__all__ = ["AGENTS", "ALGOS", "Algorithm", "CheckpointError", "HParams", "PPOTrainer", "TrainConfig", "TrainConfigError",
           "TorchLSTMPolicy", "TorchMLPPolicy", "TrainedPolicy", "check_agent", "check_compatible", "is_agent_name",
           "load_policy", "load_train_config", "make_train", "parse_agent_name", "read_run_manifest", "train",
           "train_config_from_dict"]
