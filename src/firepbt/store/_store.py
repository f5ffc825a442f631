"""The run store: one SQLite file per run directory holding members, every curve point, every
segment, every decision with its explore record, lineage edges, checkpoints and failures.

The runner is the single writer. It commits the events of the results it receives together
(``batch``) before acting on them outside the store: deleting a checkpoint's file, telling
callbacks, starting the segments they lead to. So a finished or killed run can be inspected,
analysed and replayed, and a killed run's store never names a checkpoint that is gone. Readers
(``firepbt status``) open the same file concurrently (WAL mode).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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
from firepbt.errors import StoreError
from firepbt.segments import Point, SegmentResult
from firepbt.space import Hyperparameters
from firepbt.store._reads import StoreReads
from firepbt.store._rows import (
    _SCHEMA,
    DECISION_TARGET_COLUMN,
    HELD_SCHEMA,
    REPLAY_SCHEMA,
    SCHEMA_VERSION,
    STORE_FILE,
    MemberStatus,
    Role,
    SegmentStatus,
)


def _json(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


def config_digest(text: str) -> str:
    """The digest kept of a run's stored config, so a resume can tell that it was edited."""
    return hashlib.sha256(text.encode()).hexdigest()


def as_stored(x: Any) -> Any:
    """``x`` as it reads back from the store (JSON; a value JSON lacks comes back a string)."""
    return json.loads(_json(x))


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _holds_a_run(run_dir: Path) -> str:
    return (
        f"{run_dir} already holds a run ({STORE_FILE}); go on with `firepbt resume {run_dir}`, "
        "or choose a new run_dir, or remove that directory to start again"
    )


