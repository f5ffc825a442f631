"""Unit tests for the PBT strategy, driven with plain data and seeded generators.

``Sim`` plays the runner: it turns decisions into segments, "trains" a member by evaluating a
deterministic score function of (hyperparameters, step), reports the points, calls ``ready`` and
collects every decision, checking on the way that each decision is one a runner could carry out.
"""

from __future__ import annotations

import doctest
import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import firepbt.strategies._pbt
from firepbt.decisions import Continue, Decision, Exploit, Finish, Start, Weights
from firepbt.errors import PopulationConfigError
from firepbt.exploit import BinaryTournament, ExploitRecord, KeepOwn, NoExploit, Truncation
from firepbt.explore import Change, NoExplore, Perturb
from firepbt.space import LogUniform, Space, Uniform
from firepbt.strategies import PBT, Strategy, Synchrony

ScoreFn = Callable[[Mapping[str, Any], int], float]


def lr_times_step(h: Mapping[str, Any], step: int) -> float:
    return step * float(h["lr"])


# --- the simulated runner ------------------------------------------------------------------


@dataclass
class _Segment:
    member: int
    start: int
    until: int
    hyperparameters: dict[str, Any]


class Sim:
    """A deterministic stand-in for the runner.

    Segments run in order of a simulated clock: a member needs ``cost[member]`` time units per
    step (1 by default), so unequal costs make an asynchronous population drift apart. A point
    is reported every ``eval_every`` steps and at the end of each segment. ``fail_at`` maps a
    member to a step: the segment that would train through that step fails for good.
    """

    def __init__(
        self,
        strategy: Strategy,
        total_steps: int,
        ready_every: int = 5,
        score: ScoreFn = lr_times_step,
        *,
        eval_every: int = 1,
        cost: Mapping[int, float] | None = None,
        fail_at: Mapping[int, int] | None = None,
    ) -> None:
        self.strategy = strategy
        self.total_steps = total_steps
        self.ready_every = ready_every
        self.score = score
        self.eval_every = eval_every
        self.cost = dict(cost or {})
        self.fail_at = dict(fail_at or {})
        self.decisions: list[Decision] = []
        self.written: dict[tuple[int, int], dict[str, Any]] = {}  # checkpoint -> its training h
        self.position: dict[int, int] = {}  # the step each member's next segment starts from
        self.hyperparameters: dict[int, dict[str, Any]] = {}
        self.trained: Counter[int] = Counter()  # steps trained per member, restarts included
        self.finished: set[int] = set()
        self.failed: set[int] = set()
        self.failed_after: dict[int, int] = {}  # member -> number of decisions before it failed
        self.clock = 0.0
        self._heap: list[tuple[float, int, _Segment]] = []
        self._seq = 0

    # decisions -> segments, checking each decision against what the runner knows
    def apply(self, decisions: Sequence[Decision]) -> None:
        for d in decisions:
            self.decisions.append(d)
            m = d.member
            assert m not in self.finished, f"decision for finished member {m}: {d}"
            assert m not in self.failed, f"decision for failed member {m}: {d}"
            if isinstance(d, Start):
                assert m not in self.position
                assert d.until == min(self.ready_every, self.total_steps)
                self.position[m] = 0
                self.hyperparameters[m] = d.hyperparameters
                self._enqueue(m, 0, d.until)
            elif isinstance(d, Continue):
                assert d.step == self.position[m]
                assert d.step < d.until <= self.total_steps
                self._enqueue(m, d.step, d.until)
            elif isinstance(d, Exploit):
                assert d.step == self.position[m]
                assert d.old_hyperparameters == self.hyperparameters[m]
                key = (d.source.member, d.source.step)
                assert key in self.written, f"{d} copies a checkpoint that was never written"
                assert self.written[key] == d.source.hyperparameters
                assert d.source.step <= d.until <= self.total_steps
                assert d.until == min(d.source.step + self.ready_every, self.total_steps)
                self.position[m] = d.source.step
                self.hyperparameters[m] = d.hyperparameters
                if d.until > d.source.step:  # a finished donor's copy finishes (as the runner)
                    self._enqueue(m, d.source.step, d.until)
            else:
                assert isinstance(d, Finish)
                assert d.step == self.position[m] == self.total_steps
                self.finished.add(m)

    def _enqueue(self, member: int, start: int, until: int) -> None:
        seg = _Segment(member, start, until, dict(self.hyperparameters[member]))
        done_at = self.clock + (until - start) * self.cost.get(member, 1.0)
        heapq.heappush(self._heap, (done_at, self._seq, seg))
        self._seq += 1

    def run(self, max_segments: int = 10_000) -> Sim:
        self.apply(self.strategy.start())
        for _ in range(max_segments):
            if not self._heap:
                break
            self.clock, _, seg = heapq.heappop(self._heap)
            self.step(seg)
        else:
            raise AssertionError("simulation did not end")
        return self

    def step(self, seg: _Segment) -> None:
        m = seg.member
        fail = self.fail_at.get(m)
        if fail is not None and seg.start <= fail <= seg.until:
            self.failed.add(m)
            self.failed_after[m] = len(self.decisions)
            self.apply(self.strategy.failed(m, seg.start))
            return
        for k in range(seg.start + 1, seg.until + 1):
            if k % self.eval_every == 0 or k == seg.until:
                self.strategy.report(m, k, self.score(seg.hyperparameters, k))
        self.trained[m] += seg.until - seg.start
        self.written[(m, seg.until)] = seg.hyperparameters
        self.position[m] = seg.until
        self.apply(self.strategy.ready(m, seg.until))

    def of(self, kind: type) -> list[Any]:
        return [d for d in self.decisions if isinstance(d, kind)]


