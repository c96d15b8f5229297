"""Timing of ``pedagogym fit --model all`` on about 400,000 responses (issue 21's budget: at
most 2 minutes on the project machine).

With ``--log FILE`` (any format ``pedagogym fit`` reads) the real file is used; otherwise a
synthetic log is generated (numpy, seeded) in one of two shapes, written to a temporary CSV
and read back like a user's file:

* ``assistments`` (default): shaped like the ASSISTments skill-builder log (533 learners,
  about 408,000 responses, 123 skills, about 17,000 problems): few learners with long, very
  unequal sequences (log-normal lengths, median about 500, a few thousand at most), worked
  in runs of one skill at a time, 140 items per skill, one skill per item as the pyBKT
  format gives (``--multi-skill 0.05``: 5% of items with a second skill).
* ``wide``: many short, equal learners (8,000 learners x 50 responses over 20 skills).

Responses follow a per-(learner, skill) BKT process with a learner ability shift; sessions
of 5-60 s between responses and a gap of hours to days between sessions.

Prints one JSON object: the log's shape, the load average before and after and the CPU
count (the machine is shared: compare timings only at similar load), wall seconds per model
(fit + held-out prediction, compilation included: ``fit_seconds``; the models run side by
side, one process per core, so the wall time is about ``sum_fit_seconds`` over the cores),
the total of ``fit_command`` (``total_seconds``: reading the log, the fits, the leaderboard,
the files) and the CPU seconds it and its fitting processes used (``cpu_seconds``: below
twice the wall time when other jobs held a core), plus the leaderboard's log losses. The
default run (400,000 responses, every model) takes about 2 minutes on the 2-core project
machine (about 90 s of it the fit); ``--each`` about triples that::

    python benchmarks/glops_fit_all_timing.py [--shape assistments|wide] [--responses N]
        [--multi-skill F] [--log FILE] [--models all] [--each]

``--each`` also times every model alone (a fresh ``fit_command`` per model, so each pays
its own compilations), after the ``all`` run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic(path: Path, shape: str = "assistments", responses: int = 400_000, multi_skill: float = 0.0,
              seed: int = 0) -> dict:
    """Write a synthetic log of about ``responses`` rows to ``path`` (CSV); return its shape.
    ``multi_skill``: the fraction of items that also exercise a second skill."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    if shape == "assistments":
        n_skills, items_per_skill = 123, 140
        n_learners = max(10, int(round(533 * responses / 408_000)))
        lengths = np.clip(rng.lognormal(np.log(500.0), 0.8, n_learners), 5, 4000)
        lengths = np.maximum(1, np.round(lengths * responses / lengths.sum())).astype(int)
        run_len = (3, 15)
    elif shape == "wide":
        n_skills, items_per_skill = 20, 4
        n_learners = max(10, responses // 50)
        lengths = np.full(n_learners, responses // n_learners)
        run_len = (1, 1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    n_items = n_skills * items_per_skill
    item_skill = np.repeat(np.arange(n_skills), items_per_skill)
    second = np.full(n_items, -1)
    if multi_skill > 0:
        two = rng.random(n_items) < multi_skill
        second[two] = (item_skill[two] + rng.integers(1, n_skills, two.sum())) % n_skills
    skill_of_item = np.where(second < 0, np.asarray([f"skill{k}" for k in item_skill], object),
                             np.asarray([f"skill{a};skill{b}" for a, b in zip(item_skill, np.maximum(second, 0))], object))
    p_init, p_learn = rng.uniform(0.1, 0.6, n_skills), rng.uniform(0.05, 0.3, n_skills)
    p_guess, p_slip = rng.uniform(0.1, 0.3, n_skills), rng.uniform(0.05, 0.15, n_skills)

    N = int(lengths.sum())
    learner = np.repeat(np.arange(n_learners), lengths)
    # skills in runs: each learner picks a skill, works a run of its items, then another
    item = np.empty(N, np.int64)
    pos = 0
    for n in lengths:
        k = 0
        while k < n:
            r = min(n - k, int(rng.integers(run_len[0], run_len[1] + 1)))
            s = rng.integers(0, n_skills)
            item[pos + k: pos + k + r] = s * items_per_skill + rng.integers(0, items_per_skill, r)
            k += r
        pos += n
    skill = item_skill[item]
    # BKT per (learner, skill): known after a geometric number of opportunities
    ability = rng.normal(0.0, 0.7, n_learners)
    key = learner * n_skills + skill
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.r_[True, ks[1:] != ks[:-1]]
    grp_start = np.maximum.accumulate(np.where(first, np.arange(N), 0))
    opp = np.arange(N) - grp_start  # opportunity number within (learner, skill)
    shift = 1 / (1 + np.exp(-ability[learner[order]]))
    p0 = np.clip(p_init[skill[order]] * (0.5 + shift), 0.01, 0.99)
    pl = np.clip(p_learn[skill[order]] * (0.5 + shift), 0.01, 0.9)
    known0 = np.repeat(rng.random(first.sum()), np.diff(np.r_[np.flatnonzero(first), N])) < p0
    learn_at = np.repeat(rng.geometric(pl[first]), np.diff(np.r_[np.flatnonzero(first), N]))
    known = known0 | (opp >= learn_at)
    pc = np.where(known, 1 - p_slip[skill[order]], p_guess[skill[order]])
    correct = np.empty(N, np.int8)
    correct[order] = rng.random(N) < pc
    # time: 5-60 s apart within sessions of 10-40 responses, 2 h - 5 days between sessions
    gaps = rng.uniform(5, 60, N)
    new_session = rng.random(N) < 1 / 25
    gaps[new_session] = rng.uniform(7200, 5 * 86400, new_session.sum())
    start = np.r_[0, np.cumsum(lengths)[:-1]]
    gaps[start] = 0
    ts = np.cumsum(gaps)
    ts = 1_600_000_000 + ts - np.repeat(ts[start], lengths) + np.repeat(rng.uniform(0, 3e7, n_learners), lengths)
    pd.DataFrame({
        "learner_id": np.asarray([f"u{k:05d}" for k in range(n_learners)], object)[learner],
        "item_id": np.asarray([f"i{k}" for k in range(n_items)], object)[item],
        "skill_id": skill_of_item[item],
        "correct": correct,
        "timestamp": np.round(ts, 1),
    }).to_csv(path, index=False)
    return {"shape": shape, "learners": n_learners, "responses": N, "skills": n_skills, "items": n_items,
            "multi_skill_items": int((second >= 0).sum()),
            "longest_learner": int(lengths.max()), "median_learner": float(np.median(lengths))}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children (the fitting
    processes of ``--model all``) so far."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed_fit(log: Path, models: str, out: Path) -> dict:
    import pandas as pd

    from pedagogym.fitting.cli import fit_command

    cpu0 = _cpu()
    t0 = time.perf_counter()
    fit_command([log], models, out, quiet=True, salt="bench")
    total = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    metrics = pd.read_csv(out / "metrics.csv")
    manifest = json.loads((out / "manifest.json").read_text())
    board = pd.read_csv(out / "leaderboard.csv") if (out / "leaderboard.csv").exists() else None
    fit_s = {m: round(float(s), 1) for m, s in zip(metrics["model"], metrics["fit_seconds"]) if m != "baseline"}
    return {"total_seconds": round(total, 1), "cpu_seconds": round(cpu, 1), "fit_seconds": fit_s,
            "sum_fit_seconds": round(sum(fit_s.values()), 1),  # the models run side by side: the wall is less
            "manifest_log": manifest["log"],
            "leaderboard_log_loss": None if board is None else {m: round(float(v), 4) for m, v in
                                                                 zip(board["model"], board["log_loss"])}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument("--shape", choices=("assistments", "wide"), default="assistments")
    ap.add_argument("--responses", type=int, default=400_000)
    ap.add_argument("--multi-skill", type=float, default=0.0, help="fraction of items with a second skill")
    ap.add_argument("--models", default="all")
    ap.add_argument("--each", action="store_true", help="also time each model alone")
    args = ap.parse_args()
    from pedagogym.fitting.fit import FITTERS

    result: dict = {"cpu_count": os.cpu_count(), "load_average_before": _load()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log = args.log
        if log is None:
            log = tmp / "synthetic.csv"
            result["log"] = {"synthetic": True, **synthetic(log, args.shape, args.responses, args.multi_skill)}
        else:
            result["log"] = {"file": str(log)}
        run = timed_fit(log, args.models, tmp / "out")
        info = run.pop("manifest_log")
        result["log"].update({"responses": info["interactions"], "learners": info["learners"],
                              "skills": info["skills"], "items": info["items"]})
        result["models"] = args.models
        result.update(run)
        result["load_average_after"] = _load()
        if args.each:
            names = list(FITTERS) if args.models == "all" else args.models.split(",")
            result["alone_seconds"] = {}
            for m in names:
                r = timed_fit(log, m, tmp / f"out_{m}")
                result["alone_seconds"][m] = r["total_seconds"]
            result["load_average_after_each"] = _load()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
