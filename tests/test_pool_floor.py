"""The leanest-pool replay (benchmarks/pool_floor.py) reads a synchronous in-process run's
rounds as they were recorded and replays them on two worker processes."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from _trainables import Quad

import firepbt
from firepbt.execution.in_process import InProcessExecutor

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def pool_floor() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import pool_floor

        yield pool_floor
    finally:
        sys.path.remove(str(BENCHMARKS))


def _run_dir(tmp_path: Path, rows: list[tuple[int, int, float, float, str]]) -> Path:
    with sqlite3.connect(tmp_path / "firepbt.sqlite") as conn:
        conn.execute("CREATE TABLE segments (id, start_step, started, finished, status)")
        conn.executemany("INSERT INTO segments VALUES (?, ?, ?, ?, ?)", rows)
    return tmp_path


def test_rounds_barriers_and_controller_time_are_read_from_the_record(
    pool_floor: ModuleType, tmp_path: Path
) -> None:
    # round 0: three segments with 0.1 s and 0.3 s of controller time between them; a 0.5 s
    # barrier; round 1 (start steps 10 and 15 share it at ready_every 10); a failed segment is
    # left out; segment 1 spent 0.6 s of its 0.9 s on CPU (the rest: waiting for a disk)
    rows = [
        (0, 0, 100.0, 101.0, "done"),
        (1, 0, 101.1, 102.0, "done"),
        (2, 0, 102.3, 102.5, "done"),
        (3, 10, 103.0, 103.5, "done"),
        (4, 15, 103.5, 104.0, "done"),
        (5, 10, 104.0, 109.0, "failed"),
    ]
    run_dir = _run_dir(tmp_path, rows)
    (run_dir / pool_floor.CPU_FILE).write_text(json.dumps({"1": 0.6}))
    run = pool_floor.recorded(run_dir, 10, wall=4.5)
    first, second = run.rounds
    flat = [x for r in (first, second) for segment in r.segments for x in segment]
    assert flat == pytest.approx([1.0, 1.0, 0.6, 0.9, 0.2, 0.2, 0.5, 0.5, 0.5, 0.5])
    assert [len(r.segments) for r in (first, second)] == [3, 2]
    assert (first.barrier, second.barrier) == (0.0, pytest.approx(0.5))
    assert first.per_result == pytest.approx(0.2)  # 0.4 s over the 2 results before the last
    assert second.per_result == pytest.approx(0.0)
    assert run.wall_outside == pytest.approx(0.5)  # 4.5 s of wall, 4 s from first to last
    assert run.seconds() == pytest.approx(4.0)
    assert run.seconds(controller_work=0.0) == pytest.approx(3.6)


def test_a_run_whose_rounds_overlap_is_refused(pool_floor: ModuleType, tmp_path: Path) -> None:
    rows = [(0, 0, 0.0, 1.0, "done"), (1, 10, 1.0, 2.0, "done"), (2, 0, 2.0, 3.0, "done")]
    with pytest.raises(ValueError, match="not a synchronous"):
        pool_floor.recorded(_run_dir(tmp_path, rows), 10, wall=3.0)


def test_replay_shares_each_round_between_both_workers(pool_floor: ModuleType) -> None:
    # four 20 ms segments, then one of 30 ms (10 ms of it asleep): two workers need at least
    # 40 ms + 30 ms; one worker's sequence takes 110 ms
    Round = pool_floor.Round
    run = pool_floor.Recorded(
        0.0, (Round(0.0, ((0.02, 0.02),) * 4, 0.0), Round(0.0, ((0.02, 0.03),), 0.0))
    )
    seconds, trained = pool_floor.replay(run)
    assert seconds >= 0.07
    assert sorted(trained.values()) == [2, 3]  # 2 sent to each at once, then 1 more
    assert pool_floor.floor(run) >= 0.07 / 0.11  # over the in-process 110 ms


def test_an_in_process_run_records_each_segments_cpu_time(
    pool_floor: ModuleType, tmp_path: Path, quad_space: dict[str, firepbt.Uniform]
) -> None:
    with pool_floor.segments_timed(tmp_path):
        firepbt.run(
            Quad, quad_space, total_steps=8, population=2, ready_every=4,
            executor=InProcessExecutor(), run_dir=tmp_path,
        )  # fmt: skip
    cpu = {int(k): v for k, v in json.loads((tmp_path / pool_floor.CPU_FILE).read_text()).items()}
    with sqlite3.connect(tmp_path / "firepbt.sqlite") as conn:
        walls = dict(conn.execute("SELECT id, finished - started FROM segments"))
    assert sorted(cpu) == sorted(walls)  # one CPU time for each segment the store recorded
    assert all(v > 0 for v in cpu.values())
    run = pool_floor.recorded(tmp_path, 4, wall=10.0)
    assert [len(r.segments) for r in run.rounds] == [2, 2]
    replayed = sorted(c for r in run.rounds for c, _ in r.segments)
    assert replayed == pytest.approx(sorted(min(cpu[i], walls[i]) for i in cpu))
