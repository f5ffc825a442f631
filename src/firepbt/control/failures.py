"""What a failed segment becomes: run again (alone, if its worker died: it may be a bystander),
retried, repaired (its source trained again), or a member's final failure, which the strategy
hears of. Every failure is recorded before it is acted on."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from functools import partial

from firepbt.callbacks import Dispatcher, MemberFailure
from firepbt.control.ledger import CheckpointLedger, Released
from firepbt.control.progress import Phase, ProgressTracker
from firepbt.control.queue import SegmentQueue
from firepbt.decisions import Decision
from firepbt.errors import HOPELESS, FailureKind, RunFailed, WarningKind
from firepbt.segments import Failure, SegmentResult
from firepbt.store import Store
from firepbt.strategies import Strategy


class Failures:
    """The runner's failures: each recorded, then retried, repaired or made final."""

    def __init__(
        self,
        strategy: Strategy,
        store: Store,
        queue: SegmentQueue,
        ledger: CheckpointLedger,
        progress: ProgressTracker,
        callbacks: Dispatcher,
        apply: Callable[[list[Decision]], None],
        delete: Callable[[list[Released]], None],
        max_retries: int,
        evaluators: Collection[int],
    ) -> None:
        self.strategy, self.store = strategy, store
        self.queue, self.ledger, self.progress = queue, ledger, progress
        # what the runner does with decisions, and with checkpoints nobody needs any more
        self.callbacks, self.apply, self.delete = callbacks, apply, delete
        self.max_retries, self.evaluators = max_retries, evaluators
        self.isolate = True  # a died segment runs again alone (the executor's isolates_crashes)

    def failed(self, r: SegmentResult, final: bool = False) -> None:
        seg, failure = r.segment, r.failure
        assert failure is not None
        self.progress.failures += 1
        if final:  # replaying a failure that was already recorded as final
            self.apply(self.strategy.failed(seg.member, seg.start_step))
            self.delete(self.ledger.release(seg.source))
            return
        if failure.kind == FailureKind.INTERRUPTED:  # for another's sake: run it again
            self.record(r, final=False)
            self.queue.appendleft(seg)
            return
        if failure.kind == FailureKind.WORKER_DIED and self.isolate and not seg.isolated:
            # It may be a bystander of another segment's crash: re-run it alone, free of charge.
            self.record(r, final=False)
            self.queue.appendleft(replace(seg, isolated=True))
            return
        if failure.kind == FailureKind.SOURCE_UNREADABLE:
            waits, repair = self.ledger.repair(seg)
            if repair is not None:
                self.queue.appendleft(repair)
            if waits:
                self.record(r, final=False)
                return
        if failure.kind == FailureKind.UNLOADABLE:  # no worker could load any segment: stop
            self.record(r, final=True)
            self.store.set_meta("status", "failed")
            raise RunFailed(
                f"member {seg.member} at step {seg.start_step}: {failure.message}. Every "
                "segment names the trainable by module and class, and the worker processes "
                "import it from there: is its module importable outside this process?"
            )
        # A source that cannot be repaired would fail the same way again.
        final = seg.attempt >= self.max_retries or failure.kind in HOPELESS
        self.record(r, final)
        if not final:
            self.queue.append(replace(seg, attempt=seg.attempt + 1))
            return
        self.apply(self.strategy.failed(seg.member, seg.start_step))
        self.delete(self.ledger.release(seg.source))
        self.progress.phase = Phase.RUNNING
        self.store.after_commit(self.progress.show)

    def record(self, r: SegmentResult, final: bool) -> None:
        seg, failure = r.segment, r.failure
        assert failure is not None
        self.store.segment_failed(r, final)
        evaluator = seg.member in self.evaluators
        failed = MemberFailure(
            seg.member, seg.start_step, seg.id, failure.kind, failure.message, final, evaluator
        )
        self.store.after_commit(partial(self.callbacks.failure, failed))

    def repaired(self, r: SegmentResult) -> None:
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
        self.delete(released)
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
            self.failed(SegmentResult(s, failure=lost))
