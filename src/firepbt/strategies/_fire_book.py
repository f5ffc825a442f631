"""FIRE PBT's bookkeeping: sub-populations, evaluators, their curves, fitness and the moves
(exploit, assign, hand over, release) that ``FirePBT`` (in ``_fire.py``) schedules."""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from firepbt.decisions import Assign, Continue, Decision, Handover, Release, Weights
from firepbt.errors import FireSettingsWarning
from firepbt.exploit import ExploitPolicy, ExploitRecord, Truncation, recent_score
from firepbt.explore import ExplorePolicy, Perturb
from firepbt.fire import curves
from firepbt.fire.evaluation import (
    CurveCache,
    CurveWork,
    Ending,
    FittedCurve,
    Outcome,
    Point,
    Verdict,
    extend,
    judge,
)
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
    PopulationConfigError,
    Replacements,
    Synchrony,
    check_common,
    evolution_settings,
    starting_hyperparameters,
)

# The longest curve whose fit is left to the worker that extends it (its points travel with the
# segment); a longer one (a member that has not copied weights for thousands of evaluations) is
# fitted by the strategy.
MAX_WORK_POINTS = 1000


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


class FireBook(Strategy):
    """The state FIRE PBT keeps and the moves it makes: members per sub-population, evaluators,
    their curves and links, fitness, exploits, assignments and hand-overs. ``FirePBT`` decides
    when to make them (a synchronous barrier or each worker when ready)."""

    worker_modules = curves.MODULES

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

    # -- the contract ---------------------------------------------------------------------

    @property
    def members(self) -> dict[int, MemberState]:
        return {**self._pop.members, **{e: ev.state for e, ev in self._ev.items()}}

    def subpopulation(self, member: int) -> int:
        """0 for P1 (greedy), i for P(i+1)."""
        return member // self.size

    def start(self) -> list[Decision]:
        decisions = self._pop.start(self._initial, self.rng, self.subpopulation)
        for m in self._pop.members:
            self._curve[m] = []
            self._touched[m] = -1
        for e in self.evaluator_ids:
            placeholder = Weights(e, 0, {})
            self._ev[e] = EvaluatorState(MemberState({}, 0, placeholder, finished=True))
        return decisions

    def report(self, member: int, step: int, score: float) -> None:
        if member in self._ev:
            extend(self._ev[member].curve, step, score)
        else:
            self._pop.report(member, step, score)
            extend(self._curve[member], step, score)

    def ready(self, member: int, step: int) -> list[Decision]:
        if member in self._ev:
            ev = self._ev[member]
            ev.busy = False
            ev.state.step = step
            ev.state.weights = Weights(member, step, ev.state.hyperparameters)
        else:
            self._pop.arrive(member, step)
        if self.synchrony is Synchrony.ASYNC:
            self._clock += 1
            return self._decide_async(member)
        self._waiting.add(member)
        self._prefit(member)
        return self._release_barrier()

    def _judged(self, member: int) -> tuple[tuple[int, int], list[Point]] | None:
        """The key and curve of ``member``'s that the strategy judges when it is next ready (as an
        evaluator that evaluates a parent, or as an evaluator's target); None if none."""
        ev = self._ev.get(member)
        if ev is not None:
            if ev.parent is not None and not ev.stop_requested:
                return (1, member), ev.curve
            return None
        if any(e.parent is not None and e.target == member for e in self._ev.values()):
            return (0, member), self._curve[member]
        return None

    def _prefit(self, member: int) -> None:
        """Fit now the curve of ``member`` that the barrier will judge: it gains no point before
        it, and fitted as each member arrives it is fitted while the rest of the round still
        trains, not all at the barrier, where every worker waits. The barrier finds it in the
        cache; nothing else changes. (A worker that fitted it already offered its fit.)"""
        judged = self._judged(member)
        if judged is not None and len(judged[1]) >= 2:
            self._fits.fit(*judged)

    def segment_work(self, member: int) -> CurveWork | None:
        """The curve ``member``'s next segment extends and the strategy will then judge: the
        worker that trains the segment fits it (see ``CurveWork``)."""
        judged = self._judged(member)
        if judged is None or len(judged[1]) > MAX_WORK_POINTS:
            return None  # a very long curve is fitted here rather than sent with every segment
        return CurveWork(judged[0], tuple(judged[1]))

    def take_work(self, member: int, done: object) -> None:
        if not isinstance(done, FittedCurve):
            return
        judged = self._judged(member)
        if judged is not None and judged[0] == done.key:
            self._fits.offer(done, judged[1])

    def failed(self, member: int, step: int) -> list[Decision]:
        self._waiting.discard(member)
        if member in self._ev:
            ev = self._ev[member]
            ev.busy = False
            decisions = self._stop(member, Ending.FAILED.reason("its segment failed"))
        else:
            decisions = self._replace(member)
            if decisions:  # it trains on from a strong member's weights: no barrier to release
                if self.synchrony is Synchrony.ASYNC:
                    decisions += self._assign_idle()
                return decisions
            self._pop.fail(member)
            decisions = self._unlink(member, "it failed")
        if self.synchrony is Synchrony.SYNC:
            return decisions + self._release_barrier()
        return decisions + self._assign_idle()

    def _replace(self, member: int) -> list[Decision]:
        """A member that failed for good copies the best other member of its sub-population (at
        most ``replace_failed`` times per member); [] when it leaves the population instead."""
        i = self.subpopulation(member)
        fit = self.fitness(i) or self._recent(self._live(i))
        donors = {
            m: f for m, f in fit.items() if m != member and self._pop.members[m].weights.step > 0
        }
        best = max(donors, key=lambda m: (donors[m], -m)) if donors else None
        record = self._replacements.take(member, best)
        return [] if record is None else self._apply_exploit(member, record, self._pop.snapshot())

    def done(self) -> bool:
        return all(s.finished or not s.alive for s in self._pop.members.values())

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
        return curves.fitness(assessed) if len(assessed) >= 2 else {}

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

    # -- evolution inside a sub-population ----------------------------------------------------

    def _evolve(
        self, member: int, fit: Mapping[int, float], view: Mapping[int, MemberState]
    ) -> ExploitRecord | None:
        state = self._pop.members[member]
        if state.step >= self._pop.total_steps or state.step < self.burn_in:
            return None
        i = self.subpopulation(member)
        if i == 0 or state.step < self.warmup:  # greedy: the policy ranks the raw scores itself
            peers = fit if i == 0 else [m for m in self._live(i) if view[m].scores]
            history = {m: view[m].scores for m in peers}
            record = self.exploit.select(member, history, self.rng)
        else:
            record = self.exploit.select(member, {m: [f] for m, f in fit.items()}, self.rng)
        if record is not None and view[record.donor].weights.step < state.step:
            return None  # never rewind to a donor's older weights (see PBT._decide)
        return record

    def _apply_exploit(
        self, member: int, record: ExploitRecord, view: Mapping[int, MemberState]
    ) -> list[Decision]:
        donor = view[record.donor]
        decision = self._pop.exploit(member, record, donor, self.explore, self.space, self.rng)
        last = donor.scores[-1] if donor.scores else float("-inf")
        self._curve[member] = [(donor.weights.step, last)]
        own = record.donor == member  # it keeps its weights and only explores
        if not own:
            self._touched[member] = self._clock
            self._last_curve.pop(member, None)  # its weights changed: the old record is void
        return [
            decision,
            *self._pop.finish_if_done(member),
            *self._unlink(member, "it lost an evolution event", as_parent=not own),
        ]

    def _unlink(self, member: int, why: str, as_parent: bool = True) -> list[Decision]:
        """Stop the evaluators whose parent or target is ``member``; with ``retarget``, an
        evaluator whose target it was points at the child sub-population's best instead. With
        ``as_parent`` False (it kept its weights, so the curves of its weights stand), only those
        it is the target of."""
        decisions: list[Decision] = []
        for e, ev in self._ev.items():
            if ev.parent is None or member not in (ev.parent, ev.target):
                continue
            if member == ev.parent and not as_parent:
                continue
            if ev.busy and ev.stop_requested:  # already told to stop at its next ready step
                continue
            if ev.waiting and member == ev.parent:
                continue  # it succeeded: the weights it holds are its own, not the parent's
            if member == ev.parent:
                reason = Ending.PARENT_LOST.reason(f"parent {member}: {why}")
            else:
                # Re-targeted, it keeps its curve and the hyperparameters it trains with:
                # its curve measures the parent's weights under one set of hyperparameters.
                if self.retarget and not ev.waiting:
                    new_target = self._target_for(self.subpopulation(member), exclude=member)
                    if new_target is not None:
                        ev.target = new_target
                        continue
                reason = Ending.TARGET_LOST.reason(f"target {member}: {why}")
            if ev.busy:
                ev.stop_requested = reason
            else:
                decisions += self._stop(e, reason)
        return decisions

    # -- evaluators ---------------------------------------------------------------------------

    def _judge(self, e: int) -> Verdict:
        """Success, stop or continue for an evaluator at its ready step."""
        ev = self._ev[e]
        assert ev.target is not None
        child = self._curve[ev.target]
        verdict = judge(
            self._fits.fit((1, e), ev.curve) if len(ev.curve) >= 2 else None,
            self._fits.fit((0, ev.target), child) if len(child) >= 2 else None,
            ev.state.step - ev.start_step,
            self.max_eval_steps,
            self.p_stat,
            self.thin,
            self.increments,
        )
        if verdict.outcome is Outcome.CONTINUE and ev.state.step >= self._pop.total_steps:
            return Verdict(Outcome.STOP, Ending.RUN_OVER.reason("its weights reached the budget"))
        return verdict

    def _stop(self, e: int, why: str) -> list[Decision]:
        ev = self._ev[e]
        if ev.parent is not None and self._evaluator_of.get(ev.parent) == e:
            del self._evaluator_of[ev.parent]
            if len(ev.curve) >= 2:
                self._last_curve[ev.parent] = list(ev.curve)
        was_active = ev.parent is not None
        ev.parent = ev.target = None
        ev.curve = []
        ev.stop_requested = ""
        ev.waiting = False
        ev.state.finished = True
        return [Release(e, ev.state.step, why)] if was_active else []

    def _handover(self, e: int, reason: str) -> list[Decision]:
        """The target takes the evaluator's weights and keeps its own hyperparameters."""
        ev = self._ev[e]
        assert ev.target is not None
        child = self._pop.members[ev.target]
        last = ev.curve[-1][1]
        decision = Handover(
            member=ev.target,
            step=child.step,
            evaluator=e,
            source=ev.state.weights,
            hyperparameters=child.hyperparameters,
            reason=reason,
            until=self._pop.next_ready(ev.state.weights.step),
        )
        child.step = ev.state.weights.step
        child.weights = Weights(
            ev.state.weights.member, ev.state.weights.step, child.hyperparameters
        )
        child.scores = [*child.scores, last]
        self._curve[ev.target] = [(child.step, last)]
        return [
            decision,
            *self._stop(e, Ending.SUCCESS.reason(f"member {ev.target} took its weights")),
        ]

    def _target_for(self, subpopulation: int, exclude: int | None = None) -> int | None:
        fit = self.fitness(subpopulation)
        if not fit:  # nobody assessed yet: fall back to the latest score
            fit = self._recent(self._live(subpopulation))
        # A member that copied another this round only inherits its donor's score: not a target.
        candidates = [
            m
            for m in fit
            if not self._pop.members[m].finished
            and self._touched[m] != self._clock
            and m != exclude
        ]
        return max(candidates, key=lambda m: (fit[m], -m)) if candidates else None

    def _assign_idle(self) -> list[Decision]:
        decisions: list[Decision] = []
        for e in self.evaluator_ids:
            ev = self._ev[e]
            if ev.busy or ev.waiting or ev.parent is not None:
                continue
            parent = self._next_parent()
            if parent is None:
                break
            target = self._target_for(self.subpopulation(parent) - 1)
            if target is None:
                break
            decisions.append(self._assign(e, parent, target))
        return decisions

    def _next_parent(self) -> int | None:
        """The parent member trained longest since it was evaluated or lost an evolution event."""
        candidates = []
        for m, s in self._pop.members.items():
            i = self.subpopulation(m)
            if (
                i == 0
                or not s.alive
                or s.finished
                or m in self._evaluator_of
                or s.step == 0
                or s.step >= self._pop.total_steps
                or s.step < max(self.min_steps_before_eval[i], self.warmup)
                or self._touched[m] == self._clock
            ):
                continue
            candidates.append((self._touched[m], m))
        return min(candidates)[1] if candidates else None

    def _assign(self, e: int, parent: int, target: int) -> Decision:
        ev = self._ev[e]
        p = self._pop.members[parent]
        h = dict(self._pop.members[target].hyperparameters)
        start = p.weights.step
        ev.parent, ev.target, ev.start_step = parent, target, start
        ev.curve = [(start, p.scores[-1])] if p.scores else []  # the same weights' score
        ev.busy, ev.waiting, ev.stop_requested = True, False, ""
        ev.state.hyperparameters = h
        ev.state.step = start
        ev.state.weights = p.weights
        ev.state.finished = False
        self._evaluator_of[parent] = e
        self._touched[parent] = self._clock
        return Assign(
            member=e,
            parent=parent,
            target=target,
            source=p.weights,
            hyperparameters=h,
            seed=int(self.rng.integers(2**31 - 1)),
            until=self._pop.next_ready(start),
            reason=(
                f"parent {parent} (P{self.subpopulation(parent) + 1}) is the least recently "
                f"evaluated; target {target} (P{self.subpopulation(target) + 1}) is its "
                "sub-population's best"
            ),
        )

    def _continue_evaluator(self, e: int) -> Decision:
        ev = self._ev[e]
        ev.busy = True
        return Continue(e, ev.state.step, self._pop.next_ready(ev.state.step))

    @abstractmethod
    def _release_barrier(self) -> list[Decision]:
        """Synchronous mode: decide for everyone once every busy worker is at the barrier."""

    @abstractmethod
    def _decide_async(self, worker: int) -> list[Decision]:
        """Asynchronous mode: decide for ``worker``, which is ready now."""
