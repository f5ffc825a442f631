"""The run directory's lock: one driver (a run, or a resume) at a time."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from firepbt.errors import StoreError
from firepbt.execution.bootstrap import closed_in_workers
from firepbt.store import LOCK_FILE, pid_alive

__all__ = ["LOCK_FILE", "run_lock"]


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while a run is driven: an exclusive ``flock`` on ``firepbt.lock``
    (POSIX), held by the open file for the life of the driver, so two drivers can never both
    hold it, and a killed driver's lock goes with its process. The file names the holder's
    process id for the message a second driver gets. Where ``flock`` is missing, a lock file
    created exclusively, whose holder is checked to be alive, stands in. On a network file
    system ``flock`` may hold only among the processes of one machine."""
    path = run_dir / LOCK_FILE
    try:
        import fcntl
    except ImportError:  # not POSIX
        with _pid_file_lock(path):
            yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(_locked_message(run_dir, _holder(path))) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        with closed_in_workers(fd):  # a forked worker must not keep the lock after this process
            yield
    finally:
        os.close(fd)  # releases the lock; the file stays, so every driver locks the same file


def _holder(path: Path) -> int:
    """The process id the lock file names (the holder writes it just after locking)."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                return 0
            time.sleep(0.01)


def _locked_message(run_dir: Path, pid: int) -> str:
    who = f"process {pid}" if pid else "another process"
    return f"{run_dir} is being run by {who}; wait for it to end or stop it first"


@contextmanager
def _pid_file_lock(path: Path) -> Iterator[None]:
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            pid = _holder(path)
            if pid and pid != os.getpid() and pid_alive(pid):
                raise StoreError(_locked_message(path.parent, pid)) from None
            path.unlink(missing_ok=True)  # left by a process that is gone
    else:
        raise StoreError(_locked_message(path.parent, 0))
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
