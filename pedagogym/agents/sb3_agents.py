"""Stable-Baselines3 agents (PPO, A2C, DQN; sb3-contrib MaskablePPO, RecurrentPPO) from the
same :class:`~pedagogym.agents.config.TrainConfig`, through the batched SB3 ``VecEnv``
adapter (:class:`pedagogym.envs.sb3.PedagogySB3VecEnv`) -- never through a second env.

Config -> SB3 arguments: ``num_steps`` -> ``n_steps``; ``num_envs * num_steps / minibatches``
-> ``batch_size`` (the minibatch size); ``epochs`` -> ``n_epochs``; ``lr`` (linearly annealed
over the whole run when ``anneal_lr``), ``gamma``, ``gae_lambda``, ``clip`` -> ``clip_range``,
``ent_coef``, ``vf_coef``, ``max_grad_norm``; ``hidden`` / ``activation`` -> ``net_arch`` /
``activation_fn``; RecurrentPPO's ``lstm_hidden_size`` is ``gru_size``. DQN takes ``lr``,
``gamma``, ``max_grad_norm``, ``hidden`` and its own defaults for the rest; anything else goes
in the ``[sb3]`` table (checked against the class's signature). Observations are not
normalised (SB3 does not by default).

Agents train one after another, each in one ``learn`` call over the whole budget (so SB3's
schedules see the true progress); a callback evaluates, logs and checkpoints (SB3's own zip
+ manifest) every ``chunk_updates * num_envs * num_steps`` env steps, at a rollout boundary.
A resumed agent reloads its latest zip and continues its step count (the env and, for DQN,
the replay buffer start afresh).

Evaluation: the agent's torch weights are copied into a JAX function
(:mod:`pedagogym.agents.policy`) and meet the learners of ``pedagogym run`` / ``evaluate``.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pedagogym.agents.algos import Algorithm
from pedagogym.agents.checkpoint import CheckpointError, checkpoint_name, latest_checkpoint, prune, verify, write_checkpoint
from pedagogym.agents.config import TrainConfig
from pedagogym.agents.run import RunContext, read_curves, write_run_manifest
from pedagogym.agents.sb3_classes import _CLASSES, _RESERVED, check_sb3_kwargs, sb3_class  # noqa: F401  (re-exported)

class LinearFromSteps:
    """Learning-rate schedule over the whole run: ``lr * (1 - progress)``, where SB3 passes
    ``progress_remaining`` of the current ``learn`` call (which spans the whole budget)."""

    def __init__(self, lr: float, anneal: bool):
        self.lr, self.anneal = lr, anneal

    def __call__(self, progress_remaining: float) -> float:
        return self.lr * progress_remaining if self.anneal else self.lr


def _mapped_kwargs(algo: str, config: TrainConfig, agent: dict[str, Any]) -> dict[str, Any]:
    import torch.nn as tnn

    act = {"tanh": tnn.Tanh, "relu": tnn.ReLU}[config.activation]
    policy_kwargs: dict[str, Any] = {"net_arch": list(config.hidden), "activation_fn": act}
    kw: dict[str, Any] = {"learning_rate": LinearFromSteps(agent["lr"], config.anneal_lr), "gamma": agent["gamma"]}
    if algo == "sb3_dqn":
        kw["learning_rate"] = agent["lr"]
        kw["max_grad_norm"] = agent["max_grad_norm"]
    else:
        kw.update(n_steps=config.num_steps, gae_lambda=agent["gae_lambda"], ent_coef=agent["ent_coef"],
                  vf_coef=agent["vf_coef"], max_grad_norm=agent["max_grad_norm"])
    if algo in ("sb3_ppo", "sb3_maskable_ppo", "sb3_recurrent_ppo"):
        kw.update(batch_size=config.batch_size // config.minibatches, n_epochs=config.epochs, clip_range=agent["clip"])
    if algo == "sb3_recurrent_ppo":
        policy_kwargs["lstm_hidden_size"] = config.gru_size
    kw["policy_kwargs"] = policy_kwargs
    return kw



# ---- evaluation of converted policies, compiled once per network shape ----------------------
@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _eval_converted(env, horizon: int, kind: str, structure: tuple, weights, params, keys):
    from pedagogym.agents.policy import TorchLSTMPolicy, TorchMLPPolicy
    from pedagogym.policies.rollout import _episode

    if kind == "mlp":
        policy = TorchMLPPolicy.from_parts(structure, weights)
    else:
        policy = TorchLSTMPolicy.from_parts(structure, weights)
    return jax.vmap(lambda k: _episode(env, policy, horizon, params, k))(keys)


def convert(model, tag: str = "<memory>"):
    """The SB3 model's policy as a JAX :class:`~pedagogym.policies.base.Policy`."""
    from pedagogym.agents.policy import TorchLSTMPolicy, TorchMLPPolicy

    if hasattr(model.policy, "lstm_actor"):
        return TorchLSTMPolicy.from_sb3(model, tag)
    return TorchMLPPolicy.from_sb3(model, tag)