# --- helpers -------------------------------------------------------------------------------

LR_SPACE = Space({"lr": Uniform(0.01, 1.0, bounds=(1e-6, 100.0))})


def make(
    lrs: Sequence[float] = (0.1, 0.2, 0.3, 0.4),
    total_steps: int = 20,
    ready_every: int = 5,
    seed: int = 0,
    **kw: Any,
) -> PBT:
    return PBT(
        LR_SPACE,
        population=len(lrs),
        total_steps=total_steps,
        ready_every=ready_every,
        rng=np.random.default_rng(seed),
        initial_hyperparameters=[{"lr": lr} for lr in lrs],
        **kw,
    )


def train(pbt: PBT, step: int, scores: Mapping[int, float]) -> list[Decision]:
    """Report ``scores`` at ``step`` for the given members and mark them ready, in order;
    returns every decision made on the way."""
    out: list[Decision] = []
    for m, s in scores.items():
        pbt.report(m, step, s)
    for m in scores:
        out.extend(pbt.ready(m, step))
    return out


def by_member(decisions: Sequence[Decision]) -> dict[int, Decision]:
    out = {d.member: d for d in decisions}
    assert len(out) == len(decisions), "more than one decision for a member"
    return out


@dataclass(frozen=True)
class Scripted:
    """An exploit policy that follows a fixed plan: member -> donor."""

    plan: Mapping[int, int]

    def select(
        self, member: int, scores: Mapping[int, Sequence[float]], rng: np.random.Generator
    ) -> ExploitRecord | None:
        if member in self.plan:
            return ExploitRecord(self.plan[member], "scripted")
        return None


def test_doctests_pass() -> None:
    result = doctest.testmod(firepbt.strategies._pbt)
    assert result.attempted > 0
    assert result.failed == 0


# --- configuration -------------------------------------------------------------------------


def test_defaults_follow_the_paper() -> None:
    pbt = make()
    assert pbt.synchrony is Synchrony.SYNC
    assert pbt.exploit == Truncation(0.25)
    assert pbt.burn_in == 0


@pytest.mark.parametrize(
    ("field_name", "kw"),
    [
        ("population", {"population": 0}),
        ("population", {"population": -3}),
        ("total_steps", {"total_steps": 0}),
        ("ready_every", {"ready_every": 0}),
        ("ready_every", {"ready_every": -5}),
    ],
)
def test_bad_sizes_raise_naming_the_field(field_name: str, kw: dict[str, int]) -> None:
    args: dict[str, Any] = {"population": 4, "total_steps": 20, "ready_every": 5}
    args.update(kw)
    with pytest.raises(PopulationConfigError, match=rf"^{field_name}:"):
        PBT(LR_SPACE, rng=np.random.default_rng(0), **args)


@pytest.mark.parametrize("value", ["bogus", "SYNC", "", 3, None])
def test_bad_synchrony_raises_naming_the_field(value: Any) -> None:
    with pytest.raises(PopulationConfigError, match=r"^synchrony:"):
        make(synchrony=value)


