"""Reddy, Levine & Dragan (2017), "Accelerating Human Learning with Deep Reinforcement
Learning" (NeurIPS 2017 Workshop on Teaching Machines, Robots, and Humans): the study.

Six simulators (EFC, HLR, DASH x rewards L, LL), ``reps`` environment samples (10 in the
paper) x ``episodes`` evaluation episodes (100), six tutors: Random, Leitner (arrival
probability tuned on 0-0.99 step 0.01), SuperMnemo (SM-2, Mnemosyne variant), Threshold
(privileged; threshold tuned on the same grid), Memorize (privileged; q tuned on a log grid)
and RL (the project's JAX PPO, an MLP over the paper's observation of the last
``rl_history`` reviews; the paper used TRPO with a GRU). Samples of the L and LL rewards of one
model are stacked (the reward is data, ``Sample.ll``), so each tutor compiles once per model.
Grid values are tuned on ``episodes // 100`` episodes each (1, as in the reference).
Each tutor's score on an environment sample is its mean episode score; we report the mean
over samples, a 95% t interval across samples, and the % improvement over Random
(per episode, paired by index: 100 (tutor - random) / |random|, averaged per sample, as the
reference's plotting cell), with its CI.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.replicate.setting import SIMULATORS, RecallEnv
from pedagogym.replicate.tutors import hand_tutors, tune_and_evaluate_samples

SIMS = tuple((sim, reward) for sim in ("EFC", "HLR", "DASH") for reward in ("L", "LL"))
TUTORS = ("Random", "Leitner", "SuperMnemo", "Threshold", "Memorize", "RL")
PRIVILEGED = ("Threshold", "Memorize")
CSV_COLUMNS = ("sim", "tutor", "mean", "ci_low", "ci_high", "pct_vs_random", "pct_ci_low", "pct_ci_high", "episodes", "reps")


@dataclass(frozen=True)
class StudyConfig:
    reps: int = 10
    episodes: int = 100
    seed: int = 0
    sims: tuple[tuple[str, str], ...] = SIMS
    rl: bool = True
    rl_timesteps: int = 400_000   # PPO env steps per environment sample: the paper's 100 TRPO iterations x 4,000
    rl_num_envs: int = 20         # 20 episodes x 200 steps = the paper's 4,000 steps per iteration
    rl_num_steps: int = 200
    rl_history: int = 8           # reviews the MLP policy sees (the paper's GRU sees them all)
    rl_hidden: tuple[int, ...] = (64,)

    def validate(self) -> None:
        if self.reps < 2:
            raise PedagogymError(f"reddy2017: reps must be >= 2 (a CI across environment samples), got {self.reps}")
        if self.episodes < 1:
            raise PedagogymError(f"reddy2017: episodes must be >= 1, got {self.episodes}")
        if self.rl_timesteps < self.rl_num_envs * self.rl_num_steps:
            raise PedagogymError(f"reddy2017: rl_timesteps must be >= rl_num_envs * rl_num_steps "
                             f"({self.rl_num_envs * self.rl_num_steps}), got {self.rl_timesteps}")
        bad = [s for s in self.sims if s[0] not in SIMULATORS or s[1] not in ("L", "LL")]
        if bad:
            raise PedagogymError(f"reddy2017: unknown simulator(s) {bad}; expected (EFC|HLR|DASH, L|LL)")

    @classmethod
    def quick(cls, **over) -> "StudyConfig":
        return dataclasses.replace(cls(reps=3, episodes=10, rl_timesteps=20 * 200 * 2), **over)

    def models(self) -> list[str]:
        """The student models of ``sims``, in order: one compiled program per model and tutor."""
        return list(dict.fromkeys(sim for sim, _ in self.sims))

    def n_tasks(self) -> int:
        return len(self.models()) * len([t for t in TUTORS if self.rl or t != "RL"])


def rl_config(cfg: StudyConfig):
    from pedagogym.agents.config import TrainConfig

    return TrainConfig(name="reddy2017_rl", total_timesteps=cfg.rl_timesteps, num_envs=cfg.rl_num_envs,
                       num_steps=cfg.rl_num_steps, recurrent=False, hidden=tuple(cfg.rl_hidden),
                       gamma=0.99, lr=1e-3, ent_coef=0.01, epochs=4, minibatches=4, anneal_lr=True)


def rl_train_eval(env: RecallEnv, tc, sample, key: Array, n_episodes: int):
    """(float32[n_episodes] scores, float32[updates] training reward curve): a PPO agent trained
    on one environment sample, then ``n_episodes`` episodes of its sampled actions (like the
    reference's ``get_action``), batched over episodes (one policy forward per step)."""
    from types import SimpleNamespace

    from pedagogym.agents.networks import policy_forward
    from pedagogym.agents.ppo import PPOTrainer

    trainer = PPOTrainer(tc, built=SimpleNamespace(env=env, params=sample))
    k_train, k_eval = jax.random.split(key)
    rs, metrics = trainer.train(k_train)
    norm = rs.obs_norm if tc.normalize_obs else None
    k_reset, k_steps = jax.random.split(k_eval)
    obs, es = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, n_episodes), sample)
    carry = jnp.zeros((n_episodes, 1), jnp.float32)
    no_reset = jnp.zeros((n_episodes,), bool)

    def body(c, k):
        es, obs = c
        k_act, k_env = jax.random.split(k)
        _, logits, _ = policy_forward(trainer.spec, rs.params, norm, carry, obs, no_reset)
        items = jax.random.categorical(k_act, logits).astype(jnp.int32)
        es, r = jax.vmap(env._advance, in_axes=(0, None, 0, 0))(jax.random.split(k_env, n_episodes), sample, es, items)
        return (es, jax.vmap(env.observe)(es)), r

    _, rewards = jax.lax.scan(body, (es, obs), jax.random.split(k_steps, env.n_steps - 1))
    return jnp.mean(rewards, axis=0), metrics.reward_mean


