"""How the store keeps a value compactly and reads it back exactly: a checkpoint path that is
the runner's name for it, metrics that are the score alone, a sha256 digest (each kept as less,
or as nothing: NULL), and texts that many rows repeat (kept once, by id). Each ``kept_*`` keeps
a value compactly only where its ``*_of`` gives back the same value, so nothing is lost."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from typing import Any


def _json(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


# The runner's name for the checkpoint of ``segment`` (``control.loop``), relative to the run's
# checkpoint root; fixed here, so that a store reads back the paths it elided whatever names a
# later runner gives.
_DEFAULT_NAME = "checkpoints/member-{:04d}/step-{:08d}-seg-{}.ckpt"
_DEFAULT_PATTERN = re.compile(r"checkpoints/member-(\d+)/step-(\d+)-seg-(\d+)\.ckpt")


def kept_path(stored: str, member: int, step: int, segment: int) -> str | None:
    """A checkpoint path as a row keeps it: None where it is the runner's name for it."""
    return None if stored == _DEFAULT_NAME.format(member, step, segment) else stored


def path_of(kept: str | None, member: int, step: int, segment: int) -> str:
    """The stored path (relative to the checkpoints' root) of a checkpoint row."""
    return _DEFAULT_NAME.format(member, step, segment) if kept is None else kept


def default_key(stored: str) -> tuple[int, int, int] | None:
    """(member, step, segment) of a path kept as NULL (the runner's name), else None."""
    m = _DEFAULT_PATTERN.fullmatch(stored)
    if m is None:
        return None
    key = (int(m[1]), int(m[2]), int(m[3]))
    return key if kept_path(stored, *key) is None else None


def kept_metrics(text: str, score: float) -> str | None:
    """A point's metrics text as its row keeps it: None where it is ``{"score": score}`` and the
    score reads back as the same float (SQLite keeps -0.0 as 0.0; NaN as NULL, read as NaN)."""
    exact = type(score) is float and (score != 0.0 or math.copysign(1.0, score) > 0)
    return None if exact and text == _json({"score": score}) else text


def metrics_of(kept: str | None, score: float | None) -> str:
    """The metrics text of a point row (``score`` as stored: None for NaN)."""
    if kept is not None:
        return kept
    return _json({"score": math.nan if score is None else score})


def kept_sha(digest: str) -> str | bytes:
    """A sha256 hex digest as a row keeps it: its 32 bytes (anything else as it is)."""
    if len(digest) != 64:
        return digest
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        return digest
    return raw if raw.hex() == digest else digest


def sha_of(kept: str | bytes) -> str:
    return kept.hex() if isinstance(kept, bytes) else kept


class Texts:
    """The ids of the texts many rows repeat (``texts``: hyperparameters, worker names), for
    the store's one writer: each text is written once. Forget what it knows when a write is
    undone (``forget``): an id it handed out may be gone with it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._ids: dict[str, int] | None = None

    def id(self, text: str) -> int:
        if self._ids is None:
            self._ids = {t: i for i, t in self._conn.execute("SELECT id, text FROM texts")}
        known = self._ids.get(text)
        if known is None:
            cur = self._conn.execute("INSERT INTO texts(text) VALUES (?)", (text,))
            known = self._ids[text] = int(cur.lastrowid or 0)
        return known

    def optional(self, text: str | None) -> int | None:
        return None if text is None else self.id(text)

    def forget(self) -> None:
        self._ids = None