@pytest.mark.parametrize("value", ["sync", "async", Synchrony.SYNC, Synchrony.ASYNC])
def test_synchrony_accepts_strings_and_members(value: Any) -> None:
    assert make(synchrony=value).synchrony is Synchrony(value)


def test_negative_burn_in_raises_naming_the_field() -> None:
    with pytest.raises(PopulationConfigError, match=r"^burn_in:.*-1"):
        make(burn_in=-1)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(PopulationConfigError, ValueError)


def test_wrong_count_of_initial_hyperparameters_raises() -> None:
    with pytest.raises(PopulationConfigError, match=r"^initial_hyperparameters:.*3 sets.*4"):
        PBT(LR_SPACE, 4, 20, 5, np.random.default_rng(0), initial_hyperparameters=[{"lr": 0.1}] * 3)


def test_initial_hyperparameters_are_validated() -> None:
    with pytest.raises(PopulationConfigError, match=r"initial_hyperparameters\[\d\]: lr"):
        make(lrs=(0.1, 200.0))  # outside the hard bounds
    with pytest.raises(PopulationConfigError, match="unknown key"):
        PBT(LR_SPACE, 1, 5, 5, np.random.default_rng(0), initial_hyperparameters=[{"lr2": 1}])


# --- start ---------------------------------------------------------------------------------


def test_start_creates_the_population() -> None:
    pbt = make(total_steps=20, ready_every=5)
    starts = pbt.start()
    assert [type(d) for d in starts] == [Start] * 4
    assert [d.member for d in starts] == [0, 1, 2, 3]
    assert [d.hyperparameters for d in starts] == [{"lr": lr} for lr in (0.1, 0.2, 0.3, 0.4)]
    assert all(d.until == 5 for d in starts)
    assert all(isinstance(d.seed, int) and 0 <= d.seed < 2**31 for d in starts)
    assert len({d.seed for d in starts}) == 4
    assert sorted(pbt.members) == [0, 1, 2, 3]
    assert all(s.step == 0 and s.alive and not s.finished for s in pbt.members.values())
    assert not pbt.done()


def test_start_caps_the_first_segment_at_total_steps() -> None:
    assert [d.until for d in make(total_steps=3, ready_every=5).start()] == [3] * 4


def test_start_samples_from_the_space_when_not_given() -> None:
    space = Space({"lr": LogUniform(1e-3, 1e-1), "momentum": 0.9})
    starts = PBT(space, 6, 10, 5, np.random.default_rng(3)).start()
    assert len(starts) == 6
    for d in starts:
        assert 1e-3 <= d.hyperparameters["lr"] <= 1e-1
        assert d.hyperparameters["momentum"] == 0.9
    assert len({d.hyperparameters["lr"] for d in starts}) == 6


# --- synchronous mode ----------------------------------------------------------------------


def test_sync_waits_for_every_live_member() -> None:
    pbt = make(explore=Perturb((2.0,)))
    pbt.start()
    for m in (2, 0, 3):
        pbt.report(m, 5, float(m))
        assert pbt.ready(m, 5) == []
    pbt.report(1, 5, 1.0)
    decisions = pbt.ready(1, 5)
    assert [d.member for d in decisions] == [0, 1, 2, 3]  # one each, in member order
    assert all(d.step == 5 for d in decisions)


def test_sync_truncation_worst_copies_best() -> None:
    pbt = make(exploit=Truncation(0.25), explore=Perturb((2.0,)))
    pbt.start()
    decisions = by_member(train(pbt, 5, {0: 0.5, 1: 1.0, 2: 1.5, 3: 2.0}))
    assert decisions[1] == Continue(1, 5, 10)
    assert decisions[2] == Continue(2, 5, 10)
    assert decisions[3] == Continue(3, 5, 10)
    e = decisions[0]
    assert isinstance(e, Exploit)
    assert e.member == 0 and e.step == 5 and e.donor == 3
    assert e.source == Weights(3, 5, {"lr": 0.4})
    assert e.old_hyperparameters == {"lr": 0.1}
    assert e.hyperparameters == {"lr": 0.8}  # Perturb((2.0,)) of the donor's lr
    assert e.changes == (Change("lr", 0.4, 0.8, "×2"),)
    assert "bottom 25%" in e.reason
    assert e.until == 10
    # the strategy's view of the member follows the copy
    state = pbt.members[0]
    assert state.hyperparameters == {"lr": 0.8}
    assert state.step == 5
    assert state.weights == Weights(3, 5, {"lr": 0.4})
    assert state.scores == [2.0]  # inherits the donor's record
    # the donor is untouched
    assert pbt.members[3].hyperparameters == {"lr": 0.4}
    assert pbt.members[3].weights == Weights(3, 5, {"lr": 0.4})


