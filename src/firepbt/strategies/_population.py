"""Shared bookkeeping of a population: members, their steps, scores and where their weights live."""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

from firepbt.decisions import Continue, Decision, Exploit, Finish, Start, Weights
from firepbt.errors import PopulationConfigError, SpaceError
from firepbt.exploit import ExploitPolicy, ExploitRecord, Truncation
from firepbt.explore import ExplorePolicy, Perturb, Resample, chain, explore_within
from firepbt.scoreboard import ScoreBoard
from firepbt.space import Hyperparameters, Space
from firepbt.strategies._base import MemberState


class Synchrony(enum.Enum):
    """Synchronous: every member reaches the ready step, then all decide together.
    Asynchronous: each member decides when it is ready, against the latest known scores."""

    SYNC = "sync"
    ASYNC = "async"


def evolution_settings(
    synchrony: Synchrony | str,
    burn_in: int,
    exploit: ExploitPolicy | None,
    explore: ExplorePolicy | None,
) -> tuple[Synchrony, ExploitPolicy, ExplorePolicy]:
    """Validate the settings PBT and FIRE PBT share; defaults follow the PBT paper: truncation
    of the bottom 25 %, perturbation by 0.8 / 1.2 and resampling with probability 0.25."""
    if burn_in < 0:
        raise PopulationConfigError(f"burn_in: must be >= 0 steps, got {burn_in}")
    try:
        mode = Synchrony(synchrony)
    except ValueError:
        raise PopulationConfigError(
            f"synchrony: expected 'sync' or 'async', got {synchrony!r}"
        ) from None
    return (
        mode,
        exploit if exploit is not None else Truncation(0.25),
        explore if explore is not None else chain(Perturb(), Resample(0.25)),
    )


def check_common(population: int, total_steps: int, ready_every: int) -> None:
    if population < 1:
        raise PopulationConfigError(f"population: need at least 1 member, got {population}")
    if total_steps < 1:
        raise PopulationConfigError(f"total_steps: need at least 1 step, got {total_steps}")
    if ready_every < 1:
        raise PopulationConfigError(f"ready_every: need at least 1 step, got {ready_every}")


def starting_hyperparameters(
    space: Space,
    population: int,
    rng: np.random.Generator,
    given: Sequence[Mapping[str, object]] | None,
) -> list[Hyperparameters]:
    """Sample a population's starting hyperparameters, or validate the ones given."""
    if given is None:
        return [space.sample(rng) for _ in range(population)]
    if len(given) != population:
        raise PopulationConfigError(
            f"initial_hyperparameters: {len(given)} sets given for a population of {population}"
        )
    checked = []
    for i, h in enumerate(given):
        try:
            checked.append(space.validate(h))
        except SpaceError as e:
            raise PopulationConfigError(f"initial_hyperparameters[{i}]: {e}") from None
    return checked


