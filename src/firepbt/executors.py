"""Executors: thin adapters that run segments somewhere and hand back their results.

``InProcessExecutor`` runs segments one by one in the calling process (deterministic; for tests
and debugging). ``ProcessPoolExecutor`` runs them on local worker processes of its own (the
default). A population larger than the number of workers is time-multiplexed by the runner,
which never submits more segments than ``capacity``.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import multiprocessing.connection as mp_connection
import os
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any, cast

from firepbt.devices import assign_devices, check_devices, visible_gpus, worker_environment
from firepbt.errors import CheckpointError, FailureKind
from firepbt.segments import (
    Failure,
    Segment,
    SegmentResult,
    drop_held,
    flush_held,
    run_segment,
    worker_name,
)
from firepbt.trainable import dumps_by_value, ships_by_value


class Executor(ABC):
    """Runs segments. ``submit`` never blocks; ``wait`` blocks until at least one result.

    An executor that ``holds_state`` lets segments leave their checkpoint in the memory of the
    worker that ran them (``CheckpointRef.holder``): it sends a segment to the worker holding its
    source when that worker is ``idle``, writes a held checkpoint to disk on ``flush`` and
    forgets it on ``drop``."""

    holds_state = False
    # Whether segments run while the controller does something else (on other processes or
    # machines): the runner then hands queued segments out before recording results.
    concurrent = True
    # Set by the runner: called once, from ``wait``, when the first worker process has started
    # and can train (an executor that starts processes and can tell sets ``reports_started``).
    reports_started = False
    on_started: Callable[[], None] | None = None

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

    def preload(self, modules: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Modules every worker will need (a strategy's ``worker_modules``): an executor that
        starts worker processes imports them once where its workers inherit them."""

    def idle(self, worker: str) -> bool:
        """Whether ``worker`` lives and can take a segment now (it would run there next)."""
        return False

    def running(self) -> set[int] | None:
        """Members whose segments train now, where the executor tells them apart from segments
        submitted and waiting for a worker; None where it cannot (all submitted count)."""
        return None

    def flush(self, worker: str, path: str) -> str:
        """Have ``worker`` write the checkpoint it holds for ``path``; return its sha256, or
        raise ``CheckpointError`` saying why it could not."""
        raise CheckpointError(f"this executor holds no checkpoints in memory (asked for {path})")

    def drop(self, worker: str, path: str) -> None:  # noqa: B027 - nothing held by default
        """Let ``worker`` forget the checkpoint it holds for ``path``."""

    def reads_held(self, segment: Segment) -> bool:
        """Whether ``segment``, whose source a worker holds in memory, would run on that worker
        if submitted now, reading its source from that worker's memory, whichever member the
        source is of (so it need not be written out first): when that worker is ``idle``."""
        holder = segment.source.holder if segment.source is not None else ""
        return bool(holder) and self.idle(holder)


class InProcessExecutor(Executor):
    """Runs each segment in this process when results are asked for, in submission order."""

    holds_state = True
    concurrent = False

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

    def idle(self, worker: str) -> bool:
        return worker == worker_name() and not self._queue

    def flush(self, worker: str, path: str) -> str:
        if worker != worker_name():
            raise CheckpointError(gone(worker, path))
        return flush_held(path)

    def drop(self, worker: str, path: str) -> None:
        if worker == worker_name():
            drop_held(path)


