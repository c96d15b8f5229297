"""``pedagogym fit``: calibrate student models and a population from learning logs.

The lead wires :func:`add_arguments` / :func:`run` (or :func:`fit_command` directly) into
``pedagogym.cli``; strings from the command line become typed values here.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from pedagogym.errors import UsageError
from pedagogym.pinned_pool import usable_cores
from pedagogym.schema import SECONDS_PER_DAY


SLOW_FIRST = {"actr": 47, "irt2pl": 29, "fsrs": 25, "bkt": 25, "irt1pl": 21, "hlr": 7, "efc": 6, "pfa": 5}  # seconds alone, 400k responses: longest first


def _fit_in_worker(data, name: str):  # in a worker process of pedagogym.pinned_pool
    from pedagogym.fitting.fit import fit

    log, options = data
    return fit(log, name, **options)


def _fit_side_by_side(log, names: list[str], options: dict, workers: int) -> list:
    """Fit the models ``workers`` at a time, longest first (a shorter tail), each worker a
    process pinned to its share of the cores (:mod:`pedagogym.pinned_pool`: threads of one
    process were measured slower). Each fit is independent and seeded, so results do not
    depend on the order they finish in, nor on the process."""
    from pedagogym.pinned_pool import run_jobs

    slow_first = sorted(names, key=lambda n: -SLOW_FIRST.get(n, 0))
    fitted = run_jobs("pedagogym.fitting.cli:_fit_in_worker", [(n,) for n in slow_first], workers, (log, options))
    by_name = dict(zip(slow_first, fitted))
    return [by_name[n] for n in names]


def fit_command(logs: str | Path | Sequence[str | Path], model: str | Sequence[str], out: str | Path, *,
                salt: str | None = None, holdout: float = 0.2, seed: int = 0, min_group_size: int = 10,
                forgetting: bool = False, fsrs_weights: str = "default", max_trait_interactions: int = 20_000,
                session_gap_minutes: float = 30.0, per_learner: bool = False, quiet: bool = False,
                num_fits: int = 5, allow_partial: bool = False, format: str = "auto",
                test: str | Path | Sequence[str | Path] | None = None, max_guess_slip: float = 0.5,
                workers: int | None = None) -> int:
    """Fit one or more models (``"bkt"``, ``"bkt,pfa"`` or a list) to the log file(s) and write
    to ``out``: ``population_<model>.toml`` per model, ``curriculum.toml``, ``report.md``,
    ``metrics.csv``, ``params_<model>.csv``, ``calibration.png``, ``manifest.json``.
    Returns 0. Raises ``LogError`` / ``FitError`` (ValueError) on bad input, and
    ``FitError`` naming each skill that could not be fitted unless ``allow_partial``.
    No file written holds NaN or inf (a metric without a value is left blank / null).

    ``format``: the log layout (``auto`` from the header; see :mod:`.formats`). ``test``: a
    separate test log (same format): its learners are predicted online from their own
    earlier responses with the parameters fitted on ``logs`` (no refit); ``holdout`` is
    then unused. ``model="all"`` fits every model and writes ``leaderboard.md`` /
    ``leaderboard.csv``. ``workers``: models fitted at a time (default: one per CPU core).
    """
    from pedagogym.io import atomic_write, atomic_write_json, atomic_write_text, versions
    from pedagogym.fitting.fit import NOT_TIMED, fit, fitter_for
    from pedagogym.fitting.log import salt_bytes
    from pedagogym.fitting.formats import read_log
    from pedagogym.fitting.log import concat_logs
    from pedagogym.fitting.population_file import dumps_toml, write_population
    from pedagogym.fitting.report import (calibration_plot, csv_text, finite_or_none, metrics_csv, report_markdown,
                                          skill_params_csv)

    t0 = time.perf_counter()
    from pedagogym.fitting.fit import FITTERS

    models = [m.strip() for m in (model.split(",") if isinstance(model, str) else model) if m.strip()]
    if models == ["all"]:
        models = list(FITTERS)
    if not models:
        raise UsageError("no model given (e.g. --model bkt or --model bkt,pfa,irt2pl)")
    names = [fitter_for(m).name for m in models]  # unknown names fail here, before reading the log
    if len(set(names)) != len(names):
        raise UsageError(f"a model is named twice: {models}")
    out = Path(out)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))  # noqa: E731
    salt_key = salt_bytes(salt)  # one salt for the training and test files
    log = read_log(list(logs) if isinstance(logs, (list, tuple)) else logs, salt=salt_key, format=format)
    for n in log.notes:
        say(f"{log.source}: {n}")
    say(f"read {log.n_interactions} responses of {log.n_learners} learners ({log.n_items} items, {log.n_skills} skills)")
    test_learners = None
    if test is not None:
        test_log = read_log(list(test) if isinstance(test, (list, tuple)) else test, salt=salt_key, format=format)
        say(f"test: {test_log.n_interactions} responses of {test_log.n_learners} learners")
        log, test_learners = concat_logs(log, test_log)
    options = dict(holdout=holdout, seed=seed, min_group_size=min_group_size, forgetting=forgetting,
                   fsrs_weights=fsrs_weights, max_trait_interactions=max_trait_interactions,
                   session_gap_minutes=session_gap_minutes, per_learner=per_learner, num_fits=num_fits,
                   allow_partial=allow_partial, test_learners=test_learners, max_guess_slip=max_guess_slip)
    workers = max(1, min(len(names), workers if workers is not None else len(usable_cores())))
    if workers > 1:
        import jax

        if jax.default_backend() != "cpu":  # one accelerator the processes would share: one fit at a time
            workers = 1
    say(f"fitting {', '.join(names)}" + (f" ({workers} at a time)" if workers > 1 else "") + " ...")
    results = (_fit_side_by_side(log, names, options, workers) if workers > 1
               else [fit(log, name, **options) for name in names])
    for name, r in zip(names, results):
        if r.failed_skills:
            say(f"  {name}: {len(r.failed_skills)} skill(s) not fitted (allowed): {', '.join(r.failed_skills)}")
        say(f"  {name}: held-out log loss {r.metrics['log_loss']:.4f}, AUC {r.metrics['auc']:.3f}, "
            f"RMSE {r.metrics['rmse']:.4f} ({r.fit_seconds:.1f} s)")
    files = []
    for r in results:
        write_population(r, out / f"population_{r.model}.toml")
        atomic_write_text(out / f"params_{r.model}.csv", skill_params_csv(r))
        files += [f"population_{r.model}.toml", f"params_{r.model}.csv"]
        if per_learner and r.per_learner is not None:
            cols = list(r.per_learner)
            atomic_write_text(out / f"per_learner_{r.model}.csv",
                              csv_text(cols, zip(*(list(r.per_learner[c]) for c in cols))))
            files.append(f"per_learner_{r.model}.csv")
    atomic_write_text(out / "curriculum.toml", dumps_toml(
        log.curriculum(name="fitted-from-log").to_dict(), comment="Skills and items of the fitted log (no prerequisites)."))
    atomic_write_text(out / "metrics.csv", metrics_csv(results))
    if len(results) > 1 and len(results[0].heldout_y):
        from pedagogym.fitting.leaderboard import leaderboard, leaderboard_csv, leaderboard_markdown

        y0 = results[0].heldout_y
        entries = [(r.model, r.heldout_y, r.heldout_p) for r in results]
        entries.append(("baseline", y0, np.full(len(y0), results[0].baseline_rate)))
        rows = leaderboard(entries, results[0].heldout_learner, seed=seed)
        where = "a separate test file" if test is not None else f"{holdout:.0%} of learners held out, seed {seed}"
        atomic_write_text(out / "leaderboard.csv", leaderboard_csv(rows))
        untimed = tuple(r.model for r in results if NOT_TIMED in r.notes)  # the fit's own applicability note
        atomic_write_text(out / "leaderboard.md", leaderboard_markdown(rows, where, not_applicable=untimed))
        files += ["leaderboard.md", "leaderboard.csv"]
        say("leaderboard: " + ", ".join(f"{r['rank']}. {r['model']} ({r['log_loss']:.4f})" for r in rows))
    atomic_write(out / "calibration.png", lambda p: calibration_plot(results, p))
    files += ["curriculum.toml", "metrics.csv", "calibration.png", "report.md", "manifest.json"]
    summary = {"learners": log.n_learners, "interactions": log.n_interactions, "items": log.n_items,
               "skills": log.n_skills, "span_days": float(log.timestamp.max() - log.timestamp.min()) / SECONDS_PER_DAY,
               "reading": list(log.notes)}
    options = {"models": names, "holdout": holdout, "seed": seed, "min_group_size": min_group_size,
               "forgetting": forgetting, "fsrs_weights": fsrs_weights, "max_trait_interactions": max_trait_interactions,
               "session_gap_minutes": session_gap_minutes, "per_learner": per_learner, "salt_given": salt is not None,
               "num_fits": num_fits, "allow_partial": allow_partial, "format": format,
               "test_file": test is not None, "max_guess_slip": max_guess_slip}
    atomic_write_text(out / "report.md", report_markdown(results, summary, options, files))
    atomic_write_json(out / "manifest.json", finite_or_none({
        "command": "fit", "options": options, "log": summary, "n_log_files": len(logs) if isinstance(logs, (list, tuple)) else 1,
        "versions": versions(), "wall_time_s": round(time.perf_counter() - t0, 3),
        "metrics": {r.model: r.metrics for r in results},
        "failed_skills": {r.model: r.failed_skills for r in results if r.failed_skills},
    }))
    say(f"wrote {out}/ ({', '.join(files)})")
    return 0


def _number(kind, low: float, low_open: bool, what: str):
    """An argparse type: a finite ``kind`` above ``low`` (argparse prints the error, exit 2)."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(v) or (v <= low if low_open else v < low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    return parse


