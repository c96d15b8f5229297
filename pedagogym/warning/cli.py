"""``pedagogym warn train|evaluate``: strings from the command line become typed objects here."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pedagogym.argtypes import setting as _setting
from pedagogym.errors import UsageError


def _config(args: argparse.Namespace, env, **extra):
    from pedagogym.warning.train import WarningConfig

    fields = {"policies": tuple(args.policies) if args.policies else None, "seed": args.seed, **extra}
    return WarningConfig(env=env, **{k: v for k, v in fields.items() if v is not None})


def _cmd_train(args: argparse.Namespace) -> int:
    from pedagogym.warning.report import write_run
    from pedagogym.warning.train import env_config, train_warning

    t0 = time.perf_counter()
    env = env_config(args.env, dict(args.set or []))
    config = _config(args, env, targets=tuple(args.targets) if args.targets else None, learners=args.learners,
                     heldout_learners=args.heldout_learners, hidden=None if args.hidden is None else tuple(args.hidden),
                     steps=args.steps)
    out = Path(args.out)
    if (out / "manifest.json").exists() and not args.force:  # before any simulation
        raise FileExistsError(f"{out}: already holds a `pedagogym warn` run; choose another --out or pass --force")
    print(f"early warning: {len(config.policies)} policies x {config.learners} + {config.heldout_learners} held-out "
          f"learners on {args.env} -> {out}/", file=sys.stderr)
    result = train_warning(config, progress=not args.quiet)
    write_run(result, out, kind="train", argv=sys.argv[1:], t0=t0, overwrite=args.force)
    print((out / "summary.md").read_text())
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pedagogym.envs.config import EnvConfig
    from pedagogym.warning.model import RiskModel
    from pedagogym.warning.report import METRICS_FILE, MODEL_FILE, write_run
    from pedagogym.warning.train import evaluate_warning

    t0 = time.perf_counter()
    src = Path(args.model)
    for name in (MODEL_FILE, METRICS_FILE):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src}: no {name}; expected a directory written by `pedagogym warn train`")
    model = RiskModel.from_dict(json.loads((src / MODEL_FILE).read_text()), str(src / MODEL_FILE))
    trained = json.loads((src / METRICS_FILE).read_text()).get("training", {})
    if args.env:
        from pedagogym.warning.train import env_config

        env = env_config(args.env, dict(args.set or []))
    else:  # the env the model was trained on, with --set overrides
        env = EnvConfig.from_dict({**trained.get("env_config", {}), **dict(args.set or [])},
                                  source=str(trained.get("env", src / METRICS_FILE)))
    seed = trained.get("seed", 0) + 1 if args.seed is None else args.seed
    if seed == trained.get("seed") and env.to_dict() == trained.get("env_config"):
        raise UsageError(f"--seed {seed} is the training seed: on the training env these are the training learners; "
                         f"choose another seed")
    config = _config(argparse.Namespace(policies=args.policies, seed=seed), env, heldout_learners=args.learners,
                     targets=tuple(model.targets))
    out = Path(args.out)
    if (out / "manifest.json").exists() and not args.force:
        raise FileExistsError(f"{out}: already holds a `pedagogym warn` run; choose another --out or pass --force")
    print(f"early warning: evaluating {src}/ on {len(config.policies)} policies x {config.heldout_learners} new learners "
          f"(seed {seed}) -> {out}/", file=sys.stderr)
    result = evaluate_warning(model, config, progress=not args.quiet)
    write_run(result, out, kind="evaluate", argv=sys.argv[1:], t0=t0, overwrite=args.force)
    print((out / "summary.md").read_text())
    return 0


WARN_DESCRIPTION = ("Predict each learner's risk of dropping out and of not reaching mastery by the horizon "
                    "from the event log a policy sees; trained and evaluated on simulated learners (held out by "
                    "learner).")


def add_warn_parser(subparsers: argparse._SubParsersAction) -> None:
    """``pedagogym warn train|evaluate``."""
    p = subparsers.add_parser("warn", description=WARN_DESCRIPTION,
                              help="early warning: train / evaluate a dropout and mastery risk predictor")
    sub = p.add_subparsers(dest="warn_verb", required=True)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--out", required=True, help="output directory (metrics.json, calibration.png, summary.md, ...)")
        s.add_argument("--set", action="append", type=_setting, metavar="KEY=VALUE",
                       help="env setting (repeatable), e.g. --set horizon=100 --set population=prior_knowledge")
        s.add_argument("--policies", nargs="+", metavar="POLICY",
                       help="hand-written policies teaching the simulated learners (default: random designer mastery zpdes)")
        s.add_argument("--force", action="store_true", help="overwrite a run in --out")
        s.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("train", help="simulate, train on some learners, evaluate on held-out ones; write the model")
    s.add_argument("--env", default="pedagogym/EngagedBKT-v0", help="env id (default pedagogym/EngagedBKT-v0)")
    common(s)
    s.add_argument("--targets", nargs="+", metavar="TARGET", help="default: dropout not_mastered")
    s.add_argument("--learners", type=int, help="training learners per policy (default 512)")
    s.add_argument("--heldout-learners", type=int, help="held-out learners per policy (default 256)")
    s.add_argument("--hidden", type=int, nargs="*", help="hidden layer sizes (default 16; none: logistic regression)")
    s.add_argument("--steps", type=int, help="Adam steps (default 1500)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("evaluate", help="evaluate a trained model on new simulated learners")
    s.add_argument("model", help="directory written by `pedagogym warn train`")
    s.add_argument("--env", help="env id (default: the env the model was trained on)")
    common(s)
    s.add_argument("--learners", type=int, help="new learners per policy (default 256)")
    s.add_argument("--seed", type=int, default=None, help="default: the training seed + 1 (new learners)")
    s.set_defaults(func=_cmd_evaluate)
