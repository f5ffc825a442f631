"""The process pool: segments run on local worker processes of the executor's own (the default
executor). A population larger than the number of workers is time-multiplexed by the
controller, which never submits more segments than ``capacity``.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import multiprocessing.connection as mp_connection
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from firepbt.errors import CheckpointError, FailureKind
from firepbt.execution.base import Executor
from firepbt.execution.bootstrap import (
    fork_server_threads,
    limit_threads_here,
    main_file_hidden,
    start_method_now,
)
from firepbt.execution.devices import (
    assign_devices,
    check_devices,
    visible_gpus,
    worker_environment,
)
from firepbt.execution.protocol import (
    FLUSH_TIMEOUT,
    QUEUED_PER_WORKER,
    STARTED,
    Dropped,
    Unloadable,
    died,
    gone,
    pool_worker,
)
from firepbt.segments import Segment, SegmentResult
from firepbt.trainable import dumps_by_value, ships_by_value


def check_pool(workers: int, timeout: float | None) -> None:
    """Refuse a pool without workers or a timeout that is not a positive number of seconds."""
    if workers < 1:
        raise ValueError(f"workers: need at least 1, got {workers}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"segment_timeout: must be a positive number of seconds, got {timeout}")


class ProcessPoolExecutor(Executor):
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
    process that replaces a dead one gets the same devices."""

    holds_state = True
    reports_started = True

    def __init__(
        self,
        workers: int = 2,
        start_method: str | None = None,
        timeout: float | None = None,
        *,
        gpus_per_worker: float = 0,
        devices: Sequence[str] | None = None,
    ) -> None:
        check_pool(workers, timeout)
        self.workers = workers
        self.timeout = timeout
        listed = check_devices(devices) if devices is not None else None
        if gpus_per_worker:
            plan = assign_devices(
                workers, gpus_per_worker, listed if listed is not None else visible_gpus()
            )
        else:
            plan = [None] * workers
        self._environments = [worker_environment(v) for v in plan]
        if start_method is not None and start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(
                f"start_method: {start_method!r} is not available here; choose one of "
                f"{multiprocessing.get_all_start_methods()} or leave it unset"
            )
        self.start_method = start_method  # None: chosen per process by ``start_method_now``
        self._procs: list[_Process] = []
        self._early: list[SegmentResult] = []  # could not be sent; handed back by the next wait
        self._home: dict[int, int] = {}  # member -> index of the process that last ran it
        self._requests = 0
        self._announced = False  # on_started was called
        self._preload: tuple[str, ...] = ()
        self._threads_limited: Any = None  # restores this process's native thread pools

    @property
    def capacity(self) -> int:
        return self.workers * QUEUED_PER_WORKER

    def preload(self, modules: Sequence[str]) -> None:
        self._preload = tuple(modules)

    # -- processes --------------------------------------------------------------------------

    def _spawn(self, index: int) -> _Process:
        method = self.start_method or start_method_now()
        context: Any = multiprocessing.get_context(method)
        if method == "forkserver":
            # The fork server imports the worker's code once, and each worker forked from it
            # starts without importing it again (it takes effect when the server starts: the
            # first pool of this process). "__main__" keeps multiprocessing's own default.
            context.set_forkserver_preload(["__main__", "firepbt.execution.pool", *self._preload])
        elif method == "fork":  # imported here once, not in each worker
            for module in self._preload:
                importlib.import_module(module)
        tasks, their_tasks = context.Pipe()
        control, their_control = context.Pipe()
        # A forked process inherits this process's ends of every worker's pipes: it closes
        # them, or a worker would never see the controller's end close when it dies.
        ours = [c.fileno() for p in self._procs for c in (p.tasks, p.control) if not c.closed]
        inherited = (*ours, tasks.fileno(), control.fileno()) if method == "fork" else ()
        process = context.Process(
            target=self._worker(),
            args=(their_tasks, their_control, self._environments[index], inherited),
            daemon=True,
        )
        if method == "fork" and self._threads_limited is None:
            self._threads_limited = limit_threads_here()
        server = fork_server_threads() if method == "forkserver" else contextlib.nullcontext()
        with main_file_hidden(), server:
            process.start()
        their_tasks.close()
        their_control.close()
        return _Process(process, tasks, control, f"pid-{process.pid}")

    def _worker(self) -> Callable[..., None]:
        """The function each worker process runs, given its pipes, its environment and the
        file descriptors to close (a subclass may give its own; it calls ``start_worker``)."""
        return pool_worker

    def _replace(self, index: int) -> None:
        """Kill a process (if it still lives) and put a fresh one in its place."""
        old = self._procs[index]
        if old.process.is_alive():
            old.process.kill()
        old.process.join(5)
        old.tasks.close()
        old.control.close()
        self._procs[index] = self._spawn(index)
        self._home = {m: i for m, i in self._home.items() if i != index}

    def _named(self, worker: str) -> _Process | None:
        for proc in self._procs:
            if proc.name == worker and proc.process.is_alive():
                return proc
        return None

    # -- the Executor contract --------------------------------------------------------------

    def _ensure_workers(self) -> None:
        """Start the worker processes at first use (or after a shutdown), and replace those that
        died while idle."""
        if not self._procs:
            for i in range(self.workers):  # one by one: each closes the pipes of those before
                self._procs.append(self._spawn(i))
            self._workers_spawned()
        for i, proc in enumerate(self._procs):
            if not self._trains(i) and not proc.process.is_alive():  # died while idle
                self._replace(i)

    def _workers_spawned(self) -> None:  # noqa: B027 - a hook: nothing more to set up here
        """Called once the worker processes have started (a subclass sets up its own books)."""

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

    def _hear_started(self, procs: list[_Process]) -> None:
        """Read the notes of processes that started; at the first, call ``on_started``. (A
        worker writes its note before it reads a segment, so the note is read no later than the
        first result: ``wait`` reads notes first.)"""
        for proc in procs:
            with contextlib.suppress(EOFError, OSError):  # died: its sentinel tells
                proc.control.recv()  # the note (a reply to no flush request)
            self._started_up(proc)

    def _started_up(self, proc: _Process) -> None:
        proc.started_up = True
        if not self._announced:
            self._announced = True
            if self.on_started is not None:
                self.on_started()

    def idle(self, worker: str) -> bool:
        proc = self._named(worker)
        return proc is not None and len(proc.segments) < QUEUED_PER_WORKER

    def flush(self, worker: str, path: str) -> str:
        proc = self._named(worker)
        if proc is None:
            raise CheckpointError(gone(worker, path))
        self._requests += 1
        number = self._requests
        try:
            proc.control.send((path, number))  # a flush request
            deadline = time.monotonic() + FLUSH_TIMEOUT
            while proc.control.poll(max(0.0, deadline - time.monotonic())):
                replied, sha, error = proc.control.recv()
                if replied == STARTED:
                    self._started_up(proc)
                    continue
                if replied != number:
                    continue  # the late reply to a request that timed out
                if error:
                    raise CheckpointError(error)
                return str(sha)
        except (OSError, EOFError) as e:
            raise CheckpointError(f"worker {worker} could not write checkpoint {path} ({e})") from e
        raise CheckpointError(
            f"worker {worker} did not write checkpoint {path} within {FLUSH_TIMEOUT:g} s"
        )

    def drop(self, worker: str, path: str) -> None:
        """Tell the worker with its next task, or at the next ``wait`` if it trains nothing then
        (``Dropped``); not at once: a request at once would wake the worker's second thread,
        which takes the interpreter lock from the segment it trains."""
        proc = self._named(worker)
        if proc is not None:
            proc.dropped.append(path)

    def _trains(self, index: int) -> bool:
        """Whether worker ``index`` has a task (a subclass counts its own)."""
        return bool(self._procs[index].segments)

    def _forget(self, proc: _Process) -> None:
        """Send ``proc`` the held checkpoints it may forget, if any. Raises what sending raises."""
        if proc.dropped:
            dropped, proc.dropped = Dropped(tuple(proc.dropped)), []
            proc.tasks.send(dropped)

    def _forget_idle(self) -> None:
        """Send workers that train nothing the checkpoints they may forget: there is no
        training to interrupt, and an idle worker may be sent no task for a long time."""
        for index, proc in enumerate(self._procs):
            if proc.dropped and not self._trains(index):
                with contextlib.suppress(OSError, ValueError):  # gone: the next wait tells
                    self._forget(proc)

    def _send(self, proc: _Process, task: object, by_value: bool) -> None:
        """Send ``task`` (a segment, or a subclass's batch) to ``proc``, after the held
        checkpoints it may forget; ``by_value``: its trainable's class travels by value. Raises
        what sending raises."""
        self._forget(proc)
        if by_value:
            proc.tasks.send_bytes(dumps_by_value(task))
        else:
            proc.tasks.send(task)

    def shutdown(self) -> None:
        for proc in self._procs:
            with contextlib.suppress(OSError):
                proc.tasks.send(None)
        for proc in self._procs:
            proc.process.join(5)
            if proc.process.is_alive():
                proc.process.kill()
                proc.process.join(5)
            proc.tasks.close()
            proc.control.close()
        self._procs = []
        self._home.clear()
        if self._threads_limited is not None:
            self._threads_limited.restore_original_limits()
            self._threads_limited = None

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
            return [died(segment, message), *self._requeue(index)]
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


@dataclass(slots=True)
class _Process:
    process: BaseProcess
    tasks: Connection  # segments out, results back
    control: Connection  # flush requests, served by a thread of the worker
    name: str
    segments: deque[Segment] = field(default_factory=deque)  # sent; the first one runs
    started: float = 0.0  # when the first of ``segments`` started, as far as we can tell
    started_up: bool = False  # its note that it started was read
    dropped: list[str] = field(default_factory=list)  # held checkpoints it may forget (drop)


def choose_worker(idle: list[int], preferred: tuple[int | None, ...], homes: dict[int, int]) -> int:
    """The first preferred worker that is idle; otherwise the idle worker fewest members call
    home, so that a member moving does not push another out of its worker's memory."""
    for choice in preferred:
        if choice is not None and choice in idle:
            return choice
    count = Counter(homes.values())
    return min(idle, key=lambda i: (count[i], i))
