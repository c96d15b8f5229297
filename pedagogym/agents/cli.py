"""``pedagogym train`` and ``pedagogym bench train`` (wired into :mod:`pedagogym.cli`).

    pedagogym train experiments/train_ppo.toml [--out DIR] [--restart] [--quiet]
    pedagogym bench train [--json] [--env-id ID] [--agents 1 8 64] ...

``python -m pedagogym.agents.cli train ...`` runs the same commands without the main CLI.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pedagogym.errors import UsageError


def train_command(args: argparse.Namespace) -> int:
    """Train (or resume) the agents of a training config; print where everything went."""
    from pedagogym.agents import load_train_config, train

    config = load_train_config(args.config)  # validated: bad configs stop here, before any work
    if args.out:
        out = Path(args.out)
    else:  # the config's name is checked safe; the resolved folder must stay under results/train
        from pedagogym.io import confined

        confined(Path("results") / "train", config.name, "run folder")
        out = Path("results") / "train" / config.name
    if getattr(args, "backend", "local") == "ray":
        return _train_ray(args, config, out)
    if getattr(args, "address", None) is not None or getattr(args, "workers", None) is not None:
        raise UsageError("--address and --workers need --backend ray")
    print(f"{config.name}: {config.algo}, {config.n_agents} agent(s) x {config.num_updates} updates x "
          f"{config.batch_size} env steps on {config.env_id} -> {out}/", file=sys.stderr)
    manifest = train(config, out, progress=not args.quiet, max_chunks=args.max_chunks, restart=args.restart)
    if manifest.get("resumed_from"):
        print(f"resumed from {manifest['resumed_from']}", file=sys.stderr)
    scores = manifest.get("final_eval_post_test") or {}
    for k, v in scores.items():
        print(f"  agent {k}: post-test {v:.3f} (learning-curve evaluation, {config.eval_learners} learners)")
    if not manifest.get("complete"):
        print("run incomplete; rerun the same command to resume", file=sys.stderr)
        return 1
    print(f"wrote {out}/ (curves.csv, curves.png, checkpoints/, manifest.json) in {manifest['wall_time_s']:.1f} s; "
          f"evaluate with policy name 'agent:{out}' (or 'agent:{out}#K', 'agent:{out}#best')", file=sys.stderr)
    return 0


def _train_ray(args: argparse.Namespace, config, out: Path) -> int:
    """One Ray task per seed (with its sweep): ``<out>/seed_<S>/`` runs; see pedagogym.agents.distributed."""
    from pedagogym.agents.distributed import train_groups
    from pedagogym.experiments.backends import RayBackend

    backend = RayBackend(address=args.address, workers=args.workers)
    print(f"{config.name}: {config.algo}, {len(config.seeds)} seed group(s) x {config.n_agents // len(config.seeds)} "
          f"agent(s) as Ray tasks -> {out}/seed_<S>/", file=sys.stderr)
    summary = train_groups(config, out, backend, restart=args.restart)
    for name, error in summary["failed"].items():
        print(f"group {name} failed: {error}", file=sys.stderr)
    for name, g in summary["groups"].items():
        print(f"  {name}: {'complete' if g['complete'] else 'missing'} ({g['agents']} agent(s)); "
              f"evaluate with policy name 'agent:{out / name}#K'")
    if not summary["complete"]:
        print("run incomplete; rerun the same command to train the missing groups", file=sys.stderr)
        return 1
    return 0


def bench_train(args: argparse.Namespace) -> int:
    """env-steps/s of JAX PPO vs SB3 PPO on one env id, compile time, and N agents at once."""
    from pedagogym.agents.bench import bench_train as run, parse_settings

    env_id = args.env_id
    if isinstance(env_id, list):  # the main bench parser's --env-id is repeatable
        if len(env_id) > 1:
            raise UsageError(f"bench train: one --env-id at a time, got {env_id}")
        env_id = env_id[0]
    result = run(env_id=env_id or "pedagogym/PrereqBKT-v0", agents=args.agents, num_envs=args.num_envs,
                 num_steps=args.num_steps, updates=args.updates, sb3_steps=args.sb3_steps,
                 sb3_num_envs=args.sb3_num_envs, settings=parse_settings(args.setting or []),
                 progress=not args.json)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def add_train_parser(subparsers) -> None:
    """Add ``train`` to ``pedagogym``'s subparsers (``bench train`` lives in the bench parser:
    see :func:`add_bench_train_arguments`)."""
    s = subparsers.add_parser("train", help="train RL agents (JAX PPO or SB3) from a training config; resumes")
    s.add_argument("config", help="training TOML, e.g. experiments/train_ppo.toml")
    s.add_argument("--out", help="run directory (default results/train/<name>)")
    s.add_argument("--restart", action="store_true", help="discard the run directory's checkpoints and start afresh")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--max-chunks", type=int, default=None, help=argparse.SUPPRESS)  # stop early (tests)
    s.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local (default): every agent in this process; ray: one Ray task per seed, "
                        "each written to OUT/seed_<S>/")
    s.add_argument("--address", default=None, help="with --backend ray: join this Ray cluster ('auto' or HOST:6379)")
    s.add_argument("--workers", type=int, default=None, help="with --backend ray: at most N seed groups at once")
    s.set_defaults(func=train_command)


def add_bench_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pedagogym bench train`` (added to the existing ``bench`` parser)."""
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 8, 64], help="train N agents at once (vmap over seeds)")
    parser.add_argument("--num-envs", type=int, default=64, help="learners per agent (JAX PPO)")
    parser.add_argument("--num-steps", type=int, default=64, help="rollout length per update")
    parser.add_argument("--updates", type=int, default=10, help="PPO updates per timed call")
    parser.add_argument("--sb3-steps", type=int, default=8192, help="env steps of SB3 PPO to time")
    parser.add_argument("--sb3-num-envs", type=int, default=None, help="learners in SB3's VecEnv (default: --num-envs)")
    parser.add_argument("--setting", action="append", help="env setting KEY=VALUE (e.g. horizon=150); repeatable")


def _standalone_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pedagogym.agents.cli")
    sub = p.add_subparsers(dest="verb", required=True)
    add_train_parser(sub)
    b = sub.add_parser("bench-train", help="pedagogym bench train")
    b.add_argument("--env-id", default=None)
    b.add_argument("--json", action="store_true")
    add_bench_train_arguments(b)
    b.set_defaults(func=bench_train)
    return p


def main(argv: list[str] | None = None) -> int:
    from pedagogym.agents import CheckpointError, TrainConfigError

    args = _standalone_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TrainConfigError, CheckpointError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"pedagogym {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
