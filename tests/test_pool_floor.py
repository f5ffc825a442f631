"""The leanest-pool replay (benchmarks/pool_floor.py) reads an in-process run's rounds as they
were recorded and replays them on worker processes."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def pool_floor() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import pool_floor

        yield pool_floor
    finally:
        sys.path.remove(str(BENCHMARKS))


def _run_dir(tmp_path: Path, rows: list[tuple[int, float, float, str]]) -> Path:
    with sqlite3.connect(tmp_path / "firepbt.sqlite") as conn:
        conn.execute("CREATE TABLE segments (start_step, started, finished, status)")
        conn.executemany("INSERT INTO segments VALUES (?, ?, ?, ?)", rows)
    return tmp_path


def test_rounds_barriers_and_controller_time_are_read_from_the_record(
    pool_floor: ModuleType, tmp_path: Path
) -> None:
    # round 0: two segments with 0.1 s of controller time between them; a 0.5 s barrier; round 1
    # (start steps 10 and 15 share it at ready_every 10); a failed segment is left out
    rows = [
        (0, 100.0, 101.0, "done"),
        (0, 101.1, 102.0, "done"),
        (10, 102.5, 103.0, "done"),
        (15, 103.0, 103.5, "done"),
        (10, 103.5, 109.0, "failed"),
    ]
    run = pool_floor.recorded(_run_dir(tmp_path, rows), 10, wall=4.0)
    assert [r.segments for r in run.rounds] == [pytest.approx((1.0, 0.9)), (0.5, 0.5)]
    assert run.rounds[0].barrier == 0.0
    assert run.rounds[1].barrier == pytest.approx(0.5)
    assert run.rounds[0].per_result == pytest.approx(0.05)
    assert run.rounds[1].per_result == pytest.approx(0.0)
    assert run.wall_outside == pytest.approx(0.5)  # 4 s of wall, 3.5 s from first to last
    assert run.seconds() == pytest.approx(3.5)
    assert run.seconds(controller_work=0.0) == pytest.approx(3.4)


def test_replay_takes_at_least_the_busier_workers_share(pool_floor: ModuleType) -> None:
    # one round of four 20 ms segments and one of a single 30 ms segment: two workers need at
    # least 40 ms + 30 ms, one worker's sequence 110 ms
    run = pool_floor.Recorded(
        0.0,
        (pool_floor.Round(0.0, (0.02,) * 4, 0.0), pool_floor.Round(0.0, (0.03,), 0.0)),
    )
    seconds = pool_floor.replay(run)
    assert seconds >= 0.07
    assert pool_floor.floor(run) >= 0.07 / 0.11  # over the in-process 110 ms
