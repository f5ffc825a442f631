"""Readers on a long run: the store's indexes (and older stores gaining them), the queries that
replace reading whole tables, and ``firepbt status`` folded to fit a terminal. The store is a
FIRE PBT run written through the store's API (``benchmarks/long_store.py``), not trained."""

from __future__ import annotations

import importlib.util
import math
import re
import sqlite3
import sys
from pathlib import Path

import pytest

from firepbt.cli import main
from firepbt.display import SCHEDULE_ROWS
from firepbt.lineage import ScheduleEntry, fold_schedule, schedule
from firepbt.store import SegmentStatus, Store
from firepbt.store._rows import INDEXES

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _long_store_module():
    spec = importlib.util.spec_from_file_location("long_store", BENCHMARKS / "long_store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["long_store"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("long") / "run"
    _long_store_module().write_long_store(run_dir, points=6000).close()
    return run_dir


def _index_names() -> list[str]:
    return re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", INDEXES)


def _plan(store: Store, call) -> str:
    """The query plan of the last query ``call`` makes on ``store``."""
    seen: list[str] = []
    store._conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        store._conn.set_trace_callback(None)
    rows = store._conn.execute("EXPLAIN QUERY PLAN " + seen[-1]).fetchall()
    return " | ".join(str(r[-1]) for r in rows)


def test_segment_points_reads_through_an_index(long_run: Path) -> None:
    store = Store.open(long_run)
    try:
        plan = _plan(store, lambda: store.segment_points(5))
        assert "USING INDEX points_segment" in plan, plan
        chain = _plan(store, lambda: store.last_done_segment(3))
        assert "segments_member" in chain, chain
    finally:
        store.close()


def test_a_store_made_before_the_indexes_gains_them_when_opened(tmp_path: Path) -> None:
    run_dir = tmp_path / "old"
    _long_store_module().write_long_store(run_dir, points=600).close()
    conn = sqlite3.connect(run_dir / "firepbt.sqlite")
    for name in _index_names():  # as a store made before they existed
        conn.execute(f"DROP INDEX {name}")
    conn.close()
    conn = sqlite3.connect(f"file:{run_dir / 'firepbt.sqlite'}?mode=ro", uri=True)
    before = {
        seg: conn.execute(
            "SELECT step, score FROM points WHERE segment = ? ORDER BY rowid", (seg,)
        ).fetchall()
        for seg in (1, 50, 300)
    }
    plan = conn.execute("EXPLAIN QUERY PLAN SELECT * FROM points WHERE segment = 5").fetchall()
    assert "SCAN" in str(plan)
    conn.close()
    store = Store.open(run_dir)
    try:
        have = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master")}
        assert set(_index_names()) <= have
        assert "USING INDEX points_segment" in _plan(store, lambda: store.segment_points(5))
        for seg, rows in before.items():  # the same answers through the index
            got = [
                (p.step, None if math.isnan(p.score) else p.score)
                for p in store.segment_points(seg)
            ]
            assert got == rows
    finally:
        store.close()


def test_the_queries_answer_as_reading_the_whole_tables_did(long_run: Path) -> None:
    store = Store.open(long_run)
    try:
        points = store.points()
        last = {m: p for m, p in points}
        assert store.latest_points() == last
        best: dict[int, float] = {}
        for m, p in points:
            if math.isfinite(p.score):
                best[m] = min(best.get(m, math.inf), p.score)
        assert store.best_scores(minimise=True) == best

        def key(m: int, step: int, score: float) -> tuple[int, int, float | None]:
            return (m, step, None if math.isnan(score) else score)

        assert [key(m, p.step, p.score) for m, p in points] == [
            key(m, s, q) for m, s, q, _ in store.scores()
        ]
        exploits: dict[int, int] = {}
        for d in store.decisions():
            if d.kind == "exploit" and d.donor != d.member:
                exploits[d.member] = exploits.get(d.member, 0) + 1
        assert store.exploit_counts() == exploits
        by_id = {s.id: s for s in store.segments()}
        for member in (0, 7, 41):
            done = [
                s for s in by_id.values() if s.member == member and s.status is SegmentStatus.DONE
            ]
            walk, current = [], done[-1]
            while current is not None:  # the chain, one source at a time
                walk.append(current)
                src = current.source_segment
                current = by_id[src] if src is not None else None
            assert store.chain(done[-1].id) == walk[::-1]
            assert store.last_done_segment(member) == done[-1]
        failures = store.failures()
        assert store.failures(last=3) == failures[-3:]
        assert sum(store.failure_counts().values()) == len(failures)
    finally:
        store.close()


def test_status_fits_a_terminal_and_full_prints_everything(
    long_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["status", str(long_run)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert len(lines) <= 60, text
    store = Store.open(long_run)
    try:
        from firepbt.display import best_result

        result = best_result(store)
        assert result is not None
        workers = len(store.members())
        stretches = len(schedule(store, result.best_member))
    finally:
        store.close()
    assert f"★ {result.best_member} " in text
    assert "the 8 best members by latest score" in text and "(--full: all)" in text
    assert f"{stretches} stretches, shown as " in text and " spans of " in text
    assert main(["status", str(long_run), "--full"]) == 0
    full = capsys.readouterr().out
    rows = [line for line in full.splitlines() if line.startswith("│")]
    assert len(rows) >= workers + stretches
    assert " spans of " not in full and "fitness ranking on the latest evaluator curves: " in full


def test_a_folded_schedule_covers_every_step_in_order() -> None:
    entries = [
        ScheduleEntry(
            i * 10, (i + 1) * 10, i % 3, {"lr": 0.1 * (1.5 if i % 2 else 1.0) ** (i % 7), "b": 4}
        )
        for i in range(200)
    ]
    rows, note = fold_schedule(entries, SCHEDULE_ROWS)
    assert len(rows) <= SCHEDULE_ROWS and "200 stretches" in note
    assert rows[0].start == 0 and rows[-1].end == 2000
    assert all(a.end == b.start for a, b in zip(rows, rows[1:], strict=False))
    for r in rows:  # each span's values: the range of those of its stretches
        inside = [e for e in entries if r.start <= e.from_step < r.end]
        assert r.low["lr"] == min(e.hyperparameters["lr"] for e in inside)
        assert r.high["lr"] == max(e.hyperparameters["lr"] for e in inside)
        assert r.workers == list(dict.fromkeys(e.member for e in inside))
    short = entries[:SCHEDULE_ROWS]
    rows, note = fold_schedule(short, SCHEDULE_ROWS)
    assert note == "" and [(r.start, r.end) for r in rows] == [
        (e.from_step, e.to_step) for e in short
    ]
