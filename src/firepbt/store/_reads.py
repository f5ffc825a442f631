"""Reading a run's store: members, curves, segments, decisions, lineage, checkpoints, failures."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from firepbt import storage
from firepbt.checkpoints import CheckpointRef
from firepbt.errors import StoreError
from firepbt.segments import Point
from firepbt.store._bulk import _score, decode_all
from firepbt.store._compact import metrics_of, path_of, sha_of
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

# A segment row with its hyperparameters' text (kept once in ``texts``).
_SEGMENTS = (
    "SELECT s.id, s.member, s.start_step, s.end_step, t.text, s.source_segment, s.status, "
    "s.attempts FROM segments s JOIN texts t ON t.id = s.hyperparameters"
)
_DECISIONS = (
    "SELECT d.id, d.member, d.step, d.kind, d.donor, d.source_step, t.text, d.changes, "
    "d.reason FROM decisions d LEFT JOIN texts t ON t.id = d.hyperparameters"
)
# A checkpoint not deleted whose file is written (not held in a worker's memory only).
_ON_DISK = "deleted IS NULL AND (holder IS NULL OR written)"


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


_STATUS = {s.value: s for s in SegmentStatus}


def _segment_rows(rows: list[tuple[Any, ...]]) -> list[SegmentRow]:
    decode = _decoder()
    return [
        SegmentRow(i, m, a, b, decode(h), src, _STATUS[st], n) for i, m, a, b, h, src, st, n in rows
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
        metrics = decode_all(metrics_of(x, q) for *_, q, x in rows)
        return [(m, Point(s, _score(q), x)) for (m, s, q, _), x in zip(rows, metrics, strict=True)]

    def points_at(self, member: int, step: int) -> list[Point]:
        """``member``'s points at ``step`` (more than one when it reached the step again)."""
        rows = self._conn.execute(
            "SELECT step, score, metrics FROM points WHERE member = ? AND step = ? ORDER BY rowid",
            (member, step),
        ).fetchall()
        return [Point(s, _score(q), json.loads(metrics_of(x, q))) for s, q, x in rows]

    def segment_points(self, segment: int) -> list[Point]:
        rows = self._conn.execute(
            "SELECT step, score, metrics FROM points WHERE segment = ? ORDER BY rowid", (segment,)
        ).fetchall()
        return [Point(s, _score(q), json.loads(metrics_of(x, q))) for s, q, x in rows]

    def segments(
        self, member: int | None = None, status: SegmentStatus | None = None
    ) -> list[SegmentRow]:
        """Segments by id: all, ``member``'s, and only those in ``status``."""
        where = [w for w, x in (("member = ?", member), ("status = ?", status)) if x is not None]
        args = [x.value if isinstance(x, SegmentStatus) else x for x in (member, status)]
        sql = _SEGMENTS
        if where:
            sql += " WHERE " + " AND ".join("s." + w for w in where)
        rows = self._conn.execute(sql + " ORDER BY s.id", [a for a in args if a is not None])
        return _segment_rows(rows.fetchall())

    def last_done_segment(self, member: int, end_step: int | None = None) -> SegmentRow | None:
        """``member``'s latest finished segment (of those ending at ``end_step``)."""
        sql = f"{_SEGMENTS} WHERE s.member = ? AND s.status = ?"
        args: list[Any] = [member, SegmentStatus.DONE.value]
        if end_step is not None:
            sql, args = sql + " AND s.end_step = ?", [*args, end_step]
        rows = self._conn.execute(sql + " ORDER BY s.id DESC LIMIT 1", args).fetchall()
        rows = _segment_rows(rows)
        return rows[0] if rows else None

    def chain(self, segment: int) -> list[SegmentRow]:
        """``segment`` and the segments its weights came from, one source after another back to
        a fresh start, oldest first."""
        rows = self._conn.execute(
            "WITH RECURSIVE chain(id, depth) AS (SELECT ?, 0 UNION ALL SELECT s.source_segment, "
            "c.depth + 1 FROM segments s JOIN chain c ON s.id = c.id "
            f"WHERE s.source_segment IS NOT NULL) {_SEGMENTS} JOIN chain c ON c.id = s.id "
            "ORDER BY c.depth DESC",  # the query walks back from the newest: oldest first
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
        rows = self._conn.execute(f"{_SEGMENTS} WHERE s.id IN ({marks})", ids).fetchall()
        return _segment_rows(rows)

    def decisions(self, member: int | None = None) -> list[DecisionRow]:
        sql = _DECISIONS
        args: tuple[int, ...] = ()
        if member is not None:
            sql, args = sql + " WHERE d.member = ?", (member,)
        rows = self._conn.execute(sql + " ORDER BY d.id", args).fetchall()
        decode = _decoder()
        return [
            DecisionRow(i, m, s, k, d, ss, decode(h) if h else None, decode(ch), r)
            for i, m, s, k, d, ss, h, ch, r in rows
        ]

    def decisions_by_id(self, ids: list[int]) -> list[DecisionRow]:
        """The decisions with these ids, by id."""
        out: list[DecisionRow] = []
        for start in range(0, len(ids), 500):  # SQLite takes a bounded number of parameters
            chunk = ids[start : start + 500]
            rows = self._conn.execute(
                f"{_DECISIONS} WHERE d.id IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            out += [
                DecisionRow(i, m, s, k, d, ss, json.loads(h) if h else None, json.loads(ch), r)
                for i, m, s, k, d, ss, h, ch, r in rows
            ]
        return sorted(out, key=lambda d: d.id)

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

    def _path(self, kept: str | None, member: int, step: int, segment: int) -> str:
        return real_path(self.root, path_of(kept, member, step, segment))

    def live_checkpoints(self) -> list[tuple[str, int, int, str]]:
        """(path, member, step, sha256) of checkpoint files on disk and not deleted."""
        rows = self._conn.execute(
            "SELECT path, member, step, segment, sha256 FROM checkpoints "
            f"WHERE {_ON_DISK} ORDER BY segment"
        ).fetchall()
        return [(self._path(p, m, s, g), m, s, sha_of(h)) for p, m, s, g, h in rows]

    def held_checkpoints(self) -> list[tuple[str, int, int, str]]:
        """(path, member, step, holder) of checkpoints only in a worker's memory (a finished or
        killed run lost them; a resumed one trains them again when they are needed)."""
        rows = self._conn.execute(
            "SELECT c.path, c.member, c.step, c.segment, t.text FROM checkpoints c "
            "JOIN texts t ON t.id = c.holder "
            "WHERE c.deleted IS NULL AND NOT c.written ORDER BY c.segment"
        ).fetchall()
        return [(self._path(p, m, s, g), m, s, h) for p, m, s, g, h in rows]

    def checkpoint_of_segment(self, segment: int) -> tuple[str, str] | None:
        """(path, sha256) of the checkpoint file a segment wrote, if it is on disk."""
        row = self._conn.execute(
            f"SELECT path, member, step, sha256 FROM checkpoints WHERE segment = ? AND {_ON_DISK}",
            (segment,),
        ).fetchone()
        if row is None:
            return None
        return self._path(row[0], row[1], row[2], segment), sha_of(row[3])

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
            "SELECT c.path, c.sha256, c.member, c.step, COALESCE(t.text, '') FROM checkpoints c "
            "LEFT JOIN texts t ON t.id = c.holder WHERE c.segment = ?",
            (segment,),
        ).fetchone()
        if row is None:
            return None
        path, sha, member, step, holder = row
        return CheckpointRef(
            self._path(path, member, step, segment), sha_of(sha), member, step, segment, holder
        )
