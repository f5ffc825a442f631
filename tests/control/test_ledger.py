"""The checkpoint ledger alone: no store, no executor, no file. Reference counts through
exploits, hand-overs, repairs and releases, with plain segments and checkpoint references."""

from __future__ import annotations

from _trainables import Quad

from firepbt.checkpoints import CheckpointRef
from firepbt.control.ledger import CheckpointLedger, Released
from firepbt.segments import Segment


def _segment(id: int, member: int, start: int, end: int, source: CheckpointRef | None) -> Segment:
    return Segment(id, member, 0, start, end, 1, {"h0": 0.5}, source, f"ck-{id}", Quad)


def _made(ledger: CheckpointLedger, seg: Segment, holder: str = "") -> CheckpointRef:
    """``seg`` finished: its checkpoint becomes its member's current one."""
    ref = CheckpointRef(seg.checkpoint_path, "" if holder else "sha", seg.member, seg.end_step,
                        seg.id, holder)  # fmt: skip
    assert ledger.made(seg, ref) == []
    ledger.set_current(seg.member, ref)
    return ref


def test_an_exploited_checkpoint_lives_until_its_last_taker_moves_on() -> None:
    ledger = CheckpointLedger()
    donor = _made(ledger, _segment(1, 0, 0, 4, None))
    assert ledger.latest(0, 4) == donor
    # member 1 exploits member 0: it takes the donor's weights and a segment starts from them
    assert ledger.set_current(1, donor) == []
    ledger.need(donor)  # the queued segment's source
    assert ledger.references(donor.path) == 3
    # the donor trains on: its new checkpoint replaces the old one as its current one
    new = _segment(2, 0, 4, 8, donor)
    ledger.need(donor)
    assert ledger.made(new, CheckpointRef("ck-2", "sha", 0, 8, 2)) == []
    assert ledger.set_current(0, CheckpointRef("ck-2", "sha", 0, 8, 2)) == []
    assert ledger.release(donor) == []  # the donor's own segment read it
    assert ledger.release(donor) == []  # so did member 1's
    # member 1's own new checkpoint replaces it: nobody needs the donor's any more, and what
    # anchored on it (ck-2's origin, read without trouble once ck-2 was made from it) goes too
    assert ledger.set_current(1, CheckpointRef("ck-3", "sha", 1, 8, 3)) == []
    assert ledger.forget_origin("ck-2") == [Released(donor.path, None)]
    assert ledger.references(donor.path) == 0


def test_released_exactly_once_and_anchors_before_what_descends_from_them() -> None:
    ledger = CheckpointLedger()
    first = _made(ledger, _segment(1, 0, 0, 4, None))  # on disk
    ledger.need(first)
    held = _segment(2, 0, 4, 8, first)
    held_ref = CheckpointRef("ck-2", "", 0, 8, 2, "worker-a")
    assert ledger.made(held, held_ref) == []  # its origin keeps `first` as its anchor
    assert ledger.set_current(0, held_ref) == []  # `first` still anchors `held_ref`
    assert ledger.release(first) == []  # the segment's read of it
    assert ledger.references(first.path) == 1  # the anchor of a held checkpoint
    released = ledger.drop_current(0)  # the member is released: nobody needs anything
    assert released == [Released("ck-1", None), Released("ck-2", "worker-a")]
    assert ledger.drop_current(0) == []  # nothing is released twice
    assert ledger.references("ck-1") == ledger.references("ck-2") == 0


def test_a_lost_held_checkpoint_is_repaired_once_from_its_anchor_on_disk() -> None:
    ledger = CheckpointLedger()
    anchor = _made(ledger, _segment(1, 0, 0, 4, None))
    ledger.need(anchor)
    a = _segment(2, 0, 4, 8, anchor)
    a_ref = CheckpointRef("ck-2", "", 0, 8, 2, "worker-a")
    ledger.made(a, a_ref)
    ledger.set_current(0, a_ref)
    ledger.release(anchor)
    ledger.need(a_ref)
    b = _segment(3, 0, 8, 12, a_ref)  # continues from memory
    b_ref = CheckpointRef("ck-3", "", 0, 12, 3, "worker-a")
    ledger.made(b, b_ref)
    ledger.set_current(0, b_ref)
    ledger.release(a_ref)
    # worker-a dies: an exploit of member 0's weights cannot read them
    reader = _segment(4, 1, 12, 16, b_ref)
    waits, repair = ledger.repair(reader)
    assert waits and repair is not None
    assert repair.repair and repair.persist and repair.source == anchor
    assert repair.prelude == (a,) and repair.id == b.id and repair.checkpoint_path == "ck-3"
    assert ledger.references(anchor.path) == 2  # also anchors the repair's run
    second = _segment(5, 2, 12, 16, b_ref)
    assert ledger.repair(second) == (True, None)  # waits for the same repair
    written = CheckpointRef("ck-3", "sha-new", 0, 12, 3)
    assert ledger.repaired(repair, written) == [reader, second]
    assert ledger.written_out("ck-3") == written
    assert ledger.on_disk(b_ref)
    # lost once more: not tried again (the waiting segments fail instead)
    assert ledger.repair(_segment(6, 3, 12, 16, b_ref)) == (False, None)


def test_a_hand_over_and_a_finished_member_let_go_of_what_they_came_from() -> None:
    ledger = CheckpointLedger()
    parent = _made(ledger, _segment(1, 0, 0, 4, None))
    # an evaluator (member 9) is assigned the parent's weights, trains them, and its weights are
    # handed over to a child (member 5)
    ledger.set_current(9, parent)
    ledger.need(parent)
    evaluated = _segment(2, 9, 4, 8, parent)
    e_ref = CheckpointRef("ck-2", "sha", 9, 8, 2)
    ledger.made(evaluated, e_ref)
    ledger.set_current(9, e_ref)
    ledger.release(parent)
    assert ledger.latest(9, 8) == e_ref
    assert ledger.set_current(5, ledger.latest(9, 8)) == []
    assert ledger.drop_current(9) == []  # the child still has them
    assert ledger.references(parent.path) == 2  # member 0's current, and ck-2's anchor
    # the child finishes on them: they are on disk and never trained from again, so their
    # origin's anchor goes
    assert ledger.finished(5) == []
    assert ledger.set_current(0, CheckpointRef("ck-3", "sha", 0, 8, 3)) == [
        Released(parent.path, None)
    ]
