"""Executors: thin adapters that run segments somewhere and hand back their results.

``InProcessExecutor`` runs segments one by one in the calling process (deterministic; for tests
and debugging). ``ProcessPoolExecutor`` runs them on a pool of local worker processes (the
default). A population larger than the number of workers is time-multiplexed by the runner,
which never submits more segments than ``capacity``.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from abc import ABC, abstractmethod
from collections import deque

from firepbt.segments import Failure, Segment, SegmentResult, run_segment


class Executor(ABC):
    """Runs segments. ``submit`` never blocks; ``wait`` blocks until at least one result."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many segments may run at once."""

    @abstractmethod
    def submit(self, segment: Segment) -> None: ...

    @abstractmethod
    def wait(self) -> list[SegmentResult]:
        """Results of finished segments (at least one while any is pending)."""

    @abstractmethod
    def pending(self) -> int:
        """Segments submitted whose results were not yet returned."""

    def shutdown(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release workers."""


class InProcessExecutor(Executor):
    """Runs each segment in this process when results are asked for, in submission order."""

    def __init__(self) -> None:
        self._queue: deque[Segment] = deque()

    @property
    def capacity(self) -> int:
        return 1

    def submit(self, segment: Segment) -> None:
        self._queue.append(segment)

    def wait(self) -> list[SegmentResult]:
        return [run_segment(self._queue.popleft())] if self._queue else []

    def pending(self) -> int:
        return len(self._queue)


def _init_worker(threads: int = 1) -> None:
    """One thread per worker process (per CPU it was given): two workers on two cores must not
    fight over threads. torch, numpy's BLAS and OpenMP read these variables when first imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def check_pool(workers: int, timeout: float | None) -> None:
    """Refuse a pool without workers or a timeout that is not a positive number of seconds."""
    if workers < 1:
        raise ValueError(f"workers: need at least 1, got {workers}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"segment_timeout: must be a positive number of seconds, got {timeout}")


class ProcessPoolExecutor(Executor):
    """Runs segments on ``workers`` local processes. A worker that dies is recorded as a failure
    of the segments it held, and the pool is restarted. A segment running longer than
    ``timeout`` seconds is stopped (the pool's processes are killed) and recorded as a timeout;
    the other segments it interrupted run again at no cost."""

    def __init__(
        self, workers: int = 2, start_method: str | None = None, timeout: float | None = None
    ) -> None:
        check_pool(workers, timeout)
        self.workers = workers
        self.timeout = timeout
        self._started: dict[cf.Future[SegmentResult], float] = {}
        methods = multiprocessing.get_all_start_methods()
        self.start_method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future[SegmentResult], Segment] = {}

    @property
    def capacity(self) -> int:
        return self.workers

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context(self.start_method)
            self._pool = cf.ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_init_worker
            )
        return self._pool

    def submit(self, segment: Segment) -> None:
        pool = self._ensure_pool()
        try:
            future = pool.submit(run_segment, segment)
        except cf.process.BrokenProcessPool:
            self._restart()
            future = self._ensure_pool().submit(run_segment, segment)
        self._futures[future] = segment
        self._started[future] = time.monotonic()  # never more segments than workers: they start

    def wait(self) -> list[SegmentResult]:
        if not self._futures:
            return []
        limit = None
        if self.timeout is not None:
            earliest = min(self._started[f] for f in self._futures)
            limit = max(0.0, earliest + self.timeout - time.monotonic())
        done, _ = cf.wait(list(self._futures), timeout=limit, return_when=cf.FIRST_COMPLETED)
        if not done:
            return self._stop_hung()
        results = []
        broken = False
        for future in done:
            segment = self._futures.pop(future)
            self._started.pop(future, None)
            try:
                results.append(future.result())
            except cf.process.BrokenProcessPool as e:
                broken = True
                results.append(
                    _died(
                        segment,
                        f"a worker process died ({e}); if every segment "
                        "fails this way, check that the script calling firepbt.run "
                        "guards it with `if __name__ == '__main__':`",
                    )
                )
            except Exception as e:  # e.g. the segment could not be pickled
                results.append(_died(segment, f"{type(e).__name__}: {e}", kind="submit"))
        if broken:
            # Every other in-flight segment of a broken pool is lost too.
            for segment in list(self._futures.values()):
                results.append(_died(segment, "its worker pool broke while it ran"))
            self._futures.clear()
            self._started.clear()
            self._restart()
        return results

    def _stop_hung(self) -> list[SegmentResult]:
        """Kill the pool's processes to stop segments past the timeout; the others it ran are
        reported as interrupted (the runner queues them again without counting an attempt)."""
        assert self.timeout is not None
        now = time.monotonic()
        results = []
        for future, segment in self._futures.items():
            if now - self._started[future] >= self.timeout:
                message = f"the segment ran past the {self.timeout:g} s segment_timeout"
                results.append(_died(segment, message, kind="timeout"))
            else:
                message = "stopped with a hung segment's worker pool; it runs again"
                results.append(_died(segment, message, kind="interrupted"))
        if self._pool is not None:
            # concurrent.futures has no way to stop one task: end the pool's processes.
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()
        self._futures.clear()
        self._started.clear()
        self._restart()
        return results

    def pending(self) -> int:
        return len(self._futures)

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None


def _died(segment: Segment, message: str, kind: str = "worker_died") -> SegmentResult:
    now = time.time()
    return SegmentResult(segment, failure=Failure(kind, message), started=now, finished=now)