def _init_worker(threads: int = 1, environment: Mapping[str, str] | None = None) -> None:
    """One thread per worker process (per CPU it was given): two workers on two cores must not
    fight over threads. torch, numpy's BLAS and OpenMP read these variables when first imported,
    and CUDA reads the worker's devices (``environment``) when first used. Libraries loaded
    before the worker started (by the controller it was forked from, or by the fork server) are
    limited where they were loaded: ``_limit_threads_here``, ``_fork_server_threads``."""
    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, str(threads))
    os.environ.update(environment or {})
    steady_heap()


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# glibc's mallopt parameters, and the values a worker sets (the largest M_MMAP_THRESHOLD
# glibc accepts on 64-bit systems is 32 MiB)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 128 * 2**20
HEAP_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def steady_heap() -> bool:
    """Keep this process's freed memory for reuse (glibc only): blocks up to 32 MiB come from
    the heap, not from a fresh ``mmap`` each, and up to 128 MiB of free memory at the top of
    each of its heaps (glibc keeps one per thread that allocates, up to 8 per core) stays
    mapped. With glibc's defaults a worker that allocates tensors of a few MiB per step
    (activations, evaluation batches) can return them to the system and fault them back in on
    the next step, over and over: one of two MNIST-1D vectorised workers took 400 000 page
    faults in 3 s and ran 35 % slower than the other; with these values neither faults after its
    first segment (``benchmarks/results/vectorised.md``). Setting only one of the two makes it
    worse: glibc then stops adapting the other.

    Returns whether the values were set. A user who tunes glibc's allocator (``MALLOC_*_``
    variables, ``glibc.malloc.*`` in ``GLIBC_TUNABLES``) keeps their settings; under another
    allocator (jemalloc or tcmalloc preloaded) glibc's settings are set but unused."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(var in os.environ for var in HEAP_VARIABLES) or "glibc.malloc." in tunables:
        return False
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or no such name
        glibc = None
    if not glibc:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


@contextlib.contextmanager
def _fork_server_threads() -> Iterator[None]:
    """Start a fork server (if it is not running: the first worker started from one) that loads
    native thread pools at one thread (or the count the user set): its children inherit the
    pools it loaded before they could set ``THREAD_VARIABLES`` themselves."""
    unset = [var for var in THREAD_VARIABLES if var not in os.environ]
    os.environ.update(dict.fromkeys(unset, "1"))
    try:
        yield
    finally:
        for var in unset:
            os.environ.pop(var, None)


def _limit_threads_here() -> Any:
    """Limit this process's native thread pools (numpy's BLAS: one thread per core) to one
    thread (or the count the user set), and return what restores them. A forked worker inherits
    them so; limiting them in the worker instead leaves a pool's threads spinning there. The
    controller keeps the limit while it has workers: it shares their cores."""
    from threadpoolctl import threadpool_limits

    chosen = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    threads = int(chosen) if chosen and chosen.isdigit() and int(chosen) > 0 else 1
    return threadpool_limits(limits=threads)


@contextlib.contextmanager
def _main_file_hidden() -> Iterator[None]:
    """Start processes without asking them to run ``__main__`` again from a file that does not
    exist (``python - < script.py`` names it ``<stdin>``): multiprocessing would try, and every
    new process would die. Its classes travel by value instead (``ships_by_value``)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not isinstance(path, str) or os.path.isfile(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


# What a worker's result holds in place of its segment, which the controller already has.
_SENT = cast(Segment, None)


@dataclass(frozen=True, slots=True)
class Dropped:
    """Held checkpoints a worker process may forget (``drop_held``): sent on its task pipe
    ahead of its next task."""

    paths: tuple[str, ...]


def forgets(message: object) -> bool:
    """In a worker: if ``message`` is a ``Dropped``, forget its checkpoints and return True."""
    if not isinstance(message, Dropped):
        return False
    for path in message.paths:
        drop_held(path)
    return True


@dataclass(frozen=True)
class Unloadable:
    """A worker's answer to a segment it could not unpickle (its trainable cannot be imported
    in the worker): the error, in place of a result."""

    message: str


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
    ``devices`` (default: the GPUs this process sees); see :mod:`firepbt.devices`. A process
    that replaces a dead one gets the same devices."""

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
            context.set_forkserver_preload(["__main__", "firepbt.executors", *self._preload])
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
            self._threads_limited = _limit_threads_here()
        server = _fork_server_threads() if method == "forkserver" else contextlib.nullcontext()
        with _main_file_hidden(), server:
            process.start()
        their_tasks.close()
        their_control.close()
        return _Process(process, tasks, control, f"pid-{process.pid}")

    def _worker(self) -> Callable[..., None]:
        """The function each worker process runs, given its pipes, its environment and the
        file descriptors to close (a subclass may give its own; it calls ``start_worker``)."""
        return _worker_main

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

    def submit(self, segment: Segment) -> None:
        if not self._procs:  # first use, or shut down earlier
            for i in range(self.workers):  # one by one: each closes the pipes of those before
                self._procs.append(self._spawn(i))
        for i, proc in enumerate(self._procs):
            if not proc.segments and not proc.process.is_alive():  # died while idle
                self._replace(i)
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
            self._early.append(_died(segment, f"{type(e).__name__}: {e}", kind=FailureKind.SUBMIT))
            return
        if not proc.segments:
            proc.started = time.monotonic()
        proc.segments.append(segment)

    def wait(self) -> list[SegmentResult]:
        results, self._early = self._early, []
        self._forget_idle()
        while not results and self.pending():
            busy = [p for p in self._procs if p.segments]
            limit = None
            if self.timeout is not None:
                earliest = min(p.started for p in busy)
                limit = max(0.0, earliest + self.timeout - time.monotonic())
            starting = [p.control for p in self._procs if not p.started_up]
            handles = [p.tasks for p in busy] + [p.process.sentinel for p in busy] + starting
            ready = mp_connection.wait(handles, timeout=limit)
            if not ready:
                results += self._stop_hung()
                continue
            if any(c in ready for c in starting):
                self._hear_started([p for p in self._procs if p.control in ready])
            for proc in busy:
                if proc.tasks in ready or proc.process.sentinel in ready:
                    results += self._collect(proc)
        return results

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

    def _collect(self, proc: _Process) -> list[SegmentResult]:
        """The result of the segment ``proc`` runs; or, if it died, that segment's failure and
        the segments queued behind it, sent back to be run again."""
        segment = proc.segments[0]
        index = self._procs.index(proc)
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
            return [_died(segment, message), *self._requeue(index)]
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
            return _died(segment, message, kind=FailureKind.UNLOADABLE)
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
                results.append(_died(proc.segments[0], message, kind=FailureKind.TIMEOUT))
                results += self._requeue(index)
        return results

    def _requeue(self, index: int) -> list[SegmentResult]:
        """Replace process ``index``, which died or is stopped, and hand back the segments queued
        behind the one it ran, unstarted, to be submitted again."""
        queued = list(self._procs[index].segments)[1:]
        self._replace(index)
        message = "its worker process stopped before starting it"
        return [_died(s, message, kind=FailureKind.UNSTARTED) for s in queued]


# File descriptors a forked worker closes first (``closed_in_workers``).
_CLOSED_IN_WORKERS: set[int] = set()


@contextlib.contextmanager
def closed_in_workers(fd: int) -> Iterator[None]:
    """While in this block, a worker forked from this process closes ``fd`` as it starts: e.g.
    the run's lock, which must go with the controller even while a worker outlives it."""
    _CLOSED_IN_WORKERS.add(fd)
    try:
        yield
    finally:
        _CLOSED_IN_WORKERS.discard(fd)


# Modules whose threads or device state a forked child cannot safely inherit once imported.
FORK_UNSAFE_MODULES = ("torch", "jax", "tensorflow", "cupy")


def start_method_now() -> str:
    """How to start a worker process now: ``fork`` while this process is safe to fork (POSIX,
    one Python thread, none of ``FORK_UNSAFE_MODULES`` imported), since a forked worker starts in
    milliseconds with this process's modules already imported; otherwise ``forkserver`` (a
    clean process forked from a server started once, ~0.15 s here), or ``spawn`` where neither
    exists. A forked worker closes the run's lock file (``fork_closes``) and changes nothing
    else it inherited."""
    methods = multiprocessing.get_all_start_methods()
    if (
        "fork" in methods
        and threading.active_count() == 1
        and not any(name in sys.modules for name in FORK_UNSAFE_MODULES)
    ):
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


# Segments a worker process may hold at once: the one it runs and one queued in its pipe, which
# it starts the moment it sends a result back, without waiting for the controller to record that
# result and answer. (One queued behind a segment that hangs waits for segment_timeout.)
QUEUED_PER_WORKER = 2
CONTROL_SWITCH_INTERVAL = 2e-4  # seconds; Python's default is 5e-3
FLUSH_TIMEOUT = 60.0  # seconds a worker may take to write a held checkpoint out
STARTED = "started"  # a new worker's first note on its control pipe


def gone(worker: str, path: str) -> str:
    return f"worker {worker}, which held checkpoint {path} in memory, is gone"


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


def start_worker(
    control: Connection, environment: Mapping[str, str] | None, inherited: Sequence[int]
) -> None:
    """What every worker process does first: close what it inherited and must not keep (a
    forked one: ``inherited``, the controller's pipe ends, and the run's lock), set its threads
    and devices, tell the controller it started, and serve flush requests on a thread."""
    for fd in (*_CLOSED_IN_WORKERS, *inherited):
        with contextlib.suppress(OSError):
            os.close(fd)
    _CLOSED_IN_WORKERS.clear()
    # Ctrl-C reaches every process of the terminal's group: the controller records the
    # interruption and stops the run; a worker only leaves, without a traceback of its own.
    signal.signal(signal.SIGINT, _leave_on_interrupt)
    _init_worker(environment=environment)
    # The thread that serves the controller's flush requests waits for the interpreter lock
    # while a segment trains: at the default 5 ms switch interval the controller, and every
    # worker waiting for that checkpoint, waits up to 5 ms per request.
    sys.setswitchinterval(CONTROL_SWITCH_INTERVAL)
    control.send((STARTED, "", ""))  # before the thread that replies on this pipe starts
    threading.Thread(target=_serve_control, args=(control,), daemon=True).start()


def _leave_on_interrupt(signum: int, frame: object) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(128 + signum)


def _worker_main(
    tasks: Connection,
    control: Connection,
    environment: Mapping[str, str] | None = None,
    inherited: Sequence[int] = (),
) -> None:
    """A worker process: runs the segments it is sent, one at a time, and forgets the held
    checkpoints it is told to (``Dropped``), while a thread writes held checkpoints out when
    the controller asks. The thread also watches the
    controller: when its end of the control pipe closes (the controller ended or was killed),
    the worker stops at once, mid-segment, without a traceback: nobody would read its result."""
    start_worker(control, environment, inherited)
    while True:
        try:
            data = tasks.recv_bytes()
        except (EOFError, OSError):  # the controller is gone
            return
        try:
            segment = ForkingPickler.loads(data)
        except Exception as e:  # e.g. the trainable's module cannot be imported here
            tasks.send(Unloadable(f"{type(e).__name__}: {e}"))
            continue
        if segment is None:
            return
        if forgets(segment):
            continue
        # The controller has the segment: send the result without it (its trainable may have
        # come by value, and must not travel back and overwrite the controller's class).
        result = replace(run_segment(segment), segment=_SENT)
        try:
            tasks.send(result)
        except OSError:  # the controller is gone (a broken pipe)
            os._exit(0)


def _serve_control(control: Connection) -> None:
    while True:
        try:
            path, number = control.recv()  # a flush request
        except (EOFError, OSError):  # the controller closed its end: it is gone
            sys.stdout.flush()
            os._exit(0)
        try:
            control.send((number, flush_held(path), ""))
        except CheckpointError as e:
            control.send((number, "", str(e)))


def _died(
    segment: Segment, message: str, kind: FailureKind = FailureKind.WORKER_DIED
) -> SegmentResult:
    now = time.time()
    return SegmentResult(segment, failure=Failure(kind, message), started=now, finished=now)
