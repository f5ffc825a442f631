"""Schedules and ancestry read back from a hand-built store."""

from __future__ import annotations

from pathlib import Path

import pytest
from _trainables import Quad

from firepbt.checkpoints import CheckpointRef
from firepbt.lineage import ScheduleEntry, ancestry, schedule
from firepbt.segments import Point, Segment, SegmentResult
from firepbt.store import Store


def _done(store: Store, member: int, start: int, end: int, lr: float, source: int | None) -> int:
    seg_id = store.add_segment(member, start, end, {"lr": lr}, source, None)
    h = {"lr": lr}
    seg = Segment(seg_id, member, 0, start, end, end - start, h, None, f"/x/{seg_id}", Quad)
    ref = CheckpointRef(f"/x/{seg_id}", "0" * 64, member, end, seg_id)
    store.segment_done(SegmentResult(seg, (Point(end, 1.0, {"score": 1.0}),), ref, 10))
    return seg_id


def test_schedule_follows_exploits_with_exact_steps(tmp_path: Path) -> None:
    store = Store.create(tmp_path, {})
    a1 = _done(store, 0, 0, 10, 0.1, None)
    _done(store, 1, 0, 10, 0.5, None)
    a2 = _done(store, 0, 10, 20, 0.1, a1)
    # member 1 copies member 0 at step 20 and trains with an explored lr
    b3 = _done(store, 1, 20, 30, 0.08, a2)
    # member 0 copies member 1 at step 30
    _done(store, 0, 30, 40, 0.064, b3)
    assert schedule(store, 0) == [
        ScheduleEntry(0, 20, 0, {"lr": 0.1}),
        ScheduleEntry(20, 30, 1, {"lr": 0.08}),
        ScheduleEntry(30, 40, 0, {"lr": 0.064}),
    ]
    assert ancestry(store, 0) == [(0, 0, 20), (1, 20, 30), (0, 30, 40)]
    assert schedule(store, 1) == [
        ScheduleEntry(0, 20, 0, {"lr": 0.1}),
        ScheduleEntry(20, 30, 1, {"lr": 0.08}),
    ]
    assert len(schedule(store, 0, merge=False)) == 4
    assert schedule(store, 7) == []
    store.close()


def test_lineage_through_an_evaluator_hand_over_and_at_a_past_step(tmp_path: Path) -> None:
    """P2 member 2 trains 0-20; evaluator 5 takes its weights at 20 and trains them with P1's
    hyperparameters to 30; P1 member 0 takes the evaluator's weights at 30 and trains to 40."""
    store = Store.create(tmp_path, {})
    a1 = _done(store, 0, 0, 10, 0.1, None)
    _done(store, 0, 10, 20, 0.1, a1)
    p1 = _done(store, 2, 0, 10, 0.8, None)
    p2 = _done(store, 2, 10, 20, 0.8, p1)
    e1 = _done(store, 5, 20, 30, 0.1, p2)
    _done(store, 0, 30, 40, 0.1, e1)
    assert schedule(store, 0) == [
        ScheduleEntry(0, 20, 2, {"lr": 0.8}),
        ScheduleEntry(20, 30, 5, {"lr": 0.1}),  # the evaluator's range keeps its own entry
        ScheduleEntry(30, 40, 0, {"lr": 0.1}),
    ]
    assert ancestry(store, 0) == [(2, 0, 20), (5, 20, 30), (0, 30, 40)]
    # member 0 at step 20, before the hand-over, carried only its own training
    assert schedule(store, 0, step=20) == [ScheduleEntry(0, 20, 0, {"lr": 0.1})]
    assert ancestry(store, 0, step=20) == [(0, 0, 20)]
    with pytest.raises(ValueError, match="never finished a segment at step 25"):
        schedule(store, 0, step=25)
    store.close()
