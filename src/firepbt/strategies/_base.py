"""The strategy contract: pure decision logic over events, no I/O, no clock, no processes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from firepbt.decisions import Decision, Weights
from firepbt.space import Hyperparameters


@dataclass(slots=True)
class MemberState:
    """What a strategy knows of one member."""

    hyperparameters: Hyperparameters
    step: int
    weights: Weights
    scores: list[float] = field(default_factory=list)  # oriented: higher is better
    alive: bool = True
    finished: bool = False


class Strategy(ABC):
    """Turns events into decisions.

    The runner calls ``start`` once, then for every curve point ``report(member, step, score)``
    (scores oriented so that higher is better) and, when a member's segment ends at its ready
    step, ``ready(member, step)``; ``failed(member, step)`` when a member cannot go on. Each call
    that returns decisions returns them as data for the runner to record and carry out.
    """

    @abstractmethod
    def start(self) -> list[Decision]:
        """Create the population."""

    @abstractmethod
    def report(self, member: int, step: int, score: float) -> None:
        """A curve point of ``member`` (higher is better)."""

    @abstractmethod
    def ready(self, member: int, step: int) -> list[Decision]:
        """``member`` finished its segment at ``step``; decide what happens next."""

    @abstractmethod
    def failed(self, member: int, step: int) -> list[Decision]:
        """``member`` failed for good; it leaves the population."""

    @property
    @abstractmethod
    def members(self) -> dict[int, MemberState]:
        """The population as the strategy sees it."""

    def done(self) -> bool:
        """True when no member will train again."""
        return all(m.finished or not m.alive for m in self.members.values())

    # Modules ``segment_work`` needs in a worker: an executor may import them once for all its
    # workers (``Executor.preload``).
    worker_modules: tuple[str, ...] = ()

    def segment_work(self, member: int) -> Callable[[tuple[tuple[int, float], ...]], object] | None:
        """Work for the worker that trains ``member``'s next segment to do once it has trained:
        called there with the segment's ``(step, score)`` points (oriented as for ``report``); what
        it returns comes back to ``take_work``. For work the strategy would otherwise do itself
        while workers wait (FIRE PBT fits the curves it will judge); it must change no decision,
        since an executor may skip it. None: no work (the default)."""
        return None

    def take_work(self, member: int, done: object) -> None:
        """What ``segment_work`` returned for ``member``'s segment, before that segment's
        ``ready``."""
        return None
