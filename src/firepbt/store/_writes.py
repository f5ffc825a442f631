"""Writing a run's store: decisions with the member and lineage rows they imply, segments, curve
points, checkpoints, failures, warnings and replays. Only the runner writes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from firepbt.checkpoints import CheckpointRef
from firepbt.decisions import (
    Assign,
    Decision,
    Exploit,
    Finish,
    Handover,
    Release,
    Start,
    record_of,
)
from firepbt.segments import Point, SegmentResult
from firepbt.space import Hyperparameters
from firepbt.store._compact import Texts, _json, default_key, kept_metrics, kept_path, kept_sha
from firepbt.store._rows import REPLAY_SCHEMA, MemberStatus, Role, SegmentStatus, stored_path


class StoreWrites:
    """The writes of a store (runner only), each in one transaction of ``Store._tx``; ``Store``
    adds creating, opening and batching."""

    _conn: sqlite3.Connection
    _tx: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _texts: Texts

    @property
    def root(self) -> str | None:  # StoreReads.root: checkpoint paths are relative to it
        raise NotImplementedError

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def move_storage(self, root: str) -> None:
        """The run's storage folder is now at ``root`` (it was moved): checkpoint paths, kept
        relative to it, are read there from now on."""
        self.set_meta("storage", root)
        self.__dict__.pop("root", None)  # StoreReads.root, cached

    def record_decision(self, d: Decision) -> int:
        """Commit a decision (and the member/lineage rows it implies) before it is acted on."""
        now = time.time()
        target = d.target if isinstance(d, Assign) else None
        r = record_of(d)
        old, changes, reason = None, "[]", ""
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
            elif isinstance(d, Exploit):
                old, reason = _json(d.old_hyperparameters), d.reason
                changes = _json([str(ch) for ch in d.changes])
                c.execute(
                    "UPDATE members SET hyperparameters = ?, step = ?, status = ? WHERE id = ?",
                    (
                        _json(d.hyperparameters),
                        d.source.step,
                        MemberStatus.TRAINING.value,
                        d.member,
                    ),
                )
            elif isinstance(d, Assign):
                reason = d.reason
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
            elif isinstance(d, Handover):
                reason = d.reason
                c.execute("UPDATE members SET step = ? WHERE id = ?", (d.source.step, d.member))
            elif isinstance(d, Release):
                reason = d.reason
                c.execute(
                    "UPDATE members SET status = ? WHERE id = ?",
                    (MemberStatus.IDLE.value, d.member),
                )
            elif isinstance(d, Finish):
                c.execute(
                    "UPDATE members SET status = ? WHERE id = ?",
                    (MemberStatus.FINISHED.value, d.member),
                )
            h = None if r.hyperparameters is None else self._texts.id(_json(r.hyperparameters))
            row = (r.member, r.step, r.kind, r.donor, r.source_member, r.source_step,
                   self._texts.optional(old), h, changes, reason)  # fmt: skip
            cur = c.execute(
                "INSERT INTO decisions(member, step, kind, donor, source_member, source_step, "
                "old_hyperparameters, hyperparameters, changes, reason, time, target) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, now, target),
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
        source_path: str | None = None,
    ) -> int:
        """Queue a segment of ``member`` from ``start`` to ``end`` with ``h``, trained from the
        checkpoint that segment ``source_segment`` wrote (None: from scratch). That checkpoint's
        row holds its path: ``source_path`` is not kept (callers from before may pass it)."""
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO segments(member, start_step, end_step, hyperparameters, "
                "source_segment, status, queued) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    member,
                    start,
                    end,
                    self._texts.id(_json(h)),
                    source_segment,
                    SegmentStatus.QUEUED.value,
                    time.time(),
                ),
            )
            return int(cur.lastrowid or 0)

    def segment_done(self, r: SegmentResult) -> None:
        """Commit a finished segment: its curve points, its checkpoint, the member's step."""
        seg, ck = r.segment, r.checkpoint
        assert ck is not None
        path = kept_path(stored_path(self.root, ck.path), ck.member, ck.step, ck.segment)
        with self._tx() as c:
            c.executemany(  # a point's time (NULL) is its segment's finish
                "INSERT INTO points VALUES (?, ?, ?, ?, ?, NULL)",
                [
                    (seg.member, p.step, p.score, kept_metrics(_json(p.metrics), p.score), seg.id)
                    for p in r.points
                ],
            )
            c.execute(
                "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, 0)",
                (
                    ck.segment,
                    ck.member,
                    ck.step,
                    path,
                    kept_sha(ck.sha256),
                    r.checkpoint_bytes,
                    None if ck.segment == seg.id else r.finished,  # NULL: its segment's finish
                    self._texts.id(ck.holder) if ck.holder else None,
                ),
            )
            c.execute(
                "UPDATE segments SET status = ?, attempts = attempts + 1, worker = ?, started = ?,"
                " finished = ?, reused = ? WHERE id = ?",
                (
                    SegmentStatus.DONE.value,
                    self._texts.id(r.worker),
                    r.started,
                    r.finished,
                    int(r.reused_trainable),
                    seg.id,
                ),
            )
            c.execute("UPDATE members SET step = ? WHERE id = ?", (seg.end_step, seg.member))
            # The order the strategy saw results in: resuming replays it.
            c.execute("INSERT INTO events(kind, segment) VALUES ('done', ?)", (seg.id,))

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
            if final:  # the member leaves the population: an event the strategy sees
                c.execute(
                    "UPDATE members SET status = ? WHERE id = ?",
                    (MemberStatus.FAILED.value, seg.member),
                )
                c.execute("INSERT INTO events(kind, segment) VALUES ('failed', ?)", (seg.id,))

    def record_warning(
        self, member: int, segment: int | None, step: int, kind: str, message: str
    ) -> None:
        """Record a warning beside the failures (``segment`` None: not about one segment)."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO failures(member, segment, step, kind, message, traceback, time) "
                "VALUES (?, ?, ?, ?, ?, '', ?)",
                (member, segment, step, kind, message, time.time()),
            )

    def add_replay(self, member: int, seed: int, split: str | None) -> int:
        """Start recording a replay of ``member``'s schedule; returns its id."""
        self._conn.executescript(REPLAY_SCHEMA)
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO replays(member, seed, split, created, status) VALUES (?, ?, ?, ?, ?)",
                (member, seed, split, time.time(), "running"),
            )
            return int(cur.lastrowid or 0)

    def add_replay_points(self, replay: int, points: list[Point]) -> None:
        with self._tx() as c:
            c.executemany(
                "INSERT INTO replay_points VALUES (?, ?, ?, ?)",
                [(replay, p.step, p.score, _json(p.metrics)) for p in points],
            )

    def replay_finished(self, replay: int, status: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE replays SET status = ? WHERE id = ?", (status, replay))

    def _at_path(self, path: str) -> tuple[str, tuple[Any, ...]]:
        """The condition that finds the checkpoint row of ``path``, with its arguments: a seek
        in its primary key when the path is the runner's name for it, else in checkpoints_path."""
        stored = stored_path(self.root, path)
        key = default_key(stored)
        if key is None:
            return "path = ?", (stored,)
        member, step, segment = key
        default = "(segment = ? AND path IS NULL AND member = ? AND step = ?)"
        return f"{default} OR path = ?", (segment, member, step, stored)

    def checkpoint_rewritten(self, ref: CheckpointRef, nbytes: int) -> None:
        """A lost or corrupted checkpoint was trained again and written: its new checksum."""
        where, args = self._at_path(ref.path)
        with self._tx() as c:
            c.execute(
                "UPDATE checkpoints SET sha256 = ?, bytes = ?, created = ?, written = 1 "
                f"WHERE {where}",
                (kept_sha(ref.sha256), nbytes, time.time(), *args),
            )
            c.execute("INSERT INTO events(kind, segment) VALUES ('written', ?)", (ref.segment,))

    def checkpoint_flushed(self, ref: CheckpointRef) -> None:
        """A checkpoint held in a worker's memory was written to its path."""
        where, args = self._at_path(ref.path)
        with self._tx() as c:
            c.execute(
                f"UPDATE checkpoints SET sha256 = ?, written = 1 WHERE {where}",
                (kept_sha(ref.sha256), *args),
            )
            c.execute("INSERT INTO events(kind, segment) VALUES ('written', ?)", (ref.segment,))

    def checkpoint_deleted(self, path: str) -> None:
        where, args = self._at_path(path)
        with self._tx() as c:
            c.execute(f"UPDATE checkpoints SET deleted = ? WHERE {where}", (time.time(), *args))
