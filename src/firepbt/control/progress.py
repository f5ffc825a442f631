"""Progress: what a run has done so far, as a snapshot for progress displays."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

from firepbt.decisions import Mode
from firepbt.errors import TextEnum
from firepbt.execution.base import Executor
from firepbt.store import Store
from firepbt.strategies import Strategy


class Phase(TextEnum):
    """Where a run is: its worker processes start, they train and nothing has finished yet, or
    segments have finished."""

    STARTING = "starting workers"
    FIRST_SEGMENTS = "first segments"
    RUNNING = "running"


@dataclass(frozen=True, slots=True)
class RunProgress:
    """A snapshot for progress displays."""

    steps_done: int  # worker-steps of finished segments
    mean_step: float
    total_steps: int
    best_score: float  # the top score any population member has reported so far (not evaluators)
    exploits: int
    failures: int
    members: int
    # "starting workers" (worker processes start), "first segments" (they train, nothing has
    # finished yet), then "running"
    phase: str = Phase.RUNNING


class ProgressTracker:
    """Counts what a run did (worker-steps, exploits, failures, the best score) and hands a
    ``RunProgress`` to ``on_progress``. FIRE PBT's evaluators are workers, not population
    members: their scores and steps are left out."""

    def __init__(
        self,
        strategy: Strategy,
        total_steps: int,
        mode: Mode,
        evaluators: Collection[int],
        on_progress: Callable[[RunProgress], None] | None,
        phase: Phase,
    ) -> None:
        self.strategy = strategy
        self.total_steps = total_steps
        self.mode = mode
        self.evaluators = evaluators
        self.on_progress = on_progress
        self.phase = phase
        self.steps_done = 0
        self.exploits = 0
        self.failures = 0
        self._best = -math.inf  # oriented: higher is better

    def scored(self, member: int, score: float) -> None:
        """``member`` reported ``score`` (oriented: higher is better)."""
        if math.isfinite(score) and member not in self.evaluators:
            self._best = max(self._best, score)

    def workers_started(self) -> None:
        if self.phase is Phase.STARTING:
            self.phase = Phase.FIRST_SEGMENTS
            self.show()

    def show(self) -> None:
        if self.on_progress is None:
            return
        states = [s for m, s in self.strategy.members.items() if m not in self.evaluators]
        live = [s for s in states if s.alive]
        mean_step = sum(s.step for s in live) / len(live) if live else 0.0
        best = self.mode.orient(self._best) if math.isfinite(self._best) else math.nan
        self.on_progress(
            RunProgress(
                self.steps_done,
                mean_step,
                self.total_steps,
                best,
                self.exploits,
                self.failures,
                len(states),
                self.phase,
            )
        )


class TrainingNow:
    """Workers (members and evaluators) with a segment on the executor, and which of them
    train now, as last written to the store's meta "running" for ``firepbt status`` (the others
    wait in the queue)."""

    def __init__(self, executor: Executor, store: Store) -> None:
        self.executor, self.store = executor, store
        self.members: set[int] = set()  # with a segment on the executor
        self._published: frozenset[int] | None = None

    def publish(self) -> None:
        """Write which members train now (on the executor and, where it can tell, not waiting
        there for a worker), when that changed."""
        training = self.executor.running()
        now = frozenset(self.members if training is None else training & self.members)
        if now != self._published:
            self.store.set_meta("running", ",".join(map(str, sorted(now))))
            self._published = now
