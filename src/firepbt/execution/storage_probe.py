"""A worker proves, before its first segment, that it sees the run directory the controller
sees: it reads a token the controller wrote there and writes one back, which the controller
reads. A Ray node that mounts another disk at the run directory's path (or none) then stops
the run at once, in one line naming the worker and the path, instead of training members whose
checkpoints no other machine can read."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

PROBE_DIR = ".firepbt-probe"


def place_probe(run_dir: str) -> tuple[str, str]:
    """On the controller: write a fresh token under ``run_dir``; (the probe folder, the token)."""
    folder = Path(run_dir) / PROBE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    (folder / "controller").write_text(token)
    return str(folder), token


def answer_probe(folder: str, token: str, worker: str) -> str:
    """On a worker: read the controller's token and write it back under the worker's name;
    ``""``, or why it could not."""
    where = Path(folder)
    try:
        seen = (where / "controller").read_text()
    except OSError as e:
        return f"cannot read {where / 'controller'} ({e.strerror or type(e).__name__})"
    if seen != token:
        return f"reads another run's token in {folder}: a different disk at the same path"
    try:
        (where / _reply(worker)).write_text(token)
    except OSError as e:
        return f"cannot write in {folder} ({e.strerror or type(e).__name__})"
    return ""


def check_reply(folder: str, token: str, worker: str) -> str:
    """On the controller: ``""`` if the worker's reply reached this machine, or why not."""
    path = Path(folder) / _reply(worker)
    try:
        ok = path.read_text() == token
    except OSError:
        ok = False
    path.unlink(missing_ok=True)
    return "" if ok else f"what it wrote in {folder} does not reach the controller's machine"


def remove_probe(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _reply(worker: str) -> str:
    return "worker-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in worker)