def test_sync_truncation_fraction_picks_groups() -> None:
    lrs = [0.1 * (i + 1) for i in range(8)]
    pbt = make(lrs=lrs, exploit=Truncation(0.25), explore=NoExplore(), seed=1)
    pbt.start()
    decisions = by_member(train(pbt, 5, {m: float(m) for m in range(8)}))
    exploits = {m: d for m, d in decisions.items() if isinstance(d, Exploit)}
    assert sorted(exploits) == [0, 1]  # bottom 2 of 8
    assert all(e.donor in (6, 7) for e in exploits.values())  # top 2 of 8


def test_sync_next_segment_is_capped_at_total_steps() -> None:
    pbt = make(total_steps=12, ready_every=5, explore=Perturb((2.0,)))
    pbt.start()
    first = by_member(train(pbt, 5, {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}))
    assert first[0].until == 10
    second = by_member(train(pbt, 10, {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}))
    assert isinstance(second[0], Exploit)
    assert second[0].source.step == 10
    assert second[0].until == 12
    assert second[1] == Continue(1, 10, 12)
    final = train(pbt, 12, {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0})
    assert final == [Finish(m, 12) for m in range(4)]
    assert pbt.done()


@pytest.mark.parametrize(("a", "b", "c"), [(0, 1, 2), (2, 1, 0)])
def test_sync_simultaneous_exploits_use_the_snapshot_scripted(a: int, b: int, c: int) -> None:
    """A copies B while B copies C in the same round, whichever of A and B is decided first."""
    lrs = {a: 0.1, b: 0.2, c: 0.3}
    pbt = make(
        lrs=[lrs[m] for m in range(3)], exploit=Scripted({a: b, b: c}), explore=Perturb((2.0,))
    )
    pbt.start()
    d = by_member(train(pbt, 5, {a: 0.0, b: 1.0, c: 2.0}))
    da, db = d[a], d[b]
    assert isinstance(da, Exploit) and isinstance(db, Exploit)
    assert db.source == Weights(c, 5, {"lr": 0.3})
    assert db.hyperparameters == {"lr": 0.6}
    # A gets B's weights and hyperparameters from before B's exploit
    assert da.source == Weights(b, 5, {"lr": 0.2})
    assert da.old_hyperparameters == {"lr": 0.1}
    assert da.hyperparameters == {"lr": 0.4}
    assert da.changes == (Change("lr", 0.2, 0.4, "×2"),)
    assert pbt.members[a].scores == [1.0]  # B's record, not C's
    assert pbt.members[b].scores == [2.0]


@pytest.mark.parametrize(("a", "b", "c"), [(0, 1, 2), (2, 1, 0)])
def test_sync_binary_tournament_chain_uses_the_snapshot(a: int, b: int, c: int) -> None:
    """With BinaryTournament, find seeds where A copies B and B copies C in one round."""
    lrs = {a: 0.1, b: 0.2, c: 0.3}
    chains = 0
    for seed in range(40):
        pbt = make(
            lrs=[lrs[m] for m in range(3)],
            exploit=BinaryTournament(),
            explore=Perturb((2.0,)),
            seed=seed,
        )
        pbt.start()
        d = by_member(train(pbt, 5, {a: 0.0, b: 1.0, c: 2.0}))
        assert d[c] == Continue(c, 5, 10)  # the best never loses a tournament
        da, db = d[a], d[b]
        if not (isinstance(da, Exploit) and da.donor == b and isinstance(db, Exploit)):
            continue
        chains += 1
        assert db.donor == c
        assert da.source == Weights(b, 5, {"lr": 0.2})
        assert da.hyperparameters == {"lr": 0.4}
        assert da.old_hyperparameters == {"lr": 0.1}
        assert db.hyperparameters == {"lr": 0.6}
    assert chains > 0, "no seed produced a chain; the test does not test anything"


