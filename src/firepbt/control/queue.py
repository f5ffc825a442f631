"""The segment queue: what goes to a worker next, and how it gets its source checkpoint.

On an executor whose workers hold checkpoints in memory, a member that continues on the worker
holding its weights goes on from memory; weights another worker must read (an exploit's donor,
an evaluator's parent) are written out first. A segment whose source a busy worker holds would
have the controller wait for that worker to write it: it waits while later segments that need
nothing written out go first, at most ``DEFER_LIMIT`` times.
"""

from __future__ import annotations

import bisect
from collections import deque
from enum import Enum

from firepbt.control.ledger import CheckpointLedger
from firepbt.execution.base import Executor
from firepbt.segments import Segment

# times a queued segment whose source a busy worker holds may be passed over by later segments
# that need nothing written out, before its source is written out for it
DEFER_LIMIT = 4


class Route(Enum):
    """How a segment gets its source."""

    AS_IS = "as is"  # none, on disk, or read from the memory of the idle worker holding it
    REWRITTEN = "rewritten"  # written out since it was queued
    FLUSH = "flush"  # its holder, busy or gone, must write it out first


class SegmentQueue:
    """Segments waiting for a worker, in order, with how often each was passed over."""

    def __init__(self, executor: Executor, ledger: CheckpointLedger) -> None:
        self.executor = executor
        self.ledger = ledger
        self._queue: deque[Segment] = deque()
        self._deferred: dict[int, int] = {}  # queued segment id -> fill rounds it waited in
        self._passed_over: set[int] = set()  # ids passed over in this fill round
        # Queued segments that may go on from their own member's weights held in a worker's
        # memory, per holder, in queue order ((position, id, segment)): ``next`` looks at
        # the idle holders' first ones instead of scanning the whole queue.
        self._own: dict[str, list[tuple[int, int, Segment]]] = {}
        self._position: dict[int, int] = {}  # id() of such a segment -> its position
        self._back = self._front = 0  # positions: appended ones count up, put first count down

    def __len__(self) -> int:
        return len(self._queue)

    def first(self) -> Segment:
        return self._queue[0]

    def append(self, segment: Segment) -> None:
        self._queue.append(segment)
        self._back += 1
        self._index(segment, self._back)

    def appendleft(self, segment: Segment) -> None:
        self._queue.appendleft(segment)
        self._front -= 1
        self._index(segment, self._front)

    def take(self, seg_id: int) -> Segment | None:
        """Remove and return the queued segment ``seg_id`` (None: not queued)."""
        for segment in self._queue:
            if segment.id == seg_id:
                self._remove(segment)
                return segment
        return None

    def _index(self, segment: Segment, position: int) -> None:
        source = segment.source
        if (
            source is not None
            and source.holder
            and source.member == segment.member
            and not segment.isolated
            and not segment.repair
        ):
            self._position[id(segment)] = position
            bisect.insort(self._own.setdefault(source.holder, []), (position, id(segment), segment))

    def _remove(self, segment: Segment) -> None:
        for i, queued in enumerate(self._queue):  # by identity: comparing segments is slow
            if queued is segment:
                del self._queue[i]
                break
        position = self._position.pop(id(segment), None)
        if position is not None:
            assert segment.source is not None
            entries = self._own[segment.source.holder]
            del entries[bisect.bisect_left(entries, (position, id(segment)))]

    def _first_in_memory(self) -> Segment | None:
        """The first queued segment that continues a member on the idle worker holding it."""
        found: tuple[int, Segment] | None = None
        for holder, entries in self._own.items():
            if not entries or not self.executor.idle(holder):
                continue
            for position, _, segment in entries:
                if found is not None and position > found[0]:
                    break
                assert segment.source is not None
                if segment.source.path not in self.ledger.repair_tried:
                    found = (position, segment)
                    break
        return None if found is None else found[1]

    def next(self) -> Segment:
        """The first queued segment that continues a member on the idle worker holding it in
        memory; otherwise the first one whose source need not be written out first (one whose
        holder is busy would have the controller wait for that worker to write it), unless it
        has been passed over in ``DEFER_LIMIT`` fill rounds already; otherwise the first one.
        A segment that must run alone is taken only when it is first."""
        chosen = self._queue[0]
        if not chosen.isolated:
            in_memory = self._first_in_memory()
            if in_memory is not None:
                chosen = in_memory
            else:
                chosen = next(
                    (
                        s
                        for s in self._queue
                        if not s.isolated
                        and (
                            self._deferred.get(s.id, 0) >= DEFER_LIMIT
                            or self.route(s) is not Route.FLUSH
                        )
                    ),
                    chosen,
                )
                for ahead in self._queue:
                    if ahead is chosen:
                        break
                    self._passed_over.add(ahead.id)
        self._remove(chosen)
        self._deferred.pop(chosen.id, None)
        self._passed_over.discard(chosen.id)
        return chosen

    def count_waits(self) -> None:
        """End a fill round: count one more round for each queued segment passed over in it,
        however many went ahead of it; forget segments no longer queued."""
        if self._passed_over or self._deferred:
            queued = {s.id for s in self._queue}
            self._deferred = {i: n for i, n in self._deferred.items() if i in queued}
            for waiting in self._passed_over & queued:
                self._deferred[waiting] = self._deferred.get(waiting, 0) + 1
            self._passed_over.clear()

    def waits(self, seg_id: int) -> int:
        """How many fill rounds the queued segment ``seg_id`` was passed over in."""
        return self._deferred.get(seg_id, 0)

    def route(self, segment: Segment) -> Route:
        """How ``segment`` gets its source (``Route``)."""
        source = segment.source
        if source is None or self.continues_in_memory(segment) or self._reads_held(segment):
            return Route.AS_IS
        if self.ledger.written_out(source.path) is not None:
            return Route.REWRITTEN
        return Route.FLUSH if source.holder else Route.AS_IS

    def continues_in_memory(self, segment: Segment) -> bool:
        source = segment.source
        return (
            source is not None
            and bool(source.holder)
            and source.member == segment.member
            and not segment.repair
            and source.path not in self.ledger.repair_tried  # lost there once: read the new file
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
            and source.path not in self.ledger.repair_tried
            and self.ledger.written_out(source.path) is None
            and self.executor.reads_held(segment)
        )