def _fraction(text: str) -> float:
    v = _number(float, 0.0, False, "a fraction in [0, 1)")(text)
    if v >= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``fit`` subcommand's arguments."""
    from pedagogym.fitting.formats import FORMAT_NAMES

    p.add_argument("logs", nargs="+", help="log file(s) or directories: CSV (.csv, .csv.gz) or Parquet (needs pyarrow)")
    p.add_argument("--format", choices=FORMAT_NAMES, default="auto",
                   help="log layout (default auto, from the header): pedagogym, pybkt (ASSISTments skill builder), "
                        "duolingo (half-life regression), anki (FSRS revlog), ednet (KT1 + questions.csv)")
    p.add_argument("--test", nargs="+", default=None, metavar="TEST",
                   help="separate test log(s): predicted online with the fitted parameters, no refit "
                        "(instead of --holdout)")
    p.add_argument("--model", default="bkt", help="model(s) to fit, comma-separated: bkt, irt1pl, irt2pl (irt), pfa, "
                                                  "hlr, efc, actr, fsrs, or all (default bkt)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--salt", default=None, help="salt for pseudonymising learner ids (default: random per run; "
                                                "never written to outputs)")
    p.add_argument("--holdout", type=_fraction, default=0.2,
                   help="fraction of learners held out for metrics (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-group-size", type=_number(int, 1, False, "an integer >= 1"), default=10,
                   help="smallest subgroup reported on its own (default 10)")
    p.add_argument("--forgetting", action="store_true", help="BKT: fit a forgetting rate")
    p.add_argument("--fsrs-weights", choices=["default", "fit"], default="default")
    p.add_argument("--max-trait-interactions", type=_number(int, 1, False, "an integer >= 1"), default=20_000,
                   help="responses used to estimate the trait distribution (default 20000)")
    p.add_argument("--session-gap-minutes", type=_number(float, 0.0, True, "a number of minutes > 0"), default=30.0,
                   help="a pause longer than this starts a new session (default 30)")
    p.add_argument("--num-fits", type=_number(int, 1, False, "an integer >= 1"), default=5,
                   help="BKT: EM starting points per skill, the best likelihood kept (default 5, as pyBKT)")
    p.add_argument("--max-guess-slip", type=_number(float, 0.0, True, "a number in (0, 1]"), default=0.5,
                   help="BKT: bound on guess and slip (default 0.5: the known state answers better; 1 lifts it, "
                        "the unconstrained model pyBKT fits)")
    p.add_argument("--allow-partial", action="store_true",
                   help="write the fit even if some skills cannot be fitted (they keep the model's defaults and are "
                        "listed); without it such a fit is an error (exit 2)")
    p.add_argument("--per-learner", action="store_true",
                   help="also write per-learner trait estimates keyed by pseudonym (off by default)")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    return fit_command(args.logs, args.model, args.out, salt=args.salt, holdout=args.holdout, seed=args.seed,
                       min_group_size=args.min_group_size, forgetting=args.forgetting, fsrs_weights=args.fsrs_weights,
                       max_trait_interactions=args.max_trait_interactions, session_gap_minutes=args.session_gap_minutes,
                       per_learner=args.per_learner, quiet=args.quiet, num_fits=args.num_fits,
                       allow_partial=args.allow_partial, format=args.format, test=args.test,
                       max_guess_slip=args.max_guess_slip)


def add_validate_arguments(p: argparse.ArgumentParser) -> None:
    """The ``validate`` subcommand's arguments."""
    from pedagogym.fitting.formats import FORMAT_NAMES

    p.add_argument("fit_dir", help="a directory written by `pedagogym fit`")
    p.add_argument("logs", nargs="+", help="the real log file(s) to compare with (e.g. the test learners)")
    p.add_argument("--out", required=True, help="output directory (report.html, checks.csv, manifest.json)")
    p.add_argument("--model", default=None, help="which fitted model (default: the first in the fit)")
    p.add_argument("--format", choices=FORMAT_NAMES, default="auto")
    p.add_argument("--replicas", type=_number(int, 10, False, "an integer >= 10"), default=40,
                   help="simulated learners per real learner (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")


def run_validate(args: argparse.Namespace) -> int:
    from pedagogym.fitting.validate import validate_command

    return validate_command(args.fit_dir, args.logs, args.out, model=args.model, replicas=args.replicas,
                            seed=args.seed, format=args.format, quiet=args.quiet)