class Population:
    """Member states plus the moves every strategy shares: start, continue, finish.

    Alongside the states it keeps, up to date as they change, what decisions ask for at every
    ready point: the live members' scores with their rankings (``board``) and the members that
    still train (``training``: alive and not finished)."""

    def __init__(self, total_steps: int, ready_every: int) -> None:
        self.total_steps = total_steps
        self.ready_every = ready_every
        self.members: dict[int, MemberState] = {}
        self.board = ScoreBoard()
        self.training: set[int] = set()
        self._before: dict[int, MemberState] | None = None  # states as a round found them

    def next_ready(self, step: int) -> int:
        return min(step + self.ready_every, self.total_steps)

    def start(
        self,
        hyperparameters: list[Hyperparameters],
        rng: np.random.Generator,
        subpopulation: Callable[[int], int] = lambda member: 0,
    ) -> list[Decision]:
        decisions: list[Decision] = []
        for member, h in enumerate(hyperparameters):
            seed = int(rng.integers(2**31 - 1))
            self.members[member] = MemberState(h, 0, Weights(member, 0, h))
            self.board.set(member, self.members[member].scores)
            self.training.add(member)
            decisions.append(Start(member, h, seed, self.next_ready(0), subpopulation(member)))
        return decisions

    def report(self, member: int, step: int, score: float) -> None:
        state = self.members[member]
        state.scores.append(float(score))
        if state.alive:
            self.board.set(member, state.scores)

    def set_scores(self, member: int, scores: list[float]) -> None:
        """``member``'s score record is now ``scores``."""
        state = self.changing(member)
        state.scores = scores
        if state.alive:
            self.board.set(member, scores)

    @contextmanager
    def round(self) -> Iterator[Mapping[int, MemberState]]:
        """Decisions taken together: until the round ends, the view it yields shows every member
        as the round found it (a donor's weights, hyperparameters and scores are those it had
        then, even once it has moved), and so does the score board. Only the states that change
        are copied, when they first change."""
        self._before = {}
        self.board.hold()
        try:
            yield _RoundView(self.members, self._before)
        finally:
            self._before = None
            self.board.release()

    def changing(self, member: int) -> MemberState:
        """``member``'s state, about to change: a round in progress keeps a copy of it first."""
        state = self.members[member]
        if self._before is not None and member not in self._before:
            self._before[member] = MemberState(
                state.hyperparameters,
                state.step,
                state.weights,
                state.scores,
                state.alive,
                state.finished,
            )
        return state

    def _end(self, member: int) -> None:
        self.changing(member).finished = True
        self.training.discard(member)

    def arrive(self, member: int, step: int) -> MemberState:
        """Record that ``member`` saved its weights at ``step``."""
        state = self.members[member]
        if not state.alive or state.finished:
            raise ValueError(f"member {member} is not training but reported ready at step {step}")
        state.step = step
        state.weights = Weights(member, step, state.hyperparameters)
        return state

    def continue_or_finish(self, member: int) -> Decision:
        state = self.members[member]
        if state.step >= self.total_steps:
            self._end(member)
            return Finish(member, state.step)
        return Continue(member, state.step, self.next_ready(state.step))

    def finish_if_done(self, member: int) -> list[Decision]:
        """After an exploit: a member that copied a finished donor holds weights at the end of
        the budget, so it finishes there (no segment of zero steps is run)."""
        state = self.members[member]
        if state.step < self.total_steps:
            return []
        self._end(member)
        return [Finish(member, state.step)]

    def exploit(
        self,
        member: int,
        record: ExploitRecord,
        donor: MemberState,
        explore: ExplorePolicy,
        space: Space,
        rng: np.random.Generator,
    ) -> Exploit:
        """``member`` copies ``donor`` (a snapshot taken when the decision round began) and
        explores the donor's hyperparameters; the member's state follows the copy."""
        state = self.changing(member)
        new_h, changes = explore_within(explore, donor.weights.hyperparameters, space, rng)
        decision = Exploit(
            member=member,
            step=state.step,
            donor=record.donor,
            source=donor.weights,
            old_hyperparameters=state.hyperparameters,
            hyperparameters=new_h,
            changes=changes,
            reason=record.reason,
            until=self.next_ready(donor.weights.step),
        )
        state.hyperparameters = new_h
        state.step = donor.weights.step
        state.weights = donor.weights
        self.set_scores(member, list(donor.scores))  # the copy inherits the donor's record
        return decision

    def fail(self, member: int) -> None:
        self.changing(member).alive = False
        self.training.discard(member)
        self.board.remove(member)


class _RoundView(Mapping[int, MemberState]):
    """Every member's state as a round found it: the copy taken before it changed, if it did."""

    def __init__(self, members: dict[int, MemberState], before: dict[int, MemberState]) -> None:
        self._members, self._before = members, before

    def __getitem__(self, member: int) -> MemberState:
        before = self._before.get(member)
        return self._members[member] if before is None else before

    def __iter__(self) -> Iterator[int]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)


class NotBehind(Collection[int]):
    """The members of ``candidates`` whose saved weights are not behind ``step``: those a member
    at ``step`` may copy (firepbt never rewinds a member). Membership costs O(1); nothing is
    built unless iterated."""

    def __init__(
        self, view: Mapping[int, MemberState], candidates: Collection[int], step: int
    ) -> None:
        self._view, self._candidates, self._step = view, candidates, step

    def __contains__(self, member: object) -> bool:
        return member in self._candidates and self._view[member].weights.step >= self._step  # type: ignore[index]

    def __iter__(self) -> Iterator[int]:
        return (m for m in self._candidates if m in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Replacements:
    """``replace_failed``: how many times each member that failed for good may be replaced by an
    exploit of a strong member instead of leaving the population."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise PopulationConfigError(f"replace_failed: must be >= 0, got {limit}")
        self.limit = limit
        self._used: dict[int, int] = {}

    def take(self, member: int, donor: int | None) -> ExploitRecord | None:
        """The exploit record replacing ``member`` by ``donor``, or None when there is no donor
        or ``member`` has used up its replacements."""
        used = self._used.get(member, 0)
        if donor is None or used >= self.limit:
            return None
        self._used[member] = used + 1
        return ExploitRecord(
            donor, f"replaces failed member {member} ({used + 1} of {self.limit} replacements)"
        )
