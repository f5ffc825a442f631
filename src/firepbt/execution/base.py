"""The executor contract: what the controller asks of any place that runs segments."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from firepbt.errors import CheckpointError
from firepbt.segments import Segment, SegmentResult


class Executor(ABC):
    """Runs segments. ``submit`` never blocks; ``wait`` blocks until at least one result.

    An executor that ``holds_state`` lets segments leave their checkpoint in the memory of the
    worker that ran them (``CheckpointRef.holder``): it sends a segment to the worker holding its
    source when that worker is ``idle``, writes a held checkpoint to disk on ``flush`` and
    forgets it on ``drop``."""

    holds_state = False
    # Whether segments run while the controller does something else (on other processes or
    # machines): the runner then hands queued segments out before recording results.
    concurrent = True
    # Set by the runner: called once, from ``wait``, when the first worker process has started
    # and can train (an executor that starts processes and can tell sets ``reports_started``).
    reports_started = False
    on_started: Callable[[], None] | None = None
    # Set by the runner: called with why the run waits for workers (none can be placed), and
    # with "" once one is up again; ``firepbt status`` shows it.
    on_waiting: Callable[[str], None] | None = None
    # Set by the runner: the directory for worker logs (``RUN_DIR/logs``). An executor whose
    # workers are processes of its own sends their stdout and stderr there (``execution.logs``).
    log_dir: str | None = None
    # Set by the runner: the run directory (absolute) and the checkpoints' root (the run
    # directory, or the run's folder in its storage). An executor whose workers may be on other
    # machines has each prove that it reaches the root (``execution.storage_probe``).
    run_dir: str | None = None
    checkpoint_root: str | None = None
    # Set by the runner: environment variables every worker starts with (``storage``'s options).
    worker_variables: Mapping[str, str] = MappingProxyType({})
    # Whether a segment that was on a worker when it died is run again alone, to tell which
    # segment kills its worker (a process pool's worker runs several); not where each worker
    # runs one segment at a time, so a death names its own segment.
    isolates_crashes = True

    _waiting = ""  # why the run waits for workers, while it does

    def waiting(self, why: str) -> None:
        """Say why the run waits for workers (none can be placed), or ``""`` once it no longer
        does, to ``on_waiting`` when that changes."""
        if why != self._waiting and self.on_waiting is not None:
            self.on_waiting(why)
        self._waiting = why

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many segments may run at once."""

    @abstractmethod
    def submit(self, segment: Segment) -> None:
        """Hand a segment over to run; never blocks (at most ``capacity`` at once)."""

    @abstractmethod
    def wait(self) -> list[SegmentResult]:
        """Results of finished segments (at least one while any is pending)."""

    @abstractmethod
    def pending(self) -> int:
        """Segments submitted whose results were not yet returned."""

    def shutdown(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release workers."""

    def preload(self, modules: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Modules every worker will need (a strategy's ``worker_modules``): an executor that
        starts worker processes imports them once where its workers inherit them."""

    def idle(self, worker: str) -> bool:
        """Whether ``worker`` lives and can take a segment now (it would run there next)."""
        return False

    def running(self) -> set[int] | None:
        """Members whose segments train now, where the executor tells them apart from segments
        submitted and waiting for a worker; None where it cannot (all submitted count)."""
        return None

    def flush(self, worker: str, path: str) -> str:
        """Have ``worker`` write the checkpoint it holds for ``path``; return its sha256, or
        raise ``CheckpointError`` saying why it could not."""
        raise CheckpointError(f"this executor holds no checkpoints in memory (asked for {path})")

    def drop(self, worker: str, path: str) -> None:  # noqa: B027 - nothing held by default
        """Let ``worker`` forget the checkpoint it holds for ``path``."""

    def reads_held(self, segment: Segment) -> bool:
        """Whether ``segment``, whose source a worker holds in memory, would run on that worker
        if submitted now, reading its source from that worker's memory, whichever member the
        source is of (so it need not be written out first): when that worker is ``idle``."""
        holder = segment.source.holder if segment.source is not None else ""
        return bool(holder) and self.idle(holder)
