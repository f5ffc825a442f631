"""What the port tests read from a run's store: every point, and the finished segments with the
member each one's source belonged to (another member's: an exploit)."""

from __future__ import annotations

from pathlib import Path

from firepbt import Store
from firepbt.store import SegmentRow


def recorded_points(run_dir: Path) -> list[tuple[int, int, dict[str, float]]]:
    """(member, step, metrics) of every point, by member and step."""
    store = Store.open(run_dir)
    try:
        return sorted(((m, p.step, p.metrics) for m, p in store.points()), key=lambda t: t[:2])
    finally:
        store.close()


def finished_segments(store: Store) -> list[tuple[SegmentRow, bool]]:
    """Every finished segment, and whether it started from another member's checkpoint."""
    done = [s for s in store.segments() if s.status.value == "done"]
    member_of = {s.id: s.member for s in done}
    return [
        (s, s.source_segment is not None and member_of.get(s.source_segment, s.member) != s.member)
        for s in done
    ]
