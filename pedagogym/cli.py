"""One CLI: ``pedagogym <verb>``. Strings from the command line become typed objects here."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pedagogym.errors import UsageError, exit_on_user_error


def all_registries() -> dict:
    """Every registry, after importing the packages that fill them (the top layer may import
    every layer; the registry module itself imports none of them)."""
    import pedagogym.curriculum  # noqa: F401  (each import registers its entries; bottom layer first)
    import pedagogym.student_models  # noqa: F401
    import pedagogym.envs  # noqa: F401
    import pedagogym.policies  # noqa: F401
    import pedagogym.agents  # noqa: F401
    import pedagogym.warning.targets  # noqa: F401
    from pedagogym.registry import registries

    return registries()


def _cmd_list(args: argparse.Namespace) -> int:
    for kind, registry in all_registries().items():
        if args.kind and kind != args.kind:
            continue
        for name in registry.names():
            print(f"{kind} {name}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    """A short simulation: one policy on one env, summary printed."""
    import jax
    import numpy as np

    from pedagogym.envs import make
    from pedagogym.policies.rollout import evaluate, learner_keys
    from pedagogym.policies import POLICIES

    built = make(args.env, **({"horizon": args.horizon} if args.horizon else {}))
    horizon = built.config.horizon
    print(f"{args.env}: curriculum {built.curriculum.name!r} ({built.curriculum.n_skills} skills, "
          f"{built.curriculum.n_items} items), model {built.config.model!r}, population {built.population.name!r}, "
          f"{args.learners} learners x {horizon} items")
    for name in args.policy:
        res = evaluate(built.env, POLICIES.get(name), horizon, built.params,
                       learner_keys(jax.random.PRNGKey(args.seed), args.learners))
        print(f"  {name:16s} post-test {float(np.mean(res.post_test)):.3f}  final mastery "
              f"{float(np.mean(res.final_mastery)):.3f}  dropped {float(np.mean(res.dropped)):.1%}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """Run an experiment config; print the summary table."""
    from pedagogym.experiments import load_experiment, run_experiment

    if args.chunk_learners < 0:
        raise UsageError(f"--chunk-learners: chunk_learners: expected a positive integer (or 0: all learners of a "
                         f"cell at once), got {args.chunk_learners}")
    config = load_experiment(args.config)  # validated: bad configs stop here, before any work
    if args.out:
        out = Path(args.out)
    else:  # the config's name is checked safe; the resolved folder must stay under results/
        from pedagogym.io import confined

        confined("results", config.name, "output folder")
        out = Path("results") / config.name
    n_cells = sum(len(e.models) * len(e.populations) * len(config.policies_for(e)) for e in config.envs) * len(config.seeds)
    print(f"{config.name}: {n_cells} cells x {config.learners} learners -> {out}/", file=sys.stderr)
    manifest = run_experiment(config, out, progress=not args.quiet, backend=_backend(args),
                              chunk_learners=args.chunk_learners, save_episodes=args.save_episodes)
    if args.quiet:  # otherwise the runner said so before recomputing them
        for cell_id, what in manifest.get("cells_stale_recomputed", {}).items():
            print(f"cell {cell_id}: saved result was stale ({'; '.join(what)}); recomputed", file=sys.stderr)
    for cell_id, error in manifest["cells_failed"].items():
        print(f"cell {cell_id} failed: {error}", file=sys.stderr)
    if not manifest["complete"]:
        print("run incomplete; rerun the same command to resume", file=sys.stderr)
        return 1
    print((out / "summary.md").read_text())
    rate = manifest["learner_episodes_per_s"]
    print(f"wrote {out}/ ({'episodes.csv, ' if manifest['save_episodes'] else ''}summary.csv, summary.md, "
          f"curves/subgroups/time_to_mastery/matrix .csv/.png, "
          f"manifest.json) in {manifest['wall_time_s']:.1f} s"
          + (f"; {rate:,.0f} learner-episodes/s" if rate else "; all cells resumed"), file=sys.stderr)
    return 0


def _backend(args: argparse.Namespace):
    """``--backend`` / ``--address`` / ``--workers`` -> a backend object."""
    from pedagogym.experiments.backends import LocalBackend, RayBackend

    if args.backend == "local":
        if args.address is not None or args.workers is not None or args.gpus_per_cell is not None:
            raise UsageError("--address, --workers and --gpus-per-cell need --backend ray")
        return LocalBackend()
    try:
        return RayBackend(address=args.address, workers=args.workers, gpus_per_cell=args.gpus_per_cell or 0.0)
    except ValueError as exc:  # the flags' values, checked by the backend
        raise UsageError(str(exc)) from None


def _cmd_replicate(args: argparse.Namespace) -> int:
    """Run a published study's replication (``pedagogym replicate --list``)."""
    from pedagogym.replicate import STUDIES

    if args.list or not args.study:
        for name, what in STUDIES.items():
            print(f"{name}  {what}")
        return 0
    if not args.out:
        print("pedagogym replicate: error: --out DIR is required", file=sys.stderr)
        return 2
    from pedagogym.replicate.run import replicate

    paths = replicate(args.study, Path(args.out), reps=args.reps, episodes=args.episodes, quick=args.quick,
                      rl_timesteps=args.rl_timesteps, rl=not args.no_rl)
    print((Path(args.out) / "replication.md").read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "env":
        from pedagogym.bench import bench_env

        rows = bench_env(args.env_id or ["pedagogym/PrereqBKT-v0"], args.batch, n_steps=args.steps,
                         gym_steps=args.gym_steps)
    elif args.what == "train":
        from pedagogym.agents.cli import bench_train

        return bench_train(args)
    else:
        print(f"pedagogym bench: unknown target {args.what!r}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=None if args.json else 2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pedagogym", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser("list", help="print every registry entry as 'KIND NAME'")
    s.add_argument("--kind", help="only this kind (e.g. student_model, population, curriculum, env, policy)")
    s.set_defaults(func=_cmd_list)

    s = sub.add_parser("simulate", help="a short simulation of hand-written policies on one env")
    s.add_argument("--env", default="pedagogym/PrereqBKT-v0")
    s.add_argument("--policy", nargs="+", default=["random", "designer", "mastery"])
    s.add_argument("--learners", type=int, default=500)
    s.add_argument("--horizon", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_simulate)

    s = sub.add_parser("run", help="run an experiment config (policies x simulators x seeds)")
    s.add_argument("config", help="experiment TOML, e.g. experiments/quickstart.toml")
    s.add_argument("--out", help="output directory (default results/<name>)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="where cells are computed: this process (default) or Ray tasks (pip install 'pedagogym[dist]')")
    s.add_argument("--address", default=None,
                   help="with --backend ray: join this Ray cluster ('auto' or HOST:6379); default a local Ray instance")
    s.add_argument("--workers", type=int, default=None,
                   help="with --backend ray: at most N cells at once (a local instance gets N CPUs)")
    s.add_argument("--gpus-per-cell", type=float, default=None,
                   help="with --backend ray: GPUs reserved per cell (e.g. 1 or 0.25); default 0, CPU tasks")
    s.add_argument("--chunk-learners", type=int, default=65536,
                   help="learners per jitted call (bounds memory; 0 = all of a cell at once)")
    s.add_argument("--save-episodes", action=argparse.BooleanOptionalAction, default=None,
                   help="write episodes.csv, one row per learner-episode, building the tables in memory "
                        "(default: only for runs of at most 1M learner-episodes; otherwise tables are streamed)")
    s.set_defaults(func=_cmd_run)

    from pedagogym.fitting import cli as fitting_cli

    s = sub.add_parser("fit", help="fit student models and a population to learning logs (CSV/Parquet)")
    fitting_cli.add_arguments(s)
    s.set_defaults(func=fitting_cli.run)
    s = sub.add_parser("validate", help="posterior predictive checks of a fitted simulator against a real log")
    fitting_cli.add_validate_arguments(s)
    s.set_defaults(func=fitting_cli.run_validate)

    from pedagogym.agents.cli import add_bench_train_arguments, add_train_parser
    from pedagogym.export.cli import add_export_parsers
    from pedagogym.stress.cli import add_stress_parser
    from pedagogym.warning.cli import add_warn_parser

    add_train_parser(sub)
    add_export_parsers(sub)
    add_stress_parser(sub)
    add_warn_parser(sub)

    s = sub.add_parser("replicate", help="replicate a published study (--list: the studies)")
    s.add_argument("study", nargs="?", help="study name, e.g. reddy2017")
    s.add_argument("--out", help="output folder")
    s.add_argument("--reps", type=int, help="environment samples (paper: 10)")
    s.add_argument("--episodes", type=int, help="evaluation episodes per sample (paper: 100)")
    s.add_argument("--rl-timesteps", type=int, help="PPO env steps per environment sample")
    s.add_argument("--quick", action="store_true", help="a small run (3 samples x 10 episodes, tiny RL budget)")
    s.add_argument("--no-rl", action="store_true", help="skip the RL tutor (hand-written tutors only)")
    s.add_argument("--list", action="store_true", help="list the available studies")
    s.set_defaults(func=_cmd_replicate)

    s = sub.add_parser("bench", help="throughput benchmarks, printed as JSON (env: simulator steps/s; "
                                     "train: JAX PPO vs SB3 PPO env-steps/s)")
    s.add_argument("what", choices=["env", "train"])
    s.add_argument("--env-id", action="append", help="env id (repeatable); default the BKT skill env")
    s.add_argument("--batch", type=int, nargs="+", default=[1, 256, 4096, 16384, 65536])
    s.add_argument("--steps", type=int, default=100, help="steps per timed call")
    s.add_argument("--gym-steps", type=int, default=2000)
    s.add_argument("--json", action="store_true", help="compact one-line JSON")
    add_bench_train_arguments(s)
    s.set_defaults(func=_cmd_bench)
    return p


def _enable_compilation_cache() -> None:
    """Reuse XLA compilations across runs (most of a small run's time is compiling).
    Set PEDAGOGYM_JAX_CACHE to a directory to move it, or to "off" to disable it."""
    import os

    where = os.environ.get("PEDAGOGYM_JAX_CACHE", str(Path.home() / ".cache" / "pedagogym" / "jax"))
    if where.lower() == "off":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


# optional dependencies (top-level module names) and the extra (pyproject.toml) that installs them
OPTIONAL_EXTRAS = ((("onnx", "onnxruntime"), "export"), (("fastapi", "uvicorn"), "serve"),
                   (("stable_baselines3", "sb3_contrib", "torch"), "sb3"), (("ray",), "dist"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # a serving machine needs neither JAX nor the simulator: skip their imports
        from pedagogym.export.cli import main as export_main

        return export_main(argv)
    args = build_parser().parse_args(argv)
    if args.verb in ("run", "simulate", "train", "stress", "warn", "replicate"):
        _enable_compilation_cache()
    try:
        return args.func(args)
    except ModuleNotFoundError as exc:  # an optional dependency: say which extra brings it
        extra = next((e for mods, e in OPTIONAL_EXTRAS if (exc.name or "").split(".")[0] in mods), None)
        if extra is None:
            raise
        print(f"pedagogym {args.verb}: error: the optional dependency {exc.name!r} is not installed; "
              f"pip install 'pedagogym[{extra}]'", file=sys.stderr)
        return 2
    except RecursionError:  # a deeply nested input file (TOML / JSON) that a parser recursed into
        print(f"pedagogym {args.verb}: error: an input file is nested too deeply to read", file=sys.stderr)
        return 2
    except OverflowError as exc:  # a number too large for the simulator (bounds should catch it first)
        print(f"pedagogym {args.verb}: error: a number is too large ({exc})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pedagogym {args.verb}: interrupted; {_RESUME_HINT.get(args.verb, 'nothing half-written was kept')}",
              file=sys.stderr)
        return 130
    except Exception as exc:  # user errors (config, input, files): one clear line; bugs keep their traceback
        return exit_on_user_error(exc, f"pedagogym {args.verb}")


# what Ctrl-C leaves behind, per verb (every result file is written atomically)
_RESUME_HINT = {
    "run": "finished cells are saved; rerun the same command to resume",
    "train": "the latest checkpoint is saved; rerun the same command to resume",
    "stress": "nothing half-written was kept; rerun the same command",
    "warn": "nothing half-written was kept; rerun the same command (with --force if the folder holds a run)",
}


if __name__ == "__main__":
    sys.exit(main())
