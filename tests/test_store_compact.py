"""The compact store keeps what many rows repeat once, and what can be read elsewhere as NULL
(``firepbt.store._compact``), and reads every value back exactly: metrics, digests, checkpoint
paths (the runner's names and any other), and the texts of writes that were undone."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from firepbt.checkpoints import CheckpointRef
from firepbt.decisions import Start
from firepbt.segments import Point, Segment, SegmentResult
from firepbt.store import STORE_FILE, Store
from firepbt.store._compact import (
    _json,
    default_key,
    kept_metrics,
    kept_path,
    kept_sha,
    metrics_of,
    path_of,
    sha_of,
)
from firepbt.trainable import Trainable

SHA = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "score, elided",
    [(0.25, True), (math.nan, True), (math.inf, True), (0.0, True), (-0.0, False), (3, False)],
)
def test_metrics_that_are_the_score_alone_are_kept_as_null(score: float, elided: bool) -> None:
    text = _json({"score": score})
    kept = kept_metrics(text, score)
    assert (kept is None) == elided
    stored = None if math.isnan(score) else float(score)  # what SQLite gives back
    assert metrics_of(kept, stored) == text
    assert kept_metrics(_json({"score": 0.5, "acc": 1.0}), 0.5) is not None
    assert kept_metrics(_json({"loss": score}), score) is not None


def test_digests_and_paths_read_back_as_they_were_given() -> None:
    assert kept_sha(SHA) == bytes.fromhex(SHA) and sha_of(kept_sha(SHA)) == SHA
    for odd in ("", "0" * 63, SHA.upper(), "z" * 64):
        assert kept_sha(odd) == odd and sha_of(kept_sha(odd)) == odd
    name = "checkpoints/member-0003/step-00000120-seg-77.ckpt"
    assert kept_path(name, 3, 120, 77) is None and path_of(None, 3, 120, 77) == name
    assert default_key(name) == (3, 120, 77)
    for other in (name, "/elsewhere/x.ckpt", "checkpoints/member-3/step-120-seg-77.ckpt"):
        if other != name:
            assert default_key(other) is None
        assert path_of(kept_path(other, 3, 120, 78), 3, 120, 78) == other  # another segment's


def _done(store: Store, member: int, path: str, sha: str, holder: str = "") -> int:
    seg_id = store.add_segment(member, 0, 10, {"lr": 0.1}, None)
    seg = Segment(seg_id, member, 0, 0, 10, 10, {"lr": 0.1}, None, path, Trainable)
    ref = CheckpointRef(path, sha, member, 10, seg_id, holder)
    points = (Point(10, -0.0, {"score": -0.0}), Point(10, 2.5, {"score": 2.5}))
    store.segment_done(SegmentResult(seg, points, ref, 10, worker="w-1", finished=5.0))
    return seg_id


def test_checkpoints_inside_and_outside_the_run_directory(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "run", {})
    try:
        store.record_decision(Start(0, {"lr": 0.1}, 0, 10))
        own = str(tmp_path / "run" / "checkpoints" / "member-0000" / "step-00000010-seg-1.ckpt")
        outside = str(tmp_path / "elsewhere" / "step-00000010-seg-2.ckpt")
        renamed = str(tmp_path / "run" / "checkpoints" / "member-0000" / "step-00000010-seg-9.ckpt")
        assert [_done(store, 0, p, SHA, h) for p, h in ((own, ""), (outside, "w"), (renamed, ""))]
        assert store.checkpoint_ref(1) == CheckpointRef(own, SHA, 0, 10, 1, "")
        assert store.checkpoint_ref(2) == CheckpointRef(outside, SHA, 0, 10, 2, "w")
        assert store.checkpoint_ref(3) == CheckpointRef(renamed, SHA, 0, 10, 3, "")
        assert [p for p, *_ in store.live_checkpoints()] == [own, renamed]
        assert store.held_checkpoints() == [(outside, 0, 10, "w")]
        store.checkpoint_flushed(CheckpointRef(outside, SHA, 0, 10, 2, ""))
        store.checkpoint_deleted(renamed)  # found by its path, not as the runner's name
        store.checkpoint_deleted(own)
        assert store.live_checkpoints() == [(outside, 0, 10, SHA)]
        assert store.held_checkpoints() == [] and store.checkpoint_of_segment(1) is None
        with sqlite3.connect(tmp_path / "run" / STORE_FILE) as c:
            kept = c.execute("SELECT segment, path FROM checkpoints ORDER BY segment").fetchall()
        assert kept == [
            (1, None),
            (2, outside),
            (3, "checkpoints/member-0000/" + Path(renamed).name),
        ]
        points = [p for _, p in store.points()]
        assert [math.copysign(1.0, p.metrics["score"]) for p in points[::2]] == [-1.0] * 3
        assert [json.loads(m) for *_, m in store.raw("points", ("member", "metrics"))] == [
            p.metrics for p in points
        ]
    finally:
        store.close()


def test_a_text_of_a_write_that_was_undone_is_written_again(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "run", {})
    try:
        with store.batch():
            with pytest.raises(sqlite3.IntegrityError):  # after its hyperparameters' text
                store.add_segment(None, 0, 10, {"lr": 0.7}, None)  # type: ignore[arg-type]
            store.add_segment(0, 0, 10, {"lr": 0.7}, None)
        (segment,) = store.segments()
        assert segment.hyperparameters == {"lr": 0.7}
        assert list(store.raw("segments", ("id", "hyperparameters"))) == [(1, '{"lr": 0.7}')]
    finally:
        store.close()