def test_sync_failure_at_the_barrier_releases_it() -> None:
    pbt = make(lrs=(0.1, 0.2, 0.3), explore=NoExplore())
    pbt.start()
    pbt.report(2, 3, 100.0)  # the best score so far, then it dies
    assert train(pbt, 5, {0: 0.0, 1: 1.0}) == []
    decisions = by_member(pbt.failed(2, 0))
    assert sorted(decisions) == [0, 1]
    assert isinstance(decisions[0], Exploit)
    assert decisions[0].donor == 1  # the dead member is never a donor
    assert decisions[1] == Continue(1, 5, 10)
    assert not pbt.members[2].alive
    # the barrier now waits for the two survivors only
    assert pbt.ready(0, 10) == []
    assert len(pbt.ready(1, 10)) == 2


def test_sync_failure_before_anyone_waits_returns_nothing() -> None:
    pbt = make()
    pbt.start()
    assert pbt.failed(1, 0) == []
    assert not pbt.members[1].alive
    assert not pbt.done()


def test_sync_last_member_failing_ends_the_run() -> None:
    pbt = make(lrs=(0.1, 0.2))
    pbt.start()
    assert pbt.failed(0, 0) == []
    assert pbt.failed(1, 0) == []
    assert pbt.done()


def test_sync_burn_in_blocks_exploitation() -> None:
    pbt = make(total_steps=20, ready_every=5, burn_in=10, explore=NoExplore())
    pbt.start()
    scores = {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}
    assert train(pbt, 5, scores) == [Continue(m, 5, 10) for m in range(4)]
    second = by_member(train(pbt, 10, scores))
    assert isinstance(second[0], Exploit)  # at step == burn_in exploitation begins


def test_sync_final_step_only_finishes() -> None:
    pbt = make(total_steps=10, ready_every=5, exploit=KeepOwn(), explore=Perturb((2.0,)))
    pbt.start()
    scores = {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}
    train(pbt, 5, scores)
    assert not pbt.done()
    assert train(pbt, 10, scores) == [Finish(m, 10) for m in range(4)]
    assert all(s.finished for s in pbt.members.values())
    assert pbt.done()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_rank_worst(bad: float) -> None:
    pbt = make(explore=NoExplore())
    pbt.start()
    decisions = by_member(train(pbt, 5, {0: -100.0, 1: bad, 2: 1.0, 3: 2.0}))
    assert isinstance(decisions[1], Exploit)
    assert decisions[1].donor == 3
    assert decisions[0] == Continue(0, 5, 10)


def test_nan_member_is_never_a_donor() -> None:
    pbt = make(lrs=(0.1, 0.2), exploit=Truncation(0.5), explore=NoExplore())
    pbt.start()
    d = by_member(train(pbt, 5, {0: math.nan, 1: -1e9}))
    assert isinstance(d[0], Exploit) and d[0].donor == 1
    assert d[1] == Continue(1, 5, 10)


def test_member_without_scores_is_left_alone() -> None:
    pbt = make(explore=NoExplore())
    pbt.start()
    for m, s in {1: 1.0, 2: 2.0, 3: 3.0}.items():
        pbt.report(m, 5, s)
    decisions = by_member([d for m in range(4) for d in pbt.ready(m, 5)])
    assert decisions[0] == Continue(0, 5, 10)  # no score: cannot be ranked
    assert isinstance(decisions[1], Exploit)


def test_ready_after_finish_or_failure_raises() -> None:
    pbt = make(lrs=(0.1, 0.2), total_steps=5, ready_every=5)
    pbt.start()
    pbt.failed(1, 0)
    with pytest.raises(ValueError, match="member 1"):
        pbt.ready(1, 5)
    assert pbt.ready(0, 5) == [Finish(0, 5)]
    with pytest.raises(ValueError, match="member 0"):
        pbt.ready(0, 5)


# --- asynchronous mode ---------------------------------------------------------------------


def test_async_decides_for_the_ready_member_alone() -> None:
    pbt = make(synchrony="async", explore=NoExplore())
    pbt.start()
    pbt.report(3, 5, 3.0)
    assert pbt.ready(3, 5) == [Continue(3, 5, 10)]
    pbt.report(0, 5, 0.0)
    (d,) = pbt.ready(0, 5)
    assert isinstance(d, Exploit)
    assert d.member == 0 and d.donor == 3
    assert d.source == Weights(3, 5, {"lr": 0.4})
    assert d.hyperparameters == {"lr": 0.4}
    assert d.until == 10


