"""Per-member TensorBoard logs, written with the ``tensorboard`` package alone (no TensorFlow,
no torch): ``pip install 'firepbt[tensorboard]'``."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from firepbt.callbacks import (
    Callback,
    MemberFailure,
    MemberPoint,
    RunStart,
    decision_step,
    describe,
    describe_failure,
    scalars,
)
from firepbt.decisions import Continue, Decision
from firepbt.errors import ConfigError

DECISIONS_TAG = "decisions"
FAILURES_TAG = "failures"


def worker_name(member: int, evaluator: bool) -> str:
    """The name of a worker's log: ``member-0003``, or ``evaluator-0008`` for FIRE PBT's."""
    return f"{'evaluator' if evaluator else 'member'}-{member:04d}"


class TensorBoardWriter(Callback):
    """Writes one TensorBoard run per member, under ``directory/<run name>/member-NNNN`` (the
    run's name is its run directory's name; FIRE PBT's evaluators are ``evaluator-NNNN``):

    * scalars ``metrics/<name>`` for every metric of every evaluation, at the member's step;
    * scalars ``hyperparameters/<name>`` for every numeric hyperparameter the member trained
      with up to that step, so an exploit shows as a step in the curve;
    * text ``decisions``: each start, exploit (donor and explore record), FIRE PBT assignment,
      hand-over, release and finish; text ``failures``: each failed segment.

    ``tensorboard --logdir directory`` shows them. Each event is flushed to its file as it is
    written. A resumed run adds a file to each member's directory, named to be read after the
    earlier ones.

    Args:
        directory: Where the logs go, one folder per run inside it; created when a member first
            writes.

    Raises:
        firepbt.ConfigError: ``directory``, or a folder above it, is a file.

    >>> writer = TensorBoardWriter("tb")  # firepbt.run(..., callbacks=[writer])
    """

    package = "tensorboard"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).absolute()
        taken = next((p for p in (self.directory, *self.directory.parents) if p.exists()), None)
        if taken is not None and not taken.is_dir():
            raise ConfigError(
                f"logging.tensorboard: {taken} is a file, so {self.directory} cannot be a "
                "directory of TensorBoard logs; name another directory"
            )
        self._root = self.directory
        self._evaluators: frozenset[int] = frozenset()
        self._files: dict[int, Any] = {}

    def on_start(self, run: RunStart) -> None:
        import tensorboard  # noqa: F401  (fail here, once, when the package is missing)

        self._root = self.directory / run.name
        self._evaluators = run.evaluators

    def _file(self, member: int) -> Any:
        writer = self._files.get(member)
        if writer is None:
            logdir = self._root / worker_name(member, member in self._evaluators)
            writer = self._files[member] = _open(logdir)
        return writer

    def _write(self, member: int, step: int, summary: Any) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        event = Event(wall_time=time.time(), step=step, summary=summary)
        writer = self._file(member)
        writer.write(event.SerializeToString())
        writer.flush()

    def on_point(self, point: MemberPoint) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = scalars(point).items()
        summary = Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in values])
        self._write(point.member, point.step, summary)

    def on_decision(self, decision: Decision) -> None:
        if isinstance(decision, Continue):
            return
        self._text(decision.member, decision_step(decision), DECISIONS_TAG, describe(decision))

    def on_failure(self, failure: MemberFailure) -> None:
        self._text(failure.member, failure.step, FAILURES_TAG, describe_failure(failure))

    def _text(self, member: int, step: int, tag: str, line: str) -> None:
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._write(member, step, text_pb(tag, line))

    def on_end(self, status: str) -> None:
        files, self._files = self._files, {}
        for writer in files.values():
            writer.close()


def _open(logdir: Path) -> Any:
    """A new event file in ``logdir``. TensorBoard reads a directory's event files in the order
    of their names: the time in seconds, then how many files were there before, so that a file
    made in the same second as an earlier one (a quick resume) is still read after it."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    logdir.mkdir(parents=True, exist_ok=True)
    before = len(list(logdir.glob("events.out.tfevents.*")))
    name = f"events.out.tfevents.{int(time.time()):010d}.{before:06d}.{socket.gethostname()}"
    writer = RecordWriter(open(logdir / f"{name}.{os.getpid()}", "wb"))  # noqa: SIM115
    header = Event(wall_time=time.time(), file_version="brain.Event:2")
    writer.write(header.SerializeToString())
    return writer
