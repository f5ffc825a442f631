"""What the store holds: the SQLite schema, member and segment states, and the rows it returns."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from firepbt import storage
from firepbt.space import Hyperparameters

SCHEMA_VERSION = 2  # 1: before the compact store (firepbt at 7219946 and earlier)
STORE_FILE = "firepbt.sqlite"
LOCK_FILE = "firepbt.lock"  # the run directory's lock (``firepbt.control.lock``)

# Compact: a segment costs about 200 bytes with one curve point. What many rows repeat is kept
# once in ``texts`` (hyperparameters, worker names) and named by its id. A checkpoint is the
# row of the segment that wrote it (``checkpoints.segment``), which the segments trained from it
# name (``segments.source_segment``); its path is kept only where it is not the name the runner
# gives it (``default_checkpoint_name``), and whether it is held, in ``holder``. A NULL stands
# for what can be read elsewhere: a point's ``metrics`` that are its score alone (``{"score":
# score}``), a point's ``time`` and a checkpoint's ``created`` that are their segment's
# ``finished``. A sha256 digest is kept as its 32 bytes. Older stores are converted when
# opened (``_migrate``).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS texts(id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members(
    id INTEGER PRIMARY KEY, seed INTEGER NOT NULL, hyperparameters TEXT NOT NULL,
    step INTEGER NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,
    role TEXT NOT NULL DEFAULT 'member', subpopulation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS segments(
    id INTEGER PRIMARY KEY, member INTEGER NOT NULL, start_step INTEGER NOT NULL,
    end_step INTEGER NOT NULL, hyperparameters INTEGER NOT NULL, source_segment INTEGER,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, worker INTEGER,
    queued REAL NOT NULL, started REAL, finished REAL, reused INTEGER);
CREATE TABLE IF NOT EXISTS points(
    member INTEGER NOT NULL, step INTEGER NOT NULL, score REAL, metrics TEXT,
    segment INTEGER NOT NULL, time REAL);
CREATE INDEX IF NOT EXISTS points_member ON points(member, step);
CREATE TABLE IF NOT EXISTS decisions(
    id INTEGER PRIMARY KEY, member INTEGER NOT NULL, step INTEGER NOT NULL, kind TEXT NOT NULL,
    donor INTEGER, source_member INTEGER, source_step INTEGER, old_hyperparameters INTEGER,
    hyperparameters INTEGER, changes TEXT, reason TEXT, time REAL NOT NULL, target INTEGER);
CREATE TABLE IF NOT EXISTS lineage(
    child INTEGER NOT NULL, child_step INTEGER NOT NULL, parent INTEGER NOT NULL,
    parent_step INTEGER NOT NULL, decision INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints(
    segment INTEGER PRIMARY KEY, member INTEGER NOT NULL, step INTEGER NOT NULL, path TEXT,
    sha256 BLOB NOT NULL, bytes INTEGER NOT NULL, created REAL, deleted REAL, holder INTEGER,
    written INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS failures(
    id INTEGER PRIMARY KEY, member INTEGER NOT NULL, segment INTEGER, step INTEGER,
    kind TEXT NOT NULL, message TEXT NOT NULL, traceback TEXT NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, segment INTEGER NOT NULL);
"""

# The indexes the readers' queries need, so that each reads what it asks for rather than a whole
# table (a report on a long run asked for each segment's points: quadratic without them). Older
# stores gain them when opened. ``decisions_kind`` holds the decisions that copy weights (only
# they name a donor), ``checkpoints_live`` the checkpoints not deleted, ``checkpoints_path`` the
# paths kept whole.
INDEXES = """
CREATE INDEX IF NOT EXISTS points_segment ON points(segment);
CREATE INDEX IF NOT EXISTS points_score ON points(member, score);
CREATE INDEX IF NOT EXISTS points_latest ON points(member);
CREATE INDEX IF NOT EXISTS segments_member ON segments(member, status);
CREATE INDEX IF NOT EXISTS segments_steps ON segments(end_step - start_step)
    WHERE status = 'done';
CREATE INDEX IF NOT EXISTS decisions_kind ON decisions(kind, member, donor)
    WHERE donor IS NOT NULL;
CREATE INDEX IF NOT EXISTS checkpoints_live ON checkpoints(segment) WHERE deleted IS NULL;
CREATE INDEX IF NOT EXISTS checkpoints_path ON checkpoints(path) WHERE path IS NOT NULL;
CREATE INDEX IF NOT EXISTS failures_member ON failures(member);
CREATE INDEX IF NOT EXISTS decisions_fire ON decisions(
    id, member, step, kind, donor, source_step, reason, target)
    WHERE kind IN ('assign', 'handover', 'release');
"""

# An assignment's target (FIRE PBT: the child member whose hyperparameters the evaluator trains
# with); stores made before it was recorded gain the column when opened, empty.
DECISION_TARGET_COLUMN = "ALTER TABLE decisions ADD COLUMN target INTEGER"

# Replays of a found schedule from scratch; created on first use, so older stores gain them too.
REPLAY_SCHEMA = """
CREATE TABLE IF NOT EXISTS replays(
    id INTEGER PRIMARY KEY, member INTEGER NOT NULL, seed INTEGER NOT NULL, split TEXT,
    created REAL NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replay_points(
    replay INTEGER NOT NULL, step INTEGER NOT NULL, score REAL, metrics TEXT NOT NULL);
"""


class SegmentStatus(enum.Enum):
    QUEUED = "queued"
    DONE = "done"
    FAILED = "failed"


class MemberStatus(enum.Enum):
    TRAINING = "training"
    FINISHED = "finished"
    FAILED = "failed"
    IDLE = "idle"  # an evaluator waiting for its next assignment


class Role(enum.Enum):
    MEMBER = "member"
    EVALUATOR = "evaluator"


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
class ReplayRow:
    id: int
    member: int
    seed: int
    split: str | None
    status: str


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


def stored_path(root: str | None, path: str) -> str:
    """A checkpoint path as the store keeps it: relative to the checkpoints' root (the run
    directory, or the run's folder in its storage) when it lies inside it, so that a run
    directory moved (or seen at another path) still finds its checkpoints; a path elsewhere, or
    any path of a store without a root, is kept as it is."""
    if root is None:
        return path
    inside = storage.relative(root, path)
    return path if inside is None else inside


def real_path(root: str | None, stored: str) -> str:
    """The full path (or URI) of a stored checkpoint path, for the root as it is now. A store
    without a root kept paths as given: a relative one is read against the working directory,
    as the run that wrote it did."""
    if os.path.isabs(stored) or storage.is_uri(stored):
        return stored
    return os.path.abspath(stored) if root is None else storage.join(root, stored)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True
