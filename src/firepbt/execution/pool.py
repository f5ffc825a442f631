"""The process pool: segments run on local worker processes of the executor's own (the default
executor). A population larger than the number of workers is time-multiplexed by the
controller, which never submits more segments than ``capacity``.
"""

from __future__ import annotations

import multiprocessing.connection as mp_connection
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from firepbt.errors import FailureKind
from firepbt.execution.processes import WorkerProcesses
from firepbt.execution.protocol import (
    QUEUED_PER_WORKER,
    Unloadable,
    died,
    one_by_one,
    serve,
)
from firepbt.segments import Segment, SegmentResult
from firepbt.trainable import ships_by_value


class ProcessPoolExecutor(WorkerProcesses):
    """Runs segments on ``workers`` local processes of its own. Each process trains one segment
    at a time and holds one more in its pipe, which it starts as soon as it sends the result of
    the first back. A segment whose source checkpoint a process holds in memory goes to that
    process when it has room, so a member that continues there is neither written out nor read
    back.

    A process that dies is recorded as a failure of the segment it ran and replaced; a segment
    running longer than ``timeout`` seconds is stopped by killing its process (recorded as a
    ``timeout``), and the other processes go on untouched.

    With ``gpus_per_worker`` (a whole number, or 1/k of a device to share one among k workers),
    each process sees only its own GPUs (``CUDA_VISIBLE_DEVICES``), handed out in order over
    ``devices`` (default: the GPUs this process sees); see :mod:`firepbt.execution.devices`. A
    process that replaces a dead one gets the same devices.

    Each process uses one thread in torch, OpenMP and BLAS (numpy's included) unless
    ``OMP_NUM_THREADS`` says otherwise, and, with glibc, keeps the memory it frees for reuse
    rather than faulting it back in every step: up to 128 MiB of freed memory may stay mapped
    per heap, one per thread that allocates, unless ``MALLOC_*_`` variables or
    ``GLIBC_TUNABLES`` tune glibc's allocator.

    Args:
        workers: How many worker processes.
        start_method: ``"fork"``, ``"forkserver"`` or ``"spawn"``; by default the processes are
            forked while that is safe (one thread, no torch, jax, tensorflow or cupy imported
            yet) and started from a fork server otherwise.
        timeout: Seconds after which a running segment is stopped (default: none).
        gpus_per_worker: GPUs per process: a whole number, or 1/k of one.
        devices: The GPUs to hand out (default: every GPU this process sees).
    """

    @property
    def capacity(self) -> int:
        return self.workers * QUEUED_PER_WORKER

    # -- the Executor contract --------------------------------------------------------------

    def submit(self, segment: Segment) -> None:
        self._ensure_workers()
        room = [i for i, p in enumerate(self._procs) if len(p.segments) < QUEUED_PER_WORKER]
        if not room:
            raise RuntimeError(
                f"ProcessPoolExecutor: all {self.workers} workers are busy; submit at most "
                "capacity segments at once"
            )
        holder = segment.source.holder if segment.source is not None else ""
        by_name = {p.name: i for i, p in enumerate(self._procs)}
        holding = by_name.get(holder)
        if holding in room:  # it goes on from that process's memory (the runner counts on it)
            index = holding
        else:  # a process that runs nothing if there is one, else one that runs one segment
            idle = [i for i in room if not self._procs[i].segments]
            index = choose_worker(idle or room, (self._home.get(segment.member),), self._home)
        proc = self._procs[index]
        try:
            self._send(proc, segment, ships_by_value(segment.trainable))
        except (OSError, ValueError):  # the process is gone: the next wait reports it
            pass
        except Exception as e:  # e.g. the segment could not be pickled
            self._early.append(died(segment, f"{type(e).__name__}: {e}", kind=FailureKind.SUBMIT))
            return
        if not proc.segments:
            proc.started = time.monotonic()
        proc.segments.append(segment)

    def wait(self) -> list[SegmentResult]:
        """Results of the workers whose task ended, died or ran past the timeout. The one loop
        of both pools: ``_dispatch``, ``_trains``, ``_collect`` and ``_stop_hung`` are what a
        subclass does its own way."""
        results, self._early = self._early, []
        self._dispatch()
        self._forget_idle()
        while not results and self.pending():
            busy = [i for i in range(len(self._procs)) if self._trains(i)]
            if not busy:  # no task could be sent: their results are early
                results, self._early = self._early, []
                continue
            limit = None
            if self.timeout is not None:
                earliest = min(self._procs[i].started for i in busy)
                limit = max(0.0, earliest + self.timeout - time.monotonic())
            starting = [p.control for p in self._procs if not p.started_up]
            handles: list[Any] = [self._procs[i].tasks for i in busy]
            handles += [self._procs[i].process.sentinel for i in busy] + starting
            ready = mp_connection.wait(handles, timeout=limit)
            if not ready:
                results += self._stop_hung()
                continue
            if any(c in ready for c in starting):
                self._hear_started([p for p in self._procs if p.control in ready])
            for i in busy:
                proc = self._procs[i]
                if proc.tasks in ready or proc.process.sentinel in ready:
                    results += self._collect(i)
            self._dispatch()  # the next task of a worker that is done
            results += self._early
            self._early = []
        return results

    def _dispatch(self) -> None:  # noqa: B027 - a hook: submit sends each segment at once
        """Send the tasks that wait to be sent (a subclass that forms batches sends them)."""

    def pending(self) -> int:
        return sum(len(p.segments) for p in self._procs) + len(self._early)

    def running(self) -> set[int]:
        """Members whose segment a worker process trains now (not those queued behind it)."""
        return {p.segments[0].member for p in self._procs if p.segments}

    def idle(self, worker: str) -> bool:
        proc = self._named(worker)
        return proc is not None and len(proc.segments) < QUEUED_PER_WORKER

    def _worker(self) -> Callable[..., None]:
        return partial(serve, make_runner=one_by_one)

    def _trains(self, index: int) -> bool:
        """Whether worker ``index`` has a task (a subclass counts its own)."""
        return bool(self._procs[index].segments)

    # -- results, deaths and timeouts -------------------------------------------------------

    def _collect(self, index: int) -> list[SegmentResult]:
        """The result of the segment worker ``index`` runs; or, if it died, that segment's
        failure and the segments queued behind it, sent back to be run again."""
        proc = self._procs[index]
        segment = proc.segments[0]
        try:
            if not proc.tasks.poll():
                raise EOFError
            result: SegmentResult | Unloadable = proc.tasks.recv()
        except (EOFError, OSError):
            proc.process.join(5)
            code = proc.process.exitcode
            message = (
                f"its worker process died (exit code {code}); if every segment fails this way, "
                "check that the script calling firepbt.run guards it with "
                "`if __name__ == '__main__':`"
            )
            return [died(segment, self._with_log(message, index)), *self._requeue(index)]
        proc.segments.popleft()
        proc.started = time.monotonic()  # the next one, if any, starts now
        return [self._finished(index, segment, result)]

    def _finished(
        self, index: int, segment: Segment, result: SegmentResult | Unloadable
    ) -> SegmentResult:
        if isinstance(result, SegmentResult):
            result = replace(result, segment=segment)
        if isinstance(result, Unloadable):
            message = f"a worker process could not load the segment: {result.message}"
            return died(segment, message, kind=FailureKind.UNLOADABLE)
        if result.failure is None:
            self._home[segment.member] = index
        elif self._home.get(segment.member) == index:
            del self._home[segment.member]  # the process dropped its trainable
        return result

    def _stop_hung(self) -> list[SegmentResult]:
        """Kill the processes of segments past the timeout; each gets a fresh process."""
        assert self.timeout is not None
        now = time.monotonic()
        results = []
        for index, proc in enumerate(self._procs):
            if proc.segments and now - proc.started >= self.timeout:
                message = f"the segment ran past the {self.timeout:g} s segment_timeout"
                message = self._with_log(message, index)
                results.append(died(proc.segments[0], message, kind=FailureKind.TIMEOUT))
                results += self._requeue(index)
        return results

    def _requeue(self, index: int) -> list[SegmentResult]:
        """Replace process ``index``, which died or is stopped, and hand back the segments queued
        behind the one it ran, unstarted, to be submitted again."""
        queued = list(self._procs[index].segments)[1:]
        self._replace(index)
        message = "its worker process stopped before starting it"
        return [died(s, message, kind=FailureKind.UNSTARTED) for s in queued]


def choose_worker(idle: list[int], preferred: tuple[int | None, ...], homes: dict[int, int]) -> int:
    """The first preferred worker that is idle; otherwise the idle worker fewest members call
    home, so that a member moving does not push another out of its worker's memory."""
    for choice in preferred:
        if choice is not None and choice in idle:
            return choice
    count = Counter(homes.values())
    return min(idle, key=lambda i: (count[i], i))