def _clear_if_nothing_to_keep(path: Path) -> None:
    """Remove the store at ``path`` when it holds nothing worth keeping: one with no run
    recorded in it (made half-way by an older firepbt), or a run that failed before any segment
    finished. Anything else is a ``StoreError``."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            status = done = None
            if "meta" in tables:
                row = conn.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
                status = row[0] if row else None
            if "segments" in tables:
                done = conn.execute(
                    "SELECT COUNT(*) FROM segments WHERE status = 'done'"
                ).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise StoreError(
            f"{path} is not a readable firepbt store ({e}); remove it to start a run there"
        ) from None
    half_made = "meta" not in tables or status is None
    failed_early = status == "failed" and not done
    if not (half_made or failed_early):
        raise StoreError(_holds_a_run(path.parent))
    for p in (path, *_sidecars(path)):
        p.unlink(missing_ok=True)


class Store(StoreReads):
    """A run's SQLite store: ``Store.create`` makes a new one, ``Store.open`` opens one."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._batched = False  # inside ``batch``: writes are committed at its end
        self._deferred: list[Callable[[], None]] = []  # ``after_commit`` actions of the batch

    @classmethod
    def create(cls, run_dir: str | Path, config: dict[str, Any]) -> Store:
        """A new store in ``run_dir``. It is made whole under a temporary name and then linked
        into place, so a run killed while its store is being made leaves no half-made store.
        A store there already is refused, unless it holds nothing to keep: a run that failed
        before any segment finished, or a store left half-made by an older firepbt."""
        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise StoreError(f"run_dir {run_dir} is a file, not a directory")
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / STORE_FILE
        if path.exists():
            _clear_if_nothing_to_keep(path)
        for stale in run_dir.glob(f".{STORE_FILE}.*.creating*"):  # left by a killed creator
            pid = stale.name.split(".")[3]
            if pid.isdigit() and not pid_alive(int(pid)):
                stale.unlink(missing_ok=True)
        temporary = run_dir / f".{STORE_FILE}.{os.getpid()}.{time.monotonic_ns()}.creating"
        try:
            conn = cls._connect(temporary)
            conn.executescript(_SCHEMA)
            conn.execute(HELD_SCHEMA)
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("config", _json(config)),
                    ("config_digest", config_digest(_json(config))),
                    ("status", "running"),
                    ("created", str(time.time())),
                ],
            )
            conn.close()  # the last connection: the write-ahead log is folded in and removed
            try:
                os.link(temporary, path)  # fails if another process made its store first
            except FileExistsError:
                raise StoreError(_holds_a_run(run_dir)) from None
            except OSError:  # a file system without hard links: check, then rename
                if path.exists():
                    raise StoreError(_holds_a_run(run_dir)) from None
                os.replace(temporary, path)
        finally:
            for leftover in (temporary, *_sidecars(temporary)):
                leftover.unlink(missing_ok=True)
        return cls(path, cls._connect(path))

    @classmethod
    def open(cls, run_dir: str | Path) -> Store:
        path = Path(run_dir) / STORE_FILE
        if not path.exists():
            raise StoreError(f"{run_dir} holds no firepbt run (no {STORE_FILE} in it)")
        try:
            store = cls(path, cls._connect(path))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{path} is not a readable firepbt store ({e})") from None
        try:
            version = store.meta("schema_version")
        except sqlite3.DatabaseError as e:
            store.close()
            raise StoreError(
                f"{path} is not a complete firepbt store ({e}): a run killed while its store "
                "was being made leaves this, and nothing was recorded in it; start the run "
                f"again, which replaces it, or clear it with `rm {path}*`"
            ) from None
        if version != str(SCHEMA_VERSION):
            raise StoreError(
                f"{path} has store version {version}; this firepbt reads {SCHEMA_VERSION}"
            )
        store._conn.execute(HELD_SCHEMA)
        columns = {row[1] for row in store._conn.execute("PRAGMA table_info(decisions)")}
        if "target" not in columns:
            store._conn.execute(DECISION_TARGET_COLUMN)
        return store

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._batched:  # one write among a batch's: undone alone if it fails
            self._conn.execute("SAVEPOINT write")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK TO write")
                self._conn.execute("RELEASE write")
                raise
            self._conn.execute("RELEASE write")
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Commit every write made in this block at once, at its end (also when it ends with an
        exception: each write that finished stays), then run what ``after_commit`` deferred.
        One commit instead of one per write: the runner records a result's points, decisions,
        new segments and deleted checkpoints in one batch."""
        if self._batched:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._batched = True
        try:
            yield
        finally:
            self._batched = False
            self._conn.execute("COMMIT")
            deferred, self._deferred = self._deferred, []
            for action in deferred:
                action()

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once what was written so far is committed: now outside a batch, at
        the batch's end inside one (e.g. deleting a file only once the store records it gone)."""
        if self._batched:
            self._deferred.append(action)
        else:
            action()

    def close(self) -> None:
        self._conn.close()

    # -- writes (runner only) -------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

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
            h = None if r.hyperparameters is None else _json(r.hyperparameters)
            row = (r.member, r.step, r.kind, r.donor, r.source_member, r.source_step, old, h,
                   changes, reason)  # fmt: skip
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
            if ck.holder:
                c.execute("INSERT OR REPLACE INTO held VALUES (?, ?, 0)", (ck.path, ck.holder))
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

    def checkpoint_rewritten(self, ref: CheckpointRef, nbytes: int) -> None:
        """A lost or corrupted checkpoint was trained again and written: its new checksum."""
        with self._tx() as c:
            c.execute(
                "UPDATE checkpoints SET sha256 = ?, bytes = ?, created = ? WHERE path = ?",
                (ref.sha256, nbytes, time.time(), ref.path),
            )
            c.execute("UPDATE held SET written = 1 WHERE path = ?", (ref.path,))
            c.execute("INSERT INTO events(kind, segment) VALUES ('written', ?)", (ref.segment,))

    def checkpoint_flushed(self, ref: CheckpointRef) -> None:
        """A checkpoint held in a worker's memory was written to its path."""
        with self._tx() as c:
            c.execute("UPDATE checkpoints SET sha256 = ? WHERE path = ?", (ref.sha256, ref.path))
            c.execute("UPDATE held SET written = 1 WHERE path = ?", (ref.path,))
            c.execute("INSERT INTO events(kind, segment) VALUES ('written', ?)", (ref.segment,))

    def checkpoint_deleted(self, path: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE checkpoints SET deleted = ? WHERE path = ?", (time.time(), path))
