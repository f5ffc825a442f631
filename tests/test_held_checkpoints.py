"""Checkpoints held in a worker's memory: a member continuing on the worker that holds its weights
is neither written out nor read back; weights another worker needs are written out first; and a
held checkpoint lost with its worker is trained again from the last checkpoint on disk, so that
a deterministic run ends exactly as if every checkpoint had been written."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from _runs import drops_wait_for_an_idle_worker
from _trainables import Quad

import firepbt
from firepbt import Store
from firepbt.control.queue import DEFER_LIMIT, SegmentQueue
from firepbt.execution import worker as segments
from firepbt.execution.in_process import InProcessExecutor
from firepbt.execution.pool import ProcessPoolExecutor
from firepbt.segments import SegmentResult


class _Counting(InProcessExecutor):
    """Counts checkpoints written and held by segments, and flushes asked for. With ``lose``,
    the worker 'dies' after the segment of a (member, step) in it: every checkpoint it held
    and every trainable it kept alive are gone, and the runner hears of it only when it needs
    one of them."""

    def __init__(self, lose: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.written = self.held = self.flushed = 0
        self.lose = lose
        self.lost: set[str] = set()

    def wait(self) -> list[SegmentResult]:
        results = super().wait()
        for r in results:
            if r.checkpoint is None:
                continue
            if r.checkpoint.holder:
                self.held += 1
            else:
                self.written += 1
            if (r.segment.member, r.segment.end_step) == self.lose and not r.segment.repair:
                self.lose = None
                self.lost |= set(segments._HELD)
                segments._HELD.clear()
                segments._ALIVE.clear()
        return results

    def idle(self, worker: str) -> bool:
        return super().idle(worker) and not self.lost

    def flush(self, worker: str, path: str) -> str:
        self.flushed += 1
        return super().flush(worker, path)


def _run(path: Path, space, executor: InProcessExecutor, **kw) -> firepbt.RunResult:
    options: dict = dict(total_steps=40, population=4, ready_every=4, seed=5, run_dir=path)
    options.update(kw)
    return firepbt.run(Quad, space, executor=executor, **options)


def _same_run(a: firepbt.RunResult, b: firepbt.RunResult) -> None:
    assert (a.best_member, a.best_score, a.schedule) == (b.best_member, b.best_score, b.schedule)
    sa, sb = Store.open(a.run_dir), Store.open(b.run_dir)
    # the same points (workers may take segments in another order, so they are sorted)
    assert sorted(sa.points(), key=_key) == sorted(sb.points(), key=_key)
    assert [d.kind for d in sa.decisions()] == [d.kind for d in sb.decisions()]
    sa.close()
    sb.close()


def _key(point: tuple) -> tuple:
    return (point[0], point[1].step, point[1].score)


def _copies(run_dir: Path) -> int:
    store = Store.open(run_dir)
    n = sum(d.kind == "exploit" and d.donor != d.member for d in store.decisions())
    store.close()
    return n


def test_held_checkpoints_are_written_only_when_due_or_copied(tmp_path: Path, quad_space):
    every = _Counting()
    every_run = _run(tmp_path / "every", quad_space, every, checkpoint_every=1)
    held = _Counting()
    held_run = _run(tmp_path / "held", quad_space, held, checkpoint_every=20)
    _same_run(every_run, held_run)
    assert every.held == 0 and every.flushed == 0 and every.written == 40
    # Written: the segments that reach step 20 and step 40, 4 members each; the other 32 held.
    assert held.written == 8 and held.held == 32
    # An exploit of another member's held weights reads them from the memory of the worker that
    # holds them (here, this process): nothing is written out for it.
    copies = _copies(held_run.run_dir)
    assert copies > 0
    assert held.flushed == 0
    store = Store.open(held_run.run_dir)
    assert store.held_checkpoints() == []  # every held checkpoint was dropped by the end
    live = store.live_checkpoints()
    assert len(live) == 4 and all(Path(p).exists() for p, *_ in live)
    store.close()
    assert not any(str(tmp_path) in path for path in segments._HELD)


def test_by_default_a_fifth_of_the_budget_is_between_checkpoints(tmp_path: Path, quad_space):
    counting = _Counting()
    _run(tmp_path / "r", quad_space, counting, exploit=firepbt.NoExploit())
    # steps 8, 16, 24, 32, 40 are due (multiples of 40 / 5); 4, 12, 20, 28, 36 are held
    assert (counting.written, counting.held, counting.flushed) == (20, 20, 0)


@pytest.mark.parametrize(("every", "lose"), [(20, (1, 16)), (40, (2, 28))])
def test_held_checkpoints_lost_with_their_worker_are_trained_again(
    tmp_path: Path, quad_space, every: int, lose: tuple[int, int]
) -> None:
    """Losing a worker's memory part-way: the members' held weights are trained again from
    their last checkpoint on disk (or from scratch), through the exploits that made them."""
    clean = _run(tmp_path / "clean", quad_space, _Counting(), checkpoint_every=every)
    losing = _Counting(lose=lose)
    result = _run(tmp_path / "lost", quad_space, losing, checkpoint_every=every)
    assert losing.lost, "the worker held checkpoints when it was lost"
    _same_run(clean, result)
    store = Store.open(result.run_dir)
    kinds = [kind for _, _, kind, _ in store.failures()]
    assert "repaired" in kinds and set(kinds) == {"source_unreadable", "repaired"}
    assert {m.status.value for m in store.members()} == {"finished"}
    store.close()


def test_a_process_pool_continues_members_in_memory(tmp_path: Path, quad_space) -> None:
    """On worker processes, members continue from memory and the run is the in-process run."""

    class Pool(ProcessPoolExecutor):
        reused = held = 0

        def wait(self) -> list[SegmentResult]:
            results = super().wait()
            for r in results:
                Pool.reused += r.reused_trainable
                Pool.held += bool(r.checkpoint and r.checkpoint.holder)
            return results

    inprocess = _run(tmp_path / "in", quad_space, _Counting(), checkpoint_every=20)
    pool = _run(tmp_path / "pool", quad_space, Pool(workers=2), checkpoint_every=20)
    _same_run(inprocess, pool)
    assert Pool.held == 32
    assert Pool.reused > 0  # some members went on with the trainable their worker kept alive
    store = Store.open(pool.run_dir)
    assert _copies(pool.run_dir) > 0
    assert store.failures() == []  # every donor was written out: none had to be trained again
    store.close()


def test_a_worker_process_with_room_reads_the_held_weights_an_exploit_copies(
    tmp_path: Path, quad_space
) -> None:
    """One worker process holds every checkpoint and has room for a round of 2 members: each
    exploit's segment goes to it and reads the donor's weights from its memory, not a file."""

    class Pool(ProcessPoolExecutor):
        flushed = 0

        def flush(self, worker: str, path: str) -> str:
            Pool.flushed += 1
            return super().flush(worker, path)

    inprocess = _run(tmp_path / "in", quad_space, _Counting(), population=2, checkpoint_every=40)
    pool = _run(tmp_path / "pool", quad_space, Pool(workers=1), population=2, checkpoint_every=40)
    _same_run(inprocess, pool)
    assert _copies(pool.run_dir) > 0
    assert Pool.flushed == 0


def test_a_killed_worker_process_loses_only_what_it_held(tmp_path: Path, quad_space) -> None:
    """SIGKILL the worker process that just trained member 1 to step 8: the weights it held are
    trained again from scratch on the other processes, and the run is the in-process run."""

    class Killing(ProcessPoolExecutor):
        def wait(self) -> list[SegmentResult]:
            results = super().wait()
            for r in results:
                if (r.segment.member, r.segment.end_step) == (1, 8) and not r.segment.repair:
                    assert r.checkpoint is not None and r.checkpoint.holder == r.worker
                    os.kill(int(r.worker.removeprefix("pid-")), signal.SIGKILL)
            return results

    clean = _run(tmp_path / "clean", quad_space, _Counting(), checkpoint_every=40)
    killed = _run(tmp_path / "killed", quad_space, Killing(workers=2), checkpoint_every=40)
    _same_run(clean, killed)
    store = Store.open(killed.run_dir)
    failures = [(m, kind) for m, _, kind, _ in store.failures()]
    assert (1, "source_unreadable") in failures and (1, "repaired") in failures
    assert {m.status.value for m in store.members()} == {"finished"}
    store.close()


class _Stopped(Exception):
    pass


class _WritesAllThenStops(InProcessExecutor):
    """Holds nothing (every checkpoint is written), and stops the run after ``after`` results."""

    holds_state = False

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def wait(self) -> list[SegmentResult]:
        results = super().wait()
        self.after -= len(results)
        if self.after < 0:
            raise _Stopped
        return results


@pytest.mark.parametrize("after", [31, 35, 39])
def test_a_run_that_wrote_every_checkpoint_resumes_on_workers_that_hold_them(
    tmp_path: Path, quad_space, after: int
) -> None:
    """The store says which checkpoints were made held: a run made by an executor that writes
    them all is resumed from its files, with nothing taken for lost."""
    options: dict = dict(total_steps=100, population=4, ready_every=4, seed=5)
    clean = _run(tmp_path / "clean", quad_space, _Counting(), **options)
    with pytest.raises(_Stopped):
        _run(tmp_path / "r", quad_space, _WritesAllThenStops(after), **options)
    result = firepbt.resume(tmp_path / "r", executor=_Counting())
    _same_run(clean, result)
    store = Store.open(result.run_dir)
    assert store.failures() == []
    store.close()


class _TwoHolders:
    """The parts of an executor ``SegmentQueue.next`` asks about: "A" is busy, "B" is idle."""

    def idle(self, worker: str) -> bool:
        return worker == "B"

    def reads_held(self, segment: firepbt.segments.Segment) -> bool:
        return segment.source is not None and self.idle(segment.source.holder)


def _segment(
    id: int, member: int, holder: str | None, isolated: bool = False
) -> firepbt.segments.Segment:
    from firepbt.checkpoints import CheckpointRef
    from firepbt.segments import Segment

    source = None
    if holder is not None:  # another member's weights (an exploit), held by `holder`
        source = CheckpointRef(f"c{id}", "", member + 100, 4, id, holder)
    return Segment(id, member, 0, 4, 8, 2, {}, source, f"out{id}", Quad, isolated=isolated)


def _queue_with(queue: list[firepbt.segments.Segment]) -> SegmentQueue:
    from firepbt.control.ledger import CheckpointLedger

    segments = SegmentQueue(_TwoHolders(), CheckpointLedger())  # type: ignore[arg-type]
    for segment in queue:
        segments.append(segment)
    return segments


def test_a_segment_whose_source_a_busy_worker_holds_waits_behind_ones_that_need_no_flush() -> None:
    waiting = _segment(0, 0, "A")  # its source is in busy A's memory: it would be written out
    others = [_segment(1, 1, None), _segment(2, 2, "B"), _segment(3, 3, "")]
    queue = _queue_with([waiting, *others])
    assert [queue.next().id for _ in others] == [1, 2, 3]
    assert queue.waits(0) == 0  # counted at the end of the fill round
    assert queue.next() is waiting  # nothing else left
    queue.count_waits()
    assert queue.waits(0) == 0  # nothing kept for segments no longer queued

    # passed over in DEFER_LIMIT fill rounds, however many went ahead in each, it goes next
    # rather than wait for A indefinitely
    fresh = [_segment(10 + i, 10 + i, None) for i in range(2 * DEFER_LIMIT + 1)]
    queue = _queue_with([waiting, *fresh])
    taken = []
    for _ in range(DEFER_LIMIT + 1):  # one fill round filling two free workers
        taken += [queue.next().id, queue.next().id]
        queue.count_waits()
    assert taken == [10 + i for i in range(2 * DEFER_LIMIT)] + [0, 10 + 2 * DEFER_LIMIT]


def test_a_segment_that_must_run_alone_is_not_taken_from_behind_others() -> None:
    blocked = _segment(1, 1, "A")  # waits for busy A
    alone = _segment(2, 2, None, isolated=True)  # its worker died under it: it runs alone
    queue = _queue_with([blocked, alone])
    assert queue.next() is blocked  # not the isolated one, though it needs no flush
    assert queue.next() is alone


def test_a_worker_process_forgets_a_dropped_checkpoint_once_it_trains_nothing(
    tmp_path: Path,
) -> None:
    """A drop waits while the worker trains (a request at once would wake its second thread
    mid-segment) and reaches it with its next segment, or at the controller's next wait once
    it trains nothing; until then the worker can still write the checkpoint out."""
    from firepbt.segments import Segment

    def held(id: int, member: int, source: firepbt.checkpoints.CheckpointRef | None) -> Segment:
        path, h = str(tmp_path / f"c{id}"), {"h0": 1.0, "h1": 1.0}
        return Segment(id, member, 0, id * 4, id * 4 + 4, 2, h, source, path, Quad, persist=False)

    drops_wait_for_an_idle_worker(ProcessPoolExecutor(workers=1), held)
