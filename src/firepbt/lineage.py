"""Lineage and schedules, read from the store.

Every segment records the segment whose checkpoint it started from, so a member's history is a
chain of segments back to a fresh start. The chain gives its *lineage* (whose weights it carries,
copied at which step) and its *schedule*: the hyperparameters in force over each range of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

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
