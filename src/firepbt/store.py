"""The run store: one SQLite file per run directory holding members, every curve point, every
segment, every decision with its explore record, lineage edges, checkpoints and failures.

The runner is the single writer; it commits each event before acting on it, so a finished or
killed run can be inspected, analysed and replayed. Readers (``firepbt status``) open the same
file concurrently (WAL mode).
"""

from __future__ import annotations

import enum
import json
import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firepbt.decisions import (
    Assign,
    Continue,
    Decision,
    Exploit,
    Finish,
    Handover,
    Release,
    Start,
)
from firepbt.segments import Point, SegmentResult
from firepbt.space import Hyperparameters

SCHEMA_VERSION = 1
STORE_FILE = "firepbt.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members(
    id INTEGER PRIMARY KEY, seed INTEGER NOT NULL, hyperparameters TEXT NOT NULL,
    step INTEGER NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,
    role TEXT NOT NULL DEFAULT 'member', subpopulation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS segments(
    id INTEGER PRIMARY KEY, member INTEGER NOT NULL, start_step INTEGER NOT NULL,
    end_step INTEGER NOT NULL, hyperparameters TEXT NOT NULL, source_segment INTEGER,
    source_path TEXT, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, worker TEXT,
    queued REAL NOT NULL, started REAL, finished REAL, reused INTEGER);
