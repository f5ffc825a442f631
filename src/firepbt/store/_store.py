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

from firepbt.errors import StoreError
from firepbt.store._bulk import StoreBulkReads
from firepbt.store._compact import Texts, _json
from firepbt.store._migrate import migrate
from firepbt.store._reads import StoreReads
from firepbt.store._rows import (
    _SCHEMA,
    DECISION_TARGET_COLUMN,
    INDEXES,
    SCHEMA_VERSION,
    STORE_FILE,
    pid_alive,
)
from firepbt.store._writes import StoreWrites

MMAP_BYTES = 1 << 30  # address space, not memory: pages are read when touched


def config_digest(text: str) -> str:
    """The digest kept of a run's stored config, so a resume can tell that it was edited."""
    return hashlib.sha256(text.encode()).hexdigest()


def as_stored(x: Any) -> Any:
    """``x`` as it reads back from the store (JSON; a value JSON lacks comes back a string)."""
    return json.loads(_json(x))


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


class Store(StoreReads, StoreBulkReads, StoreWrites):
    """A run's SQLite store: ``Store.create`` makes a new one, ``Store.open`` opens one."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._batched = False  # inside ``batch``: writes are committed at its end
        self._deferred: list[Callable[[], None]] = []  # ``after_commit`` actions of the batch
        self._texts = Texts(conn)

    @classmethod
    def create(
        cls, run_dir: str | Path, config: dict[str, Any], storage: str | None = None
    ) -> Store:
        """A new store in ``run_dir``; its checkpoints go under the run directory, or under
        ``storage`` (the run's own folder in its storage: ``firepbt.storage.run_root``). It is
        made whole under a temporary name and then linked into place, so a run killed while its
        store is being made leaves no half-made store.
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
            conn.executescript(_SCHEMA + INDEXES)
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("config", _json(config)),
                    ("config_digest", config_digest(_json(config))),
                    ("status", "running"),
                    ("created", str(time.time())),
                    ("checkpoint_paths", "relative"),  # to the run directory (see ``root``)
                    *([("storage", storage)] if storage else []),  # or to this
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
        """Open the store of the run in ``run_dir``, to read it or to go on with it.

        Raises:
            firepbt.errors.StoreError: ``run_dir`` holds no run, or its store is unreadable.
        """
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
        try:
            if version == "1":  # an older firepbt's: upgraded in place, or left as it was
                migrate(store._conn, path)
            elif version != str(SCHEMA_VERSION):
                raise StoreError(
                    f"{path} has store version {version}; this firepbt reads {SCHEMA_VERSION}"
                )
        except StoreError:
            store.close()
            raise
        columns = {row[1] for row in store._conn.execute("PRAGMA table_info(decisions)")}
        if "target" not in columns:
            store._conn.execute(DECISION_TARGET_COLUMN)
        store._conn.executescript(INDEXES)
        return store

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Reads of a long run's store jump between its pages: mapped, they cost no system call.
        conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
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
                self._texts.forget()
                raise
            self._conn.execute("RELEASE write")
            return
        self.settle()
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            self._texts.forget()
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

    def settle(self) -> None:
        """Commit a transaction left open by a batch that an interrupt (Ctrl-C) cut short
        between its start and its end, before the next write: each write that finished stays,
        as in ``batch``."""
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once what was written so far is committed: now outside a batch, at
        the batch's end inside one (e.g. deleting a file only once the store records it gone)."""
        if self._batched:
            self._deferred.append(action)
        else:
            action()

    def close(self) -> None:
        self._conn.close()