def evaluate_model(model, built, n_learners: int, seed: int):
    from pedagogym.agents.policy import TorchLSTMPolicy
    from pedagogym.policies.rollout import learner_keys

    pol = convert(model)
    kind = "lstm" if isinstance(pol, TorchLSTMPolicy) else "mlp"
    structure, weights = pol.parts()
    keys = learner_keys(jax.random.PRNGKey(seed), n_learners)
    return jax.device_get(_eval_converted(built.env, built.config.horizon, kind, structure, weights, built.params, keys))


class SB3Algorithm(Algorithm):
    """One SB3 algorithm; registered once per ``algo`` name."""

    def __init__(self, algo: str, description: str):
        self.name, self.description = algo, description  # type: ignore[misc]

    def make_env(self, config: TrainConfig, built, seed: int):
        from stable_baselines3.common.vec_env import VecMonitor

        from pedagogym.envs.sb3 import PedagogySB3VecEnv

        return VecMonitor(PedagogySB3VecEnv(built, config.num_envs, seed=seed))

    def train(self, config: TrainConfig, ctx: RunContext) -> None:
        from tqdm.auto import tqdm

        agents = config.agents()
        previous = read_curves(ctx.out / "curves.csv")
        resumed = {}
        ctx.rows = []
        chunk_steps = config.chunk_updates * config.batch_size
        total = config.num_updates * config.batch_size
        bar = tqdm(total=total * len(agents), desc=f"{config.name} {self.name} x{len(agents)}", unit="step",
                   disable=not ctx.progress, dynamic_ncols=True)
        budget = [ctx.max_chunks]  # chunks left in this session (None = unlimited), shared over agents
        for a in agents:
            k = a["index"]
            prefix = f"agent{k:03d}"
            ckpt = latest_checkpoint(ctx.ckpt_dir, prefix, ".zip")
            venv = self.make_env(config, ctx.built, seed=a["seed"])
            cls = sb3_class(self.name)
            if ckpt is not None:
                meta = verify(ckpt, {**ctx.identity, "agent": k}, config.to_dict())
                try:
                    model = cls.load(ckpt, env=venv, device="cpu")
                except Exception as exc:  # noqa: BLE001 -- SB3 raises many kinds on a bad zip
                    raise CheckpointError(f"{ckpt}: cannot load the SB3 model ({type(exc).__name__}: {exc})") from None
                steps = int(meta["env_steps_per_agent"])
                ctx.rows += [r for r in previous if r["agent"] == k and r["env_steps"] <= steps]
                resumed[str(k)] = {"checkpoint": str(ckpt.relative_to(ctx.out)), "env_steps": steps}
            else:
                model = cls(_CLASSES[self.name][2], venv, seed=a["seed"], device="cpu", verbose=0,
                            **{**_mapped_kwargs(self.name, config, a), **config.sb3_kwargs_dict()})
                res = evaluate_model(model, ctx.built, config.eval_learners, config.eval_seed)
                ctx.rows += ctx.eval_rows([a], 0, 0, jax.tree.map(lambda x: x[None], res), None)
            bar.update(min(model.num_timesteps, total))
            if model.num_timesteps >= total or budget[0] == 0:
                continue
            cb = _ChunkCallback(self, config, ctx, a, chunk_steps, total, budget, bar)
            model.learn(total_timesteps=total - model.num_timesteps, callback=cb, reset_num_timesteps=ckpt is None,
                        progress_bar=False)
            if not cb.stopped:
                cb.checkpoint(final=True)
        bar.close()
        ctx.resumed_from = resumed
        last = max((r["update"] for r in ctx.rows), default=0)
        done = all(any(r["agent"] == a["index"] and r["env_steps"] >= total for r in ctx.rows) for a in agents)
        ctx.log([], update=last, env_steps=last * config.batch_size, checkpoint=None, complete=done)

    def load_policy(self, run_dir: Path, manifest: dict[str, Any], index: int):
        n = len(manifest.get("agents", []))
        ckpt = latest_checkpoint(Path(run_dir) / "checkpoints", f"agent{index:03d}", ".zip")
        if ckpt is None:
            raise CheckpointError(f"{Path(run_dir) / 'checkpoints'}: no checkpoint of agent {index} "
                                  f"(the run has agents 0..{n - 1})")
        meta = verify(ckpt)
        try:
            model = sb3_class(self.name).load(ckpt, device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{ckpt}: cannot load the SB3 model ({type(exc).__name__}: {exc})") from None
        return convert(model, tag=f"{Path(run_dir).resolve()}#{index}@{meta['sha256'][:16]}")


class _ChunkCallback:
    """Built lazily as an SB3 ``BaseCallback`` subclass (SB3 is an optional dependency)."""

    def __new__(cls, *args, **kwargs):
        from stable_baselines3.common.callbacks import BaseCallback

        class ChunkCallback(BaseCallback):
            def __init__(self, algo, config, ctx, agent, chunk_steps, total, budget, bar):
                super().__init__(verbose=0)
                self.algo, self.config, self.ctx, self.agent = algo, config, ctx, agent
                self.chunk_steps, self.total, self.budget, self.bar = chunk_steps, total, budget, bar
                self.returns: list[float] = []
                self.stopped = False
                self.next_at = None
                self.last_steps = None

            def _on_training_start(self) -> None:
                n = self.model.num_timesteps
                self.next_at = (n // self.chunk_steps + 1) * self.chunk_steps
                self.last_steps = n

            def _on_rollout_start(self) -> None:
                # here every counted step has been trained on: a consistent point to save
                if self.model.num_timesteps >= self.next_at and not self.stopped:
                    self.checkpoint()
                    self.next_at = (self.model.num_timesteps // self.chunk_steps + 1) * self.chunk_steps

            def _on_step(self) -> bool:
                for info in self.locals.get("infos", []):
                    if "episode" in info:
                        self.returns.append(float(info["episode"]["r"]))
                n = self.model.num_timesteps
                self.bar.update(max(0, min(n, self.total) - self.last_steps))
                self.last_steps = min(n, self.total)
                return not self.stopped

            def checkpoint(self, final: bool = False) -> None:
                cfg, ctx, k = self.config, self.ctx, self.agent["index"]
                steps = int(self.model.num_timesteps)
                update = steps // cfg.batch_size
                res = evaluate_model(self.model, ctx.built, cfg.eval_learners, cfg.eval_seed)
                values = self.model.logger.name_to_value
                metrics = {"policy_loss": np.asarray([values.get("train/policy_gradient_loss", values.get("train/policy_loss", np.nan))]),
                           "value_loss": np.asarray([values.get("train/value_loss", values.get("train/loss", np.nan))]),
                           "entropy": np.asarray([-values.get("train/entropy_loss", np.nan)]),
                           "approx_kl": np.asarray([values.get("train/approx_kl", np.nan)])}
                rets = np.asarray(self.returns, float)
                rows = ctx.eval_rows([self.agent], update, steps, jax.tree.map(lambda x: x[None], res), metrics,
                                     np.asarray([len(rets)]), np.asarray([rets.mean() if len(rets) else np.nan]))
                self.returns = []
                prefix = f"agent{k:03d}"
                path = ctx.ckpt_dir / checkpoint_name(prefix, update, ".zip")
                meta = {**ctx.identity, "agent": k, "seed": self.agent["seed"], "config": cfg.to_dict(),
                        "update": update, "env_steps_per_agent": steps, "kind": f"{self.algo.name}_model"}
                ctx.ckpt_dir.mkdir(parents=True, exist_ok=True)
                ctx.add_rows(rows)  # before the checkpoint, which commits (see RunContext.add_rows)
                write_checkpoint(path, lambda tmp: self.model.save(tmp), meta)  # tmp ends in .tmp: no suffix added
                prune(ctx.ckpt_dir, prefix, ".zip", cfg.keep_checkpoints)
                write_run_manifest(ctx, update=update, env_steps=steps, checkpoint=path, complete=False)
                if self.budget[0] is not None and not final:
                    self.budget[0] -= 1
                    if self.budget[0] <= 0:
                        self.stopped = True

        return ChunkCallback(*args, **kwargs)


ALGORITHMS: tuple[SB3Algorithm, ...] = (
    SB3Algorithm("sb3_ppo", "Stable-Baselines3 PPO through the batched VecEnv adapter"),
    SB3Algorithm("sb3_a2c", "Stable-Baselines3 A2C through the batched VecEnv adapter"),
    SB3Algorithm("sb3_dqn", "Stable-Baselines3 DQN through the batched VecEnv adapter"),
    SB3Algorithm("sb3_maskable_ppo", "sb3-contrib MaskablePPO (invalid items masked) through the batched VecEnv adapter"),
    SB3Algorithm("sb3_recurrent_ppo", "sb3-contrib RecurrentPPO (LSTM policy) through the batched VecEnv adapter"),
)
