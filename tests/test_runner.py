"""Integration: small PBT and random-search runs end to end on both executors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _trainables import Quad, TwoMetrics

import firepbt
from firepbt import AddNoise, Store
from firepbt.store import MemberStatus, SegmentStatus

EXECUTORS = ["inprocess", "process"]


def _run(tmp_path: Path, space, executor: str, **kw):
    options = dict(total_steps=40, population=4, ready_every=4, executor=executor, workers=2)
    options.update(kw)
    return firepbt.run(Quad, space, run_dir=tmp_path / executor, **options)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_pbt_run_records_everything(tmp_path: Path, quad_space, executor: str) -> None:
    result = _run(tmp_path, quad_space, executor, explore=AddNoise(0.1))
    store = Store.open(result.run_dir)
    members = store.members()
    assert [m.status for m in members] == [MemberStatus.FINISHED] * 4
    assert all(m.step == 40 for m in members)
    # one point per ready interval per member, at steps 4, 8, ..., 40 (exploits may add a restart)
    steps = sorted({p.step for _, p in store.points()})
    assert steps == list(range(4, 41, 4))
    assert all(s.status is SegmentStatus.DONE for s in store.segments())
    exploits = [d for d in store.decisions() if d.kind == "exploit"]
    assert exploits, "truncation on 4 members must exploit at some ready step"
    assert len(store.lineage()) == sum(d.donor != d.member for d in exploits)
    # the schedule covers the whole budget without gaps
    sched = result.schedule
    assert sched[0].from_step == 0 and sched[-1].to_step == 40
    assert all(a.to_step == b.from_step for a, b in zip(sched, sched[1:], strict=False))
    # the best member's score is the highest final score
    finals = {}
    for m, p in store.points():
        finals[m] = p.score
    assert result.best_score == max(finals.values())
    # only final checkpoints remain on disk, and all of them exist and verify
    live = store.live_checkpoints()
    assert len(live) == 4
    assert all(Path(path).exists() for path, *_ in live)
    best = result.load_best(Quad)
    assert math.isclose(best.evaluate(), result.best_score)
    store.close()


def test_process_pool_matches_in_process(tmp_path: Path, quad_space) -> None:
    """Sync PBT is deterministic given the seed, whatever executes the segments."""
    a = _run(tmp_path, quad_space, "inprocess", seed=3)
    b = _run(tmp_path, quad_space, "process", seed=3)
    assert a.best_member == b.best_member
    assert a.best_score == pytest.approx(b.best_score, rel=1e-12)
    assert a.schedule == b.schedule


def test_pbt_beats_its_own_start(tmp_path: Path, quad_space) -> None:
    initial = [{"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0}]
    pbt = firepbt.run(
        Quad, quad_space, total_steps=100, population=2, ready_every=4, executor="inprocess",
        run_dir=tmp_path / "pbt", explore=AddNoise(0.1), initial_hyperparameters=initial,
    )  # fmt: skip
    grid = firepbt.run(
        Quad, quad_space, total_steps=100, population=2, ready_every=4, executor="inprocess",
        run_dir=tmp_path / "grid", strategy="random", initial_hyperparameters=initial,
    )  # fmt: skip
    # Grid search with h = (1, 0) or (0, 1) can never shrink both coordinates.
    assert grid.best_score < 0.4
    assert pbt.best_score > 0.9


def test_async_mode_and_time_multiplexing(tmp_path: Path, quad_space) -> None:
    """Population 6 on 2 workers, asynchronous decisions."""
    result = _run(tmp_path, quad_space, "process", population=6, synchrony="async")
    store = Store.open(result.run_dir)
    # every exploit found its donor's checkpoint: nothing was deleted while still needed
    assert store.failures() == []
    assert any(d.kind == "exploit" for d in store.decisions())
    assert {m.status for m in store.members()} == {MemberStatus.FINISHED}
    assert all(m.step == 40 for m in store.members())
    store.close()


def test_random_search_never_exploits(tmp_path: Path, quad_space) -> None:
    result = _run(tmp_path, quad_space, "inprocess", strategy="random")
    store = Store.open(result.run_dir)
    assert {d.kind for d in store.decisions()} == {"start", "continue", "finish"}
    assert store.lineage() == []
    assert store.worker_steps() == 4 * 40
    store.close()


def test_minimise_mode_and_named_metric(tmp_path: Path, quad_space) -> None:
    result = firepbt.run(
        TwoMetrics, quad_space, total_steps=12, population=3, ready_every=4,
        executor="inprocess", run_dir=tmp_path / "r", mode="min", metric="q",
    )  # fmt: skip
    store = Store.open(result.run_dir)
    finals = {}
    for m, p in store.points():
        finals[m] = p
        assert set(p.metrics) == {"q", "test_q"}
    assert result.best_score == min(p.score for p in finals.values())
    store.close()


def test_reusing_a_run_dir_is_refused(tmp_path: Path, quad_space) -> None:
    _run(tmp_path, quad_space, "inprocess", total_steps=4)
    with pytest.raises(firepbt.store.StoreError, match="already holds a run"):
        _run(tmp_path, quad_space, "inprocess", total_steps=4)
