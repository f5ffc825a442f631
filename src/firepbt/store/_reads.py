"""Reading a run's store: members, curves, segments, decisions, lineage, checkpoints, failures."""

from __future__ import annotations

import functools
import json
import math
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from firepbt import storage
from firepbt.checkpoints import CheckpointRef
from firepbt.errors import StoreError
from firepbt.segments import Point
from firepbt.store._rows import (
    DecisionRow,
    MemberRow,
    MemberStatus,
    ReplayRow,
    Role,
    SegmentRow,
    SegmentStatus,
    real_path,
)


def _score(x: float | None) -> float:
    return math.nan if x is None else float(x)  # SQLite stores NaN as NULL


# A finite score in SQL (NaN is stored as NULL, which no comparison passes).
_FINITE = "score BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308"

_SEGMENT_COLUMNS = (
    "id, member, start_step, end_step, hyperparameters, source_segment, status, attempts"
)


def _decoder() -> Callable[[str], Any]:
    """``json.loads`` remembering what it decoded: a long run's segments and decisions repeat a
    few hyperparameter texts thousands of times (the decoded values are shared: read only)."""
    seen: dict[str, Any] = {}

    def decode(text: str) -> Any:
        value = seen.get(text)
        if value is None:
            value = seen[text] = json.loads(text)
        return value

    return decode


def _segment_rows(rows: list[tuple[Any, ...]]) -> list[SegmentRow]:
    decode = _decoder()
    return [
        SegmentRow(i, m, a, b, decode(h), src, SegmentStatus(st), n)
        for i, m, a, b, h, src, st, n in rows
    ]


