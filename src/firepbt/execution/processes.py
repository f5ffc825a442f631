"""Worker processes of an executor's own: starting them (the start method, devices, the
fork server), replacing those that die, their notes that they started, writing out and dropping
the checkpoints they hold, and shutting them down. ``ProcessPoolExecutor`` (``pool.py``) sends
them segments; ``VectorisedPoolExecutor`` batches."""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from firepbt.errors import CheckpointError
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
from firepbt.execution.logs import LOG_VARIABLE, log_path, with_tail
from firepbt.execution.protocol import (
    FLUSH_TIMEOUT,
    STARTED,
    Dropped,
    gone,
)
from firepbt.segments import Segment, SegmentResult
from firepbt.trainable import dumps_by_value


def check_pool(workers: int, timeout: float | None) -> None:
    """Refuse a pool without workers or a timeout that is not a positive number of seconds."""
    if workers < 1:
        raise ValueError(f"workers: need at least 1, got {workers}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"segment_timeout: must be a positive number of seconds, got {timeout}")


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


class WorkerProcesses(Executor):
    """The processes of a pool and the wire to each (``protocol``); what they run, and how
    segments reach them, is the subclass's (``_worker``, ``_trains``, ``submit``, ``wait``)."""

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
        environment = {**(self._environments[index] or {}), **self.worker_variables}
        if self.log_dir is not None:
            environment[LOG_VARIABLE] = os.path.abspath(self.log_dir)
        process = context.Process(
            target=self._worker(),
            args=(their_tasks, their_control, environment, inherited),
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

    @abstractmethod
    def _worker(self) -> Callable[..., None]:
        """The function each worker process runs, given its pipes, its environment and the
        file descriptors to close: ``protocol.serve`` with the runner of its tasks."""

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

    def _with_log(self, message: str, index: int) -> str:
        """``message`` followed by the last lines of worker ``index``'s log."""
        path = log_path(self.log_dir, self._procs[index].name) if self.log_dir else None
        return with_tail(message, path)

    def _named(self, worker: str) -> _Process | None:
        for proc in self._procs:
            if proc.name == worker and proc.process.is_alive():
                return proc
        return None

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

    @abstractmethod
    def _trains(self, index: int) -> bool:
        """Whether worker ``index`` has a task (each subclass counts its own)."""

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
