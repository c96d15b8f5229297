"""Learning algorithms behind one interface, kept in the ``AGENTS`` registry.

    algo.train(config, ctx)              # train or resume into ctx.out (a RunContext)
    algo.load_policy(run_dir, manifest, index) -> Policy

``jax_ppo`` trains every agent (seeds x sweep) in one vmapped, jitted call per chunk;
the ``sb3_*`` algorithms train their agents one after another through the SB3 VecEnv
adapter (see :mod:`pedagogym.agents.sb3_agents`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import jax
import numpy as np

from pedagogym.agents.checkpoint import (CheckpointError, checkpoint_name, latest_checkpoint, load_pytree, prune,
                                         save_pytree, verify)
from pedagogym.agents.config import TrainConfig
from pedagogym.agents.run import RunContext, read_curves, write_run_manifest
from pedagogym.policies.base import Policy

POLICY_FILE = "policy.msgpack"


class Algorithm(ABC):
    """A training algorithm (JAX PPO, an SB3 algorithm): trains a run, loads its agents."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def train(self, config: TrainConfig, ctx: RunContext) -> None:
        """Train every agent of ``config`` into ``ctx.run_dir`` (resuming from its checkpoints)."""

    @abstractmethod
    def load_policy(self, run_dir: Path, manifest: dict[str, Any], index: int) -> Policy:
        """Agent ``index`` of a finished run as a :class:`Policy`."""


def _bar(ctx: RunContext, total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="upd", disable=not ctx.progress, dynamic_ncols=True)


class JaxPPO(Algorithm):
    name = "jax_ppo"
    description = "PPO in pure JAX (PureJaxRL style): every agent (seeds x sweep) in one jitted, vmapped call"

    _batches: ClassVar[dict[tuple, Any]] = {}  # compiled functions, reused by reruns in one process

    def agent_batch(self, config: TrainConfig, built):
        from pedagogym.agents.ppo import AgentBatch, PPOTrainer

        key = (config.hash(), config.eval_learners)
        if key not in self._batches:
            self._batches[key] = AgentBatch(PPOTrainer(config, built))
        return self._batches[key]

    def train(self, config: TrainConfig, ctx: RunContext) -> None:
        batch = self.agent_batch(config, ctx.built)
        trainer = batch.trainer
        agents = config.agents()
        ident = ctx.identity
        template = jax.eval_shape(batch.initial_state)
        ckpt = latest_checkpoint(ctx.ckpt_dir, "ckpt", ".msgpack")
        if ckpt is not None:
            meta = verify(ckpt, ident, config.to_dict())
            rs = load_pytree(ckpt, template)
            update = int(meta["update"])
            ctx.rows = [r for r in read_curves(ctx.out / "curves.csv") if r["update"] <= update]
            ctx.resumed_from = {"checkpoint": str(ckpt.relative_to(ctx.out)), "update": update}
        else:
            rs = batch.initial_state()
            update = 0
            res = jax.device_get(batch.evaluate(rs, config.eval_learners, config.eval_seed))
            ctx.log(ctx.eval_rows(agents, 0, 0, res, None), update=0, env_steps=0, checkpoint=None)
        bar = _bar(ctx, config.num_updates, update, f"{config.name} jax_ppo x{len(agents)}")
        chunks = 0
        while update < config.num_updates and (ctx.max_chunks is None or chunks < ctx.max_chunks):
            n = min(config.chunk_updates, config.num_updates - update)
            rs, metrics = batch.run(rs, n)
            res = batch.evaluate(rs, config.eval_learners, config.eval_seed)
            rs, metrics, res = jax.device_get((rs, metrics, res))
            update += n
            chunks += 1
            env_steps = update * config.batch_size
            m = {k: np.asarray(v).mean(axis=1) for k, v in metrics._asdict().items()}  # [N, n] -> [N]
            eps = np.asarray(metrics.episodes).sum(axis=1)
            mean_ret = np.asarray(metrics.episode_return_sum).sum(axis=1) / np.maximum(eps, 1)
            mean_ret = np.where(eps > 0, mean_ret, np.nan)
            meta = {**ident, "config": config.to_dict(), "update": update, "env_steps_per_agent": env_steps,
                    "kind": "jax_ppo_runner_state", "n_agents": len(agents)}
            # order matters for resumption: curves and policy first, the checkpoint commits
            ctx.add_rows(ctx.eval_rows(agents, update, env_steps, res, m, eps, mean_ret))
            save_pytree(ctx.out / POLICY_FILE, {"params": rs.params, "obs_norm": rs.obs_norm},
                        {**meta, "kind": "jax_ppo_policy", "network": trainer.spec.to_dict(),
                         "normalize_obs": config.normalize_obs, "agents": agents})
            ckpt = save_pytree(ctx.ckpt_dir / checkpoint_name("ckpt", update, ".msgpack"), rs, meta)
            prune(ctx.ckpt_dir, "ckpt", ".msgpack", config.keep_checkpoints)
            write_run_manifest(ctx, update=update, env_steps=env_steps, checkpoint=ckpt,
                               complete=update >= config.num_updates)
            bar.update(n)
            bar.set_postfix_str(f"post-test {np.mean(res.post_test):.3f}")
        bar.close()

    def load_policy(self, run_dir: Path, manifest: dict[str, Any], index: int) -> Policy:
        from pedagogym.agents.networks import NetworkSpec, ObsNorm
        from pedagogym.agents.policy import TrainedPolicy

        path = Path(run_dir) / POLICY_FILE
        meta = verify(path)
        spec = NetworkSpec.from_dict(meta["network"])
        n = int(meta["n_agents"])
        if not 0 <= index < n:
            raise CheckpointError(f"{path}: agent {index} requested, the run has agents 0..{n - 1}")
        keys = jax.numpy.zeros((n, 2), jax.numpy.uint32)
        template = jax.eval_shape(lambda ks: {"params": jax.vmap(spec.init_params)(ks),
                                              "obs_norm": jax.vmap(lambda _: ObsNorm.initial(spec.obs_size))(ks)}, keys)
        tree = load_pytree(path, template)
        pick = jax.tree.map(lambda x: np.asarray(x[index]), tree)
        norm = ObsNorm(*pick["obs_norm"]) if meta.get("normalize_obs", True) else None
        return TrainedPolicy(spec, pick["params"], norm, deterministic=True,
                             tag=f"{Path(run_dir).resolve()}#{index}@{meta['sha256'][:16]}")
