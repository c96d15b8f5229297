"""Learned agents vs the best hand-written policy on the quickstart's four simulators (issue 17).

    python benchmarks/agents_vs_heuristics.py                      # all four (hours on 2 CPU cores)
    python benchmarks/agents_vs_heuristics.py --sims maths_bkt --learners 2000
    python benchmarks/agents_vs_heuristics.py --sims vocab_efc --timesteps 200000   # a shorter run

For each simulator: train ``experiments/train_<sim>.toml`` (imitation warm start + PPO; the
run resumes if its directory exists), then evaluate every seed's agent (``agents``; ``agent`` is the one ``agent:RUN#best`` picks by the run's own learning curve, and
``mean_over_seeds_minus_best`` averages the seeds' post-tests learner by learner), the
selected seed's cloned policy before PPO (``bc``) and every non-privileged hand-written policy
of the family on ``--learners`` new learners (seed ``--seed``, not a training or learning-curve
seed; common random numbers: every policy meets the same learners), and the privileged
``upper_bound`` for reference, with its paired difference from the agent (a bound must stay
above it). Prints one JSON object: per simulator the best hand-written policy, the agent, the
paired difference agent - best with its 95% CI, training wall time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FAMILY = {  # the quickstart's hand-written policies per setting (non-privileged)
    "maths": ["random", "designer", "mastery", "greedy_gain", "zpdes", "belief_planner"],
    "vocab": ["random", "leitner", "sm2", "fsrs_scheduler"],
}
SIMS = ("maths_bkt", "maths_pfa", "vocab_efc", "vocab_hlr")


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    d = a - b
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    return {"diff": float(d.mean()), "ci_low": float(d.mean() - half), "ci_high": float(d.mean() + half)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", default=",".join(SIMS))
    ap.add_argument("--learners", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--timesteps", type=int, default=None, help="override total_timesteps of the training configs")
    ap.add_argument("--out", default=str(REPO / "results" / "bench_agents"))
    ap.add_argument("--config", action="append", default=[], metavar="SIM=PATH",
                    help="train SIM from PATH instead of experiments/train_SIM.toml (repeatable)")
    ap.add_argument("--skip-upper-bound", action="store_true", help="do not evaluate the (slow) privileged upper_bound")
    args = ap.parse_args(argv)

    from pedagogym.agents import _best_index, load_policy, load_train_config, train
    from pedagogym.agents.networks import ObsNorm
    from pedagogym.agents.policy import TrainedPolicy
    from pedagogym.agents.ppo import PPOTrainer
    from pedagogym.policies.rollout import evaluate, learner_keys
    from pedagogym.policies import POLICIES

    report = {"learners": args.learners, "seed": args.seed, "devices": str(jax.devices()), "simulators": {}}
    for sim in args.sims.split(","):
        if sim not in SIMS:
            raise SystemExit(f"--sims: unknown simulator {sim!r}; known: {', '.join(SIMS)}")
        override = dict(c.split("=", 1) for c in args.config)
        cfg = load_train_config(Path(override[sim]) if sim in override else REPO / "experiments" / f"train_{sim}.toml")
        if args.timesteps:
            cfg = cfg.replace(total_timesteps=args.timesteps)
        out = Path(args.out) / cfg.name
        t0 = time.perf_counter()
        train(cfg, out, progress=False)
        manifest = json.loads((out / "manifest.json").read_text())
        train_s = float(manifest.get("wall_time_s", time.perf_counter() - t0))
        best_k = _best_index(manifest, out)
        agents = {k: load_policy(f"agent:{out}#{k}") for k in range(cfg.n_agents)}
        agent = agents[best_k]
        built = cfg.build_env()
        env, params, horizon = built.env, built.params, built.config.horizon
        # the cloned policy before any PPO update (the same warm start the run began from)
        trainer = PPOTrainer(cfg, built)
        t_bc = time.perf_counter()
        bc_params, bc_norm = jax.block_until_ready(jax.jit(trainer.warm_params)(
            trainer.agent_keys()[best_k], jax.tree.map(lambda a: a[best_k], trainer.agent_hparams())))
        bc_s = time.perf_counter() - t_bc
        bc = TrainedPolicy(trainer.spec, jax.device_get(bc_params),
                           ObsNorm(*jax.device_get(bc_norm)) if cfg.normalize_obs else None, tag=f"bc:{sim}")
        keys = learner_keys(jax.random.PRNGKey(args.seed), args.learners)
        family = sim.split("_")[0]
        pt = {}
        for name in FAMILY[family] + ([] if args.skip_upper_bound else ["upper_bound"]):
            pt[name] = np.asarray(evaluate(env, POLICIES.get(name), horizon, params, keys).post_test)
        for k, a in agents.items():
            pt[f"agent_{k}"] = np.asarray(evaluate(env, a, horizon, params, keys).post_test)
        pt["agent"] = pt[f"agent_{best_k}"]
        pt["agents_mean"] = np.mean([pt[f"agent_{k}"] for k in agents], axis=0)  # the mean agent, learner by learner
        pt["bc"] = np.asarray(evaluate(env, bc, horizon, params, keys).post_test)
        means = {k: float(v.mean()) for k, v in pt.items()}
        best = max(FAMILY[family], key=lambda n: means[n])  # hand-written only
        agent_vs_best = paired(pt["agent"], pt[best])
        report["simulators"][sim] = {
            "config": override.get(sim, f"experiments/train_{sim}.toml"), "teacher": cfg.teacher, "env_steps": cfg.num_updates * cfg.batch_size,
            "train_wall_s": round(train_s, 1), "bc_wall_s": round(bc_s, 1),
            "best_hand_written": best, "best_hand_written_post_test": means[best],
            "agent_post_test": means["agent"], "agent_minus_best": agent_vs_best,
            "bc_post_test": means["bc"], "bc_minus_best": paired(pt["bc"], pt[best]),
            "agent_beats_best": bool(agent_vs_best["ci_low"] > 0),
            "agent_seed": cfg.agents()[best_k]["seed"], "agents": [
                {"seed": cfg.agents()[k]["seed"], "post_test": means[f"agent_{k}"],
                 "minus_best": paired(pt[f"agent_{k}"], pt[best])} for k in agents],
            "mean_over_seeds_minus_best": paired(pt["agents_mean"], pt[best]),
            "upper_bound_post_test": means.get("upper_bound"),
            "upper_bound_minus_agent": paired(pt["upper_bound"], pt["agent"]) if "upper_bound" in pt else None,
            "post_test": means,
        }
        print(json.dumps({sim: report["simulators"][sim]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
