"""Random search: the honest baseline — sampled hyperparameters, no exploitation, same compute."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from firepbt.decisions import Decision
from firepbt.space import Space
from firepbt.strategies._base import MemberState, Strategy
from firepbt.strategies._population import Population, check_common, starting_hyperparameters


class RandomSearch(Strategy):
    """Train ``population`` members with hyperparameters drawn from the prior, each for
    ``total_steps`` steps, in segments of ``ready_every`` steps (checkpoints and progress).

    Args:
        space: The search space the hyperparameters are drawn from.
        population: Members trained, at least 1.
        total_steps: Steps each member trains for, at least 1.
        ready_every: Steps per segment, at least 1.
        rng: The generator the hyperparameters and the members' seeds are drawn from.
        initial_hyperparameters: One set of hyperparameters per member, checked against the
            space, instead of samples from it.

    Raises:
        firepbt.errors.PopulationConfigError: A setting cannot work (e.g. a population below 1,
            or ``initial_hyperparameters`` of the wrong length or outside the space); the
            message names it.

    >>> import numpy as np
    >>> from firepbt.space import Space, LogUniform
    >>> rs = RandomSearch(Space({"lr": LogUniform(1e-3, 1.0)}), 2, 10, 5, np.random.default_rng(0))
    >>> [d.until for d in rs.start()]
    [5, 5]
    """

    def __init__(
        self,
        space: Space,
        population: int,
        total_steps: int,
        ready_every: int,
        rng: np.random.Generator,
        *,
        initial_hyperparameters: Sequence[Mapping[str, object]] | None = None,
    ) -> None:
        check_common(population, total_steps, ready_every)
        self.space = space
        self.rng = rng
        self._population = Population(total_steps, ready_every)
        self._initial = starting_hyperparameters(space, population, rng, initial_hyperparameters)

    @property
    def members(self) -> dict[int, MemberState]:
        return self._population.members

    def start(self) -> list[Decision]:
        return self._population.start(self._initial, self.rng)

    def report(self, member: int, step: int, score: float) -> None:
        self._population.report(member, step, score)

    def ready(self, member: int, step: int) -> list[Decision]:
        self._population.arrive(member, step)
        return [self._population.continue_or_finish(member)]

    def failed(self, member: int, step: int) -> list[Decision]:
        self._population.fail(member)
        return []
