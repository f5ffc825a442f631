"""What ``firepbt.run`` and ``firepbt.resume`` settle before a run starts: that they are not
called inside a worker, which options are data, the default run directory, the callbacks and
the progress display."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firepbt.callbacks import Callback
from firepbt.control.progress import RunProgress
from firepbt.errors import ConfigError

if TYPE_CHECKING:
    from firepbt.config import RunConfig
    from firepbt.display import LiveProgress


def refuse_inside_worker() -> None:
    """A script that calls ``firepbt.run`` at import time is re-imported by every worker process
    (spawn / forkserver); say so plainly instead of starting a pool from inside a worker."""
    import multiprocessing

    # The same flag multiprocessing itself checks while a child imports the parent's main module.
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(
            "firepbt.run was called inside a worker process: the script that starts the run is "
            "imported again by each worker. Put the call under `if __name__ == '__main__':`."
        )


def is_plain(v: Any) -> bool:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return True
    if isinstance(v, Mapping):
        return all(is_plain(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return all(is_plain(x) for x in v)
    return False


def plain_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options that can be written to the store's config as data (policy objects are kept aside)."""
    return {k: v for k, v in options.items() if is_plain(v)}


def default_run_dir(name: str) -> Path:
    """``runs/<strategy>-<date>-<time>``; a second run started within the same second gets
    ``-2``, ``-3``, ... so that it does not find the first run's directory."""
    base = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def check_callbacks(callbacks: Sequence[Callback]) -> list[Callback]:
    if isinstance(callbacks, (Callback, str)) or not isinstance(callbacks, Sequence):
        raise ConfigError(f"callbacks: expected a list of firepbt.Callback, got {callbacks!r}")
    callbacks = list(callbacks)
    for i, c in enumerate(callbacks):
        if not isinstance(c, Callback):
            raise ConfigError(
                f"callbacks[{i}]: expected a firepbt.Callback (such as "
                f"firepbt.loggers.TensorBoardWriter('tb')), got {c!r}"
            )
    return callbacks


def progress_display(
    config: RunConfig, progress: bool | Callable[[RunProgress], None] | None
) -> tuple[LiveProgress | None, Callable[[RunProgress], None] | None]:
    """The live progress line to show (or None) and the callable that hears of progress."""
    display = None
    callback: Callable[[RunProgress], None] | None = None
    if progress is None:  # a person watching a terminal sees progress; a log file does not
        isatty = getattr(sys.stderr, "isatty", None)
        progress = bool(isatty and isatty())
    if progress is True:
        from firepbt.display import LiveProgress

        where = (
            "in this process"
            if config.executor == "inprocess"
            else f"on {config.workers} worker{'s' if config.workers != 1 else ''}"
        )
        every = config.ready_every
        first = f"training the first segments {where}: the bar moves each {every} steps"
        workers = f"{config.workers} worker process{'es' if config.workers != 1 else ''}"
        display = LiveProgress(
            config.population,
            config.total_steps,
            starting=first,
            phases={"starting workers": f"starting {workers}", "first segments": first},
        )
        callback = display.update
    elif callable(progress):
        callback = progress
    return display, callback
