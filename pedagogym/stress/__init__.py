"""Curriculum stress-testing for designers: ``pedagogym stress CURRICULUM.toml``.

Simulates a cohort of learners through a curriculum under one or more student models and
writes a self-contained report (``report.html`` with embedded figures, ``report.md``, the
tidy CSVs behind every figure, ``manifest.json``): time to mastery per skill, the completion
curve, bottlenecks and the dropout funnel along the designer's order, prerequisite gaps,
possible missing prerequisites, equity across population subgroups, sensitivity to
one-at-a-time changes, rarely reached and redundant items, and findings in plain words.

    from pedagogym.stress import StressConfig, run_stress
    run_stress(StressConfig(curriculum="maths_fractions", learners=10_000), out=Path("results/stress"))
"""
from pedagogym.stress.config import Prepared, StressConfig, StressConfigError, prepare
from pedagogym.stress.runner import Results, run_stress, simulate

__all__ = ["Prepared", "Results", "StressConfig", "StressConfigError", "prepare", "run_stress", "simulate"]
