"""Reading a long run's store in bulk: aggregates per worker (latest and best points, exploit
and failure counts), whole tables as SQLite holds them, and the few rows a summary needs from
among millions, each through an index of the store's (``_rows.INDEXES``)."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from firepbt.segments import Point
from firepbt.store._compact import metrics_of
from firepbt.store._rows import SegmentStatus

# A finite score in SQL (NaN is stored as NULL, which no comparison passes).
_FINITE = "score BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308"

# The columns kept as ids of ``texts``, read as their texts.
_TEXT_COLUMNS = {
    "segments": ("hyperparameters", "worker"),
    "decisions": ("hyperparameters", "old_hyperparameters"),
    "checkpoints": ("holder",),
}
# The decisions that copy weights: only they name a donor, which the index decisions_kind holds.
_COPIES = ("exploit", "assign", "handover")


@contextlib.contextmanager
def bulk_reading() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a reader builds millions of rows: they hold
    no reference cycles, yet each collection would walk them all again (a report on a store of
    a million points ran 8–17 % faster without it, measured here)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def decode_all(texts: Iterable[str]) -> list[Any]:
    """``json.loads`` of each text, in one call of the decoder: a long run's millions of
    metrics texts decode four times faster together than one by one."""
    return list(json.loads("[" + ",".join(texts) + "]"))


def _score(x: float | None) -> float:
    return math.nan if x is None else float(x)  # SQLite stores NaN as NULL


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class StoreBulkReads:
    """The store's bulk and aggregate queries; ``Store`` has them with ``StoreReads``."""

    _conn: sqlite3.Connection

    def scores(self) -> list[tuple[int, int, float, int]]:
        """(member, step, score, segment) of every curve point, in the order they were
        recorded: ``points`` without decoding each point's metrics."""
        rows = self._conn.execute(
            "SELECT member, step, score, segment FROM points ORDER BY rowid"
        ).fetchall()
        return [(m, s, _score(q), g) for m, s, q, g in rows]

    def latest_points(self) -> dict[int, Point]:
        """Each worker's last recorded point."""
        rows = self._conn.execute(  # a seek per worker in the index points_latest
            "SELECT member, step, score, metrics FROM points WHERE rowid IN "
            "(SELECT (SELECT MAX(rowid) FROM points WHERE member = m.id) FROM members m)"
        ).fetchall()
        return {m: Point(s, _score(q), json.loads(metrics_of(x, q))) for m, s, q, x in rows}

    def best_scores(self, minimise: bool) -> dict[int, float]:
        """Each worker's best finite score."""
        best = "MIN" if minimise else "MAX"
        members = [m for (m,) in self._conn.execute("SELECT id FROM members").fetchall()]
        out = {}
        for m in members:  # each a seek in the (member, score) index
            row = self._conn.execute(
                f"SELECT {best}(score) FROM points WHERE member = ? AND {_FINITE}", (m,)
            ).fetchone()
            if row[0] is not None:
                out[int(m)] = float(row[0])
        return out

    def raw(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """A whole table's ``columns`` as the store held them before it was compact (JSON
        columns as their text, NaN scores as None), in the order the rows were written: for
        exports, which would otherwise decode and re-encode every row."""
        known = {r[1] for r in self._conn.execute(f"PRAGMA table_info({_quoted(table)})")}
        if not known or not set(columns) <= known:
            raise ValueError(f"no table {table!r} with columns {list(columns)} in the store")
        texts = _TEXT_COLUMNS.get(table, ())
        selected = [
            f"(SELECT text FROM texts WHERE id = {_quoted(c)})" if c in texts else _quoted(c)
            for c in columns
        ]
        metrics = columns.index("metrics") if table == "points" and "metrics" in columns else -1
        if metrics >= 0:
            selected.append("score")
        sql = f"SELECT {', '.join(selected)} FROM {_quoted(table)} ORDER BY rowid"
        rows = self._conn.execute(sql)
        if metrics < 0:
            return iter(rows)
        return (
            (*row[:metrics], metrics_of(row[metrics], row[-1]), *row[metrics + 1 : -1])
            for row in rows
        )

    def segment_links(self, member: int) -> list[tuple[int, int, int | None]]:
        """(id, start_step, source_segment) of ``member``'s segments by id: how they follow
        one another, without reading the rest of each row."""
        rows = self._conn.execute(
            "SELECT id, start_step, source_segment FROM segments WHERE member = ? ORDER BY id",
            (member,),
        ).fetchall()
        return [(int(i), int(a), src) for i, a, src in rows]

    def done_segments(self) -> list[tuple[int, int, int, int, int | None, str]]:
        """(id, member, start_step, end_step, source_segment, hyperparameters as their JSON
        text) of every finished segment, by id: a long run's segments without a row object
        each, and each hyperparameters text for the caller to decode once."""
        rows = self._conn.execute(
            "SELECT s.id, s.member, s.start_step, s.end_step, s.source_segment, t.text "
            "FROM segments s JOIN texts t ON t.id = s.hyperparameters WHERE s.status = ? "
            "ORDER BY s.id",
            (SegmentStatus.DONE.value,),
        )
        return rows.fetchall()

    def copy_decisions(self) -> list[tuple[int, int, int, int | None, int]]:
        """(id, member, donor, source_step, step) of every decision that copied weights from
        another worker (exploit, assign, hand-over), by id."""
        rows = self._conn.execute(
            "SELECT id, member, donor, source_step, step FROM decisions "
            "WHERE kind IN ('exploit', 'assign', 'handover') AND donor IS NOT NULL ORDER BY id"
        )
        return rows.fetchall()

    def segment_count(self, status: SegmentStatus) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM segments WHERE status = ?", (status.value,))
        return int(row.fetchone()[0])

    def exploit_counts(self) -> dict[int, int]:
        """Member → how many times it copied another member's weights."""
        rows = self._conn.execute(
            "SELECT member, COUNT(*) FROM decisions WHERE kind = 'exploit' AND donor != member "
            "AND donor IS NOT NULL GROUP BY member"
        ).fetchall()
        return {int(m): int(n) for m, n in rows}

    def evaluator_decisions(
        self,
    ) -> list[tuple[int, int, int, str, int | None, int | None, str, int | None]]:
        """(id, member, step, kind, donor, source_step, reason, target) of FIRE PBT's
        assignments, hand-overs and releases by id (target: an assignment's, where recorded),
        read from an index of their own rather than among a long run's other decisions."""
        return self._conn.execute(
            "SELECT id, member, step, kind, donor, source_step, reason, target FROM decisions "
            "INDEXED BY decisions_fire WHERE kind IN ('assign', 'handover', 'release') ORDER BY id"
        ).fetchall()

    def has_decision_of(self, kind: str) -> bool:
        """Whether any decision of ``kind`` was recorded."""
        copies = " AND donor IS NOT NULL" if kind in _COPIES else ""  # read from decisions_kind
        row = self._conn.execute(f"SELECT 1 FROM decisions WHERE kind = ?{copies} LIMIT 1", (kind,))
        return row.fetchone() is not None

    def failure_counts(self) -> dict[int, int]:
        """Worker → how many failures and warnings were recorded of it (-1: the run's own)."""
        rows = self._conn.execute("SELECT member, COUNT(*) FROM failures GROUP BY member")
        return {int(m): int(n) for m, n in rows.fetchall()}

    def worker_steps(self) -> int:
        row = self._conn.execute(  # the partial index segments_steps holds what it sums
            "SELECT COALESCE(SUM(end_step - start_step), 0) FROM segments WHERE status = 'done'"
        ).fetchone()
        return int(row[0])
