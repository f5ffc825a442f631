"""Segments run one by one in the calling process: deterministic, for tests and debugging."""

from __future__ import annotations

from collections import deque

from firepbt.errors import CheckpointError
from firepbt.execution.base import Executor
from firepbt.execution.protocol import gone
from firepbt.execution.worker import (
    drop_held,
    flush_held,
    release_kept,
    run_segment,
    worker_name,
)
from firepbt.segments import Segment, SegmentResult


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

    def shutdown(self) -> None:
        release_kept()  # the trainables kept alive in this process (Trainable.close)
