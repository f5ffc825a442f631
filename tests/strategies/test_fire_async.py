"""Asynchronous FIRE PBT: evaluators that succeed and wait for their target to be ready."""

from __future__ import annotations

from test_fire import Sim, make, of, track

from firepbt import Truncation
from firepbt.decisions import Decision, Handover, Release
from firepbt.fire.evaluation import Ending


class AsyncSim:
    """Plays the runner in async mode: the test chooses who is ready next."""

    def __init__(self, fire, score) -> None:
        self.fire, self.score = fire, score
        self.seg: dict[int, tuple[int, int]] = {}
        self.log: list[Decision] = []
        self.take(fire.start())

    def take(self, decisions: list[Decision]) -> list[Decision]:
        self.log += decisions
        track(self.seg, decisions)
        return decisions

    def go(self, w: int) -> list[Decision]:
        a, u = self.seg.pop(w)
        for s in range(a + 1, u + 1):
            self.fire.report(w, s, self.score(w, s))
        return self.take(self.fire.ready(w, u))


def test_async_second_waiting_evaluator_does_not_overwrite_a_served_target() -> None:
    """Two evaluators succeed against member 1 before it is ready. At its next ready member 1
    takes evaluator 4's weights; evaluator 5 was judged against the curve member 1 has just
    dropped, so it is released (superseded), as in sync mode, instead of handing its older
    weights over at member 1's following ready step (which rewound member 1 from step 30 to
    20)."""

    def score(w: int, s: int) -> float:
        if w in (4, 5):
            return min(0.3 + 0.16 * (s - 10), 0.95)
        return {0: 0.5, 1: 0.6, 2: 0.3, 3: 0.2}[w]

    sim = AsyncSim(make(synchrony="async", evaluators=2), score)
    for w in (0, 1, 2, 3, 4, 5):
        sim.go(w)
    assert {e: ev.waiting for e, ev in sim.fire._ev.items()} == {4: True, 5: True}
    sim.go(1)  # step 20: takes evaluator 4's weights
    assert sim.fire._pop.members[1].weights.member == 4
    sim.go(1)  # step 30
    member = sim.fire._pop.members[1]
    assert member.step >= 30, f"member 1 rewound to step {member.step} ({member.weights})"
    (release_5,) = [d for d in sim.log if isinstance(d, Release) and d.member == 5]
    assert Ending.of(release_5.reason) is Ending.SUPERSEDED


def test_async_success_waiting_for_its_target_survives_its_parent_losing() -> None:
    """Evaluator 4 succeeds against member 1 and waits for it; its parent 2 then loses an
    evolution event. The weights the evaluator holds are its own: the success stands and is
    handed over, as in sync mode (where evaluators are judged before evolution)."""

    def score(w: int, s: int) -> float:
        if w == 4:
            return min(0.3 + 0.10 * (s - 10), 0.95)  # a steady win over member 1
        if w == 5:
            return 0.58 + 0.1 * (s - 10) if s % 2 == 0 else 0.59  # higher best, no steady win
        return {0: 0.5, 1: 0.6, 2: 0.3, 3: 0.58}[w]

    sync = Sim(make(evaluators=2, exploit=Truncation(0.5)), score)
    sync.round()
    assert [d.evaluator for d in of(Handover, sync.round())] == [4]

    sim = AsyncSim(make(synchrony="async", evaluators=2, exploit=Truncation(0.5)), score)
    for w in (0, 1, 2, 3, 4, 5):
        sim.go(w)
    assert sim.fire._ev[4].waiting and sim.fire._ev[4].target == 1
    sim.go(3)
    sim.go(2)  # parent 2 loses an evolution event
    sim.go(1)  # the target is ready
    assert [d.evaluator for d in sim.log if isinstance(d, Handover)] == [4]
