"""Unit tests for the RandomSearch strategy, driven with plain data and seeded generators."""

from __future__ import annotations

import doctest
from collections import deque
from typing import Any

import numpy as np
import pytest

import firepbt.strategies._random
from firepbt.decisions import Continue, Decision, Finish, Start
from firepbt.errors import PopulationConfigError
from firepbt.space import Choice, LogUniform, Space, Uniform
from firepbt.strategies import RandomSearch

SPACE = Space({"lr": LogUniform(1e-3, 1.0), "batch": Choice([16, 32, 64]), "momentum": 0.9})


def make(
    population: int = 3, total_steps: int = 12, ready_every: int = 5, **kw: Any
) -> RandomSearch:
    return RandomSearch(
        SPACE, population, total_steps, ready_every, np.random.default_rng(kw.pop("seed", 0)), **kw
    )


def simulate(rs: RandomSearch, fail: dict[int, int] | None = None) -> list[Decision]:
    """Play the runner: run each segment in turn (first in, first out), report one point per
    step scored by the member's lr, and collect every decision. ``fail`` maps a member to the
    start step of the segment that fails for good."""
    fail = fail or {}
    decisions: list[Decision] = list(rs.start())
    h = {d.member: d.hyperparameters for d in decisions if isinstance(d, Start)}
    queue = deque((d.member, 0, d.until) for d in decisions if isinstance(d, Start))
    while queue:
        member, start, until = queue.popleft()
        if fail.get(member) == start:
            new = rs.failed(member, start)
        else:
            for step in range(start + 1, until + 1):
                rs.report(member, step, step * h[member]["lr"])
            new = rs.ready(member, until)
        decisions.extend(new)
        for d in new:
            assert d.member == member
            if isinstance(d, Continue):
                assert d.step == until
                queue.append((member, d.step, d.until))
            else:
                assert isinstance(d, Finish)
    return decisions


def test_doctests_pass() -> None:
    result = doctest.testmod(firepbt.strategies._random)
    assert result.attempted > 0
    assert result.failed == 0


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_name", "args"),
    [
        ("population", (0, 10, 5)),
        ("population", (-1, 10, 5)),
        ("total_steps", (2, 0, 5)),
        ("total_steps", (2, -10, 5)),
        ("ready_every", (2, 10, 0)),
        ("ready_every", (2, 10, -1)),
    ],
)
def test_bad_sizes_raise_naming_the_field(field_name: str, args: tuple[int, int, int]) -> None:
    with pytest.raises(PopulationConfigError, match=rf"^{field_name}: need at least 1"):
        RandomSearch(SPACE, *args, np.random.default_rng(0))


def test_initial_hyperparameters_are_used() -> None:
    given = [
        {"lr": 0.01, "batch": 16, "momentum": 0.9},
        {"lr": 0.5, "batch": 64, "momentum": 0.9},
    ]
    starts = make(population=2, initial_hyperparameters=given).start()
    assert [d.hyperparameters for d in starts] == given


def test_initial_hyperparameters_are_validated() -> None:
    space = Space({"lr": Uniform(0.0, 1.0), "n": 3})
    rs = RandomSearch(
        space, 1, 5, 5, np.random.default_rng(0), initial_hyperparameters=[{"lr": 1, "n": 3}]
    )
    (start,) = rs.start()
    assert start.hyperparameters == {"lr": 1.0, "n": 3}
    assert isinstance(start.hyperparameters["lr"], float)  # canonical form
    with pytest.raises(PopulationConfigError, match=r"initial_hyperparameters\[\d\]: lr"):
        # a log-scale value must stay positive (the prior is not a hard bound)
        make(population=1, initial_hyperparameters=[{"lr": -1.0, "batch": 16, "momentum": 0.9}])
    with pytest.raises(PopulationConfigError, match="batch"):
        make(population=1, initial_hyperparameters=[{"lr": 0.1, "batch": 17, "momentum": 0.9}])
    with pytest.raises(PopulationConfigError, match="missing"):
        make(population=1, initial_hyperparameters=[{"lr": 0.1}])


@pytest.mark.parametrize("count", [0, 2, 4])
def test_wrong_count_of_initial_hyperparameters_raises(count: int) -> None:
    given = [{"lr": 0.1, "batch": 16, "momentum": 0.9}] * count
    with pytest.raises(PopulationConfigError, match=rf"^initial_hyperparameters: {count} sets"):
        make(population=3, initial_hyperparameters=given)


# --- start ---------------------------------------------------------------------------------


def test_start_gives_one_start_per_member() -> None:
    rs = make(population=3, total_steps=12, ready_every=5)
    starts = rs.start()
    assert [type(d) for d in starts] == [Start] * 3
    assert [d.member for d in starts] == [0, 1, 2]
    assert all(d.until == 5 for d in starts)
    assert len({d.seed for d in starts}) == 3
    for d in starts:
        h = d.hyperparameters
        assert 1e-3 <= h["lr"] <= 1.0 and h["batch"] in (16, 32, 64) and h["momentum"] == 0.9
    assert {m: s.step for m, s in rs.members.items()} == {0: 0, 1: 0, 2: 0}
    assert not rs.done()