def rl_scores(sim_name: str, samples, keys, cfg: StudyConfig, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(float32[N, episodes], float32[N, updates]): one agent per environment sample, trained
    one after another (one compiled program per model; samples of both rewards share it)."""
    env = RecallEnv(SIMULATORS[sim_name], "L", history=cfg.rl_history)
    tc = rl_config(cfg)
    fn = jax.jit(lambda s, k: rl_train_eval(env, tc, s, k, cfg.episodes))
    n = int(keys.shape[0])
    scores, curves = [], []
    for i in range(n):
        sc, cu = fn(jax.tree.map(lambda x: x[i], samples), keys[i])
        scores.append(np.asarray(sc))
        curves.append(np.asarray(cu))
    return np.stack(scores), np.stack(curves)


def t_interval(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high): a 95% Student-t interval of the mean of ``x`` (float[reps])."""
    from scipy import stats

    x = np.asarray(x, float)
    m = float(x.mean())
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")
    return m, m - half, m + half


def draw_samples(cfg: StudyConfig, sim_name: str):
    """(samples with a leading axis [len(rewards) * reps], [(label, slice)]): the environment
    samples of every reward of ``sim_name`` in ``cfg.sims`` (each sim's own keys, as if drawn
    alone), stacked so that one compiled program serves them all (``Sample.ll``)."""
    sim = SIMULATORS[sim_name]
    parts, labels = [], []
    for s_i, (name, reward) in enumerate(cfg.sims):
        if name != sim_name:
            continue
        key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), s_i)
        smp = jax.vmap(sim.draw)(jax.random.split(jax.random.fold_in(key, 0), cfg.reps))
        parts.append((smp._replace(ll=jnp.full((cfg.reps,), reward == "LL")), key))
        labels.append(f"{name}-{reward}")
    samples = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[p[0] for p in parts])
    return samples, [p[1] for p in parts], labels


