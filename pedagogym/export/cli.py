"""``pedagogym export`` and ``pedagogym serve``: strings from the command line become typed
objects here. Wired into :mod:`pedagogym.cli` by :func:`add_export_parsers`."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)  # numbers, true/false, "strings"
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _cmd_export(args: argparse.Namespace) -> int:
    from pedagogym.export import export_bundle, resolve

    env = None
    if args.env or args.set:
        env = dict(args.set or [])
        if args.env:
            env["id"] = args.env
    source = resolve(args.checkpoint, env)
    print(f"exporting {source.kind} policy {source.name!r} ({len(source.built.feature_names)} features, "
          f"{source.built.curriculum.n_items} items; verifying on {args.verify_learners} simulated learners) -> {args.out}/",
          file=sys.stderr)
    report = export_bundle(source, args.out, verify_learners=args.verify_learners, overwrite=args.force)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from pedagogym.deploy.server import serve
    except ImportError as exc:
        print(f"pedagogym serve: {exc.name} is missing; install the extra: pip install 'pedagogym[serve]'", file=sys.stderr)
        return 2
    print(f"serving {args.bundle} on http://{args.host}:{args.port} (POST /recommend, GET /health)", file=sys.stderr)
    serve(args.bundle, host=args.host, port=args.port, idle_gap_s=args.idle_gap_s, access_log=args.access_log)
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
    s.add_argument("--verify-learners", type=int, default=32,
                   help="simulated learners for the parity check before writing (0 = skip; default 32)")
    s.add_argument("--force", action="store_true", help="overwrite an existing bundle in --out")
    s.add_argument("--json", action="store_true", help="compact one-line JSON report")
    s.set_defaults(func=_cmd_export)

    s = subparsers.add_parser("serve", help="serve a bundle over HTTP (POST /recommend, GET /health)")
    s.add_argument("bundle", help="bundle directory written by `pedagogym export`")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--idle-gap-s", type=float, default=None,
                   help="break (seconds) after which a learner's next event opens a new session (default: the manifest's)")
    s.add_argument("--access-log", action="store_true")
    s.set_defaults(func=_cmd_serve)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m pedagogym.export.cli``) until the verbs are wired into ``pedagogym``."""
    p = argparse.ArgumentParser(prog="pedagogym")
    add_export_parsers(p.add_subparsers(dest="verb", required=True))
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"pedagogym {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