def test_async_copies_a_donor_at_another_step() -> None:
    pbt = make(synchrony="async", explore=Perturb((2.0,)))
    pbt.start()
    pbt.report(3, 5, 5.0)
    assert pbt.ready(3, 5) == [Continue(3, 5, 10)]
    pbt.report(3, 10, 10.0)
    assert pbt.ready(3, 10) == [Continue(3, 10, 15)]
    pbt.report(0, 5, 0.0)
    (d,) = pbt.ready(0, 5)
    assert isinstance(d, Exploit)
    assert d.step == 5  # where the member was
    assert d.source == Weights(3, 10, {"lr": 0.4})  # where the donor's weights are
    assert d.hyperparameters == {"lr": 0.8}
    assert d.until == 15
    assert pbt.members[0].step == 10
    assert pbt.members[0].weights == Weights(3, 10, {"lr": 0.4})
    assert pbt.members[0].scores == [5.0, 10.0]


def test_async_copying_a_finished_donor_finishes_the_member() -> None:
    """The copy holds weights at the budget's end: the member finishes with the exploit, and no
    segment of zero steps is asked for (those reached FIRE's curve maths as a repeated step)."""
    pbt = make(lrs=(0.1, 0.2), total_steps=10, ready_every=5, synchrony="async")
    pbt.start()
    pbt.report(1, 5, 5.0)
    assert pbt.ready(1, 5) == [Continue(1, 5, 10)]
    pbt.report(1, 10, 10.0)
    assert pbt.ready(1, 10) == [Finish(1, 10)]
    pbt.report(0, 5, 0.0)
    d, finish = pbt.ready(0, 5)
    assert isinstance(d, Exploit)
    assert d.donor == 1
    assert d.source == Weights(1, 10, {"lr": 0.2})
    assert d.until == 10 == d.source.step  # nothing left to train
    assert finish == Finish(0, 10)
    assert pbt.members[0].step == 10
    assert pbt.done()


def test_async_failure_returns_nothing_and_blocks_nobody() -> None:
    pbt = make(lrs=(0.1, 0.2, 0.3), synchrony="async", explore=NoExplore())
    pbt.start()
    pbt.report(2, 5, 100.0)
    assert pbt.ready(2, 5) == [Continue(2, 5, 10)]
    assert pbt.failed(2, 5) == []
    pbt.report(0, 5, 0.0)
    pbt.report(1, 5, 1.0)
    assert pbt.ready(1, 5) == [Continue(1, 5, 10)]  # a donor needs saved weights
    (d,) = pbt.ready(0, 5)
    assert isinstance(d, Exploit) and d.donor == 1  # the dead member's record no longer counts


def test_async_burn_in_and_final_step() -> None:
    pbt = make(lrs=(0.1, 0.2), total_steps=10, ready_every=5, burn_in=6, synchrony="async")
    pbt.start()
    pbt.report(1, 5, 1.0)
    pbt.report(0, 5, 0.0)
    assert pbt.ready(0, 5) == [Continue(0, 5, 10)]
    pbt.report(0, 10, 0.0)
    assert pbt.ready(0, 10) == [Finish(0, 10)]


# --- ablations -----------------------------------------------------------------------------


@pytest.mark.parametrize("synchrony", ["sync", "async"])
def test_explore_only_keeps_own_weights(synchrony: str) -> None:
    pbt = make(exploit=KeepOwn(), explore=Perturb((2.0,)), synchrony=synchrony)
    pbt.start()
    decisions = by_member(train(pbt, 5, {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}))
    for m, lr in enumerate((0.1, 0.2, 0.3, 0.4)):
        d = decisions[m]
        assert isinstance(d, Exploit)
        assert d.donor == m
        assert d.source == Weights(m, 5, {"lr": lr})
        assert d.old_hyperparameters == {"lr": lr}
        assert d.hyperparameters == {"lr": 2 * lr}
        assert d.changes == (Change("lr", lr, 2 * lr, "×2"),)
        assert d.until == 10
        assert pbt.members[m].scores == [float(m)]


