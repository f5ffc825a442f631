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
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from firepbt import storage
from firepbt.callbacks import Callback, Dispatcher, MemberPoint, RunStart
from firepbt.checkpoints import CheckpointRef
from firepbt.control.cleanup import delete_released
from firepbt.control.failures import Failures
from firepbt.control.ledger import CheckpointLedger, Released
from firepbt.control.progress import Phase, ProgressTracker, RunProgress, TrainingNow
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


def _tell(executor: Executor, runner: Runner) -> None:
    """What an executor learns of the run before it starts workers."""
    executor.on_started = runner.progress.workers_started
    executor.on_waiting = partial(runner.store.set_meta, "waiting")  # why, or "" once it ends
    if runner.store.meta("waiting"):  # left by a run that was stopped while it waited
        runner.store.set_meta("waiting", "")
    executor.log_dir, executor.run_dir = str(runner.run_dir / "logs"), str(runner.run_dir)
    executor.checkpoint_root = runner.checkpoints
    executor.worker_variables = storage.worker_variables()  # after store.root: its options
    executor.preload(runner.strategy.worker_modules)


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
        self.trainable, self.run_dir = trainable, Path(run_dir)
        self.total_steps, self.eval_every = total_steps, eval_every
        self.mode, self.metric, self.max_retries = mode, metric, max_retries
        # Steps between checkpoints written out (per member; by default a fifth of the budget, the
        # most a crash retrains); every segment's without workers that hold checkpoints in memory.
        every = checkpoint_every or max(1, total_steps // 5)
        self.checkpoint_every = every if executor.holds_state else 1
        self.ledger = CheckpointLedger()
        self.queue = SegmentQueue(executor, self.ledger)
        self.recorded = RecordedRun()
        self._seeds: dict[int, int] = {}
        self._isolated_running = False
        self._evaluators = frozenset(getattr(strategy, "evaluator_ids", ()))  # not members
        phase = Phase.STARTING if executor.reports_started else Phase.FIRST_SEGMENTS
        evaluators = self._evaluators
        self.progress = ProgressTracker(strategy, total_steps, mode, evaluators, on_progress, phase)
        self.training = TrainingNow(executor, store)
        self.checkpoints = store.root or str(self.run_dir)  # the root of checkpoint paths
        _tell(executor, self)
        self._callbacks = Dispatcher(callbacks, self._callback_failed)
        parts = (self.queue, self.ledger, self.progress, self._callbacks, self._apply, self._delete)
        self.failures = Failures(strategy, store, *parts, max_retries, self._evaluators)
        self.failures.isolate = executor.isolates_crashes

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
            if status == "error" and self.store.meta("status") == "running":
                self.store.set_meta("status", "failed")  # run again, or resume once mended
            self._callbacks.end(status)

    def _run(self, resume: bool) -> None:
        if resume:
            self._restore()
        else:
            self._apply(self.strategy.start())
        self.training.publish()  # nothing is on a worker yet: every member waits
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
                    self.training.members.difference_update(r.segment.member for r in results)
                    self._submit()
                with self.store.batch():
                    for result in results:
                        self._complete(result)
        finally:
            self.executor.shutdown()
            self.training.members.clear()
            self.training.publish()
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
                self.failures.failed(SegmentResult(segment, failure=replayed), final=True)
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
            self.training.members.add(segment.member)
            self._isolated_running = segment.isolated
        self.queue.count_waits()
        self.training.publish()

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
            self.failures.failed(SegmentResult(segment, failure=lost))
            return None
        written = replace(source, holder="", sha256=sha)
        self.ledger.mark_written(written)
        self.store.checkpoint_flushed(written)
        return replace(segment, source=written)

    # -- decisions -> segments --------------------------------------------------------------

    def _apply(self, decisions: list[Decision]) -> None:
        # Decisions taken together read the population as it was then (a donor that copies
        # someone in the same round gives the weights it had): their sources are held meanwhile.
        copies = (Exploit, Assign, Handover)
        held = self.ledger.hold([d.source for d in decisions if isinstance(d, copies)])
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
                self._delete(self.ledger.set_current(d.member, source))
                if isinstance(d, Exploit) and d.until <= d.source.step:
                    continue  # a finished donor's weights: the member finishes (a Finish follows)
                self._enqueue(d.member, d.source.step, d.until, d.hyperparameters, source)
            elif isinstance(d, Release):
                self._delete(self.ledger.drop_current(d.member))
            elif isinstance(d, Finish):
                self._delete(self.ledger.finished(d.member))
        self._delete(self.ledger.release_all(held))

    def _enqueue(
        self, member: int, start: int, end: int, h: dict[str, object], source: CheckpointRef | None
    ) -> None:
        recorded = self.recorded.segment(member, start, end)
        if recorded is None:
            source_segment = source.segment if source else None
            seg_id = self.store.add_segment(member, start, end, h, source_segment)
        else:
            seg_id = recorded.id
        name = f"step-{end:08d}-seg-{seg_id}.ckpt"
        path = storage.join(self.checkpoints, "checkpoints", f"member-{member:04d}", name)
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
                checkpoint_path=path,
                trainable=self.trainable,
                metric=self.metric,
                # written to disk when due: at a multiple of checkpoint_every, or at the end
                persist=end >= self.total_steps or end // every > start // every,
                after=None if self.recorded.replaying else self.strategy.segment_work(member),
                negate=self.mode is Mode.MIN,
                budget=self.total_steps,
            )
        )

    # -- results ----------------------------------------------------------------------------

    def _complete(self, r: SegmentResult) -> None:
        seg = r.segment
        self.training.members.discard(seg.member)
        if seg.isolated:
            self._isolated_running = False
        if r.failure is not None and r.failure.kind == FailureKind.UNSTARTED:
            self.queue.appendleft(seg)  # handed back by a worker that stopped: no failure
            return
        if seg.repair:
            self.failures.repaired(r)
            return
        if r.failure is not None:
            self.failures.failed(r)
            return
        assert r.checkpoint is not None
        replaying = self.recorded.replaying
        if not replaying:
            self.store.segment_done(r)
            record_first_segment(self.store, r)
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
        self._delete(self.ledger.made(seg, r.checkpoint))
        self._delete(self.ledger.set_current(seg.member, r.checkpoint))
        self._apply(self.strategy.ready(seg.member, seg.end_step))
        self._delete(self.ledger.release(seg.source))
        self.progress.phase = Phase.RUNNING
        self.store.after_commit(self.progress.show)  # a progress callable may read the store

    def _callback_failed(self, member: int, segment: int | None, step: int, message: str) -> None:
        self.store.record_warning(member, segment, step, WarningKind.CALLBACK, message)

    def _delete(self, released: list[Released]) -> None:
        delete_released(released, self.executor, self.store)


def record_first_segment(store: Store, r: SegmentResult) -> None:
    """Record, once in a run each, what a member's first segment found: names of the space
    nobody read, and the trainable's own warnings (every member would say the same)."""
    seg = r.segment
    if r.unused:
        record_unused(store, seg, r.unused)
    if r.notices and not store.has_failure_of(WarningKind.TRAINABLE):
        for notice in r.notices:
            store.record_warning(-1, seg.id, seg.end_step, WarningKind.TRAINABLE, notice)


def record_unused(store: Store, seg: Segment, names: Sequence[str]) -> None:
    """Warn, once in a run, of names of the space that a member's first segment never read."""
    if store.has_failure_of(WarningKind.UNUSED):
        return
    listed = ", ".join(repr(n) for n in names)
    store.record_warning(
        -1,
        seg.id,
        seg.end_step,
        WarningKind.UNUSED,
        f"the trainable never read {listed} (member {seg.member}'s first segment; no optimizer "
        "setting has the name either): tuned and recorded, it changes nothing. A misspelt name?",
    )