CREATE TABLE IF NOT EXISTS points(
    member INTEGER NOT NULL, step INTEGER NOT NULL, score REAL, metrics TEXT NOT NULL,
    segment INTEGER NOT NULL, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS points_member ON points(member, step);
CREATE TABLE IF NOT EXISTS decisions(
    id INTEGER PRIMARY KEY, member INTEGER NOT NULL, step INTEGER NOT NULL, kind TEXT NOT NULL,
    donor INTEGER, source_member INTEGER, source_step INTEGER, old_hyperparameters TEXT,
    hyperparameters TEXT, changes TEXT, reason TEXT, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS lineage(
    child INTEGER NOT NULL, child_step INTEGER NOT NULL, parent INTEGER NOT NULL,
    parent_step INTEGER NOT NULL, decision INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints(
    path TEXT PRIMARY KEY, member INTEGER NOT NULL, step INTEGER NOT NULL,
    segment INTEGER NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL,
    created REAL NOT NULL, deleted REAL);
CREATE TABLE IF NOT EXISTS failures(
    id INTEGER PRIMARY KEY, member INTEGER NOT NULL, segment INTEGER, step INTEGER,
    kind TEXT NOT NULL, message TEXT NOT NULL, traceback TEXT NOT NULL, time REAL NOT NULL);
"""


class MemberStatus(enum.Enum):
    TRAINING = "training"
    FINISHED = "finished"
    FAILED = "failed"
    IDLE = "idle"  # an evaluator waiting for its next assignment


class Role(enum.Enum):
    MEMBER = "member"
    EVALUATOR = "evaluator"


class SegmentStatus(enum.Enum):
    QUEUED = "queued"
    DONE = "done"
    FAILED = "failed"


class StoreError(RuntimeError):
    """The run directory has no store, or a store of another version."""


@dataclass(frozen=True, slots=True)
class MemberRow:
    id: int
    seed: int
    hyperparameters: Hyperparameters
    step: int
    status: MemberStatus
    role: Role = Role.MEMBER
    subpopulation: int = 0


@dataclass(frozen=True, slots=True)
class SegmentRow:
    id: int
    member: int
    start_step: int
    end_step: int
    hyperparameters: Hyperparameters
    source_segment: int | None
    status: SegmentStatus
    attempts: int


@dataclass(frozen=True, slots=True)
class DecisionRow:
    id: int
    member: int
    step: int
    kind: str
    donor: int | None
    source_step: int | None
    hyperparameters: Hyperparameters | None
    changes: list[str]
    reason: str


def _json(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


def _score(x: float | None) -> float:
    return math.nan if x is None else float(x)  # SQLite stores NaN as NULL


class Store:
    """A run's SQLite store: ``Store.create`` makes a new one, ``Store.open`` opens one."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    def create(cls, run_dir: str | Path, config: dict[str, Any]) -> Store:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / STORE_FILE
        if path.exists():
            raise StoreError(
                f"{run_dir} already holds a run ({STORE_FILE}); choose a new run_dir or remove it"
            )
        store = cls(path, cls._connect(path))
        store._conn.executescript(_SCHEMA)
        with store._tx() as c:
            c.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("config", _json(config)),
                    ("status", "running"),
                    ("created", str(time.time())),
                ],
            )
        return store

    @classmethod
    def open(cls, run_dir: str | Path) -> Store:
        path = Path(run_dir) / STORE_FILE
        if not path.exists():
            raise StoreError(f"{run_dir} holds no firepbt run (no {STORE_FILE} in it)")
        store = cls(path, cls._connect(path))
        version = store.meta("schema_version")
        if version != str(SCHEMA_VERSION):
            raise StoreError(
                f"{path} has store version {version}; this firepbt reads {SCHEMA_VERSION}"
            )
        return store

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    # -- writes (runner only) -------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def record_decision(self, d: Decision) -> int:
        """Commit a decision (and the member/lineage rows it implies) before it is acted on."""
        now = time.time()
        row: tuple[Any, ...]
        with self._tx() as c:
            if isinstance(d, Start):
                c.execute(
                    "INSERT INTO members VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
                    (
                        d.member,
                        d.seed,
                        _json(d.hyperparameters),
                        MemberStatus.TRAINING.value,
                        now,
                        Role.MEMBER.value,
                        d.subpopulation,
                    ),
                )
                row = (
                    d.member,
                    0,
                    "start",
                    None,
                    None,
                    None,
                    None,
                    _json(d.hyperparameters),
                    "[]",
                    "",
                )
            elif isinstance(d, Continue):
                row = (d.member, d.step, "continue", None, None, None, None, None, "[]", "")
            elif isinstance(d, Exploit):
                row = (
                    d.member,
                    d.step,
                    "exploit",
                    d.donor,
                    d.source.member,
                    d.source.step,
                    _json(d.old_hyperparameters),
                    _json(d.hyperparameters),
                    _json([str(ch) for ch in d.changes]),
                    d.reason,
                )
                c.execute(
                    "UPDATE members SET hyperparameters = ?, step = ? WHERE id = ?",
                    (_json(d.hyperparameters), d.source.step, d.member),
                )
            elif isinstance(d, Assign):
                c.execute(
                    "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?, -1) ON CONFLICT(id) DO UPDATE"
                    " SET hyperparameters = excluded.hyperparameters, step = excluded.step,"
                    " status = excluded.status",
                    (
                        d.member,
                        d.seed,
                        _json(d.hyperparameters),
                        d.source.step,
                        MemberStatus.TRAINING.value,
                        now,
                        Role.EVALUATOR.value,
                    ),
                )
                row = (
                    d.member,
                    d.source.step,
                    "assign",
                    d.parent,
                    d.source.member,
                    d.source.step,
                    None,
                    _json(d.hyperparameters),
                    "[]",
                    f"target {d.target}: {d.reason}",
                )
            elif isinstance(d, Handover):
                c.execute("UPDATE members SET step = ? WHERE id = ?", (d.source.step, d.member))
                row = (
                    d.member,
                    d.step,
                    "handover",
                    d.evaluator,
                    d.source.member,
                    d.source.step,
                    None,
                    _json(d.hyperparameters),
                    "[]",
                    d.reason,
                )
            elif isinstance(d, Release):
                c.execute(
                    "UPDATE members SET status = ? WHERE id = ?",
                    (MemberStatus.IDLE.value, d.member),
                )
                row = (d.member, d.step, "release", None, None, None, None, None, "[]", d.reason)
            elif isinstance(d, Finish):
                row = (d.member, d.step, "finish", None, None, None, None, None, "[]", "")
                c.execute(
                    "UPDATE members SET status = ? WHERE id = ?",
                    (MemberStatus.FINISHED.value, d.member),
                )
            else:
                raise TypeError(f"not a decision: {d!r}")
            cur = c.execute(
                "INSERT INTO decisions(member, step, kind, donor, source_member, source_step, "
                "old_hyperparameters, hyperparameters, changes, reason, time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, now),
            )
            decision_id = int(cur.lastrowid or 0)
            parent = (
                d.donor
                if isinstance(d, Exploit) and d.donor != d.member
                else d.parent
                if isinstance(d, Assign)
                else d.evaluator
                if isinstance(d, Handover)
                else None
            )
            if parent is not None:
                step = d.source.step  # type: ignore[union-attr]
                c.execute(
                    "INSERT INTO lineage VALUES (?, ?, ?, ?, ?)",
                    (d.member, step, parent, step, decision_id),
                )
        return decision_id

    def add_segment(
        self,
        member: int,
        start: int,
        end: int,
        h: Hyperparameters,
        source_segment: int | None,
        source_path: str | None,
    ) -> int:
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO segments(member, start_step, end_step, hyperparameters, "
                "source_segment, source_path, status, queued) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    member,
                    start,
                    end,
                    _json(h),
                    source_segment,
                    source_path,
                    SegmentStatus.QUEUED.value,
                    time.time(),
                ),
            )
            return int(cur.lastrowid or 0)

    def segment_done(self, r: SegmentResult) -> None:
        """Commit a finished segment: its curve points, its checkpoint, the member's step."""
        seg, ck = r.segment, r.checkpoint
        assert ck is not None
        with self._tx() as c:
            c.executemany(
                "INSERT INTO points VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (seg.member, p.step, p.score, _json(p.metrics), seg.id, r.finished)
                    for p in r.points
                ],
            )
            c.execute(
                "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    ck.path,
                    ck.member,
                    ck.step,
                    ck.segment,
                    ck.sha256,
                    r.checkpoint_bytes,
                    r.finished,
                ),
            )
            c.execute(
                "UPDATE segments SET status = ?, attempts = attempts + 1, worker = ?, started = ?,"
                " finished = ?, reused = ? WHERE id = ?",
                (
                    SegmentStatus.DONE.value,
                    r.worker,
                    r.started,
                    r.finished,
                    int(r.reused_trainable),
                    seg.id,
                ),
            )
            c.execute("UPDATE members SET step = ? WHERE id = ?", (seg.end_step, seg.member))

    def segment_failed(self, r: SegmentResult, final: bool) -> None:
        """Record a failed attempt; ``final`` marks the segment (not the member) as failed."""
        seg, f = r.segment, r.failure
        assert f is not None
        with self._tx() as c:
            c.execute(
                "INSERT INTO failures(member, segment, step, kind, message, traceback, time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seg.member, seg.id, seg.start_step, f.kind, f.message, f.traceback, time.time()),
            )
            c.execute(
                "UPDATE segments SET attempts = attempts + 1, status = ? WHERE id = ?",
                ((SegmentStatus.FAILED if final else SegmentStatus.QUEUED).value, seg.id),
            )

    def record_warning(self, member: int, segment: int, step: int, kind: str, message: str) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO failures(member, segment, step, kind, message, traceback, time) "
                "VALUES (?, ?, ?, ?, ?, '', ?)",
                (member, segment, step, kind, message, time.time()),
            )

    def member_failed(self, member: int) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE members SET status = ? WHERE id = ?", (MemberStatus.FAILED.value, member)
            )

    def checkpoint_deleted(self, path: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE checkpoints SET deleted = ? WHERE path = ?", (time.time(), path))

    # -- reads ------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def config(self) -> dict[str, Any]:
        raw = self.meta("config")
        return {} if raw is None else dict(json.loads(raw))

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

    def segment_points(self, segment: int) -> list[Point]:
        rows = self._conn.execute(
            "SELECT step, score, metrics FROM points WHERE segment = ? ORDER BY rowid", (segment,)
        ).fetchall()
        return [Point(s, _score(q), json.loads(x)) for s, q, x in rows]

    def segments(self, member: int | None = None) -> list[SegmentRow]:
        sql = (
            "SELECT id, member, start_step, end_step, hyperparameters, source_segment, status, "
            "attempts FROM segments"
        )
        args: tuple[Any, ...] = ()
        if member is not None:
            sql, args = sql + " WHERE member = ?", (member,)
        rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [
            SegmentRow(i, m, a, b, json.loads(h), src, SegmentStatus(st), n)
            for i, m, a, b, h, src, st, n in rows
        ]

    def segment(self, segment_id: int) -> SegmentRow:
        for row in self.segments_by_id([segment_id]):
            return row
        raise KeyError(segment_id)

    def segments_by_id(self, ids: list[int]) -> list[SegmentRow]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._conn.execute(
            "SELECT id, member, start_step, end_step, hyperparameters, source_segment, status, "
            f"attempts FROM segments WHERE id IN ({marks})",
            ids,
        ).fetchall()
        return [
            SegmentRow(i, m, a, b, json.loads(h), src, SegmentStatus(st), n)
            for i, m, a, b, h, src, st, n in rows
        ]

    def decisions(self, member: int | None = None) -> list[DecisionRow]:
        sql = (
            "SELECT id, member, step, kind, donor, source_step, hyperparameters, changes, reason "
            "FROM decisions"
        )
        args: tuple[Any, ...] = ()
        if member is not None:
            sql, args = sql + " WHERE member = ?", (member,)
        rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [
            DecisionRow(i, m, s, k, d, ss, json.loads(h) if h else None, json.loads(ch), r)
            for i, m, s, k, d, ss, h, ch, r in rows
        ]

    def lineage(self) -> list[tuple[int, int, int, int]]:
        """(child, child_step, parent, parent_step) edges in the order they happened."""
        rows = self._conn.execute(
            "SELECT child, child_step, parent, parent_step FROM lineage ORDER BY rowid"
        ).fetchall()
        return [tuple(r) for r in rows]

    def failures(self) -> list[tuple[int, int | None, str, str]]:
        """(member, step, kind, message) of every recorded failure or warning."""
        rows = self._conn.execute(
            "SELECT member, step, kind, message FROM failures ORDER BY id"
        ).fetchall()
        return [tuple(r) for r in rows]

    def live_checkpoints(self) -> list[tuple[str, int, int, str]]:
        """(path, member, step, sha256) of checkpoints not deleted."""
        rows = self._conn.execute(
            "SELECT path, member, step, sha256 FROM checkpoints WHERE deleted IS NULL"
        ).fetchall()
        return [tuple(r) for r in rows]

    def checkpoint_of_segment(self, segment: int) -> tuple[str, str] | None:
        row = self._conn.execute(
            "SELECT path, sha256 FROM checkpoints WHERE segment = ? AND deleted IS NULL", (segment,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def worker_steps(self) -> int:
        row = self._conn.execute(
            "SELECT COALESCE(SUM(end_step - start_step), 0) FROM segments WHERE status = ?",
            (SegmentStatus.DONE.value,),
        ).fetchone()
        return int(row[0])
