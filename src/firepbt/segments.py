"""Segments: the unit of work, and the types the two sides of the engine send each other.
"Advance member m from checkpoint c with hyperparameters h from step a to step b, evaluating
every j steps" → a new checkpoint and curve points. The controller side (``firepbt.control``)
makes segments and reads their results; the worker side (``firepbt.execution``) runs them
(``firepbt.execution.worker.run_segment``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from firepbt.checkpoints import CheckpointRef
from firepbt.errors import FailureKind
from firepbt.space import Hyperparameters
from firepbt.trainable import Trainable


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of training to run on a worker."""

    id: int
    member: int
    seed: int
    start_step: int
    end_step: int
    eval_every: int
    hyperparameters: Hyperparameters
    source: CheckpointRef | None  # None: build from scratch
    checkpoint_path: str
    trainable: type[Trainable]
    metric: str | None = None
    attempt: int = 0
    isolated: bool = False  # run alone: it was on a worker process that died
    repair: bool = False  # a re-run that rewrites a lost checkpoint (nothing else recorded)
    persist: bool = True  # write the checkpoint to disk; otherwise hold it in the worker's memory
    prelude: tuple[Segment, ...] = ()  # a repair runs these first, from ``source``
    # The strategy's work for the worker once the segment has trained (``Strategy.segment_work``):
    # called with the segment's (step, score) points, each score negated when ``negate``.
    after: Callable[[tuple[tuple[int, float], ...]], object] | None = None
    negate: bool = False
    budget: int = 0  # the run's total steps (``Trainable.total_steps``)


@dataclass(frozen=True, slots=True)
class Point:
    """One evaluation: the selection score and every metric the trainable returned."""

    step: int
    score: float
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a segment did not finish."""

    kind: FailureKind
    message: str
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class SegmentResult:
    segment: Segment
    points: tuple[Point, ...] = ()
    checkpoint: CheckpointRef | None = None
    checkpoint_bytes: int = 0
    failure: Failure | None = None
    worker: str = ""
    started: float = 0.0
    finished: float = 0.0
    reused_trainable: bool = field(default=False)
    after: object = None  # what ``segment.after`` returned; None if nothing (or it failed)
    unused: tuple[str, ...] = ()  # after a member's first segment: space names nobody read
    notices: tuple[str, ...] = ()  # after a member's first segment: the trainable's warnings
