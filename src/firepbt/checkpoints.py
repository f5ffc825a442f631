"""Checkpoint files: written atomically (temporary file + rename, or one object in an object
store: ``firepbt.storage``) with a SHA-256 checksum.

A checkpoint holds whatever ``Trainable.save`` returned, pickled. Readers verify the checksum, so a
torn or corrupted file is detected instead of silently loaded. A checkpoint may also be *held*: its
bytes stay in the memory of the worker that made it (``holder``) until they are written out or
dropped (see ``firepbt.segments``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from typing import Any

from firepbt import storage
from firepbt.errors import CheckpointError


@dataclass(frozen=True, slots=True)
class CheckpointRef:
    """A checkpoint file of ``member`` at ``step``, written by segment ``segment``; with a
    ``holder``, its bytes are in that worker's memory and not (yet) at ``path``."""

    path: str
    sha256: str
    member: int
    step: int
    segment: int
    holder: str = ""


@dataclass(frozen=True, slots=True)
class MemberState:
    """What a worker keeps in a checkpoint: the trainable's ``save()`` and the member's global
    random state after the segment (``firepbt.random_state``; None in a checkpoint that holds
    none: a vectorised slot's, or one an older version wrote)."""

    state: Any
    random: dict[str, Any] | None = None


def member_state(obj: Any) -> MemberState:
    """A checkpoint's content as a ``MemberState`` (a bare ``save()`` holds no random state)."""
    return obj if isinstance(obj, MemberState) else MemberState(obj)


def dump_state(state: Any) -> bytes:
    """Pickle ``state``."""
    try:
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # pickling errors come in many types
        raise CheckpointError(
            f"the state returned by save() cannot be pickled ({type(e).__name__}: {e}); "
            "return plain data, numpy arrays or tensors"
        ) from e


def write_checkpoint(path: str | os.PathLike[str], state: Any) -> tuple[str, int]:
    """Pickle ``state`` to ``path`` atomically; return (sha256 hex digest, size in bytes)."""
    data = dump_state(state)
    return write_bytes(path, data), len(data)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> str:
    """Write ``data`` to ``path`` (a file, or a location in a run's storage) atomically where
    the storage allows (``firepbt.storage``); return its sha256 hex digest."""
    try:
        storage.write(os.fspath(path), data)
    except OSError as e:
        raise CheckpointError(f"{path} could not be written ({storage.describe(e)})") from None
    return hashlib.sha256(data).hexdigest()


def read_checkpoint(path: str | os.PathLike[str], sha256: str) -> Any:
    """Load a checkpoint, verifying its checksum."""
    return load_state(read_verified(path, sha256))


def read_verified(path: str | os.PathLike[str], sha256: str) -> bytes:
    """A checkpoint's bytes, its checksum verified."""
    try:
        data = storage.read(os.fspath(path))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} is missing") from None
    except OSError as e:  # a storage that did not answer, or refused
        raise CheckpointError(f"checkpoint {path} cannot be read ({storage.describe(e)})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise CheckpointError(
            f"checkpoint {path} is corrupted: checksum {digest[:12]}… does not match the recorded "
            f"{sha256[:12]}…"
        )
    return data


def load_state(data: bytes) -> Any:
    return pickle.loads(data)
