"""The runner owns the loop: it turns decisions into segments, runs them on an executor, records
every event in the store before acting on it, and keeps each checkpoint until nobody needs it.

On an executor whose workers hold checkpoints in memory, a segment writes its checkpoint to disk
only when one is due: when it crosses a multiple of ``checkpoint_every`` steps, or at the end of
the budget. In between, a member that continues on the worker holding its weights goes on from
memory; weights another worker must read (an exploit's donor, an evaluator's parent) are written
out first. Every checkpoint remembers how to make it again (``_Origin``): the last checkpoint on
disk it descends from and the segments since, so a held checkpoint lost with its worker, or a
corrupted file, is trained again instead of failing the member.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from firepbt.callbacks import Callback, Dispatcher, MemberFailure, MemberPoint, RunStart
from firepbt.checkpoints import CheckpointRef
from firepbt.decisions import (
    Assign,
    Continue,
    Decision,
    Exploit,
    Finish,
    Handover,
    Mode,
    Release,
    Start,
    record_of,
)
from firepbt.errors import (
    HOPELESS,
    CheckpointError,
    FailureKind,
    ResumeError,
    RunFailed,
    WarningKind,
)
from firepbt.execution.base import Executor
from firepbt.segments import Failure, Segment, SegmentResult
from firepbt.store import Store, as_stored
from firepbt.strategies import Strategy
from firepbt.trainable import Trainable


@dataclass(frozen=True, slots=True)
class _Origin:
    """How a checkpoint was made: ``chain`` run in order from ``anchor`` (a checkpoint written to
    disk when it was made; None: from scratch)."""

    anchor: CheckpointRef | None
    chain: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Progress:
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
    phase: str = "running"


STARTING, FIRST_SEGMENTS, RUNNING = "starting workers", "first segments", "running"
# times a queued segment whose source a busy worker holds may be passed over by later segments
# that need nothing written out, before its source is written out for it
DEFER_LIMIT = 4
AS_IS, REWRITTEN, FLUSH = "as is", "rewritten", "flush"  # how a segment gets its source


class Runner:
    """Runs a strategy to completion on an executor, writing everything to a store.

    ``callbacks`` (see ``firepbt.callbacks``) hear of each point, decision and failure as it is
    recorded; a resume replays the recorded events without calling them again."""

    def __init__(
        self,
        strategy: Strategy,
        executor: Executor,
        store: Store,
        trainable: type[Trainable],
        *,
        run_dir: Path,
        total_steps: int,
        eval_every: int,
        mode: Mode = Mode.MAX,
        metric: str | None = None,
        max_retries: int = 2,
        checkpoint_every: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.strategy = strategy
        self.executor = executor
        self.store = store
        self.trainable = trainable
        self.run_dir = Path(run_dir)
        self.total_steps = total_steps
        self.eval_every = eval_every
        self.mode = mode
        self.metric = metric
        self.max_retries = max_retries
        # Steps between checkpoints written to disk (per member; by default a fifth of the budget,
        # the most a crash makes a member train again); every segment's without workers that
        # hold checkpoints in memory.
        every = checkpoint_every or max(1, total_steps // 5)
        self.checkpoint_every = every if executor.holds_state else 1
        self.on_progress = on_progress
        self._queue: deque[Segment] = deque()
        self._seeds: dict[int, int] = {}
        self._current: dict[int, CheckpointRef] = {}  # where each member's weights live
        self._written: dict[tuple[int, int], CheckpointRef] = {}  # latest file of (member, step)
        self._refs: Counter[str] = Counter()  # checkpoint path -> members and segments needing it
        # How each checkpoint can be made again (its anchor is kept until a checkpoint written
        # to disk has been read once; a held one keeps it while it lives), the worker holding
        # each held checkpoint, and the files written since (flushed, or trained again).
        self._origins: dict[str, _Origin] = {}
        self._holders: dict[str, str] = {}
        self._rewritten: dict[str, CheckpointRef] = {}
        self._deferred: dict[int, int] = {}  # queued segment id -> _submit calls it waited in
        self._passed_over: set[int] = set()  # ids passed over in this _submit call
        self._awaiting: dict[str, list[Segment]] = {}  # lost path -> segments waiting on it
        self._repair_tried: set[str] = set()
        self._steps_done = 0
        self._replaying = False
        self._recorded_decisions: list[Any] = []
        self._recorded_segments: list[Any] = []
        self._decision_cursor = 0
        self._segment_cursor = 0
        self._isolated_running = False
        self._exploits = 0
        self._failures = 0
        self._best = -math.inf
        # FIRE PBT's evaluators are workers, not population members: the progress line leaves
        # their scores and steps out.
        self._evaluators = frozenset(getattr(strategy, "evaluator_ids", ()))
        # Workers (members and evaluators) with a segment on an executor, as last written to
        # the store's meta "running" for `firepbt status` (the others wait in the queue).
        self._on_executor: set[int] = set()
        self._published: frozenset[int] | None = None
        self._phase = STARTING if executor.reports_started else FIRST_SEGMENTS
        executor.on_started = self._workers_started
        executor.preload(strategy.worker_modules)
        self._callbacks = Dispatcher(callbacks, self._callback_failed)

    # -- the loop ---------------------------------------------------------------------------

    def run(self, resume: bool = False) -> None:
        """Run to the end; with ``resume``, first rebuild the state a killed run had reached."""
        status = "error"
        try:
            if self._callbacks:
                config = self.store.config()
                created = self.store.meta("created") or ""
                start = RunStart(self.run_dir, config, resume, self._evaluators, created)
                self._callbacks.start(start)
            self._run(resume)
            status = "finished"
        except RunFailed:
            status = "failed"
            raise
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self._callbacks.end(status)

    def _run(self, resume: bool) -> None:
        if resume:
            self._restore()
        else:
            self._apply(self.strategy.start())
        self._publish_running()  # nothing is on a worker yet: every member waits
        self._progress()  # the phase, before anything runs
        try:
            while self._queue or self.executor.pending():
                self._submit()
                results = self.executor.wait()
                if self.executor.concurrent and all(r.failure is None for r in results):
                    # Workers that just finished take the segments already queued before their
                    # results are recorded: recording takes about as long as a cheap segment,
                    # and a queued segment never depends on a result that arrives after it was
                    # queued. (A failure may put a retry or a repair first: it waits.)
                    self._on_executor.difference_update(r.segment.member for r in results)
                    self._submit()
                with self.store.batch():
                    for result in results:
                        self._complete(result)
        finally:
            self.executor.shutdown()
            self._on_executor.clear()
            self._publish_running()
        # Population members only: FIRE's evaluators never fail for a member that cannot run.
        states = [s for m, s in self.strategy.members.items() if m not in self._evaluators]
        if states and all(not s.alive for s in states):
            self.store.set_meta("status", "failed")
            failures = [f for f in self.store.failures() if f[0] not in self._evaluators]
            member, step, kind, message = (failures or self.store.failures())[-1]
            raise RunFailed(
                f"every member failed. The last failure: member {member} at step {step} "
                f"[{kind}] {message}. Every failure is recorded in {self.store.path} "
                f"(firepbt status {self.run_dir})."
            )
        self.store.set_meta("status", "finished")

    # -- resume -----------------------------------------------------------------------------

    def _restore(self) -> None:
        """Replay the recorded results, in the order the strategy saw them, into a fresh strategy
        built from the same config and seed. It makes the same decisions (every random choice
        comes from the seeded generator), which are checked against the recorded ones; finished
        segments are not run again, and segments that were queued or running are."""
        self._recorded_decisions = self.store.decisions()
        self._recorded_segments = self.store.segments()
        self._replaying = True
        self._apply(self.strategy.start())
        for kind, seg_id in self.store.events():
            checkpoint = self.store.checkpoint_ref(seg_id)
            if kind == "written":  # a held checkpoint written out (or one trained again)
                assert checkpoint is not None
                self._rewritten[checkpoint.path] = replace(checkpoint, holder="")
                continue
            segment = self._take_queued(seg_id)
            if kind == "done":
                if checkpoint is None:
                    raise ResumeError(f"segment {seg_id} is recorded done but has no checkpoint")
                # held or not as it was made (the store says; a checkpoint written out later has
                # a 'written' event of its own, and stores from before held checkpoints hold none)
                points = tuple(self.store.segment_points(seg_id))
                self._complete(SegmentResult(segment, points, checkpoint))
            else:
                self._failed(
                    SegmentResult(segment, failure=Failure(FailureKind.REPLAYED, "")), final=True
                )
        self._replaying = False
        if self._decision_cursor != len(self._recorded_decisions):
            raise ResumeError(
                f"{len(self._recorded_decisions) - self._decision_cursor} recorded decisions were "
                "not made again by the replay; the store and the strategy disagree"
            )

    def _take_queued(self, seg_id: int) -> Segment:
        for segment in self._queue:
            if segment.id == seg_id:
                self._queue.remove(segment)
                return segment
        raise ResumeError(f"the replay never queued segment {seg_id}, which the store records")

    def _replayed(self, recorded: list[Any], cursor: str, differs: Callable[[Any], str]) -> Any:
        """While replaying, the next recorded row (``differs`` names how the replay's choice
        differs from it, or returns ""), or None once the replay has gone past what was recorded
        before the kill."""
        position = getattr(self, cursor)
        if not self._replaying or position >= len(recorded):
            return None
        row = recorded[position]
        difference = differs(row)
        if difference:
            raise ResumeError(
                f"the replay made a different choice than the recorded run: {difference}; "
                "was the config, the code or the trainable changed?"
            )
        setattr(self, cursor, position + 1)
        return row

    def _submit(self) -> None:
        """Fill free workers. A segment that was on a worker process when it died runs alone, so
        that a second death tells which segment kills its worker."""
        while self._queue and self.executor.pending() < self.executor.capacity:
            if self._isolated_running:
                return
            if self._queue[0].isolated and self.executor.pending() > 0:
                return
            segment = self._placed(self._next())
            if segment is None:
                continue
            self.executor.submit(segment)
            self._on_executor.add(segment.member)
            self._isolated_running = segment.isolated
        self._count_waits()
        self._publish_running()

    def _count_waits(self) -> None:
        """Count one more ``_submit`` call for each queued segment passed over in this one,
        however many went ahead of it; forget segments no longer queued."""
        if self._passed_over or self._deferred:
            queued = {s.id for s in self._queue}
            self._deferred = {i: n for i, n in self._deferred.items() if i in queued}
            for waiting in self._passed_over & queued:
                self._deferred[waiting] = self._deferred.get(waiting, 0) + 1
            self._passed_over.clear()

    def _publish_running(self) -> None:
        """Write which members train now (on the executor and, where it can tell, not waiting
        there for a worker), when that changed."""
        training = self.executor.running()
        now = frozenset(self._on_executor if training is None else training & self._on_executor)
        if now != self._published:
            self.store.set_meta("running", ",".join(map(str, sorted(now))))
            self._published = now

    def _next(self) -> Segment:
        """The first queued segment that continues a member on the idle worker holding it in
        memory; otherwise the first one whose source need not be written out first (one whose
        holder is busy would have the controller wait for that worker to write it), unless it
        has been passed over in ``DEFER_LIMIT`` calls of ``_submit`` already; otherwise the first
        one. A segment that must run alone is taken only when it is first."""
        chosen = self._queue[0]
        if not chosen.isolated:
            in_memory = next(
                (s for s in self._queue if not s.isolated and self._continues_in_memory(s)), None
            )
            if in_memory is not None:
                chosen = in_memory
            else:
                chosen = next(
                    (
                        s
                        for s in self._queue
                        if not s.isolated
                        and (self._deferred.get(s.id, 0) >= DEFER_LIMIT or self._route(s) != FLUSH)
                    ),
                    chosen,
                )
                for ahead in self._queue:
                    if ahead is chosen:
                        break
                    self._passed_over.add(ahead.id)
        self._queue.remove(chosen)
        self._deferred.pop(chosen.id, None)
        self._passed_over.discard(chosen.id)
        return chosen

    def _route(self, segment: Segment) -> str:
        """How ``segment`` gets its source: ``AS_IS`` (none, on disk, or read from the memory of
        the idle worker holding it), ``REWRITTEN`` (written out since it was queued) or
        ``FLUSH`` (its holder, busy or gone, must write it out first)."""
        source = segment.source
        if source is None or self._continues_in_memory(segment) or self._reads_held(segment):
            return AS_IS
        if source.path in self._rewritten:
            return REWRITTEN
        return FLUSH if source.holder else AS_IS

    def _continues_in_memory(self, segment: Segment) -> bool:
        source = segment.source
        return (
            source is not None
            and bool(source.holder)
            and source.member == segment.member
            and not segment.repair
            and source.path not in self._repair_tried  # lost there once: read the new file
            and self.executor.idle(source.holder)
        )

    def _reads_held(self, segment: Segment) -> bool:
        """Whether the executor runs ``segment`` on the idle worker holding its source (another
        member's: an exploit on a vectorised worker copies it slot to slot)."""
        source = segment.source
        return (
            source is not None
            and bool(source.holder)
            and not segment.repair
            and source.path not in self._repair_tried
            and source.path not in self._rewritten
            and self.executor.reads_held(segment)
        )

    def _placed(self, segment: Segment) -> Segment | None:
        """``segment`` with a source a worker can read: written to disk first when another
        worker is to read it (None: it is lost and waits to be trained again)."""
        source = segment.source
        route = self._route(segment)
        if route == AS_IS:
            return segment
        assert source is not None
        if route == REWRITTEN:
            return replace(segment, source=self._rewritten[source.path])
        try:
            sha = self.executor.flush(source.holder, source.path)
        except CheckpointError as e:
            self._failed(
                SegmentResult(segment, failure=Failure(FailureKind.SOURCE_UNREADABLE, str(e)))
            )
            return None
        written = replace(source, holder="", sha256=sha)
        self._rewritten[source.path] = written
        self.store.checkpoint_flushed(written)
        return replace(segment, source=written)

    # -- decisions -> segments --------------------------------------------------------------

    def _apply(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if (
                self._replayed(
                    self._recorded_decisions, "_decision_cursor", partial(_decision_differs, d)
                )
                is None
            ):
                self.store.record_decision(d)
                self.store.after_commit(partial(self._callbacks.decision, d))
            if isinstance(d, Start):
                self._seeds[d.member] = d.seed
                self._enqueue(d.member, 0, d.until, d.hyperparameters, None)
            elif isinstance(d, Continue):
                h = self.strategy.members[d.member].hyperparameters
                self._enqueue(d.member, d.step, d.until, h, self._current[d.member])
            elif isinstance(d, (Exploit, Assign, Handover)):
                # The worker takes weights saved by another (or by itself, explore-only).
                if isinstance(d, Exploit):
                    self._exploits += d.donor != d.member
                if isinstance(d, Assign):
                    self._seeds[d.member] = d.seed
                source = self._written[(d.source.member, d.source.step)]
                self._set_current(d.member, source)
                if isinstance(d, Exploit) and d.until <= d.source.step:
                    continue  # a finished donor's weights: the member finishes (a Finish follows)
                self._enqueue(d.member, d.source.step, d.until, d.hyperparameters, source)
            elif isinstance(d, Release):
                self._release(self._current.pop(d.member, None))
            elif isinstance(d, Finish):
                # Its final checkpoint (on disk: the budget's end is due) is not trained from
                # again: what it was trained from may go.
                current = self._current.get(d.member)
                if current is not None and self._on_disk(current):
                    self._forget_origin(current.path)

    def _enqueue(
        self, member: int, start: int, end: int, h: dict[str, object], source: CheckpointRef | None
    ) -> None:
        recorded = self._replayed(
            self._recorded_segments,
            "_segment_cursor",
            lambda row: (
                ""
                if (row.member, row.start_step, row.end_step) == (member, start, end)
                else f"segment {row.id} recorded as member {row.member} from step "
                f"{row.start_step} to {row.end_step}, replayed as member {member} from {start} "
                f"to {end}"
            ),
        )
        seg_id = (
            recorded.id
            if recorded is not None
            else self.store.add_segment(
                member,
                start,
                end,
                h,
                source.segment if source else None,
                source.path if source else None,
            )
        )
        path = (
            self.run_dir
            / "checkpoints"
            / f"member-{member:04d}"
            / f"step-{end:08d}-seg-{seg_id}.ckpt"
        )
        if source is not None:
            self._refs[source.path] += 1
        self._queue.append(
            Segment(
                id=seg_id,
                member=member,
                seed=self._seeds[member],
                start_step=start,
                end_step=end,
                eval_every=self.eval_every,
                hyperparameters=dict(h),
                source=source,
                checkpoint_path=str(path),
                trainable=self.trainable,
                metric=self.metric,
                persist=self._due(start, end),
                after=None if self._replaying else self.strategy.segment_work(member),
                negate=self.mode is Mode.MIN,
            )
        )

    def _due(self, start: int, end: int) -> bool:
        """Whether a segment from ``start`` to ``end`` writes its checkpoint to disk."""
        every = self.checkpoint_every
        return end >= self.total_steps or end // every > start // every

    # -- results ----------------------------------------------------------------------------

    def _complete(self, r: SegmentResult) -> None:
        seg = r.segment
        self._on_executor.discard(seg.member)
        if seg.isolated:
            self._isolated_running = False
        if r.failure is not None and r.failure.kind == FailureKind.UNSTARTED:
            self._queue.appendleft(seg)  # handed back by a worker that stopped: no failure
            return
        if seg.repair:
            self._repaired(r)
            return
        if r.failure is not None:
            self._failed(r)
            return
        assert r.checkpoint is not None
        if not self._replaying:
            self.store.segment_done(r)
        self._steps_done += seg.end_step - seg.start_step
        for p in r.points:
            if not math.isfinite(p.score) and not self._replaying:
                self.store.record_warning(
                    seg.member,
                    seg.id,
                    p.step,
                    WarningKind.NAN_METRIC,
                    f"member {seg.member} reported a non-finite score ({p.score}) at step "
                    f"{p.step}; it ranks worst",
                )
            if not self._replaying:
                point = MemberPoint(
                    seg.member,
                    p.step,
                    p.score,
                    p.metrics,
                    seg.hyperparameters,
                    seg.id,
                    seg.member in self._evaluators,
                )
                self.store.after_commit(partial(self._callbacks.point, point))
            score = self.mode.orient(p.score)
            self.strategy.report(seg.member, p.step, score)
            if math.isfinite(score) and seg.member not in self._evaluators:
                self._best = max(self._best, score)
        if r.after is not None:
            self.strategy.take_work(seg.member, r.after)
        self._written[(seg.member, seg.end_step)] = r.checkpoint
        self._remember_origin(seg, r.checkpoint)
        self._set_current(seg.member, r.checkpoint)
        self._apply(self.strategy.ready(seg.member, seg.end_step))
        self._release(seg.source)
        self._phase = RUNNING
        self.store.after_commit(self._progress)  # a progress callable may read the store

    def _remember_origin(self, seg: Segment, checkpoint: CheckpointRef) -> None:
        if checkpoint.holder:
            self._holders[checkpoint.path] = checkpoint.holder
        source = seg.source
        parent = self._origins.get(source.path) if source is not None else None
        if source is None:
            origin = _Origin(None, (seg,))
        elif parent is None or self._on_disk(source):
            origin = _Origin(self._rewritten.get(source.path, source), (seg,))
            # The source file was read without trouble, so what it was trained from may go; the
            # new checkpoint keeps the source until it is read in turn.
            self._forget_origin(source.path)
        else:  # trained from a held checkpoint: one segment further from the last file on disk
            origin = _Origin(parent.anchor, (*parent.chain, seg))
            for i in range(len(origin.chain) - 1, -1, -1):
                written = self._rewritten.get(origin.chain[i].checkpoint_path)
                if written is not None:  # written out since
                    origin = _Origin(written, origin.chain[i + 1 :])
                    break
        if origin.anchor is not None:
            self._refs[origin.anchor.path] += 1
        self._origins[checkpoint.path] = origin

    def _on_disk(self, ref: CheckpointRef) -> bool:
        """Whether a checkpoint's file is written: by its segment, or since (out of a worker's
        memory, or trained again)."""
        return not ref.holder or ref.path in self._rewritten

    def _forget_origin(self, path: str) -> None:
        origin = self._origins.pop(path, None)
        if origin is not None:
            self._release(origin.anchor)

    def _failed(self, r: SegmentResult, final: bool = False) -> None:
        seg, failure = r.segment, r.failure
        assert failure is not None
        self._failures += 1
        if final:  # replaying a failure that was already recorded as final
            self._apply(self.strategy.failed(seg.member, seg.start_step))
            self._release(seg.source)
            return
        if (
            failure.kind == FailureKind.INTERRUPTED
        ):  # stopped for another segment's sake: run it again
            self._record_failure(r, final=False)
            self._queue.appendleft(seg)
            return
        if failure.kind == FailureKind.WORKER_DIED and not seg.isolated:
            # It may be a bystander of another segment's crash: re-run it alone, free of charge.
            self._record_failure(r, final=False)
            self._queue.appendleft(replace(seg, isolated=True))
            return
        if failure.kind == FailureKind.SOURCE_UNREADABLE and self._repair(seg):
            self._record_failure(r, final=False)
            return
        if failure.kind == FailureKind.UNLOADABLE:  # no worker could load any segment: stop at once
            self._record_failure(r, final=True)
            self.store.set_meta("status", "failed")
            raise RunFailed(
                f"member {seg.member} at step {seg.start_step}: {failure.message}. Every "
                "segment names the trainable by module and class, and the worker processes "
                "import it from there: is its module importable outside this process?"
            )
        # A source that cannot be repaired would fail the same way again.
        hopeless = failure.kind in HOPELESS
        final = seg.attempt >= self.max_retries or hopeless
        self._record_failure(r, final)
        if not final:
            self._queue.append(replace(seg, attempt=seg.attempt + 1))
            return
        decisions = self.strategy.failed(seg.member, seg.start_step)
        self._apply(decisions)
        self._release(seg.source)
        self._phase = RUNNING
        self.store.after_commit(self._progress)

    def _record_failure(self, r: SegmentResult, final: bool) -> None:
        seg, failure = r.segment, r.failure
        assert failure is not None
        self.store.segment_failed(r, final)
        failed = MemberFailure(
            seg.member,
            seg.start_step,
            seg.id,
            failure.kind,
            failure.message,
            final,
            seg.member in self._evaluators,
        )
        self.store.after_commit(partial(self._callbacks.failure, failed))

    def _callback_failed(self, member: int, segment: int | None, step: int, message: str) -> None:
        self.store.record_warning(member, segment, step, WarningKind.CALLBACK, message)

    # -- repairing corrupted checkpoints ----------------------------------------------------

    def _repair(self, seg: Segment) -> bool:
        """``seg``'s source is lost (held by a worker that is gone), missing or corrupted: queue
        the segments that made it, run again from its anchor on disk (same hyperparameters,
        seeds and steps) and written out, and let ``seg`` wait for them. False when it cannot
        be repaired: tried already, or its anchor was released once it had been read."""
        assert seg.source is not None
        path = seg.source.path
        if path in self._awaiting:
            self._awaiting[path].append(seg)
            return True
        origin = self._origins.get(path)
        if origin is None or path in self._repair_tried:
            return False
        self._repair_tried.add(path)
        self._awaiting[path] = [seg]
        if origin.anchor is not None:
            self._refs[origin.anchor.path] += 1
        *prelude, last = origin.chain
        repair = replace(
            last,
            source=origin.anchor,
            prelude=tuple(prelude),
            attempt=0,
            isolated=False,
            repair=True,
            persist=True,
        )
        self._queue.appendleft(repair)
        return True

    def _repaired(self, r: SegmentResult) -> None:
        seg = r.segment
        path = seg.checkpoint_path
        failure = r.failure
        if (
            failure is not None and failure.kind not in HOPELESS and seg.attempt < self.max_retries
        ):  # a worker died under it, say: try again, the waiting segments still waiting
            self._queue.appendleft(replace(seg, attempt=seg.attempt + 1))
            return
        waiting = self._awaiting.pop(path, [])
        self._release(seg.source)
        if r.failure is None and r.checkpoint is not None:
            self._rewritten[path] = r.checkpoint
            self.store.checkpoint_rewritten(r.checkpoint, r.checkpoint_bytes)
            start = (seg.prelude or (seg,))[0].start_step
            self.store.record_warning(
                seg.member,
                seg.id,
                seg.end_step,
                WarningKind.REPAIRED,
                f"checkpoint {path} was lost or unreadable; it was trained again from step "
                f"{start} with the same hyperparameters and seeds",
            )
            for s in waiting:
                self._queue.appendleft(replace(s, attempt=s.attempt + 1))
            return
        message = f"its source {path} is unreadable and could not be trained again"
        if r.failure is not None:
            message += f" ({r.failure.kind}: {r.failure.message})"
        for s in waiting:
            self._failed(SegmentResult(s, failure=Failure(FailureKind.SOURCE_UNREADABLE, message)))

    # -- checkpoint references --------------------------------------------------------------

    def _set_current(self, member: int, ref: CheckpointRef) -> None:
        old = self._current.get(member)
        self._current[member] = ref
        self._refs[ref.path] += 1
        self._release(old)

    def _release(self, ref: CheckpointRef | None) -> None:
        if ref is None:
            return
        self._refs[ref.path] -= 1
        if self._refs[ref.path] <= 0:
            del self._refs[ref.path]
            written = self._written.get((ref.member, ref.step))
            if written is not None and written.path == ref.path:
                del self._written[(ref.member, ref.step)]
            self._rewritten.pop(ref.path, None)
            self._forget_origin(ref.path)
            holder = self._holders.pop(ref.path, None)
            if holder is not None:
                self.executor.drop(holder, ref.path)
            self.store.checkpoint_deleted(ref.path)
            # Deleted once the store's record of it is committed: a run killed before then
            # resumes from a store whose checkpoints all still exist.
            self.store.after_commit(partial(Path(ref.path).unlink, missing_ok=True))

    def current_checkpoints(self) -> dict[int, CheckpointRef]:
        return dict(self._current)

    def _workers_started(self) -> None:
        if self._phase == STARTING:
            self._phase = FIRST_SEGMENTS
            self._progress()

    def _progress(self) -> None:
        if self.on_progress is None:
            return
        states = [s for m, s in self.strategy.members.items() if m not in self._evaluators]
        live = [s for s in states if s.alive]
        mean_step = sum(s.step for s in live) / len(live) if live else 0.0
        best = self.mode.orient(self._best) if math.isfinite(self._best) else math.nan
        self.on_progress(
            Progress(
                self._steps_done,
                mean_step,
                self.total_steps,
                best,
                self._exploits,
                self._failures,
                len(states),
                self._phase,
            )
        )


def _decision_differs(d: Decision, row: Any) -> str:
    """How decision ``d`` differs from the recorded ``row`` (member, step, kind, donor, source
    step, hyperparameters), or "" when it is the same decision."""
    r = record_of(d)
    h = None if r.hyperparameters is None else as_stored(r.hyperparameters)
    replayed = (r.member, r.step, r.kind, r.donor, r.source_step, h)
    recorded = (row.member, row.step, row.kind, row.donor, row.source_step, row.hyperparameters)
    if replayed == recorded:
        return ""
    names = ("member", "step", "kind", "donor", "source step", "hyperparameters")
    diffs = [
        f"{n} {b!r} (recorded {a!r})"
        for n, a, b in zip(names, recorded, replayed, strict=True)
        if a != b
    ]
    return (
        f"decision {row.id} ({row.kind} of member {row.member} at step {row.step}): replayed "
        + ", ".join(diffs)
    )
