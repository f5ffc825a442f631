"""The checkpoint ledger: which checkpoints are needed, by whom, and how each can be made again.

Every member's current checkpoint, every queued segment's source, and every checkpoint a held
checkpoint descends from holds a reference; a checkpoint whose last reference goes is *released*:
the ledger forgets it and hands it back, and the loop deletes its file and has its holder drop
it. Every checkpoint remembers how to make it again (``Origin``): the last checkpoint on disk it
descends from and the segments since, so that a held checkpoint lost with its worker, or a
corrupted file, is trained again (``repair``) instead of failing the member.

The ledger touches no store, executor or file: it returns what to delete, drop or queue, and
the loop acts on that.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from firepbt.checkpoints import CheckpointRef
from firepbt.decisions import Weights
from firepbt.segments import Segment


@dataclass(frozen=True, slots=True)
class Origin:
    """How a checkpoint was made: ``chain`` run in order from ``anchor`` (a checkpoint written to
    disk when it was made; None: from scratch)."""

    anchor: CheckpointRef | None
    chain: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Released:
    """A checkpoint nobody needs any more: delete its file; ``holder`` (if any) drops it."""

    path: str
    holder: str | None


class CheckpointLedger:
    """References, current checkpoints, origins and repairs of one run's checkpoints.

    Invariants:

    - a path's reference count is the number of members whose current checkpoint it is, queued
      or running segments that start from it, and checkpoints whose origin anchors on it;
    - a released checkpoint is handed back exactly once, after those it anchored on (so that an
      anchor's record is deleted before its descendant's, as it always was);
    - a checkpoint written out since it was made (flushed, or trained again) is ``written_out``
      until it is released.
    """

    def __init__(self) -> None:
        self.current: dict[int, CheckpointRef] = {}  # where each member's weights live
        self._written: dict[tuple[int, int], CheckpointRef] = {}  # latest of (member, step)
        self._refs: Counter[str] = Counter()  # path -> members and segments needing it
        # How each checkpoint can be made again (its anchor is kept until a checkpoint written
        # to disk has been read once; a held one keeps it while it lives), the worker holding
        # each held checkpoint, and the files written since (flushed, or trained again).
        self._origins: dict[str, Origin] = {}
        self._holders: dict[str, str] = {}
        self._rewritten: dict[str, CheckpointRef] = {}
        self._awaiting: dict[str, list[Segment]] = {}  # lost path -> segments waiting on it
        self.repair_tried: set[str] = set()

    # -- references -------------------------------------------------------------------------

    def need(self, ref: CheckpointRef) -> None:
        """One more member or segment needs ``ref``."""
        self._refs[ref.path] += 1

    def references(self, path: str) -> int:
        return self._refs[path]

    def release(self, ref: CheckpointRef | None) -> list[Released]:
        """One fewer needs ``ref``; the checkpoints that nobody needs any more as a result."""
        released: list[Released] = []
        self._release(ref, released)
        return released

    def _release(self, ref: CheckpointRef | None, released: list[Released]) -> None:
        if ref is None:
            return
        self._refs[ref.path] -= 1
        if self._refs[ref.path] > 0:
            return
        del self._refs[ref.path]
        written = self._written.get((ref.member, ref.step))
        if written is not None and written.path == ref.path:
            del self._written[(ref.member, ref.step)]
        self._rewritten.pop(ref.path, None)
        self._forget_origin(ref.path, released)
        released.append(Released(ref.path, self._holders.pop(ref.path, None)))

    def hold(self, weights: list[Weights]) -> list[CheckpointRef]:
        """One more reference on the latest checkpoint of each of ``weights`` (member and step),
        until ``release_all``."""
        held = [self.latest(w.member, w.step) for w in weights]
        for ref in held:
            self.need(ref)
        return held

    def release_all(self, refs: list[CheckpointRef]) -> list[Released]:
        released: list[Released] = []
        for ref in refs:
            self._release(ref, released)
        return released

    def set_current(self, member: int, ref: CheckpointRef) -> list[Released]:
        """``member``'s weights are now ``ref``; what its previous checkpoint released."""
        old = self.current.get(member)
        self.current[member] = ref
        self.need(ref)
        return self.release(old)

    def drop_current(self, member: int) -> list[Released]:
        """``member`` needs no weights any more (it was released)."""
        return self.release(self.current.pop(member, None))

    # -- checkpoints made -------------------------------------------------------------------

    def made(self, seg: Segment, checkpoint: CheckpointRef) -> list[Released]:
        """``seg`` finished with ``checkpoint``: remember it as the latest of its member and step,
        and how it can be made again; what that released (the origin of a source file that has
        now been read without trouble)."""
        self._written[(seg.member, seg.end_step)] = checkpoint
        released: list[Released] = []
        if checkpoint.holder:
            self._holders[checkpoint.path] = checkpoint.holder
        source = seg.source
        parent = self._origins.get(source.path) if source is not None else None
        if source is None:
            origin = Origin(None, (seg,))
        elif parent is None or self.on_disk(source):
            origin = Origin(self._rewritten.get(source.path, source), (seg,))
            # The source file was read without trouble, so what it was trained from may go; the
            # new checkpoint keeps the source until it is read in turn.
            self._forget_origin(source.path, released)
        else:  # trained from a held checkpoint: one segment further from the last file on disk
            origin = Origin(parent.anchor, (*parent.chain, seg))
            for i in range(len(origin.chain) - 1, -1, -1):
                written = self._rewritten.get(origin.chain[i].checkpoint_path)
                if written is not None:  # written out since
                    origin = Origin(written, origin.chain[i + 1 :])
                    break
        if origin.anchor is not None:
            self.need(origin.anchor)
        self._origins[checkpoint.path] = origin
        return released

    def latest(self, member: int, step: int) -> CheckpointRef:
        """The checkpoint ``member`` made last at ``step`` (a donor's, a parent's)."""
        return self._written[(member, step)]

    def finished(self, member: int) -> list[Released]:
        """``member`` finished: its final checkpoint (on disk: the budget's end is due) is not
        trained from again, so what it was trained from may go."""
        current = self.current.get(member)
        if current is None or not self.on_disk(current):
            return []
        return self.forget_origin(current.path)

    def on_disk(self, ref: CheckpointRef) -> bool:
        """Whether a checkpoint's file is written: by its segment, or since (out of a worker's
        memory, or trained again)."""
        return not ref.holder or ref.path in self._rewritten

    def written_out(self, path: str) -> CheckpointRef | None:
        """The checkpoint at ``path`` as written out since it was made, if it was."""
        return self._rewritten.get(path)

    def mark_written(self, ref: CheckpointRef) -> None:
        """A held checkpoint was written to its path (``ref``, with no holder)."""
        self._rewritten[ref.path] = replace(ref, holder="")

    def forget_origin(self, path: str) -> list[Released]:
        released: list[Released] = []
        self._forget_origin(path, released)
        return released

    def _forget_origin(self, path: str, released: list[Released]) -> None:
        origin = self._origins.pop(path, None)
        if origin is not None:
            self._release(origin.anchor, released)

    # -- repairs ----------------------------------------------------------------------------

    def repair(self, seg: Segment) -> tuple[bool, Segment | None]:
        """``seg``'s source is lost (held by a worker that is gone), missing or corrupted: whether
        ``seg`` waits for it to be trained again, and the repair to queue first (None: none to
        queue, as one is queued already or it cannot be repaired). A repair runs the segments
        that made the source again from its anchor on disk (same hyperparameters, seeds and
        steps), writing it out. It cannot be repaired when tried already, or when its anchor was
        released once it had been read."""
        assert seg.source is not None
        path = seg.source.path
        if path in self._awaiting:
            self._awaiting[path].append(seg)
            return True, None
        origin = self._origins.get(path)
        if origin is None or path in self.repair_tried:
            return False, None
        self.repair_tried.add(path)
        self._awaiting[path] = [seg]
        if origin.anchor is not None:
            self.need(origin.anchor)
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
        return True, repair

    def repaired(self, seg: Segment, checkpoint: CheckpointRef | None) -> list[Segment]:
        """The repair ``seg`` ended, writing ``checkpoint`` (None: it failed for good): the
        segments that waited for it."""
        waiting = self._awaiting.pop(seg.checkpoint_path, [])
        if checkpoint is not None:
            self._rewritten[seg.checkpoint_path] = checkpoint
        return waiting