@pytest.mark.parametrize(("total", "every", "until"), [(12, 5, 5), (3, 5, 3), (5, 5, 5), (1, 1, 1)])
def test_first_segment_ends_at_the_first_ready_step(total: int, every: int, until: int) -> None:
    assert {d.until for d in make(total_steps=total, ready_every=every).start()} == {until}


def test_same_seed_same_population_different_seed_different() -> None:
    assert make(seed=4).start() == make(seed=4).start()
    assert make(seed=4).start() != make(seed=5).start()


# --- ready ---------------------------------------------------------------------------------


def test_ready_continues_then_finishes() -> None:
    rs = make(population=2, total_steps=12, ready_every=5)
    rs.start()
    rs.report(0, 5, 0.5)
    assert rs.ready(0, 5) == [Continue(0, 5, 10)]
    assert rs.ready(0, 10) == [Continue(0, 10, 12)]  # capped at total_steps
    assert rs.ready(0, 12) == [Finish(0, 12)]
    assert rs.members[0].finished and rs.members[0].step == 12
    assert not rs.done()  # member 1 still trains
    assert rs.ready(1, 5) == [Continue(1, 5, 10)]  # members never wait for each other
    assert rs.ready(1, 10) == [Continue(1, 10, 12)]
    assert rs.ready(1, 12) == [Finish(1, 12)]
    assert rs.done()


def test_ready_records_weights_and_reports_record_scores() -> None:
    rs = make(population=1)
    (start,) = rs.start()
    rs.report(0, 3, 1.5)
    rs.report(0, 5, float("nan"))
    rs.ready(0, 5)
    state = rs.members[0]
    assert state.scores[0] == 1.5 and np.isnan(state.scores[1])
    assert state.weights.member == 0 and state.weights.step == 5
    assert state.weights.hyperparameters == start.hyperparameters
    assert state.hyperparameters == start.hyperparameters  # never changes


def test_ready_of_a_finished_or_failed_member_raises() -> None:
    rs = make(population=2, total_steps=5)
    rs.start()
    assert rs.ready(0, 5) == [Finish(0, 5)]
    with pytest.raises(ValueError, match="member 0"):
        rs.ready(0, 5)
    rs.failed(1, 0)
    with pytest.raises(ValueError, match="member 1"):
        rs.ready(1, 5)


# --- failure -------------------------------------------------------------------------------


def test_failed_member_gets_no_decisions() -> None:
    rs = make(population=2, total_steps=5)
    rs.start()
    assert rs.failed(1, 0) == []
    assert not rs.members[1].alive
    assert not rs.done()
    assert rs.ready(0, 5) == [Finish(0, 5)]
    assert rs.done()


def test_all_failed_is_done() -> None:
    rs = make(population=2)
    rs.start()
    assert rs.failed(0, 0) == []
    assert not rs.done()
    assert rs.failed(1, 0) == []
    assert rs.done()


# --- end to end ----------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "every"), [(12, 5), (10, 5), (3, 5), (1, 1), (7, 1)])
def test_simulation_trains_every_member_to_total_steps(total: int, every: int) -> None:
    rs = make(population=4, total_steps=total, ready_every=every)
    decisions = simulate(rs)
    starts = [d for d in decisions if isinstance(d, Start)]
    continues = [d for d in decisions if isinstance(d, Continue)]
    finishes = [d for d in decisions if isinstance(d, Finish)]
    assert len(starts) == 4
    assert sorted(d.member for d in finishes) == [0, 1, 2, 3]
    assert all(d.step == total for d in finishes)
    segments = -(-total // every)  # ceil
    assert len(continues) == 4 * (segments - 1)
    assert len(decisions) == 4 + 4 * (segments - 1) + 4
    assert all(s.step == total and s.finished for s in rs.members.values())
    assert all(len(s.scores) == total for s in rs.members.values())
    # hyperparameters never change
    assert {m: s.hyperparameters for m, s in rs.members.items()} == {
        d.member: d.hyperparameters for d in starts
    }
    assert rs.done()


def test_simulation_with_a_failure() -> None:
    rs = make(population=3, total_steps=20, ready_every=5)
    decisions = simulate(rs, fail={1: 10})
    finishes = [d for d in decisions if isinstance(d, Finish)]
    assert sorted(d.member for d in finishes) == [0, 2]
    assert not rs.members[1].alive and rs.members[1].step == 10
    assert max(d.step for d in decisions if isinstance(d, Continue) and d.member == 1) == 10
    assert rs.done()


def test_simulation_is_deterministic() -> None:
    assert simulate(make(seed=9)) == simulate(make(seed=9))
