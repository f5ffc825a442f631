"""The wire between the controller and a worker process: a task pipe (segments or batches out,
results back, held checkpoints to forget ahead of the next task) and a control pipe (the
worker's note that it started, then flush requests, served by a thread of the worker), and the
loop every worker process runs."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any, cast

from firepbt.errors import CheckpointError, FailureKind
from firepbt.execution.bootstrap import close_inherited, init_worker
from firepbt.execution.worker import (
    drop_held,
    flush_held,
    release_kept,
    run_segment,
)
from firepbt.segments import Failure, Segment, SegmentResult

# What a worker's result holds in place of its segment, which the controller already has.
SENT = cast(Segment, None)


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


# Segments a worker process may hold at once: the one it runs and one queued in its pipe, which
# it starts the moment it sends a result back, without waiting for the controller to record that
# result and answer. (One queued behind a segment that hangs waits for segment_timeout.)
QUEUED_PER_WORKER = 2
CONTROL_SWITCH_INTERVAL = 2e-4  # seconds; Python's default is 5e-3
FLUSH_TIMEOUT = 60.0  # seconds a worker may take to write a held checkpoint out
STARTED = "started"  # a new worker's first note on its control pipe


def gone(worker: str, path: str) -> str:
    return f"worker {worker}, which held checkpoint {path} in memory, is gone"


def start_worker(
    control: Connection, environment: Mapping[str, str] | None, inherited: Sequence[int]
) -> None:
    """What every worker process does first: close what it inherited and must not keep (a
    forked one: ``inherited``, the controller's pipe ends, and the run's lock), set its threads
    and devices, tell the controller it started, and serve flush requests on a thread."""
    close_inherited(inherited)
    # Ctrl-C reaches every process of the terminal's group: the controller records the
    # interruption and stops the run; a worker only leaves, without a traceback of its own.
    signal.signal(signal.SIGINT, _leave_on_interrupt)
    init_worker(environment=environment)
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


def serve(
    tasks: Connection,
    control: Connection,
    environment: Mapping[str, str] | None,
    inherited: Sequence[int],
    make_runner: Callable[[], Callable[[Any], object]],
) -> None:
    """The loop of every worker process: start (``start_worker``), then run each task it is sent
    with the runner ``make_runner`` builds (a segment, or a batch of segments on a vectorised
    worker) and send back what it returns; forget the held checkpoints it is told to
    (``Dropped``); answer a task it cannot unpickle with ``Unloadable``; stop at ``None`` or
    when the controller is gone. A thread writes held checkpoints out when the controller asks
    and watches the controller: when its end of the control pipe closes (the controller ended or
    was killed), the worker stops at once, mid-segment, without a traceback: nobody would read
    its result."""
    start_worker(control, environment, inherited)
    run = make_runner()
    try:
        while True:
            try:
                data = tasks.recv_bytes()
            except (EOFError, OSError):  # the controller is gone
                return
            try:
                task = ForkingPickler.loads(data)
            except Exception as e:  # e.g. the trainable's module cannot be imported here
                tasks.send(Unloadable(f"{type(e).__name__}: {e}"))
                continue
            if task is None:
                return
            if forgets(task):
                continue
            reply = run(task)
            try:
                tasks.send(reply)
            except OSError:  # the controller is gone (a broken pipe)
                os._exit(0)
    finally:
        release_kept()  # a stopping worker closes the trainables it kept (Trainable.close)


def run_one(segment: Segment) -> SegmentResult:
    """A process-pool worker's task: run ``segment`` and return its result without it. The
    controller has the segment, and its trainable may have come by value: it must not travel
    back and overwrite the controller's class."""
    return replace(run_segment(segment), segment=SENT)


def one_by_one() -> Callable[[Segment], SegmentResult]:
    """A process-pool worker's runner (``serve``): each task one segment."""
    return run_one


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


def died(
    segment: Segment, message: str, kind: FailureKind = FailureKind.WORKER_DIED
) -> SegmentResult:
    """A failure that happened outside the segment (its worker died, it timed out, it could not
    be sent), stamped now."""
    now = time.time()
    return SegmentResult(segment, failure=Failure(kind, message), started=now, finished=now)
