"""Lineage and schedules, read from the store.

Every segment records the segment whose checkpoint it started from, so a member's history is a
chain of segments back to a fresh start. The chain gives its *lineage* (whose weights it carries,
copied at which step) and its *schedule*: the hyperparameters in force over each range of steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from firepbt.space import Hyperparameters
from firepbt.store import SegmentRow, Store


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """Hyperparameters in force from ``from_step`` to ``to_step``, trained by ``member``.

    Attributes:
        from_step: The step the stretch starts from.
        to_step: The step the stretch ends at.
        member: The worker that trained it: a member, or one of FIRE PBT's evaluators.
        hyperparameters: The hyperparameters in force over the stretch.
    """

    from_step: int
    to_step: int
    member: int
    hyperparameters: Hyperparameters


def segment_chain(store: Store, member: int, step: int | None = None) -> list[SegmentRow]:
    """The segments that produced ``member``'s latest weights (or its weights at ``step``, the
    last time it reached that step), oldest first."""
    last = store.last_done_segment(member, step)
    if last is None:
        if step is not None:
            raise ValueError(f"member {member} never finished a segment at step {step}")
        return []
    return store.chain(last.id)


def schedule(
    store: Store, member: int, merge: bool = True, step: int | None = None
) -> list[ScheduleEntry]:
    """The hyperparameter schedule behind ``member``'s latest weights (or its weights at
    ``step``), with exact step ranges.

    Consecutive ranges trained by the same worker with equal hyperparameters are merged unless
    ``merge`` is False (a range an evaluator trained keeps its own entry: it used its target's
    hyperparameters, but it is another worker's training).

    Args:
        store: The run's store.
        member: The member whose schedule to read.
        merge: Whether to merge consecutive ranges trained by the same worker with equal
            hyperparameters.
        step: Read the schedule behind the member's weights at this step (the last time it
            reached it) instead of its latest weights.

    Returns:
        One entry per range of steps, oldest first (a segment that trained no step has none);
        empty when the member has finished no segment.

    Raises:
        ValueError: The member never finished a segment at ``step``.
    """
    entries: list[ScheduleEntry] = []
    for seg in segment_chain(store, member, step):
        if seg.end_step == seg.start_step:
            continue
        last = entries[-1] if entries else None
        if (
            merge
            and last is not None
            and last.member == seg.member
            and last.hyperparameters == seg.hyperparameters
        ):
            entries[-1] = ScheduleEntry(
                last.from_step, seg.end_step, seg.member, last.hyperparameters
            )
        else:
            entries.append(
                ScheduleEntry(seg.start_step, seg.end_step, seg.member, seg.hyperparameters)
            )
    return entries


def ancestry(store: Store, member: int, step: int | None = None) -> list[tuple[int, int, int]]:
    """(member, from_step, to_step): whose training the latest weights of ``member`` (or its
    weights at ``step``) carry."""
    out: list[tuple[int, int, int]] = []
    for seg in segment_chain(store, member, step):
        if out and out[-1][0] == seg.member:
            out[-1] = (seg.member, out[-1][1], seg.end_step)
        else:
            out.append((seg.member, seg.start_step, seg.end_step))
    return out


# Consecutive stretches of a folded schedule are merged while every numeric hyperparameter stays
# within this share of the merged stretch's first value (and every other one is equal).
FOLD_SHARE = 0.25


@dataclass
class FoldedRow:
    """A row of a folded schedule: consecutive stretches merged into one range of steps, the
    workers that trained it and each hyperparameter's lowest and highest value."""

    start: int
    end: int
    workers: list[int]
    first: dict[str, Any]  # the values the row starts with
    low: dict[str, Any]
    high: dict[str, Any]

    @classmethod
    def of(cls, e: ScheduleEntry) -> FoldedRow:
        h = dict(e.hyperparameters)
        return cls(e.from_step, e.to_step, [e.member], h, dict(h), dict(h))

    def takes(self, e: ScheduleEntry) -> bool:
        """Whether ``e`` stays within ``FOLD_SHARE`` of this row's first values."""
        if e.hyperparameters.keys() != self.first.keys():
            return False
        for k, v in e.hyperparameters.items():
            first = self.first[k]
            if _is_number(v) and _is_number(first):
                if abs(float(v) - float(first)) > FOLD_SHARE * abs(float(first)):
                    return False
            elif v != first:
                return False
        return True

    def add(self, e: ScheduleEntry) -> None:
        self.end = e.to_step
        if e.member not in self.workers:
            self.workers.append(e.member)
        for k, v in e.hyperparameters.items():
            if _is_number(v):
                self.low[k] = min(self.low[k], v)
                self.high[k] = max(self.high[k], v)

    def value(self, name: str) -> str:
        """A hyperparameter's value over the row, or its range ("0.61–0.87")."""
        low, high = self.low[name], self.high[name]
        return _text(low) if low == high else f"{_text(low)}–{_text(high)}"

    def text(self) -> str:
        return ", ".join(f"{k}={self.value(k)}" for k in self.low)


def fold_schedule(entries: list[ScheduleEntry], rows: int | None) -> tuple[list[FoldedRow], str]:
    """A schedule in at most ``rows`` rows (every stretch, one per row, when ``rows`` is None
    or enough), and a note saying how it was folded ("" when it was not): consecutive
    stretches whose numeric hyperparameters stay within ``FOLD_SHARE`` of the first are merged
    (each value shown as its range); if more than ``rows`` rows remain, the steps are cut into
    ``rows`` spans of equal length and each span shows the range of every value in it, so
    that the schedule's shape (a decay, a warm-up) stays in view."""
    if rows is None or len(entries) <= rows:
        return [FoldedRow.of(e) for e in entries], ""
    out: list[FoldedRow] = []
    for e in entries:
        if out and out[-1].takes(e):
            out[-1].add(e)
        else:
            out.append(FoldedRow.of(e))
    if len(out) <= rows:
        return out, f"{len(entries)} stretches, merged where values stay within {FOLD_SHARE:.0%}"
    start, end = entries[0].from_step, entries[-1].to_step
    width = max(1, -(-(end - start) // rows))  # steps per span, rounded up
    spans: dict[int, FoldedRow] = {}
    for e in entries:
        span = spans.get((e.from_step - start) // width)
        if span is None:
            spans[(e.from_step - start) // width] = FoldedRow.of(e)
        elif e.hyperparameters.keys() == span.low.keys():
            span.add(e)
        else:  # other names: the span shows what it started with
            span.end = e.to_step
    note = f"{len(entries)} stretches, shown as {len(spans)} spans of {width} steps"
    return [spans[k] for k in sorted(spans)], note


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _text(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
