"""Carrying out the ledger's releases: files (or objects in a storage) deleted, held copies
dropped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from functools import partial

from firepbt import storage
from firepbt.control.ledger import Released
from firepbt.execution.base import Executor
from firepbt.store import Store


def delete_released(released: Iterable[Released], executor: Executor, store: Store) -> None:
    """Delete checkpoints nobody needs any more (``CheckpointLedger.release``), and have their
    holders drop them. A file goes once the store's record of its deletion is committed: a run
    killed before then resumes from a store whose checkpoints all still exist."""
    for gone in released:
        if gone.holder is not None:
            executor.drop(gone.holder, gone.path)
        store.checkpoint_deleted(gone.path)
        store.after_commit(partial(_delete, gone.path))


def _delete(path: str) -> None:
    # A checkpoint the storage could not delete (it did not answer) costs its space, not the
    # run: the store records it deleted, and nothing reads it again.
    with contextlib.suppress(OSError):
        storage.delete(path)
