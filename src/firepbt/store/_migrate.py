"""Upgrading a store written by an older firepbt (store version 1: firepbt at 7219946 and before)
to the compact store (``_rows``) when it is opened, in place and in one transaction: it is
either whole in the new form or left as it was.

What changes: the texts rows repeat (hyperparameters, worker and holder names) go to ``texts``;
a checkpoint's row is keyed by the segment that wrote it and holds whether it is held (the
``held`` table goes); the path segments kept of their source goes (the source checkpoint's row
has it); paths, metrics, digests and times that can be read elsewhere are kept as NULL or as
less (``_compact``). Every row keeps its id and its order (``rowid``): readers, exports, replays
and resumes see the same run. The file keeps its size (its freed pages are filled again as the
run goes on; ``VACUUM`` gives them back at once)."""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from firepbt.errors import StoreError
from firepbt.store._compact import kept_metrics, kept_path, kept_sha
from firepbt.store._rows import _SCHEMA, INDEXES, LOCK_FILE, SCHEMA_VERSION, pid_alive

# Version 1 stores made before these gained them when opened.
_V1_HELD = (
    "CREATE TABLE IF NOT EXISTS held(path TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "written INTEGER NOT NULL DEFAULT 0)"
)
_CHANGED = ("segments", "points", "decisions", "checkpoints")


def _text_id(column: str) -> str:
    return f"(SELECT id FROM texts WHERE text = {column})"


_COPIES = f"""
INSERT INTO texts(text) SELECT hyperparameters FROM v1_segments
    UNION SELECT worker FROM v1_segments WHERE worker IS NOT NULL
    UNION SELECT hyperparameters FROM v1_decisions WHERE hyperparameters IS NOT NULL
    UNION SELECT old_hyperparameters FROM v1_decisions WHERE old_hyperparameters IS NOT NULL
    UNION SELECT holder FROM held;
CREATE INDEX migrating_texts ON texts(text);
INSERT INTO segments SELECT id, member, start_step, end_step, {_text_id("hyperparameters")},
    source_segment, status, attempts, {_text_id("worker")}, queued, started, finished, reused
    FROM v1_segments ORDER BY id;
INSERT INTO points(rowid, member, step, score, metrics, segment, time)
    SELECT p.rowid, p.member, p.step, p.score, firepbt_kept_metrics(p.metrics, p.score),
    p.segment, CASE WHEN p.time = s.finished THEN NULL ELSE p.time END
    FROM v1_points p LEFT JOIN v1_segments s ON s.id = p.segment ORDER BY p.rowid;
INSERT INTO decisions SELECT id, member, step, kind, donor, source_member, source_step,
    {_text_id("old_hyperparameters")}, {_text_id("hyperparameters")}, changes, reason, time,
    target FROM v1_decisions ORDER BY id;
INSERT INTO checkpoints SELECT c.segment, c.member, c.step,
    firepbt_kept_path(c.path, c.member, c.step, c.segment), firepbt_kept_sha(c.sha256), c.bytes,
    CASE WHEN c.created = s.finished THEN NULL ELSE c.created END, c.deleted,
    {_text_id("h.holder")}, COALESCE(h.written, 0)
    FROM v1_checkpoints c LEFT JOIN v1_segments s ON s.id = c.segment
    LEFT JOIN held h ON h.path = c.path ORDER BY c.segment;
DROP INDEX migrating_texts;
DROP TABLE held;
"""


def _statements(script: str) -> list[str]:
    # one at a time: ``executescript`` would commit the transaction they are part of
    return [s for s in script.split(";\n") if s.strip()]


def _kept_metrics(text: str, score: float | None) -> str | None:
    return kept_metrics(text, math.nan if score is None else score)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Convert the version 1 store open on ``conn`` (at ``path``) to the current version, or
    leave it as it was and raise a ``StoreError`` that says why, in one line."""
    with _no_run_of_another(path):
        conn.create_function("firepbt_kept_metrics", 2, _kept_metrics, deterministic=True)
        conn.create_function("firepbt_kept_path", 4, kept_path, deterministic=True)
        conn.create_function("firepbt_kept_sha", 1, kept_sha, deterministic=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _refusal(path, e) from None
        try:
            _convert(conn)
        except sqlite3.Error as e:
            conn.execute("ROLLBACK")
            raise _refusal(path, e) from None
        conn.execute("COMMIT")


def _convert(conn: sqlite3.Connection) -> None:
    conn.execute(_V1_HELD)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
    if "target" not in columns:
        conn.execute("ALTER TABLE decisions ADD COLUMN target INTEGER")
    for (index,) in conn.execute(  # the readers' indexes, made again for the new tables
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall():
        conn.execute(f'DROP INDEX "{index}"')
    for table in _CHANGED:
        conn.execute(f"ALTER TABLE {table} RENAME TO v1_{table}")
    for statement in _statements(_SCHEMA) + _statements(_COPIES):
        conn.execute(statement)
    for table in _CHANGED:
        conn.execute(f"DROP TABLE v1_{table}")
    for statement in _statements(INDEXES):
        conn.execute(statement)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _refusal(path: Path, e: Exception) -> StoreError:
    return StoreError(
        f"{path} is a store of an older firepbt (version 1) and could not be upgraded to "
        f"version {SCHEMA_VERSION} ({e}); it was left as it was: open it where it can be "
        "written, or read it with firepbt 7219946 or older"
    )


@contextlib.contextmanager
def _no_run_of_another(path: Path) -> Iterator[None]:
    """Hold the run directory's lock (shared) while the store is upgraded, so that no run of an
    older firepbt writes it meanwhile; refuse if another process's run holds it now."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the lock is a file naming its holder while it runs
        _refuse_if_running(path, _pid_in(path.parent / LOCK_FILE), alive_only=True)
        yield
        return
    lock = path.parent / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # a run holds it: this process's own, or another's
            _refuse_if_running(path, _pid_in(lock), alive_only=False)
        yield
    finally:
        os.close(fd)


def _pid_in(lock: Path) -> int:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return 0


def _refuse_if_running(path: Path, pid: int, alive_only: bool) -> None:
    if pid == os.getpid() or (alive_only and (pid == 0 or not pid_alive(pid))):
        return
    who = f"process {pid}" if pid else "another process"
    raise StoreError(
        f"{path} is a store of an older firepbt (version 1) that {who} is running; it is "
        f"upgraded to version {SCHEMA_VERSION} when opened after that run ends (or read it "
        "with the firepbt that runs it)"
    )