def test_exploit_only_copies_hyperparameters_exactly() -> None:
    pbt = make(exploit=Truncation(0.25), explore=NoExplore())
    pbt.start()
    e = by_member(train(pbt, 5, {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}))[0]
    assert isinstance(e, Exploit)
    assert e.hyperparameters == {"lr": 0.4} == e.source.hyperparameters
    assert e.changes == ()
    # a copy, not the donor's own dict
    assert e.hyperparameters is not pbt.members[3].hyperparameters


def test_no_exploit_only_continues() -> None:
    pbt = make(total_steps=10, exploit=NoExploit())
    sim = Sim(pbt, 10).run()
    assert sim.of(Exploit) == []
    assert len(sim.of(Continue)) == 4
    assert len(sim.of(Finish)) == 4


# --- end to end ----------------------------------------------------------------------------


def test_sync_exploit_only_converges_to_the_best_lr() -> None:
    pbt = make(lrs=(0.05, 0.4, 0.1, 0.2), total_steps=40, explore=NoExplore())
    sim = Sim(pbt, 40).run()
    assert {sim.hyperparameters[m]["lr"] for m in range(4)} == {0.4}
    assert all(s.hyperparameters == {"lr": 0.4} for s in pbt.members.values())
    assert len(sim.of(Finish)) == 4
    assert all(sim.position[m] == 40 for m in range(4))
    assert pbt.done()


@pytest.mark.parametrize("synchrony", ["sync", "async"])
def test_default_pbt_moves_the_population_towards_higher_lr(synchrony: str) -> None:
    space = Space({"lr": LogUniform(1e-3, 1e-1, bounds=(1e-4, 1.0))})
    pbt = PBT(space, 8, 200, 5, np.random.default_rng(7), synchrony=synchrony)
    sim = Sim(pbt, 200, cost={m: 1.0 + 0.1 * m for m in range(8)}).run()
    start = [d.hyperparameters["lr"] for d in sim.of(Start)]
    final = [sim.hyperparameters[m]["lr"] for m in range(8)]
    assert np.median(final) > max(start)
    assert len(sim.of(Finish)) == 8
    assert sim.of(Exploit)


@pytest.mark.parametrize("synchrony", ["sync", "async"])
@pytest.mark.parametrize(("total", "every"), [(20, 5), (23, 5), (7, 10), (1, 1), (12, 1)])
def test_every_member_reaches_total_steps_exactly(synchrony: str, total: int, every: int) -> None:
    pbt = make(
        lrs=(0.1, 0.5, 0.2, 0.3, 0.9),
        total_steps=total,
        ready_every=every,
        synchrony=synchrony,
        seed=total,
    )
    sim = Sim(pbt, total, every, eval_every=2, cost={0: 3.0, 1: 0.5, 2: 1.0, 3: 1.7, 4: 1.1}).run()
    assert len(sim.of(Finish)) == 5
    assert sorted(d.member for d in sim.of(Finish)) == [0, 1, 2, 3, 4]
    assert all(sim.position[m] == total for m in range(5))
    assert all(s.step == total and s.finished for s in pbt.members.values())
    assert all(sim.trained[m] >= 1 for m in range(5))
    assert pbt.done()


def test_sync_rounds_have_one_decision_per_member() -> None:
    pbt = make(total_steps=20, ready_every=5, exploit=BinaryTournament())
    sim = Sim(pbt, 20, cost={0: 1.0, 1: 2.0, 2: 0.3, 3: 1.5}).run()
    per_step: dict[int, list[int]] = defaultdict(list)
    for d in sim.decisions[4:]:
        assert not isinstance(d, Start)
        per_step[d.step].append(d.member)
    assert sorted(per_step) == [5, 10, 15, 20]
    assert all(sorted(ms) == [0, 1, 2, 3] for ms in per_step.values())
    # in sync mode nobody moves to another step by exploiting
    assert all(d.source.step == d.step for d in sim.of(Exploit))
    assert all(sim.trained[m] == 20 for m in range(4))


def test_async_members_can_jump_to_the_donors_step() -> None:
    pbt = make(
        lrs=(0.1, 0.2, 0.3, 0.9), total_steps=40, synchrony="async", explore=NoExplore(), seed=2
    )
    # the best member is also the fastest: slow members copy weights ahead of them
    sim = Sim(pbt, 40, cost={0: 3.0, 1: 2.0, 2: 1.5, 3: 0.5}).run()
    jumps = [d for d in sim.of(Exploit) if d.source.step != d.step]
    assert jumps
    assert all(d.until == min(d.source.step + 5, 40) for d in jumps)
    assert len(sim.of(Finish)) == 4