def study_jobs(cfg: StudyConfig) -> list[tuple[str, str, Callable[[], dict]]]:
    """[(model, tutor, job)]: one job per model and tutor, each compiling and running
    its own program and returning ``{label: (scores, tuned, curves)}``. Jobs share nothing, and
    every key is drawn before any job runs, so their results do not depend on the order (or the
    thread) they run in."""
    n_tune = max(1, cfg.episodes // 100)
    jobs = []
    for sim_name in cfg.models():
        env = RecallEnv(SIMULATORS[sim_name], "L")  # the reward comes with each sample (Sample.ll)
        samples, sim_keys, labels = draw_samples(cfg, sim_name)

        def split(arrays, labels=labels):
            return {label: tuple(None if a is None else a[j * cfg.reps:(j + 1) * cfg.reps] for a in arrays)
                    for j, label in enumerate(labels)}

        for t_i, hand in enumerate(hand_tutors(env)):
            keys = jnp.concatenate([jax.random.split(jax.random.fold_in(k, 1 + t_i), cfg.reps) for k in sim_keys])

            def hand_job(env=env, hand=hand, samples=samples, keys=keys, split=split):
                best, scores = tune_and_evaluate_samples(env, hand, samples, keys, cfg.episodes, n_tune)
                return split((scores, best, None))

            jobs.append((sim_name, hand.label, hand_job))
        if cfg.rl:
            keys = jnp.concatenate([jax.random.split(jax.random.fold_in(k, 99), cfg.reps) for k in sim_keys])

            def rl_job(sim_name=sim_name, samples=samples, keys=keys, split=split):
                scores, curves = rl_scores(sim_name, samples, keys, cfg)
                return split((scores, None, curves))

            jobs.append((sim_name, "RL", rl_job))
    return jobs


def run_study(cfg: StudyConfig, progress=None, workers: int | None = None) -> tuple[list[dict], dict]:
    """(rows of replication.csv, per-sim extras: tuned values and per-sample scores).

    The (model, tutor) programs compile and run ``workers`` at a time (default: one per CPU
    core) in threads: nearly all of a small study's time is XLA compilation, which runs outside
    Python's lock, so on 2 cores this about halves the wall time. The results are the same for
    any ``workers`` (each job's keys are fixed before any runs)."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    cfg.validate()
    tutors = [t for t in TUTORS if cfg.rl or t != "RL"]
    jobs = study_jobs(cfg)
    per: dict[str, dict] = {}
    workers = max(1, workers or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="replicate") as pool:
        # the RL jobs (the longest: a training per environment sample) first, so none runs alone at the end
        order = sorted(jobs, key=lambda j: j[1] != "RL")
        futures = {pool.submit(job): (model, tutor) for model, tutor, job in order}
        for fut in as_completed(futures):
            model, tutor = futures[fut]
            for label, result in fut.result().items():
                per.setdefault(label, {})[tutor] = result
            if progress:
                progress(f"{model} {tutor}")
    rows, extras = [], {}
    for label in [f"{s}-{r}" for s, r in cfg.sims]:
        rand = per[label]["Random"][0]
        for tutor in tutors:
            scores, best, curve = per[label][tutor]
            sample_means = scores.mean(axis=1)
            m, lo, hi = t_interval(sample_means)
            # % over Random as the reference's plotting cell: per episode (paired by index), then the mean
            pct = (100.0 * (scores - rand) / np.abs(rand)).mean(axis=1)
            pm, plo, phi = t_interval(pct)
            rows.append({"sim": label, "tutor": tutor, "mean": m, "ci_low": lo, "ci_high": hi, "pct_vs_random": pm,
                         "pct_ci_low": plo, "pct_ci_high": phi, "episodes": cfg.episodes, "reps": cfg.reps})
            extras.setdefault(label, {})[tutor] = {
                "sample_means": [float(v) for v in sample_means],
                "tuned": None if best is None else [float(v) for v in best],
                **({} if curve is None else {"train_reward_curve_mean": [round(float(v), 6) for v in curve.mean(0)]})}
    return rows, extras


# ---- outputs ------------------------------------------------------------------------------------
def write_outputs(out: Path, cfg: StudyConfig, rows: list[dict], extras: dict, wall_s: float) -> list[Path]:
    from pedagogym.io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    csv_lines = [",".join(CSV_COLUMNS)]
    for r in rows:
        csv_lines.append(",".join(r[c] if isinstance(r[c], str) else (str(r[c]) if isinstance(r[c], int) else f"{r[c]:.6g}")
                                  for c in CSV_COLUMNS))
    paths = [out / "replication.csv", out / "replication.md", out / "replication.png", out / "manifest.json"]
    atomic_write_text(paths[0], "\n".join(csv_lines) + "\n")
    atomic_write_text(paths[1], markdown_table(rows, cfg))
    bar_chart(rows, paths[2])
    atomic_write_text(paths[3], json.dumps(manifest(cfg, extras, wall_s), indent=2) + "\n")
    return paths


def markdown_table(rows: list[dict], cfg: StudyConfig) -> str:
    sims = list(dict.fromkeys(r["sim"] for r in rows))
    tutors = list(dict.fromkeys(r["tutor"] for r in rows))
    cell = {(r["sim"], r["tutor"]): r for r in rows}
    lines = [f"# Reddy, Levine & Dragan (2017) replication ({cfg.reps} environment samples x {cfg.episodes} episodes)", "",
             "Mean episode score (mean reward per step) and, in brackets, % over Random with its 95% CI across "
             "environment samples. * privileged (reads the simulator's recall).", "",
             "| sim | " + " | ".join(t + ("*" if t in PRIVILEGED else "") for t in tutors) + " |",
             "|---|" + "---|" * len(tutors)]
    for s in sims:
        vals = []
        for t in tutors:
            r = cell[(s, t)]
            vals.append(f"{r['mean']:.4f} ({r['pct_vs_random']:+.1f}% [{r['pct_ci_low']:+.1f}, {r['pct_ci_high']:+.1f}])")
        lines.append(f"| {s} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pedagogym.io import atomic_write_bytes

    sims = list(dict.fromkeys(r["sim"] for r in rows))
    tutors = [t for t in dict.fromkeys(r["tutor"] for r in rows) if t != "Random"]
    cell = {(r["sim"], r["tutor"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(1, len(tutors))
    for j, t in enumerate(tutors):
        x = np.arange(len(sims)) + (j - (len(tutors) - 1) / 2) * width
        y = np.array([cell[(s, t)]["pct_vs_random"] for s in sims])
        err = np.array([[y[i] - cell[(s, t)]["pct_ci_low"], cell[(s, t)]["pct_ci_high"] - y[i]] for i, s in enumerate(sims)]).T
        ax.bar(x, y, width, yerr=err, capsize=2, label=t + (" (privileged)" if t in PRIVILEGED else ""),
               hatch="//" if t in PRIVILEGED else None, edgecolor="black", linewidth=0.5)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(sims)), sims)
    ax.set_xlabel("student model - reward")
    ax.set_ylabel("% better than Random (95% CI)")
    ax.set_title("Reddy, Levine & Dragan (2017) setting, pedagogym replication")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def manifest(cfg: StudyConfig, extras: dict, wall_s: float) -> dict:
    from pedagogym.io import git_commit, versions

    tc = rl_config(cfg)
    return {
        "study": "reddy2017",
        "config": dataclasses.asdict(cfg),
        "seeds": {"master": cfg.seed, "per_sim": "fold_in(PRNGKey(seed), sim index); samples fold_in 0, tutor t fold_in 1+t, RL fold_in 99"},
        "rl_budget": {"algo": "jax_ppo (pedagogym.agents.ppo)", "enabled": cfg.rl,
                      "policy": f"MLP{tc.hidden} over the last {cfg.rl_history} reviews' observations",
                      "env_steps_per_sample": tc.num_updates * tc.batch_size, "updates": tc.num_updates,
                      "num_envs": tc.num_envs, "num_steps": tc.num_steps, "lr": tc.lr, "gamma": tc.gamma,
                      "paper": "TRPO, GRU(32), 100 iterations x 4000 steps = 400,000 steps per sample"},
        "tuning": {"grid": "0..0.99 step 0.01 (Leitner arrival prob, Threshold); Memorize q: 10**linspace(-3, 3, 100)",
                   "episodes_per_value": max(1, cfg.episodes // 100)},
        "wall_s": round(wall_s, 2),
        "platform": platform.platform(),
        "versions": versions(), "git_commit": git_commit(),
        "per_sim": extras,
    }
