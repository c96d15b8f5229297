"""Where the grid cells of an experiment are computed.

A backend turns a list of cells into ``(cell, arrays, error)`` triples, yielded as each cell
finishes; the runner (this process) writes every result to ``cells/<cell>.npz`` atomically
the moment it arrives, so a cell is either complete on disk or absent.

- :class:`LocalBackend` (default): one cell after another in this process. The learner axis
  of each cell is still split over every visible device (see :func:`pedagogym.policies.rollout.evaluate`).
- :class:`RayBackend`: every cell is a Ray task. ``address=None`` starts a private local Ray
  instance with ``workers`` CPUs; ``address="auto"`` or ``"HOST:6379"`` joins a running
  cluster (``ray start --head`` on one node, ``ray start --address=HOST:6379`` on the others;
  every node needs the same pedagogym installed). Results come back to the driver through
  Ray's object store, so workers need no shared filesystem. A task that fails or whose
  worker dies (after ``max_retries`` retries) is reported as an error for its cell only; the
  others go on, and a rerun of the same command computes just the missing cells.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pedagogym.errors import UsageError
from pedagogym.experiments.cells import Cell, compute_cell

CellResult = tuple["Cell", "dict[str, np.ndarray] | None", "str | None"]


@dataclass(frozen=True)
class CellJob:
    """What computing one cell needs besides the cell: picklable, sent to every Ray task."""

    learners: int
    chunk_learners: int | None

    def __post_init__(self) -> None:
        if self.chunk_learners is not None and (not isinstance(self.chunk_learners, int) or self.chunk_learners < 0):
            raise UsageError(f"chunk_learners: expected a positive integer (or 0: all learners of a cell at once), "
                             f"got {self.chunk_learners!r}")

    def __call__(self, cell: "Cell") -> dict[str, np.ndarray]:
        return compute_cell(cell, self.learners, self.chunk_learners)


@dataclass(frozen=True)
class LocalBackend:
    """Cells one after another in this process (errors propagate: nothing to lose but the
    cell being computed, and a rerun resumes)."""

    def map_cells(self, job: CellJob, cells: list["Cell"]) -> Iterator[CellResult]:
        for cell in cells:
            yield cell, job(cell), None

    def describe(self) -> dict[str, Any]:
        return {"name": "local"}


def _run_cell(job: CellJob, cell: "Cell") -> dict[str, np.ndarray]:
    return job(cell)


def _describe(exc: BaseException) -> str:
    """One line for the manifest: the task's own exception where it raised one (Ray wraps it
    in a ``RayTaskError`` whose text is a remote traceback), else Ray's error."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


@dataclass(frozen=True)
class RayBackend:
    """Every cell a Ray task (``pip install 'pedagogym[dist]'``).

    address:     None: start a local Ray instance (shut down afterwards); "auto" or
                 "HOST:PORT": join that cluster. If Ray is already initialised in this
                 process (e.g. by the caller), that session is used as it is.
    workers:     at most this many cells in flight (a local instance gets this many CPUs);
                 None: one per CPU of the cluster.
    gpus_per_cell: GPUs Ray reserves for each cell's task (e.g. 1, or 0.25 for four cells
                 sharing a GPU). 0 (default): CPU tasks; Ray hides the GPUs from a task that
                 reserved none, so on a GPU cluster set this or the cells run on CPUs.
    max_retries: Ray retries of a task whose worker died, before its cell counts as failed.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_cell: float = 0.0
    max_retries: int = 1

    def __post_init__(self) -> None:
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise UsageError(f"--workers: expected a positive integer, got {self.workers!r}")
        if not self.gpus_per_cell >= 0:
            raise UsageError(f"--gpus-per-cell: expected a number >= 0, got {self.gpus_per_cell!r}")

    def describe(self) -> dict[str, Any]:
        return {"name": "ray", "address": self.address, "workers": self.workers, "gpus_per_cell": self.gpus_per_cell,
                "max_retries": self.max_retries}

    def _init(self) -> bool:
        """Connect to (or start) Ray; True if this call started the session."""
        try:
            import ray
        except ImportError:
            raise UsageError("--backend ray needs Ray: pip install 'pedagogym[dist]' (ray>=2.9)") from None
        if ray.is_initialized():
            return False
        with warnings.catch_warnings():
            # JAX warns on every fork; Ray's fork is followed by exec (its raylet and workers
            # are new processes), so JAX's threads are never copied.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            if self.address is None:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=self.address, log_to_driver=False)
        return True

    def map_cells(self, job: CellJob, cells: list["Cell"]) -> Iterator[CellResult]:
        if not cells:
            return
        import ray

        started = self._init()
        try:
            remote = ray.remote(num_cpus=1, num_gpus=self.gpus_per_cell, max_retries=self.max_retries)(_run_cell)
            limit = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            waiting = iter(cells)
            pending: dict[Any, Cell] = {}

            def submit() -> None:
                for cell in waiting:
                    pending[remote.remote(job, cell)] = cell
                    if len(pending) >= limit:
                        return

            submit()
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ref)
                try:
                    arrays = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task raised, or its worker/node died
                    yield cell, None, _describe(exc)
                else:
                    yield cell, arrays, None
                del ref
                submit()
        finally:
            if started:
                ray.shutdown()
