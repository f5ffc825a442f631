"""A vectorised worker's side: run a batch of segments on one population of slots.

A worker of :class:`~firepbt.execution.vectorised_pool.VectorisedPoolExecutor` hosts one
:class:`~firepbt.vectorised.VectorisedTrainable` and receives its segments in batches (at most
one per slot). ``SlotWorker.run`` maps each segment to a slot:

- *continue*: a slot whose state is exactly the segment's source, of the same member, trains on;
- *copy*: a source held by another slot of this worker (an exploit, an evaluator taking a parent's
  weights, a hand-over) is copied slot to slot in memory: no checkpoint is read or unpickled;
- *load*: anything else is built fresh (``assign``) and loads the source from the bytes this
  worker holds or from the checkpoint file, as ``run_segment`` does.

Then it trains the slots in lock-step: every slot that still needs steps before its next
evaluation point trains in one ``train_slots`` call, the slots due are evaluated together, and
each finished segment saves its checkpoint (written to disk when the segment ``persist``\\ s,
held in this worker's memory otherwise, as on the ordinary path). Each segment gets the
``SegmentResult`` the ordinary path would record; ``reused_trainable`` says its member's state
came from a slot (continued or copied), not from a checkpoint.

A batched call that raises cannot tell which member raised: the segments it trained are run
again one by one from their sources, so that only the member that raises fails, with its own
traceback. A repair (a segment with a ``prelude``) runs on the ordinary path (``run_segment``
with the segment's ordinary trainable).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

from firepbt.checkpoints import dump_state
from firepbt.errors import CheckpointError, FailureKind, MetricError, SourceUnreadable
from firepbt.execution.logs import segment_started, with_own_tail
from firepbt.execution.worker import (
    extract_score,
    finished,
    keep_checkpoint,
    read_source,
    run_segment,
    worker_name,
)
from firepbt.segments import Failure, Point, Segment, SegmentResult
from firepbt.vectorised import VectorisedTrainable


@dataclass(slots=True)
class _Slotted:
    """A segment placed in a slot, on its way through the lock-step loop."""

    segment: Segment
    slot: int
    reused: bool
    step: int = 0
    target: int = 0  # the step of its next evaluation
    points: list[Point] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.step = self.segment.start_step
        self.target = self.step + min(self.segment.eval_every, self.segment.end_step - self.step)


def failure_of(e: BaseException) -> Failure:
    """The ``Failure`` the ordinary path (``run_segment``) records for an exception."""
    if isinstance(e, MetricError):
        return Failure(FailureKind.BAD_METRIC, str(e))
    if isinstance(e, SourceUnreadable):
        return Failure(FailureKind.SOURCE_UNREADABLE, str(e))
    if isinstance(e, CheckpointError):
        return Failure(FailureKind.CHECKPOINT, str(e))
    tb = traceback.format_exc()
    if isinstance(e, SystemExit):
        return Failure(
            FailureKind.RAISED, f"SystemExit({e.code!r}): the trainable called sys.exit()", tb
        )
    return Failure(FailureKind.RAISED, with_own_tail(f"{type(e).__name__}: {e}"), tb)


class SlotWorker:
    """One worker's population and what each slot holds; ``counts`` tallies how segments got
    their member's state (``continued``, ``copied``, ``loaded``: from held bytes or a file,
    ``fresh``), for tests and benchmarks."""

    def __init__(self) -> None:
        self.population: VectorisedTrainable | None = None
        self.at: dict[int, tuple[int, str]] = {}  # slot -> (member, checkpoint path it is at)
        self.counts = {"continued": 0, "copied": 0, "loaded": 0, "fresh": 0}
        self._results: dict[int, SegmentResult] = {}
        self._started = 0.0

    def run(
        self, cls: type[VectorisedTrainable], slots: int, segments: list[Segment]
    ) -> list[SegmentResult]:
        """Run ``segments`` (at most ``slots``, of different members) as one batch; one result
        per segment, in order. Never raises for a segment's sake."""
        if len(segments) > slots:
            raise ValueError(f"a batch of {len(segments)} segments for {slots} slots")
        self._started, self._results = time.time(), {}
        segment_started()
        batch = []
        for seg in segments:
            if seg.prelude or seg.repair:  # trained again from its anchor, on the ordinary path
                self._results[seg.id] = run_segment(seg)
            else:
                batch.append(seg)
        if batch:
            try:
                population = self._population(cls, slots, batch[0])
            except (Exception, SystemExit) as e:
                failure = failure_of(e)
                for seg in batch:
                    self._fail(seg, failure, [])
            else:
                self._train(population, self._place(population, batch))
        return [self._results[seg.id] for seg in segments]

    # -- the population ---------------------------------------------------------------------

    def _population(
        self, cls: type[VectorisedTrainable], slots: int, first: Segment
    ) -> VectorisedTrainable:
        current = self.population
        if current is None or type(current) is not cls or current.slots != slots:
            self.population, self.at = None, {}
            self.population = cls.build_population(slots, dict(first.hyperparameters))
        assert self.population is not None
        return self.population

    # -- placing segments in slots ----------------------------------------------------------

    def _place(self, population: VectorisedTrainable, batch: list[Segment]) -> list[_Slotted]:
        """Give each segment a slot holding its member's state at the segment's source."""
        by_path = {path: slot for slot, (_, path) in self.at.items()}
        placed: list[_Slotted] = []
        claimed: set[int] = set()
        rest = []
        for seg in batch:
            slot = by_path.get(seg.source.path) if seg.source is not None else None
            if slot is not None and self.at[slot][0] == seg.member and slot not in claimed:
                claimed.add(slot)
                placed.append(_Slotted(seg, slot, reused=True))
                self.counts["continued"] += 1
            else:
                rest.append(seg)
        read = {by_path[s.source.path] for s in rest if s.source and s.source.path in by_path}
        # free slots: unread ones first, empty ones before those holding an old state
        free = sorted(
            (s for s in range(population.slots) if s not in claimed),
            key=lambda s: (s in read, s in self.at, s),
        )
        copies: list[tuple[Segment, int, int]] = []
        loads: list[tuple[Segment, int]] = []
        for seg in rest:
            dst = free.pop(0)
            src = by_path.get(seg.source.path) if seg.source is not None else None
            if src is not None:
                copies.append((seg, src, dst))
            else:
                loads.append((seg, dst))
            self.at.pop(dst, None)  # overwritten below (after any copy that reads it)
        # Copy before a source slot is overwritten; a cycle (or a slot that is its own
        # destination) loads from bytes instead.
        while copies:
            sources = [src for _, src, _ in copies]
            for i, (seg, src, dst) in enumerate(copies):
                if dst != src and sources.count(dst) == 0:
                    del copies[i]
                    try:
                        population.assign(dst, dict(seg.hyperparameters), seg.seed)
                        population.copy(src, dst)
                    except (Exception, SystemExit) as e:
                        self._fail(seg, failure_of(e), [])
                    else:
                        placed.append(_Slotted(seg, dst, reused=True))
                        self.counts["copied"] += 1
                    break
            else:
                seg, _, dst = copies.pop(0)
                loads.append((seg, dst))
        for seg, dst in loads:
            try:
                self._load(population, seg, dst)
            except (Exception, SystemExit) as e:
                self._fail(seg, failure_of(e), [])
            else:
                placed.append(_Slotted(seg, dst, reused=False))
        for p in placed:
            self.at.pop(p.slot, None)  # its state moves on from here
        return placed

    def _load(self, population: VectorisedTrainable, seg: Segment, slot: int) -> None:
        """Build ``seg``'s member in ``slot`` from scratch and load its source, as
        ``run_segment`` does with the ordinary trainable."""
        population.assign(slot, dict(seg.hyperparameters), seg.seed)
        if seg.source is None:
            self.counts["fresh"] += 1
            return
        population.load(slot, read_source(seg.source).state)
        self.counts["loaded"] += 1

    # -- training in lock-step --------------------------------------------------------------

    def _train(self, population: VectorisedTrainable, placed: list[_Slotted]) -> None:
        """Train the placed segments together; a batched call that raises sends its segments
        through again one at a time, each from its source."""
        try:
            self._lockstep(population, placed)
        except (Exception, SystemExit) as e:
            unfinished = [p for p in placed if p.segment.id not in self._results]
            if len(placed) == 1:
                for p in unfinished:
                    self._fail(p.segment, failure_of(e), p.points)
                return
            for p in unfinished:
                self.at.pop(p.slot, None)
            for p in unfinished:
                try:
                    self._load(population, p.segment, p.slot)
                except (Exception, SystemExit) as again:
                    self._fail(p.segment, failure_of(again), [])
                    continue
                self._train(population, [_Slotted(p.segment, p.slot, reused=False)])

    def _lockstep(self, population: VectorisedTrainable, placed: list[_Slotted]) -> None:
        active = list(placed)
        for p in active:
            population.set_hyperparameters(p.slot, dict(p.segment.hyperparameters))
        while active:
            behind = [p for p in active if p.step < p.target]
            if behind and len(behind) == len(active):  # nobody is due: train up to the next
                steps = min(p.target - p.step for p in behind)
                population.train_slots(tuple(sorted(p.slot for p in behind)), steps)
                for p in behind:
                    p.step += steps
            due = [p for p in active if p.step == p.target]
            scores = population.evaluate(p.slot for p in due)
            for p in due:
                seg = p.segment
                try:
                    score, metrics = extract_score(scores[p.slot], seg.metric)
                except MetricError as e:
                    active.remove(p)
                    self._fail(seg, Failure(FailureKind.BAD_METRIC, str(e)), p.points)
                    continue
                p.points.append(Point(p.step, score, metrics))
                if p.step >= seg.end_step:
                    active.remove(p)
                    self._finish(population, p)
                else:
                    p.target = p.step + min(seg.eval_every, seg.end_step - p.step)

    def _finish(self, population: VectorisedTrainable, p: _Slotted) -> None:
        """Save a finished segment's checkpoint (to disk, or held) and record its result."""
        seg = p.segment
        try:
            data = dump_state(population.save(p.slot))
            sha = keep_checkpoint(seg, data)
        except (Exception, SystemExit) as e:
            self._fail(seg, failure_of(e), p.points)
            return
        self.at[p.slot] = (seg.member, seg.checkpoint_path)
        self._results[seg.id] = finished(seg, p.points, data, sha, self._started, p.reused)

    def _fail(self, seg: Segment, failure: Failure, points: list[Point]) -> None:
        self._results[seg.id] = SegmentResult(
            seg, tuple(points), None, 0, failure, worker_name(), self._started, time.time()
        )
