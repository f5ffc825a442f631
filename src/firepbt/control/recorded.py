"""The recorded run: what a killed run recorded before it was resumed, and the check that a
replay of its strategy makes the same choices.

A resume replays the recorded results, in order, into a fresh strategy built from the same
config and seed; every random choice comes from its seeded generator, so it makes the same
decisions and queues the same segments. Each one is checked against the next recorded row; once
the replay has gone past what was recorded before the kill, there is no row and the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from firepbt.decisions import Decision, record_of
from firepbt.errors import ResumeError
from firepbt.store import DecisionRow, SegmentRow, Store, as_stored


class RecordedRun:
    """The decisions and segments a store recorded, each read back once, in order."""

    def __init__(self, store: Store | None = None) -> None:
        self.replaying = store is not None
        self._decisions: list[DecisionRow] = store.decisions() if store is not None else []
        self._segments: list[SegmentRow] = store.segments() if store is not None else []
        self._decision = 0  # the next recorded decision to compare with
        self._segment = 0

    def decision(self, d: Decision) -> DecisionRow | None:
        """While replaying, the recorded row of decision ``d`` (``ResumeError`` if the replay
        decided otherwise), or None once past what was recorded."""
        row: DecisionRow | None = self._next(
            self._decisions, self._decision, lambda row: decision_differs(d, row)
        )
        self._decision += row is not None
        return row

    def segment(self, member: int, start: int, end: int) -> SegmentRow | None:
        """While replaying, the recorded row of the segment of ``member`` from ``start`` to
        ``end``, or None once past what was recorded."""

        def differs(row: SegmentRow) -> str:
            if (row.member, row.start_step, row.end_step) == (member, start, end):
                return ""
            return (
                f"segment {row.id} recorded as member {row.member} from step {row.start_step} "
                f"to {row.end_step}, replayed as member {member} from {start} to {end}"
            )

        row: SegmentRow | None = self._next(self._segments, self._segment, differs)
        self._segment += row is not None
        return row

    def _next(self, recorded: list[Any], position: int, differs: Callable[[Any], str]) -> Any:
        if not self.replaying or position >= len(recorded):
            return None
        row = recorded[position]
        difference = differs(row)
        if difference:
            raise ResumeError(
                f"the replay made a different choice than the recorded run: {difference}; "
                "was the config, the code or the trainable changed?"
            )
        return row

    def finish(self) -> None:
        """The replay is over: every recorded decision must have been made again."""
        self.replaying = False
        if self._decision != len(self._decisions):
            raise ResumeError(
                f"{len(self._decisions) - self._decision} recorded decisions were "
                "not made again by the replay; the store and the strategy disagree"
            )


def decision_differs(d: Decision, row: DecisionRow) -> str:
    """How decision ``d`` differs from the recorded ``row`` (member, step, kind, donor, source
    step, hyperparameters), or "" when it is the same decision."""
    r = record_of(d)
    h = None if r.hyperparameters is None else as_stored(r.hyperparameters)
    replayed = (r.member, r.step, r.kind, r.donor, r.source_step, h)
    recorded = (row.member, row.step, row.kind, row.donor, row.source_step, row.hyperparameters)
    if replayed == recorded:
        return ""
    names = ("member", "step", "kind", "donor", "source step", "hyperparameters")
    diffs = [
        f"{n} {b!r} (recorded {a!r})"
        for n, a, b in zip(names, recorded, replayed, strict=True)
        if a != b
    ]
    return (
        f"decision {row.id} ({row.kind} of member {row.member} at step {row.step}): replayed "
        + ", ".join(diffs)
    )
