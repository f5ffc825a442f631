"""Population Based Training (Jaderberg et al. 2017) as pure decision logic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from firepbt.decisions import Decision
from firepbt.exploit import ExploitPolicy, recent_score, select_donor
from firepbt.explore import ExplorePolicy
from firepbt.space import Space
from firepbt.strategies._base import MemberState, Strategy
from firepbt.strategies._population import (
    NotBehind,
    Population,
    Replacements,
    Synchrony,
    check_common,
    evolution_settings,
    starting_hyperparameters,
)


class PBT(Strategy):
    """Population Based Training: ready members exploit (copy a stronger member's weights and
    hyperparameters) and explore (mutate the copied hyperparameters).

    ``ready_every`` steps between decisions; no exploitation before ``burn_in`` steps; defaults
    follow the paper: truncation selection of the bottom 25 %, perturbation by 0.8 / 1.2 and
    resampling with probability 0.25.

    Args:
        space: The search space: the prior of the starting hyperparameters, and the ranges
            explore moves in.
        population: Members trained, at least 1.
        total_steps: Steps each member trains for, at least 1.
        ready_every: Steps between a member's ready points, where it may exploit and explore;
            at least 1.
        rng: The generator every random choice of the strategy draws from (starting
            hyperparameters, seeds, exploit and explore).
        exploit (``ExploitPolicy | None``): Chooses whom a ready member copies, if anyone:
            :class:`firepbt.Truncation` and the other exploit policies (default
            ``Truncation(0.25)``).
        explore (``ExplorePolicy | None``): Mutates the copied hyperparameters:
            :class:`firepbt.Perturb` and the other explore policies (default
            ``chain(Perturb(), Resample(0.25))``).
        synchrony: ``"sync"`` (the default): ready members wait until every live member is
            ready, then all decide on one snapshot of the population; ``"async"``: each member
            decides when it is ready, against the latest known scores.
        burn_in: Steps before which a ready member neither exploits nor explores, 0 or more.
        replace_failed: How many times each member that fails for good is replaced by an
            exploit of the best other member, instead of leaving the population.
        initial_hyperparameters: One set of starting hyperparameters per member, checked
            against the space, instead of samples from it.

    Raises:
        firepbt.errors.PopulationConfigError: A setting cannot work (e.g. a population below 1,
            a negative ``burn_in``, an unknown ``synchrony``, or ``initial_hyperparameters``
            of the wrong length or outside the space); the message names it.

    >>> import numpy as np
    >>> from firepbt.space import Space, LogUniform
    >>> pbt = PBT(Space({"lr": LogUniform(1e-3, 1.0)}), population=4, total_steps=20,
    ...           ready_every=5, rng=np.random.default_rng(0))
    >>> len(pbt.start())
    4
    """

    def __init__(
        self,
        space: Space,
        population: int,
        total_steps: int,
        ready_every: int,
        rng: np.random.Generator,
        *,
        exploit: ExploitPolicy | None = None,
        explore: ExplorePolicy | None = None,
        synchrony: Synchrony | str = Synchrony.SYNC,
        burn_in: int = 0,
        replace_failed: int = 0,
        initial_hyperparameters: Sequence[Mapping[str, object]] | None = None,
    ) -> None:
        check_common(population, total_steps, ready_every)
        self.synchrony, self.exploit, self.explore = evolution_settings(
            synchrony, burn_in, exploit, explore
        )
        self.space = space
        self.rng = rng
        self.burn_in = burn_in
        self._replacements = Replacements(replace_failed)
        self._population = Population(total_steps, ready_every)
        self._initial = starting_hyperparameters(space, population, rng, initial_hyperparameters)
        self._waiting: set[int] = set()  # sync mode: members at the barrier

    @property
    def members(self) -> dict[int, MemberState]:
        return self._population.members

    def start(self) -> list[Decision]:
        return self._population.start(self._initial, self.rng)

    def report(self, member: int, step: int, score: float) -> None:
        self._population.report(member, step, score)

    def ready(self, member: int, step: int) -> list[Decision]:
        self._population.arrive(member, step)
        if self.synchrony is Synchrony.ASYNC:
            return self._decide(member, self.members)
        self._waiting.add(member)
        return self._release()

    def failed(self, member: int, step: int) -> list[Decision]:
        """A member that failed for good is replaced by an exploit of the best member (at most
        ``replace_failed`` times); otherwise it leaves the population."""
        self._waiting.discard(member)
        record = self._replacements.take(member, self._best_other(member))
        if record is not None:
            donor = self.members[record.donor]
            return [
                self._population.exploit(member, record, donor, self.explore, self.space, self.rng)
            ]
        self._population.fail(member)
        return self._release() if self.synchrony is Synchrony.SYNC else []

    def _best_other(self, member: int) -> int | None:
        scored = {
            m: recent_score(s.scores)
            for m, s in self.members.items()
            if m != member and s.alive and s.scores and s.weights.step > 0
        }
        return max(scored, key=lambda m: (scored[m], -m)) if scored else None

    def _release(self) -> list[Decision]:
        """Sync mode: once every live member waits at the barrier, decide for all of them on one
        snapshot (so a donor's weights and hyperparameters are those it had at the barrier)."""
        pop = self._population
        live = pop.training  # waiting members are live: one that fails leaves the barrier
        if not live or len(self._waiting) < len(live) or not live <= self._waiting:
            return []
        self._waiting.clear()
        with pop.round() as view:
            lowest = min((view[m].weights.step for m in pop.board), default=0)
            return [d for m in sorted(live) for d in self._decide(m, view, lowest)]

    def _decide(
        self, member: int, view: Mapping[int, MemberState], lowest: int | None = None
    ) -> list[Decision]:
        """``lowest``: the step of the least advanced live member's weights, when known."""
        pop = self._population
        state = self.members[member]
        if state.step >= pop.total_steps or state.step < self.burn_in:
            return [pop.continue_or_finish(member)]
        # Never rewind: in async mode a member whose saved weights are behind this member's (it
        # has just copied someone) is ranked but not copied, or members could copy each other's
        # past forever without making progress; the donor is drawn among the others.
        donors = (
            None
            if lowest is not None and lowest >= state.step
            else NotBehind(view, pop.board, state.step)
        )
        record = select_donor(self.exploit, member, pop.board, self.rng, donors)
        if record is None:
            return [pop.continue_or_finish(member)]
        decision = pop.exploit(
            member, record, view[record.donor], self.explore, self.space, self.rng
        )
        return [decision, *pop.finish_if_done(member)]
