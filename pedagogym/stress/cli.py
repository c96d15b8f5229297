"""``pedagogym stress CURRICULUM.toml``: the command line of the stress report.

Wired into ``pedagogym/cli.py`` with::

    from pedagogym.stress.cli import add_stress_parser
    add_stress_parser(sub)

Exit codes: 0 report written; 2 invalid curriculum or setting (before any simulation).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pedagogym.errors import exit_on_user_error


def _cmd_stress(args: argparse.Namespace) -> int:
    from pedagogym.curriculum import CurriculumError
    from pedagogym.stress.config import StressConfig, prepare
    from pedagogym.stress.runner import simulate
    from pedagogym.stress.report import write_report

    t0 = time.perf_counter()
    say = (lambda s: None) if args.quiet else (lambda s: print(f"[{time.perf_counter() - t0:5.1f} s] {s}",
                                                                 file=sys.stderr))
    try:
        config = StressConfig(
            curriculum=args.curriculum, true_curriculum=args.true_curriculum, population=args.population,
            policy=args.policy, models=tuple(args.model or ("bkt",)), learners=args.learners, horizon=args.horizon,
            seed=args.seed, engagement=args.engagement, session_minutes=args.session_minutes,
            mastery_threshold=args.mastery_threshold, sensitivity=args.sensitivity,
            whatif_learners=args.whatif_learners)
        prepared = prepare(config)  # the curriculum is validated first, before any simulation
    except CurriculumError as exc:
        print(f"pedagogym stress: invalid curriculum: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # user errors: one line; bugs keep their traceback
        return exit_on_user_error(exc, "pedagogym stress")
    c = prepared.designer
    if args.out:
        out = Path(args.out)
    else:  # the default folder is named by the curriculum: only a safe name may build it
        from pedagogym.io import SAFE_NAME_RULE, confined, is_safe_name

        if not is_safe_name(f"stress-{c.name}"):
            print(f"pedagogym stress: error: the curriculum name {c.name!r} cannot name the default output folder "
                  f"results/stress-<name> (a name of {SAFE_NAME_RULE}); pass --out DIR", file=sys.stderr)
            return 2
        confined("results", f"stress-{c.name}", "output folder")
        out = Path("results") / f"stress-{c.name}"
    say(f"{c.name}: {c.n_skills} skills, {c.n_items} items; {config.learners:,} learners x {config.horizon} items, "
        f"model(s) {', '.join(config.models)}, policy {config.policy}, population {prepared.population.name}")
    results = simulate(prepared, say)
    manifest = write_report(results, out, started=t0)
    say(f"wrote {out}/report.html, report.md and {len(manifest['files'])} files")
    for line in results.tables["findings"].itertuples():
        print(f"- [{line.severity}] {line.finding.replace('`', '')}")
    print(f"{out / 'report.html'} ({manifest['wall_time_s']:.1f} s)")
    return 0


def add_stress_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``stress`` verb to ``pedagogym``'s sub-command parsers."""
    s = subparsers.add_parser(
        "stress", help="stress-test a curriculum: simulate learners through it and write a report for designers",
        description="Simulate learners through a curriculum and write report.html / report.md / CSVs: time to "
                    "mastery, bottlenecks, dropout funnel, prerequisite gaps, equity, sensitivity, findings.")
    s.add_argument("curriculum", help="the designer's curriculum: a .toml file or a built-in name")
    s.add_argument("--population", default="heterogeneous", help="built-in population or .toml (default heterogeneous)")
    s.add_argument("--policy", default="designer", help="sequencing policy (`pedagogym list --kind policy`; "
                                                        "default: the designer's order)")
    s.add_argument("--model", action="append", metavar="MODEL",
                   help="student model, repeatable (`pedagogym list --kind student_model`; default bkt)")
    s.add_argument("--learners", type=int, default=10_000, help="simulated learners (default 10,000)")
    s.add_argument("--horizon", type=int, default=200, help="items per learner at most (default 200)")
    s.add_argument("--true-curriculum", metavar="TOML",
                   help="what the simulated learners really obey (same ids; e.g. a prerequisite your file lacks)")
    s.add_argument("--out", help="output directory (default results/stress-<curriculum name>)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--session-minutes", type=float, default=20.0)
    s.add_argument("--mastery-threshold", type=float, default=0.95)
    s.add_argument("--no-engagement", dest="engagement", action="store_false",
                   help="no engagement dynamics, hence no dropout")
    s.add_argument("--no-sensitivity", dest="sensitivity", action="store_false", help="skip the what-if runs")
    s.add_argument("--whatif-learners", type=int, default=None,
                   help="screening learners per what-if variant (default: about learners / (2 x variants), "
                        "32 to 500; the strongest variants are then confirmed on several times as many)")
    s.add_argument("--quiet", action="store_true", help="no progress lines")
    s.set_defaults(func=_cmd_stress)
    return s


def main(argv: list[str] | None = None) -> int:
    """``python -m pedagogym.stress.cli ...`` (the same as ``pedagogym stress ...``)."""
    p = argparse.ArgumentParser(prog="pedagogym")
    add_stress_parser(p.add_subparsers(dest="verb", required=True))
    args = p.parse_args(["stress", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