class StoreReads:
    """The queries of a store; ``Store`` adds the writes."""

    _conn: sqlite3.Connection
    path: Path

    @functools.cached_property
    def root(self) -> str | None:
        """Where the checkpoints are, which their paths are kept relative to: the run's folder
        in its storage (``firepbt.storage``; its options are then used in this process), else
        the run directory. None for a store made before paths were relative, whose paths are
        kept as they were given (relative ones to the working directory of the run)."""
        if self.meta("checkpoint_paths") != "relative":
            return None
        root = self.meta("storage")
        if root is None:
            return os.path.abspath(self.path.parent)
        storage.use(root, self.config().get("storage_options"))
        return root

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def config(self) -> dict[str, Any]:
        raw = self.meta("config")
        if raw is None:
            return {}
        try:
            config = json.loads(raw)
        except ValueError as e:
            raise StoreError(f"{self.path}: the stored config is not valid JSON ({e})") from None
        if not isinstance(config, dict):
            raise StoreError(f"{self.path}: the stored config is not a JSON object")
        return config

    def members(self) -> list[MemberRow]:
        rows = self._conn.execute(
            "SELECT id, seed, hyperparameters, step, status, role, subpopulation FROM members "
            "ORDER BY id"
        ).fetchall()
        return [
            MemberRow(i, s, json.loads(h), st, MemberStatus(x), Role(r), sp)
            for i, s, h, st, x, r, sp in rows
        ]

    def points(self, member: int | None = None) -> list[tuple[int, Point]]:
        sql = "SELECT member, step, score, metrics FROM points"
        args: tuple[Any, ...] = ()
        if member is not None:
            sql, args = sql + " WHERE member = ?", (member,)
        rows = self._conn.execute(sql + " ORDER BY rowid", args).fetchall()
        return [(m, Point(s, _score(q), json.loads(x))) for m, s, q, x in rows]

    def scores(self, member: int | None = None) -> list[tuple[int, int, float, int]]:
        """(member, step, score, segment) of every curve point (or ``member``'s), in the order
        they were recorded: ``points`` without decoding each point's metrics."""
        sql = "SELECT member, step, score, segment FROM points"
        args: tuple[Any, ...] = ()
        if member is not None:
            sql, args = sql + " WHERE member = ?", (member,)
        rows = self._conn.execute(sql + " ORDER BY rowid", args).fetchall()
        return [(m, s, _score(q), g) for m, s, q, g in rows]

    def latest_points(self) -> dict[int, Point]:
        """Each worker's last recorded point."""
        rows = self._conn.execute(
            "SELECT member, step, score, metrics FROM points WHERE rowid IN "
            "(SELECT MAX(rowid) FROM points GROUP BY member)"
        ).fetchall()
        return {m: Point(s, _score(q), json.loads(x)) for m, s, q, x in rows}

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

    def points_at(self, member: int, step: int) -> list[Point]:
        """``member``'s points at ``step`` (more than one when it reached the step again)."""
        rows = self._conn.execute(
            "SELECT step, score, metrics FROM points WHERE member = ? AND step = ? ORDER BY rowid",
            (member, step),
        ).fetchall()
        return [Point(s, _score(q), json.loads(x)) for s, q, x in rows]

    def segment_points(self, segment: int) -> list[Point]:
        rows = self._conn.execute(
            "SELECT step, score, metrics FROM points WHERE segment = ? ORDER BY rowid", (segment,)
        ).fetchall()
        return [Point(s, _score(q), json.loads(x)) for s, q, x in rows]

    def segments(
        self, member: int | None = None, status: SegmentStatus | None = None
    ) -> list[SegmentRow]:
        """Segments by id: all, ``member``'s, and only those in ``status``."""
        where = [w for w, x in (("member = ?", member), ("status = ?", status)) if x is not None]
        args = [x.value if isinstance(x, SegmentStatus) else x for x in (member, status)]
        sql = f"SELECT {_SEGMENT_COLUMNS} FROM segments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn.execute(sql + " ORDER BY id", [a for a in args if a is not None])
        return _segment_rows(rows.fetchall())

    def segment_count(self, status: SegmentStatus) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM segments WHERE status = ?", (status.value,))
        return int(row.fetchone()[0])

    def last_done_segment(self, member: int, end_step: int | None = None) -> SegmentRow | None:
        """``member``'s latest finished segment (of those ending at ``end_step``)."""
        sql = f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE member = ? AND status = ?"
        args: list[Any] = [member, SegmentStatus.DONE.value]
        if end_step is not None:
            sql, args = sql + " AND end_step = ?", [*args, end_step]
        rows = _segment_rows(self._conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchall())
        return rows[0] if rows else None

    def chain(self, segment: int) -> list[SegmentRow]:
        """``segment`` and the segments its weights came from, one source after another back to
        a fresh start, oldest first."""
        rows = self._conn.execute(
            "WITH RECURSIVE chain(id, depth) AS (SELECT ?, 0 UNION ALL "
            "SELECT s.source_segment, c.depth + 1 FROM segments s JOIN chain c ON s.id = c.id "
            "WHERE s.source_segment IS NOT NULL) "
            f"SELECT {', '.join('s.' + c for c in _SEGMENT_COLUMNS.split(', '))} "
            "FROM chain c JOIN segments s ON s.id = c.id ORDER BY c.depth DESC",
            (segment,),
        ).fetchall()
        return _segment_rows(rows)

    def segment(self, segment_id: int) -> SegmentRow:
        for row in self.segments_by_id([segment_id]):
            return row
        raise KeyError(segment_id)

    def segments_by_id(self, ids: list[int]) -> list[SegmentRow]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._conn.execute(
            f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE id IN ({marks})", ids
        ).fetchall()
        return _segment_rows(rows)

    def decisions(
        self, member: int | None = None, kinds: Iterable[str] | None = None
    ) -> list[DecisionRow]:
        """Decisions by id: all, ``member``'s, and only those of ``kinds``."""
        sql = (
            "SELECT id, member, step, kind, donor, source_step, hyperparameters, changes, reason "
            "FROM decisions"
        )
        where: list[str] = []
        args: list[Any] = []
        if member is not None:
            where, args = ["member = ?"], [member]
        if kinds is not None:
            kinds = list(kinds)
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args += kinds
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        decode = _decoder()
        return [
            DecisionRow(i, m, s, k, d, ss, decode(h) if h else None, decode(ch), r)
            for i, m, s, k, d, ss, h, ch, r in rows
        ]

    def exploit_counts(self) -> dict[int, int]:
        """Member → how many times it copied another member's weights."""
        rows = self._conn.execute(
            "SELECT member, COUNT(*) FROM decisions WHERE kind = 'exploit' AND donor != member "
            "GROUP BY member"
        ).fetchall()
        return {int(m): int(n) for m, n in rows}

    def assignment_targets(self) -> dict[int, int]:
        """Decision id → target member of every FIRE assignment that recorded one (stores made
        before targets were recorded name them only in the assignment's reason)."""
        rows = self._conn.execute(
            "SELECT id, target FROM decisions WHERE kind = 'assign' AND target IS NOT NULL"
        ).fetchall()
        return {int(i): int(t) for i, t in rows}

    def lineage(self) -> list[tuple[int, int, int, int]]:
        """(child, child_step, parent, parent_step) edges in the order they happened."""
        rows = self._conn.execute(
            "SELECT child, child_step, parent, parent_step FROM lineage ORDER BY rowid"
        ).fetchall()
        return [tuple(r) for r in rows]

    def has_failure_of(self, kind: str) -> bool:
        """Whether any failure or warning of ``kind`` was recorded."""
        row = self._conn.execute("SELECT 1 FROM failures WHERE kind = ? LIMIT 1", (kind,))
        return row.fetchone() is not None

    def failures(
        self, kinds: Iterable[str] | None = None, last: int | None = None
    ) -> list[tuple[int, int | None, str, str]]:
        """(member, step, kind, message) of every recorded failure or warning (of ``kinds``;
        the ``last`` ones), oldest first."""
        sql, args = "SELECT member, step, kind, message FROM failures", []
        if kinds is not None:
            args = [str(getattr(k, "value", k)) for k in kinds]
            sql += f" WHERE kind IN ({','.join('?' * len(args))})"
        sql += " ORDER BY id" + (" DESC LIMIT ?" if last is not None else "")
        rows = self._conn.execute(sql, [*args, *([last] if last is not None else [])]).fetchall()
        out = [tuple(r) for r in rows]
        return out[::-1] if last is not None else out

    def failure_counts(self) -> dict[int, int]:
        """Worker → how many failures and warnings were recorded of it (-1: the run's own)."""
        rows = self._conn.execute("SELECT member, COUNT(*) FROM failures GROUP BY member")
        return {int(m): int(n) for m, n in rows.fetchall()}

    def live_checkpoints(self) -> list[tuple[str, int, int, str]]:
        """(path, member, step, sha256) of checkpoint files on disk and not deleted."""
        rows = self._conn.execute(
            "SELECT path, member, step, sha256 FROM checkpoints WHERE deleted IS NULL "
            "AND path NOT IN (SELECT path FROM held WHERE written = 0)"
        ).fetchall()
        return [(real_path(self.root, p), m, s, h) for p, m, s, h in rows]

    def held_checkpoints(self) -> list[tuple[str, int, int, str]]:
        """(path, member, step, holder) of checkpoints only in a worker's memory (a finished or
        killed run lost them; a resumed one trains them again when they are needed)."""
        rows = self._conn.execute(
            "SELECT c.path, c.member, c.step, h.holder FROM checkpoints c "
            "JOIN held h ON h.path = c.path WHERE c.deleted IS NULL AND h.written = 0"
        ).fetchall()
        return [(real_path(self.root, p), m, s, h) for p, m, s, h in rows]

    def checkpoint_of_segment(self, segment: int) -> tuple[str, str] | None:
        """(path, sha256) of the checkpoint file a segment wrote, if it is on disk."""
        row = self._conn.execute(
            "SELECT path, sha256 FROM checkpoints WHERE segment = ? AND deleted IS NULL "
            "AND path NOT IN (SELECT path FROM held WHERE written = 0)",
            (segment,),
        ).fetchone()
        return None if row is None else (real_path(self.root, row[0]), str(row[1]))

    def worker_steps(self) -> int:
        row = self._conn.execute(
            "SELECT COALESCE(SUM(end_step - start_step), 0) FROM segments WHERE status = ?",
            (SegmentStatus.DONE.value,),
        ).fetchone()
        return int(row[0])

    def replays(self) -> list[ReplayRow]:
        """Recorded replays, oldest first; none when the store never had one."""
        exists = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'replays'"
        ).fetchone()
        if exists is None:
            return []
        rows = self._conn.execute(
            "SELECT id, member, seed, split, status FROM replays ORDER BY id"
        ).fetchall()
        return [ReplayRow(*row) for row in rows]

    def replay_points(self, replay: int) -> list[Point]:
        rows = self._conn.execute(
            "SELECT step, score, metrics FROM replay_points WHERE replay = ? ORDER BY rowid",
            (replay,),
        ).fetchall()
        return [Point(s, _score(q), json.loads(x)) for s, q, x in rows]

    def events(self) -> list[tuple[str, int]]:
        """(kind, segment) of every result the strategy saw, in order ('done' or 'failed'), and of
        every held checkpoint written out since it was made ('written')."""
        rows = self._conn.execute("SELECT kind, segment FROM events ORDER BY seq").fetchall()
        return [(str(k), int(s)) for k, s in rows]

    def checkpoint_ref(self, segment: int) -> CheckpointRef | None:
        """The checkpoint a segment made, deleted since or not, with the worker that held it
        when it was made (written out since or not: see the 'written' events)."""
        row = self._conn.execute(
            "SELECT c.path, c.sha256, c.member, c.step, c.segment, COALESCE(h.holder, '') "
            "FROM checkpoints c LEFT JOIN held h ON h.path = c.path WHERE c.segment = ?",
            (segment,),
        ).fetchone()
        if row is None:
            return None
        return CheckpointRef(real_path(self.root, row[0]), *row[1:])
