"""Worker logs: each worker process writes its stdout and stderr to a file of its own under the
run directory (``RUN_DIR/logs/pid-N.log``, named like the worker), so the terminal shows the
controller's progress and nothing else. The redirection is of the file descriptors themselves,
so output from C code (a framework's banner, a CUDA warning) and from processes the worker starts
(a ``DataLoader``'s workers) goes there too. A failure's message ends with the last lines of its
worker's log: what the trainable printed before it raised, or before its process died.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

# The environment variable that tells a starting worker process where to write its log.
LOG_VARIABLE = "FIREPBT_WORKER_LOGS"
TAIL_LINES = 10
_WIDTH = 240  # a line of the tail longer than this is cut
_own: Path | None = None  # this worker's log, once redirected
_since = 0  # the size of this worker's log when its current segment started
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # terminal escapes included


def log_path(directory: str | os.PathLike[str], worker: str) -> Path:
    """The log of ``worker`` (``pid-N``) under ``directory``."""
    return Path(directory) / f"{worker}.log"


def redirect_output() -> None:
    """In a starting worker process whose environment names a log directory: send this
    process's stdout and stderr (file descriptors 1 and 2) to its log, appended, line-buffered."""
    global _own
    directory = os.environ.get(LOG_VARIABLE)
    if not directory:
        return
    path = log_path(directory, f"pid-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return  # no log rather than no worker: the output stays where it was
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # New streams on descriptors 1 and 2: those inherited may write elsewhere (a notebook's, or
    # a test runner's capture).
    sys.stdout = open(1, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    _own = path


def tail(path: str | os.PathLike[str], lines: int = TAIL_LINES, since: int = 0) -> list[str]:
    """The last ``lines`` non-blank lines of a log written after byte ``since`` (none if it
    cannot be read), control characters shown as ``\\xNN``."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(since, f.tell() - 16 * 1024))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    kept = [line.rstrip() for line in text.split("\n") if line.strip()]
    return [line if len(line) <= _WIDTH else line[: _WIDTH - 1] + "…" for line in kept[-lines:]]


def with_tail(message: str, path: str | os.PathLike[str] | None, since: int = 0) -> str:
    """``message`` followed by the last lines of the log at ``path`` (written after byte
    ``since``), when it has any."""
    if path is None:
        return message
    last = tail(path, since=since)
    if not last:
        return message
    shown = "\n".join(f"    {line}" for line in last)
    return f"{message}\n  last lines of the worker's log {path}:\n{shown}"


def segment_started() -> None:
    """In a worker: a segment starts; its failure shows only the log lines written from now."""
    global _since
    if _own is not None:
        try:
            _since = _own.stat().st_size
        except OSError:
            _since = 0


def with_own_tail(message: str) -> str:
    """In a worker: ``message`` followed by the last lines its current segment wrote to this
    worker's own log."""
    if _own is None:
        return message
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    return with_tail(message, _own, _since)
