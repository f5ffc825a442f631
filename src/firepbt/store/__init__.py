"""The run store: one SQLite file per run directory holding members, every curve point, every
segment, every decision with its explore record, lineage edges, checkpoints and failures.

The runner is the single writer; it commits each event before acting on it, so a finished or
killed run can be inspected, analysed and replayed. Readers (``firepbt status``) open the same
file concurrently (WAL mode).
"""

from firepbt.errors import StoreError
from firepbt.store._bulk import bulk_reading, decode_all
from firepbt.store._rows import (
    LOCK_FILE,
    SCHEMA_VERSION,
    STORE_FILE,
    DecisionRow,
    MemberRow,
    MemberStatus,
    ReplayRow,
    Role,
    SegmentRow,
    SegmentStatus,
    pid_alive,
)
from firepbt.store._store import Store, as_stored, config_digest

__all__ = [
    "as_stored",
    "bulk_reading",
    "config_digest",
    "decode_all",
    "pid_alive",
    "LOCK_FILE",
    "SCHEMA_VERSION",
    "STORE_FILE",
    "DecisionRow",
    "MemberRow",
    "MemberStatus",
    "ReplayRow",
    "Role",
    "SegmentRow",
    "SegmentStatus",
    "Store",
    "StoreError",
]
