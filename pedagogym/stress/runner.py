"""Run a stress test: validate, simulate (main run + what-ifs per student model), tabulate,
find, plot and write the report.

Compilation is the slowest part of a cold run on a small CPU, so the executables (one main
rollout and one what-if call per array shape, per model) are compiled in a small thread pool
as soon as their inputs exist, while earlier ones already run.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from pedagogym.policies.rollout import learner_keys
import pedagogym.stress.tables as T  # not through the package __init__, which imports this module
from pedagogym.stress.config import Prepared, StressConfig, curriculum_params, prepare
from pedagogym.stress.rollout import stress_rollout, whatif_rollout
from pedagogym.stress.whatif import Group, block_keys, groups, learners_per_variant, sensitivity, variants


@dataclass
class Results:
    """Everything the report is written from: the tidy tables (name -> DataFrame) and facts."""

    prepared: Prepared
    tables: dict[str, pd.DataFrame]
    facts: dict = field(default_factory=dict)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def simulate(prep: Prepared, log: Callable[[str], None] = lambda s: None) -> Results:
    cfg = prep.config
    n, h = cfg.learners, cfg.horizon
    vs = variants(prep.designer, cfg.easier_by) if cfg.sensitivity else []
    m = learners_per_variant(n, len(vs), cfg.whatif_learners) if vs else 0
    root = jax.random.PRNGKey(cfg.seed)
    keys = learner_keys(root, n)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    plans = []
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pedagogym-compile") as pool:
        for built in prep.envs:
            sim = curriculum_params(built.params, prep.truth)
            plan = sim if not prep.has_truth else curriculum_params(built.params, prep.designer)
            main: Future = pool.submit(stress_rollout.lower(built.env, prep.policy, h, sim, plan, keys[:n]).compile)
            gs: list[Group] = groups(built.params, prep.designer, prep.truth, vs) if vs else []
            wi = [pool.submit(whatif_rollout.lower(built.env, prep.policy, h, g.sim, g.plan,
                                                   block_keys(root, m, np.zeros(len(g), int))).compile) for g in gs]
            plans.append((built, sim, plan, main, gs, wi))
        timings["setup_s"] = time.perf_counter() - t0

        per_model: dict[str, list[pd.DataFrame]] = {}
        facts: dict = {"learners": n, "whatif_learners": m, "variants": max(len(vs) - 1, 0), "models": {}}
        for built, sim, plan, main, gs, wi in plans:
            model = built.config.model
            t = time.perf_counter()
            res = jax.block_until_ready(main.result()(sim, plan, keys[:n]))
            timings[f"{model}_main_s"] = time.perf_counter() - t
            log(f"{model}: {n:,} learners simulated")
            run = T.Run.of(model, prep.designer, prep.population.subgroup_names, h, res)
            learners = T.learners_table(run)
            out = {
                "learners": learners, "completion": T.completion_table(run), "skill_curves": T.skill_curve_table(run),
                "skills": T.skills_table(run), "items": T.items_table(run), "prereq_gaps": T.prereq_gaps_table(run),
                "missing_prereqs": T.missing_prereqs_table(run),
            }
            if gs:
                t = time.perf_counter()
                out["sensitivity"] = sensitivity(model, gs, lambda k, s, p, ks: jax.block_until_ready(
                    wi[k].result()(s, p, ks)), root, m, h)
                timings[f"{model}_whatif_s"] = time.perf_counter() - t
                log(f"{model}: {len(vs) - 1} what-if variants x {m} learners, the strongest confirmed on more")
            for k, v in out.items():
                per_model.setdefault(k, []).append(v)
            facts["models"][model] = {"family": built.env.learner.model.family}
    tables = {k: _concat(v) for k, v in per_model.items()}
    tables.setdefault("sensitivity", pd.DataFrame())
    tables["equity"] = T.equity_table(tables["learners"])
    tables["equity_gaps"] = T.equity_gaps_table(tables["learners"])
    tables["redundant"] = T.redundant_table(prep.designer)
    tables["difficulty_outliers"] = T.difficulty_outliers(prep.designer)
    timings["simulate_total_s"] = time.perf_counter() - t0
    facts["timings"] = timings
    return Results(prepared=prep, tables=tables, facts=facts)


def run_stress(config: StressConfig, out: Path, log: Callable[[str], None] = lambda s: None) -> dict:
    """Validate (curriculum first), simulate, write the report to ``out``; returns the manifest."""
    from pedagogym.stress.report import write_report

    t0 = time.perf_counter()
    prep = prepare(config)  # every validation error surfaces here, before any simulation
    results = simulate(prep, log)
    manifest = write_report(results, Path(out), started=t0)
    return manifest
