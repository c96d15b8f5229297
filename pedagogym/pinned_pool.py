"""Worker processes, each pinned to its own share of the CPU cores, for independent jobs.

Independent, CPU-bound JAX jobs (``pedagogym fit --model all``: one model per job) run
faster in processes pinned to their own cores than in threads of one process: measured on
the 2-core project machine with 400,000 responses, a model fitted beside another in the
same process took 20-50% longer than alone, and 2-10% longer beside one in another process
pinned to the other core (``benchmarks/glops_fit_all_timing.py``).

Each worker is a fresh interpreter that pins itself before it imports anything (its first
statement), so every thread it ever starts, XLA's and OpenBLAS's included, runs on its
cores (pinning changes only the calling thread's affinity, not that of threads already
running; importing :mod:`pedagogym.fitting` starts XLA's threads). Unlike :mod:`multiprocessing`'s ``spawn``, it never
re-imports the caller's ``__main__``: a script that calls :func:`run_jobs` needs no
``if __name__ == "__main__"`` guard. Jobs are named ``"module:function"``; a job's
arguments and result travel pickled over the worker's stdin/stdout; its stderr is the
caller's. Where the platform has no affinity (macOS) workers are not pinned.
"""
from __future__ import annotations

import importlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from typing import Any, Sequence


def usable_cores() -> list[int]:
    """The cores this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return list(range(os.cpu_count() or 1))


class WorkerError(RuntimeError):
    """A worker process ended without answering (killed, out of memory, a crash)."""


_BOOT = ("import os, sys\n"
         "if hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {cores})\n"
         "from pedagogym.pinned_pool import _serve\n"
         "_serve()\n")


def _start(cores: set[int]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _BOOT.format(cores=sorted(cores))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def run_jobs(function: str, jobs: Sequence[tuple], workers: int, shared: Any = None) -> list:
    """``function(shared, *job)`` for every job, ``workers`` processes at a time, worker ``k``
    pinned to cores ``k, k + workers, ...`` of this process's cores; jobs are handed out in
    the order given (put the longest first for a short tail). ``shared`` is sent once to
    each worker. Returns the results in the jobs' order; the first job that raised re-raises
    here (its exception, pickled), after the other workers finish their current job."""
    cores = usable_cores()
    todo: queue.Queue = queue.Queue()
    for k, job in enumerate(jobs):
        todo.put((k, job))
    results: dict[int, tuple[bool, Any]] = {}
    failed = threading.Event()
    errors: list[BaseException] = []

    def serve(k: int) -> None:
        with _start(set(cores[k % workers::workers]) or set(cores)) as proc:  # closes the pipes, waits
            job = None
            try:
                pickle.dump((function, shared), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                while not failed.is_set():
                    try:
                        index, job = todo.get_nowait()
                    except queue.Empty:
                        break
                    pickle.dump(job, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                    proc.stdin.flush()
                    try:
                        results[index] = pickle.load(proc.stdout)
                    except EOFError:
                        results[index] = (False, WorkerError(f"worker process {proc.pid} ended (exit status "
                                                             f"{proc.wait()}) during job {job!r}"))
                    if not results[index][0]:
                        failed.set()
                        break
            except BrokenPipeError:  # the worker died before reading its data or job
                errors.append(WorkerError(f"worker process {proc.pid} ended (exit status {proc.wait()}) "
                                          f"before {'its set-up' if job is None else f'job {job!r}'}"))
                failed.set()
            try:
                proc.stdin.close()  # the worker's cue to exit
            except BrokenPipeError:
                pass

    threads = [threading.Thread(target=serve, args=(k,), daemon=True) for k in range(max(1, min(workers, len(jobs))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(len(jobs)):
        if k in results and not results[k][0]:
            raise results[k][1]
    if errors:
        raise errors[0]
    return [results[k][1] for k in range(len(jobs))]


def _serve() -> None:  # in the worker: the function and shared data, then one job after another
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # prints of a job must not corrupt the result stream
    name, shared = pickle.load(stdin)
    module, _, attr = name.partition(":")
    function = getattr(importlib.import_module(module), attr)
    while True:
        try:
            job = pickle.load(stdin)
        except EOFError:
            return
        try:
            answer = (True, function(shared, *job))
        except Exception as exc:  # noqa: BLE001 - every job error goes back to the caller
            answer = (False, exc)
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
            data = pickle.dumps((False, RuntimeError(f"{name}{job!r}: {answer[1]!r} (not picklable: {exc})")))
        stdout.write(data)
        stdout.flush()