def test_async_finished_donor_in_simulation() -> None:
    pbt = make(lrs=(0.1, 0.9), total_steps=10, synchrony="async", exploit=Truncation(0.5))
    # member 1 (best) finishes long before member 0 becomes ready
    sim = Sim(pbt, 10, cost={0: 10.0, 1: 1.0}).run()
    e = sim.of(Exploit)
    assert len(e) == 1
    assert e[0].member == 0 and e[0].source == Weights(1, 10, {"lr": 0.9})
    assert e[0].until == 10
    assert sim.trained[0] == 5  # no segment after the copy: it finished with it
    assert sim.of(Finish) == [Finish(1, 10), Finish(0, 10)]


@pytest.mark.parametrize("synchrony", ["sync", "async"])
def test_failure_in_simulation(synchrony: str) -> None:
    pbt = make(lrs=(0.1, 0.2, 0.3, 0.4), total_steps=30, synchrony=synchrony)
    sim = Sim(pbt, 30, fail_at={3: 12}, cost={0: 1.0, 1: 1.3, 2: 0.7, 3: 1.0}).run()
    assert sim.failed == {3}
    assert len(sim.of(Finish)) == 3
    assert all(sim.position[m] == 30 for m in range(3))
    after = sim.decisions[sim.failed_after[3] :]
    assert all(d.donor != 3 for d in after if isinstance(d, Exploit))
    assert not pbt.members[3].alive
    assert pbt.done()


def test_nan_member_is_exploited_in_simulation() -> None:
    def score(h: Mapping[str, Any], step: int) -> float:
        return math.nan if h["lr"] == 0.4 else step * h["lr"]

    pbt = make(lrs=(0.1, 0.2, 0.3, 0.4), total_steps=10, explore=NoExplore())
    sim = Sim(pbt, 10, score=score).run()
    (e,) = sim.of(Exploit)
    assert e.member == 3 and e.donor == 2
    assert sim.hyperparameters[3] == {"lr": 0.3}


def test_burn_in_in_simulation() -> None:
    pbt = make(total_steps=40, burn_in=17, synchrony="async")
    sim = Sim(pbt, 40, cost={0: 1.0, 1: 1.2, 2: 0.9, 3: 1.4}).run()
    assert sim.of(Exploit)
    assert all(d.step >= 17 for d in sim.of(Exploit))


# --- determinism ---------------------------------------------------------------------------


def _decisions(seed: int, synchrony: str) -> list[Decision]:
    space = Space({"lr": LogUniform(1e-3, 1.0), "wd": Uniform(0.0, 0.1)})
    pbt = PBT(space, 6, 60, 5, np.random.default_rng(seed), synchrony=synchrony)

    def score(h: Mapping[str, Any], step: int) -> float:
        return step * h["lr"] - 10 * h["wd"]

    return Sim(pbt, 60, score=score, cost={m: 1.0 + 0.25 * m for m in range(6)}).run().decisions


@pytest.mark.parametrize("synchrony", ["sync", "async"])
def test_same_seed_same_decisions(synchrony: str) -> None:
    assert _decisions(11, synchrony) == _decisions(11, synchrony)


@pytest.mark.parametrize("synchrony", ["sync", "async"])
def test_different_seed_different_decisions(synchrony: str) -> None:
    assert _decisions(11, synchrony) != _decisions(12, synchrony)


def test_async_never_rewinds_to_a_donor_whose_weights_are_behind() -> None:
    """A donor that just copied an older checkpoint is not copied by a member ahead of it:
    members copying each other's past could otherwise loop forever without progress."""
    pbt = make(lrs=(0.1, 0.2), total_steps=100, ready_every=5, synchrony="async")
    pbt.start()
    pbt.report(1, 5, 1.0)
    assert pbt.ready(1, 5) == [Continue(1, 5, 10)]
    pbt.report(0, 10, 0.0)  # member 0 reaches step 10 while member 1 holds step-5 weights
    (d,) = pbt.ready(0, 10)
    assert d == Continue(0, 10, 15)  # member 1 (better) holds weights of step 5 only: no copy
