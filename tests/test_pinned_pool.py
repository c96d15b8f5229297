"""Worker processes pinned to their own cores (``pedagogym.pinned_pool``, used by
``pedagogym fit --model all``): results in job order, each worker on its share of the
cores, a job's exception re-raised in the caller, a worker that dies named."""
from __future__ import annotations

import pytest

from pedagogym.pinned_pool import WorkerError, run_jobs, usable_cores


def test_results_come_back_in_job_order_from_pinned_workers():
    assert run_jobs("operator:add", [(k,) for k in range(5)], workers=2, shared=10) == [10, 11, 12, 13, 14]
    cores = usable_cores()
    seen = run_jobs("os:sched_getaffinity", [()] * 4, workers=2, shared=0)
    share = max(1, len(cores) // 2)
    assert all(s <= set(cores) and len(s) in (share, len(cores) - share) for s in seen)


def test_a_job_error_is_raised_in_the_caller_and_a_dead_worker_is_named():
    with pytest.raises(ZeroDivisionError):
        run_jobs("operator:truediv", [(1,), (0,)], workers=1, shared=1)
    with pytest.raises(WorkerError, match="ended"):
        run_jobs("os:_exit", [()], workers=1, shared=3)
