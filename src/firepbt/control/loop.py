"""The loop: it turns decisions into segments, runs them on an executor, records every event in
the store before acting on it, and turns results into reports to the strategy.

What it keeps is in rooms of their own: the checkpoint ledger (``ledger``: references, origins,
repairs), the segment queue (``queue``: what goes next, and how it gets its source), the
recorded run (``recorded``: a resume's replay, checked against the store) and progress
(``progress``). On an executor whose workers hold checkpoints in memory, a segment writes its
checkpoint to disk only when one is due: when it crosses a multiple of ``checkpoint_every``
steps, or at the end of the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from firepbt.callbacks import Callback, Dispatcher, MemberFailure, MemberPoint, RunStart
from firepbt.checkpoints import CheckpointRef
from firepbt.control.ledger import CheckpointLedger, Released
from firepbt.control.progress import Phase, ProgressTracker, RunProgress
from firepbt.control.queue import Route, SegmentQueue
from firepbt.control.recorded import RecordedRun
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
from firepbt.store import Store
from firepbt.strategies import Strategy
from firepbt.trainable import Trainable


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
        on_progress: Callable[[RunProgress], None] | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.strategy, self.executor, self.store = strategy, executor, store
        self.trainable = trainable
        self.run_dir = Path(run_dir)
        self.total_steps, self.eval_every = total_steps, eval_every
        self.mode, self.metric, self.max_retries = mode, metric, max_retries
        # Steps between checkpoints written to disk (per member; by default a fifth of the budget,
        # the most a crash makes a member train again); every segment's without workers that
        # hold checkpoints in memory.
        every = checkpoint_every or max(1, total_steps // 5)
        self.checkpoint_every = every if executor.holds_state else 1
        self.ledger = CheckpointLedger()
        self.queue = SegmentQueue(executor, self.ledger)
        self.recorded = RecordedRun()
        self._seeds: dict[int, int] = {}
        self._isolated_running = False
        # FIRE PBT's evaluators are workers, not population members.
        self._evaluators = frozenset(getattr(strategy, "evaluator_ids", ()))
        phase = Phase.STARTING if executor.reports_started else Phase.FIRST_SEGMENTS
        self.progress = ProgressTracker(
            strategy, total_steps, mode, self._evaluators, on_progress, phase
        )
        # Workers (members and evaluators) with a segment on an executor, as last written to
        # the store's meta "running" for `firepbt status` (the others wait in the queue).
        self._on_executor: set[int] = set()
        self._published: frozenset[int] | None = None
        executor.on_started = self.progress.workers_started
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
        self.progress.show()  # the phase, before anything runs
        try:
            while self.queue or self.executor.pending():
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

    def _restore(self) -> None:
        """Replay the recorded results, in the order the strategy saw them, into a fresh strategy
        built from the same config and seed (``RecordedRun``); finished segments are not run
        again, and segments that were queued or running are."""
        self.recorded = RecordedRun(self.store)
        self._apply(self.strategy.start())
        for kind, seg_id in self.store.events():
            checkpoint = self.store.checkpoint_ref(seg_id)
            if kind == "written":  # a held checkpoint written out (or one trained again)
                assert checkpoint is not None
                self.ledger.mark_written(checkpoint)
                continue
            segment = self.queue.take(seg_id)
            if segment is None:
                raise ResumeError(
                    f"the replay never queued segment {seg_id}, which the store records"
                )
            if kind == "done":
                if checkpoint is None:
                    raise ResumeError(f"segment {seg_id} is recorded done but has no checkpoint")
                # held or not as it was made (the store says; a checkpoint written out later has
                # a 'written' event of its own, and stores from before held checkpoints hold none)
                points = tuple(self.store.segment_points(seg_id))
                self._complete(SegmentResult(segment, points, checkpoint))
            else:
                replayed = Failure(FailureKind.REPLAYED, "")
                self._failed(SegmentResult(segment, failure=replayed), final=True)
        self.recorded.finish()

    def _submit(self) -> None:
        """Fill free workers. A segment that was on a worker process when it died runs alone, so
        that a second death tells which segment kills its worker."""
        while self.queue and self.executor.pending() < self.executor.capacity:
            if self._isolated_running:
                return
            if self.queue.first().isolated and self.executor.pending() > 0:
                return
            segment = self._placed(self.queue.next())
            if segment is None:
                continue
            self.executor.submit(segment)
            self._on_executor.add(segment.member)
            self._isolated_running = segment.isolated
        self.queue.count_waits()
        self._publish_running()

    def _publish_running(self) -> None:
        """Write which members train now (on the executor and, where it can tell, not waiting
        there for a worker), when that changed."""
        training = self.executor.running()
        now = frozenset(self._on_executor if training is None else training & self._on_executor)
        if now != self._published:
            self.store.set_meta("running", ",".join(map(str, sorted(now))))
            self._published = now

    def _placed(self, segment: Segment) -> Segment | None:
        """``segment`` with a source a worker can read: written to disk first when another
        worker is to read it (None: it is lost and waits to be trained again)."""
        source = segment.source
        route = self.queue.route(segment)
        if route is Route.AS_IS:
            return segment
        assert source is not None
        if route is Route.REWRITTEN:
            return replace(segment, source=self.ledger.written_out(source.path))
        try:
            sha = self.executor.flush(source.holder, source.path)
        except CheckpointError as e:
            lost = Failure(FailureKind.SOURCE_UNREADABLE, str(e))
            self._failed(SegmentResult(segment, failure=lost))
            return None
        written = replace(source, holder="", sha256=sha)
        self.ledger.mark_written(written)
        self.store.checkpoint_flushed(written)
        return replace(segment, source=written)

    # -- decisions -> segments --------------------------------------------------------------

    def _apply(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if self.recorded.decision(d) is None:
                self.store.record_decision(d)
                self.store.after_commit(partial(self._callbacks.decision, d))
            if isinstance(d, Start):
                self._seeds[d.member] = d.seed
                self._enqueue(d.member, 0, d.until, d.hyperparameters, None)
            elif isinstance(d, Continue):
                h = self.strategy.members[d.member].hyperparameters
                self._enqueue(d.member, d.step, d.until, h, self.ledger.current[d.member])
            elif isinstance(d, (Exploit, Assign, Handover)):
                # The worker takes weights saved by another (or by itself, explore-only).
                if isinstance(d, Exploit):
                    self.progress.exploits += d.donor != d.member
                if isinstance(d, Assign):
                    self._seeds[d.member] = d.seed
                source = self.ledger.latest(d.source.member, d.source.step)
                self._act(self.ledger.set_current(d.member, source))
                if isinstance(d, Exploit) and d.until <= d.source.step:
                    continue  # a finished donor's weights: the member finishes (a Finish follows)
                self._enqueue(d.member, d.source.step, d.until, d.hyperparameters, source)
            elif isinstance(d, Release):
                self._act(self.ledger.drop_current(d.member))
            elif isinstance(d, Finish):
                self._act(self.ledger.finished(d.member))

    def _enqueue(
        self, member: int, start: int, end: int, h: dict[str, object], source: CheckpointRef | None
    ) -> None:
        recorded = self.recorded.segment(member, start, end)
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
        name = f"step-{end:08d}-seg-{seg_id}.ckpt"
        path = self.run_dir / "checkpoints" / f"member-{member:04d}" / name
        if source is not None:
            self.ledger.need(source)
        every = self.checkpoint_every
        self.queue.append(
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
                # written to disk when due: at a multiple of checkpoint_every, or at the end
                persist=end >= self.total_steps or end // every > start // every,
                after=None if self.recorded.replaying else self.strategy.segment_work(member),
                negate=self.mode is Mode.MIN,
            )
        )

    # -- results ----------------------------------------------------------------------------

    def _complete(self, r: SegmentResult) -> None:
        seg = r.segment
        self._on_executor.discard(seg.member)
        if seg.isolated:
            self._isolated_running = False
        if r.failure is not None and r.failure.kind == FailureKind.UNSTARTED:
            self.queue.appendleft(seg)  # handed back by a worker that stopped: no failure
            return
        if seg.repair:
            self._repaired(r)
            return
        if r.failure is not None:
            self._failed(r)
            return
        assert r.checkpoint is not None
        replaying = self.recorded.replaying
        if not replaying:
            self.store.segment_done(r)
        self.progress.steps_done += seg.end_step - seg.start_step
        evaluator = seg.member in self._evaluators
        for p in r.points:
            if not math.isfinite(p.score) and not replaying:
                self.store.record_warning(
                    seg.member,
                    seg.id,
                    p.step,
                    WarningKind.NAN_METRIC,
                    f"member {seg.member} reported a non-finite score ({p.score}) at step "
                    f"{p.step}; it ranks worst",
                )
            if not replaying:
                h = seg.hyperparameters
                point = MemberPoint(seg.member, p.step, p.score, p.metrics, h, seg.id, evaluator)
                self.store.after_commit(partial(self._callbacks.point, point))
            score = self.mode.orient(p.score)
            self.strategy.report(seg.member, p.step, score)
            self.progress.scored(seg.member, score)
        if r.after is not None:
            self.strategy.take_work(seg.member, r.after)
        self._act(self.ledger.made(seg, r.checkpoint))
        self._act(self.ledger.set_current(seg.member, r.checkpoint))
        self._apply(self.strategy.ready(seg.member, seg.end_step))
        self._act(self.ledger.release(seg.source))
        self.progress.phase = Phase.RUNNING
        self.store.after_commit(self.progress.show)  # a progress callable may read the store

    def _failed(self, r: SegmentResult, final: bool = False) -> None:
        seg, failure = r.segment, r.failure
        assert failure is not None
        self.progress.failures += 1
        if final:  # replaying a failure that was already recorded as final
            self._apply(self.strategy.failed(seg.member, seg.start_step))
            self._act(self.ledger.release(seg.source))
            return
        if failure.kind == FailureKind.INTERRUPTED:  # for another's sake: run it again
            self._record_failure(r, final=False)
            self.queue.appendleft(seg)
            return
        if failure.kind == FailureKind.WORKER_DIED and not seg.isolated:
            # It may be a bystander of another segment's crash: re-run it alone, free of charge.
            self._record_failure(r, final=False)
            self.queue.appendleft(replace(seg, isolated=True))
            return
        if failure.kind == FailureKind.SOURCE_UNREADABLE:
            waits, repair = self.ledger.repair(seg)
            if repair is not None:
                self.queue.appendleft(repair)
            if waits:
                self._record_failure(r, final=False)
                return
        if failure.kind == FailureKind.UNLOADABLE:  # no worker could load any segment: stop
            self._record_failure(r, final=True)
            self.store.set_meta("status", "failed")
            raise RunFailed(
                f"member {seg.member} at step {seg.start_step}: {failure.message}. Every "
                "segment names the trainable by module and class, and the worker processes "
                "import it from there: is its module importable outside this process?"
            )
        # A source that cannot be repaired would fail the same way again.
        final = seg.attempt >= self.max_retries or failure.kind in HOPELESS
        self._record_failure(r, final)
        if not final:
            self.queue.append(replace(seg, attempt=seg.attempt + 1))
            return
        self._apply(self.strategy.failed(seg.member, seg.start_step))
        self._act(self.ledger.release(seg.source))
        self.progress.phase = Phase.RUNNING
        self.store.after_commit(self.progress.show)

    def _record_failure(self, r: SegmentResult, final: bool) -> None:
        seg, failure = r.segment, r.failure
        assert failure is not None
        self.store.segment_failed(r, final)
        evaluator = seg.member in self._evaluators
        failed = MemberFailure(
            seg.member, seg.start_step, seg.id, failure.kind, failure.message, final, evaluator
        )
        self.store.after_commit(partial(self._callbacks.failure, failed))

    def _callback_failed(self, member: int, segment: int | None, step: int, message: str) -> None:
        self.store.record_warning(member, segment, step, WarningKind.CALLBACK, message)

    def _repaired(self, r: SegmentResult) -> None:
        """A repair ended (``CheckpointLedger.repair``): the segments waiting for its checkpoint
        go on, or fail for good."""
        seg, failure = r.segment, r.failure
        path = seg.checkpoint_path
        if failure is not None and failure.kind not in HOPELESS and seg.attempt < self.max_retries:
            # a worker died under it, say: try again, the waiting segments still waiting
            self.queue.appendleft(replace(seg, attempt=seg.attempt + 1))
            return
        released = self.ledger.release(seg.source)
        written = r.checkpoint if failure is None else None
        waiting = self.ledger.repaired(seg, written)
        self._act(released)
        if written is not None:
            self.store.checkpoint_rewritten(written, r.checkpoint_bytes)
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
                self.queue.appendleft(replace(s, attempt=s.attempt + 1))
            return
        message = f"its source {path} is unreadable and could not be trained again"
        if failure is not None:
            message += f" ({failure.kind}: {failure.message})"
        for s in waiting:
            lost = Failure(FailureKind.SOURCE_UNREADABLE, message)
            self._failed(SegmentResult(s, failure=lost))

    def _act(self, released: Iterable[Released]) -> None:
        """Delete checkpoints nobody needs any more, and have their holders drop them."""
        for gone in released:
            if gone.holder is not None:
                self.executor.drop(gone.holder, gone.path)
            self.store.checkpoint_deleted(gone.path)
            # Deleted once the store's record of it is committed: a run killed before then
            # resumes from a store whose checkpoints all still exist.
            self.store.after_commit(partial(Path(gone.path).unlink, missing_ok=True))

    def current_checkpoints(self) -> dict[int, CheckpointRef]:
        return dict(self.ledger.current)
