"""FIRE PBT's state: its settings, the members of each sub-population, the evaluators and
their curves, and each sub-population's fitness. The evaluators' moves are in
``_fire_evaluators.py``; the strategy contract and evolution inside a sub-population in
``_fire_book.py``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from firepbt.errors import FireSettingsWarning, PopulationConfigError
from firepbt.exploit import ExploitPolicy, Truncation, recent_score
from firepbt.explore import ExplorePolicy, Perturb
from firepbt.fire.evaluation import CurveCache, Point
from firepbt.fire.fitness import FitnessCache
from firepbt.fire.settings import (
    DEFAULT_P_STAT,
    DEFAULT_PERTURB_FACTORS,
    DEFAULT_SUCCESS_TEST,
    DEFAULT_THIN,
    DEFAULT_TRUNCATION,
    DEFAULT_WARMUP_INTERVALS,
    default_max_eval_steps,
    settings_problems,
)
from firepbt.space import Space
from firepbt.strategies._base import MemberState, Strategy
from firepbt.strategies._population import (
    Population,
    Replacements,
    Synchrony,
    check_common,
    evolution_settings,
    starting_hyperparameters,
)


@dataclass(slots=True)
class EvaluatorState:
    """One evaluator worker: whom it evaluates, against whom, and its curve since assignment."""

    state: MemberState
    parent: int | None = None
    target: int | None = None
    start_step: int = 0
    curve: list[Point] = field(default_factory=list)
    busy: bool = False  # a segment is running
    stop_requested: str = ""  # async: parent or target lost an evolution event mid-segment
    waiting: bool = False  # async: succeeded, holding its weights until the target is ready


class FireState(Strategy):
    """The state FIRE PBT keeps: its settings, members per sub-population, evaluators, their
    curves and links, and fitness. ``FireEvaluators`` and ``FireBook`` add the moves."""

    def __init__(
        self,
        space: Space,
        population: int,
        total_steps: int,
        ready_every: int,
        rng: np.random.Generator,
        *,
        subpopulations: int = 2,
        evaluators: int | None = None,
        exploit: ExploitPolicy | None = None,
        explore: ExplorePolicy | None = None,
        synchrony: Synchrony | str = Synchrony.SYNC,
        burn_in: int = 0,
        max_eval_steps: int | None = None,
        p_stat: float = DEFAULT_P_STAT,
        min_steps_before_eval: int | Sequence[int] = 0,
        warmup: int | None = None,
        keep_curves: bool = False,
        retarget: bool = False,
        eval_every: int | None = None,
        thin: int = DEFAULT_THIN,
        success_test: str = DEFAULT_SUCCESS_TEST,
        replace_failed: int = 0,
        initial_hyperparameters: Sequence[Mapping[str, object]] | None = None,
    ) -> None:
        check_common(population, total_steps, ready_every)
        if subpopulations < 2:
            raise PopulationConfigError(
                f"subpopulations: FIRE PBT needs at least 2 (P1 and a parent), got {subpopulations}"
            )
        if population % subpopulations or population // subpopulations < 2:
            raise PopulationConfigError(
                f"population: {population} members cannot form {subpopulations} equal "
                "sub-populations of at least 2 members each"
            )
        self.size = population // subpopulations
        default_evaluators = max(1, (3 * self.size * (subpopulations - 1)) // 4)
        n_evaluators = default_evaluators if evaluators is None else evaluators
        if n_evaluators < 1:
            raise PopulationConfigError(f"evaluators: need at least 1, got {n_evaluators}")
        if not 0.0 < p_stat < 1.0:
            raise PopulationConfigError(f"p_stat: must lie in (0, 1), got {p_stat}")
        self.eval_every = ready_every if eval_every is None else int(eval_every)
        if self.eval_every < 1:
            raise PopulationConfigError(f"eval_every: need at least 1, got {eval_every}")
        if isinstance(thin, bool) or not isinstance(thin, int) or thin < 1:
            raise PopulationConfigError(f"thin: expected an integer >= 1, got {thin!r}")
        self.thin = thin
        if success_test not in ("levels", "increments"):
            raise PopulationConfigError(
                f"success_test: 'levels' (the paper's) or 'increments', got {success_test!r}"
            )
        # increments: the binomial test compares the curves' gains, not their levels (a departure
        # from the paper: docs/paper_readings.md).
        self.increments = success_test == "increments"
        self.max_eval_steps = (
            default_max_eval_steps(ready_every, self.eval_every, p_stat, thin)
            if max_eval_steps is None
            else max_eval_steps
        )
        if self.max_eval_steps < 1:
            raise PopulationConfigError(f"max_eval_steps: need at least 1, got {max_eval_steps}")
        if isinstance(min_steps_before_eval, int):
            self.min_steps_before_eval = [min_steps_before_eval] * subpopulations
        else:
            self.min_steps_before_eval = [int(x) for x in min_steps_before_eval]
            if len(self.min_steps_before_eval) != subpopulations:
                raise PopulationConfigError(
                    f"min_steps_before_eval: give one value per sub-population "
                    f"({subpopulations}), got {len(self.min_steps_before_eval)}"
                )
        # warmup: parents evolve greedily on their own score (as P1 does) for their first
        # `warmup` steps and are not evaluated before (a departure: docs/paper_readings.md).
        self.warmup = (
            min(DEFAULT_WARMUP_INTERVALS * ready_every, total_steps // 10)
            if warmup is None
            else warmup
        )
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise PopulationConfigError(f"warmup: expected a step count >= 0, got {warmup!r}")
        self._replacements = Replacements(replace_failed)
        self.synchrony, self.exploit, self.explore = evolution_settings(
            synchrony,
            burn_in,
            Truncation(DEFAULT_TRUNCATION) if exploit is None else exploit,
            Perturb(DEFAULT_PERTURB_FACTORS) if explore is None else explore,
        )
        self.space = space
        self.rng = rng
        self.subpopulations = subpopulations
        self.burn_in = burn_in
        self.p_stat = p_stat
        self._pop = Population(total_steps, ready_every)
        self._initial = starting_hyperparameters(space, population, rng, initial_hyperparameters)
        self.evaluator_ids = list(range(population, population + n_evaluators))
        self._ev: dict[int, EvaluatorState] = {}
        self._all: dict[int, MemberState] | None = None  # members and evaluators (``members``)
        self._curve: dict[int, list[Point]] = {}  # member -> curve since it last copied weights
        self._touched: dict[int, int] = {}  # member -> round it was last evaluated or lost
        self._evaluator_of: dict[int, int] = {}  # parent member -> its evaluator
        # keep_curves: a parent whose evaluator stopped keeps that curve as its fitness record
        # until it copies weights or is evaluated again (the paper drops it: exempt again).
        self.keep_curves = keep_curves
        # retarget: an evaluator whose target loses an evolution event is pointed at the child
        # sub-population's best instead of being stopped (a departure from the paper).
        self.retarget = retarget
        self._last_curve: dict[int, list[Point]] = {}
        self._fits = CurveCache()
        self._fitness = FitnessCache()  # pairwise comparisons kept until a curve changes
        self._clock = 0
        self._waiting: set[int] = set()
        problems = settings_problems(
            max_eval_steps=self.max_eval_steps,
            eval_every=self.eval_every,
            ready_every=ready_every,
            p_stat=p_stat,
            thin=thin,
            parents=population - self.size,
            evaluators=n_evaluators,
        )
        for problem in problems:
            warnings.warn(problem, FireSettingsWarning, stacklevel=3)

    @property
    def members(self) -> dict[int, MemberState]:
        # Built once the population and its evaluators exist (their states are changed in place,
        # never replaced): the loop reads it at every segment.
        if self._all is None or len(self._all) != len(self._pop.members) + len(self._ev):
            self._all = {**self._pop.members, **{e: ev.state for e, ev in self._ev.items()}}
        return self._all

    def subpopulation(self, member: int) -> int:
        """0 for P1 (greedy), i for P(i+1)."""
        return member // self.size

    # -- fitness ----------------------------------------------------------------------------

    def fitness(self, subpopulation: int) -> dict[int, float]:
        """Fitness of the live members of a sub-population: Q for P1 and for parents in their
        warm-up; after it, parents without an evaluator curve have none (they are exempt from
        evolution)."""
        members = self._live(subpopulation)
        if subpopulation == 0 or self.warming_up(subpopulation):
            return self._recent(members)
        assessed = {}
        for m in members:
            e = self._evaluator_of.get(m)
            if e is not None and len(self._ev[e].curve) >= 2:
                assessed[m] = self._fits.fit((1, e), self._ev[e].curve)
            elif self.keep_curves and len(self._last_curve.get(m, ())) >= 2:
                assessed[m] = self._fits.fit((2, m), self._last_curve[m])
        return self._fitness(assessed) if len(assessed) >= 2 else {}

    def warming_up(self, subpopulation: int) -> bool:
        """Whether a parent sub-population is still in its greedy warm-up: none of its live
        members has trained ``warmup`` steps yet."""
        steps = [self._pop.members[m].step for m in self._live(subpopulation)]
        return subpopulation > 0 and bool(steps) and max(steps) < self.warmup

    def _recent(self, members: list[int]) -> dict[int, float]:
        """Q of P1 members as the exploit policy ranks it (mean of its window of scores)."""
        window = int(getattr(self.exploit, "window", 1))
        scores = {m: self._pop.members[m].scores for m in members}
        return {m: recent_score(s, window) for m, s in scores.items() if s}

    def _live(self, subpopulation: int) -> list[int]:
        lo = subpopulation * self.size
        return [m for m in range(lo, lo + self.size) if self._pop.members[m].alive]
