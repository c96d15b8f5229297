"""``pedagogym export`` and ``pedagogym serve``: strings from the command line become typed
objects here. Wired into :mod:`pedagogym.cli` by :func:`add_export_parsers`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pedagogym.argtypes import int_in as _int_in
from pedagogym.argtypes import positive_float as _positive_float
from pedagogym.argtypes import setting as _setting
from pedagogym.errors import UsageError, exit_on_user_error


def _cmd_export(args: argparse.Namespace) -> int:
    from pedagogym.export import export_bundle, resolve

    env = None
    if args.env or args.set:
        env = dict(args.set or [])
        if args.env:
            env["id"] = args.env
    if args.early_warning_from and (args.early_warning or args.early_warning_set):
        raise UsageError("--early-warning-from loads a trained model; it does not go with --early-warning / "
                         "--early-warning-set (which train one)")
    if (args.early_warning_set or args.early_warning_policies) and not args.early_warning:
        raise UsageError("--early-warning-set and --early-warning-policies need --early-warning")
    if args.early_warning and (Path(args.out) / "manifest.json").exists() and not args.force:  # before training
        raise UsageError(f"{args.out}: already holds a bundle; choose another --out or pass --force")
    source = resolve(args.checkpoint, env)
    print(f"exporting {source.kind} policy {source.name!r} ({len(source.built.feature_names)} features, "
          f"{source.built.curriculum.n_items} items; verifying on {args.verify_learners} simulated learners) -> {args.out}/",
          file=sys.stderr)
    early_warning = _early_warning(args, source)
    report = export_bundle(source, args.out, verify_learners=args.verify_learners, overwrite=args.force,
                           early_warning=early_warning)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _early_warning(args: argparse.Namespace, source):
    """The early-warning model to ship: trained now (--early-warning) or loaded (--early-warning-from)."""
    if args.early_warning_from:
        from pedagogym.warning.bundle import load_trained

        return load_trained(args.early_warning_from)
    if not args.early_warning:
        return None
    from pedagogym.warning.bundle import train_for_bundle
    from pedagogym.warning.train import WarningConfig

    env = source.built.config.replace(**dict(args.early_warning_set)) if args.early_warning_set else source.built.config
    config = WarningConfig(env=env, learners=args.early_warning_learners, heldout_learners=args.early_warning_learners,
                           **({"policies": tuple(args.early_warning_policies)} if args.early_warning_policies else {}))
    print(f"early warning: training on {config.learners} + {config.heldout_learners} held-out simulated learners per "
          f"policy ({', '.join(config.policies)}, and the bundle's own if not among them)", file=sys.stderr)
    return train_for_bundle(source, config, progress=not args.json)


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from pedagogym.deploy.server import serve
    except ImportError as exc:
        print(f"pedagogym serve: {exc.name} is missing; install the extra: pip install 'pedagogym[serve]'", file=sys.stderr)
        return 2
    import os

    from pedagogym.deploy.server import TOKEN_ENV

    token = args.token if args.token is not None else (os.environ.get(TOKEN_ENV) or None)
    print(f"serving {args.bundle} on http://{args.host}:{args.port} (POST /recommend, POST /risk, GET /health"
          f"{'; bearer token required but for /health' if token else ''})", file=sys.stderr)
    serve(args.bundle, host=args.host, port=args.port, idle_gap_s=args.idle_gap_s, access_log=args.access_log,
          token=token, expected_sha256=args.expect_sha256, max_body_bytes=args.max_body_bytes,
          max_events=args.max_events, workers=args.workers, max_pending=args.max_pending)
    return 0


def add_export_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` and ``serve`` verbs to ``pedagogym``'s subparsers."""
    s = subparsers.add_parser("export", help="export a policy as an ONNX bundle (policy.onnx + manifest.json)",
                              description="Export a trained agent or a hand-written policy for deployment. "
                                          "CHECKPOINT: agent:RUN_DIR[#K|#best], a training run directory, "
                                          "policy:NAME (designer, mastery, greedy_gain) or an MLP .npz.")
    s.add_argument("checkpoint", help="agent:RUN_DIR[#K|#best] | RUN_DIR | policy:NAME | FILE.npz")
    s.add_argument("--out", required=True, help="bundle directory to write")
    s.add_argument("--env", help="env id for policies that do not carry one (hand-written, .npz)")
    s.add_argument("--set", action="append", type=_setting, metavar="KEY=VALUE",
                   help="env setting (repeatable), e.g. --set curriculum=tiny --set horizon=100")
    s.add_argument("--verify-learners", type=_int_in(0, 1_000_000), default=32,
                   help="simulated learners for the parity check before writing (0 = skip; default 32)")
    s.add_argument("--force", action="store_true", help="overwrite an existing bundle in --out")
    s.add_argument("--json", action="store_true", help="compact one-line JSON report")
    s.add_argument("--early-warning", action="store_true",
                   help="also train and ship an early-warning model (risk.onnx: dropout and not-mastered risks) on "
                        "learners simulated in the bundle's env, taught by hand-written policies and this one")
    s.add_argument("--early-warning-set", action="append", type=_setting, metavar="KEY=VALUE",
                   help="env setting for the early-warning training population only (repeatable), e.g. "
                        "engagement=true for a policy trained without dropout; must leave the observation unchanged")
    s.add_argument("--early-warning-learners", type=_int_in(2, 10_000_000), default=512,
                   help="simulated learners per policy for --early-warning: as many for training and for the held-out "
                        "evaluation (default 512)")
    s.add_argument("--early-warning-policies", nargs="+", metavar="POLICY",
                   help="hand-written policies teaching the early-warning population besides the bundle's own "
                        "(default: random designer mastery zpdes)")
    s.add_argument("--early-warning-from", metavar="DIR",
                   help="ship a model trained by `pedagogym warn train --out DIR` instead of training one")
    s.set_defaults(func=_cmd_export)

    s = subparsers.add_parser("serve", help="serve a bundle over HTTP (POST /recommend, POST /risk, GET /health)")
    s.add_argument("bundle", help="bundle directory written by `pedagogym export`")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_int_in(1, 65535), default=8000)
    s.add_argument("--idle-gap-s", type=_positive_float, default=None,
                   help="break (seconds) after which a learner's next event opens a new session (default: the manifest's)")
    s.add_argument("--access-log", action="store_true")
    s.add_argument("--token", default=None,
                   help="require 'Authorization: Bearer TOKEN' on every endpoint but /health "
                        "(default: the PEDAGOGYM_TOKEN environment variable; unset: no authentication)")
    s.add_argument("--expect-sha256", default=None, metavar="HEX",
                   help="refuse the bundle unless its bundle_sha256 is this (as printed by `pedagogym export`)")
    s.add_argument("--max-body-bytes", type=_int_in(1, 1 << 30), default=8 << 20,
                   help="largest request body accepted (default 8 MiB; HTTP 413 beyond)")
    s.add_argument("--max-events", type=_int_in(1, 10_000_000), default=20_000,
                   help="most events in one request (default 20,000; HTTP 413 beyond)")
    s.add_argument("--workers", type=_int_in(1, 256), default=4,
                   help="threads running decisions off the event loop (default 4)")
    s.add_argument("--max-pending", type=_int_in(0, 100_000), default=64,
                   help="requests that may wait for a worker; the next get HTTP 503 (default 64)")
    s.set_defaults(func=_cmd_serve)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m pedagogym.export.cli``) until the verbs are wired into ``pedagogym``."""
    p = argparse.ArgumentParser(prog="pedagogym")
    add_export_parsers(p.add_subparsers(dest="verb", required=True))
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"pedagogym {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user errors: one line; bugs keep their traceback
        return exit_on_user_error(exc, f"pedagogym {args.verb}")


if __name__ == "__main__":
    sys.exit(main())
