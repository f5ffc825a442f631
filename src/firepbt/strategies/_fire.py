"""FIRE PBT (Dalibard & Jaderberg 2020) as pure decision logic.

The population is split into sub-populations P1..Pn of equal size. P1 is greedy: its fitness is
the score Q, as in PBT. Each parent sub-population Pi (i > 1) is ranked by the *improvement rate*
its members' weights show when trained with the hyperparameters of the child sub-population
P(i-1). Evaluator workers measure that rate: an evaluator copies the weights of the least
recently evaluated parent member and the hyperparameters of the best member of the child
sub-population (its *target*), trains, and records a curve. If the curve beats the target's
curve (``best_score_diff > 0`` and a one-sided binomial test below ``p_stat``), the target takes
the evaluator's weights: that is how weights flow down the chain, P_n → … → P1. Inside each
sub-population members run ordinary PBT exploit-and-explore on their own fitness.

Synchronous mode decides for every worker at a barrier; asynchronous mode decides for each worker
when it is ready (an evaluator that succeeds keeps its weights until its target is next ready).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from firepbt.decisions import Assign, Continue, Decision, Handover, Release, Weights
from firepbt.exploit import ExploitPolicy, ExploitRecord, recent_score
from firepbt.explore import ExplorePolicy
from firepbt.fire import curves
from firepbt.space import Space
from firepbt.strategies._base import MemberState, Strategy
from firepbt.strategies._population import (
    Population,
    PopulationConfigError,
    Synchrony,
    check_common,
    evolution_settings,
    starting_hyperparameters,
)

Point = tuple[int, float]  # (step, score oriented so that higher is better)
WORST_SCORE = -1e30


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


class FirePBT(Strategy):
    """FIRE PBT over ``subpopulations`` sub-populations splitting ``population`` members equally,
    plus ``evaluators`` evaluator workers (default ¾ of the parents' total size).

    ``max_eval_steps`` (default 3 × ``ready_every``) and ``p_stat`` (0.01) are the paper's
    stopping and success settings; ``min_steps_before_eval`` holds per sub-population (an int for
    all, or one value per sub-population, the first being unused). Evaluators check their
    criteria every ``ready_every`` steps.

    >>> import numpy as np
    >>> from firepbt.space import Space, LogUniform
    >>> fire = FirePBT(Space({"lr": LogUniform(1e-3, 1.0)}), population=8, total_steps=100,
    ...                ready_every=10, rng=np.random.default_rng(0), subpopulations=2)
    >>> len(fire.start()), fire.evaluator_ids
    (8, [8, 9, 10])
    """

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
        p_stat: float = 0.01,
        min_steps_before_eval: int | Sequence[int] = 0,
        keep_curves: bool = False,
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
        self.max_eval_steps = 3 * ready_every if max_eval_steps is None else max_eval_steps
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
        self.synchrony, self.exploit, self.explore = evolution_settings(
            synchrony, burn_in, exploit, explore
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
        self._last_curve: dict[int, list[Point]] = {}
        self._fits: dict[tuple[int, int, int], curves.Curve] = {}
        self._clock = 0
        self._waiting: set[int] = set()

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
            self._ev[member].curve.append((step, float(score)))
        else:
            self._pop.report(member, step, score)
            self._curve[member].append((step, float(score)))

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
        return self._release_barrier()

    def failed(self, member: int, step: int) -> list[Decision]:
        self._waiting.discard(member)
        if member in self._ev:
            ev = self._ev[member]
            ev.busy = False
            decisions = self._stop(member, "its segment failed")
        else:
            self._pop.fail(member)
            decisions = self._unlink(member, "it failed")
        if self.synchrony is Synchrony.SYNC:
            return decisions + self._release_barrier()
        return decisions + self._assign_idle()

    def done(self) -> bool:
        return all(s.finished or not s.alive for s in self._pop.members.values())

    # -- fitness ----------------------------------------------------------------------------

    def _fit(self, key: tuple[int, int], points: list[Point]) -> curves.Curve:
        """Fit each curve once; a curve is refitted only after it grows."""
        cache_key = (*key, len(points))
        fitted = self._fits.get(cache_key)
        if fitted is None:
            # A curve of nothing but NaN (a diverged run) sits far below every real score.
            fitted = curves.fit_curve(
                [p[0] for p in points], [p[1] for p in points], worst=WORST_SCORE
            )
            self._fits = {k: v for k, v in self._fits.items() if k[:2] != key}
            self._fits[cache_key] = fitted
        return fitted

    def fitness(self, subpopulation: int) -> dict[int, float]:
        """Fitness of the live members of a sub-population; parents without an evaluator curve
        have none (they are exempt from evolution)."""
        members = self._live(subpopulation)
        if subpopulation == 0:
            return self._recent(members)
        assessed = {}
        for m in members:
            e = self._evaluator_of.get(m)
            if e is not None and len(self._ev[e].curve) >= 2:
                assessed[m] = self._fit((1, e), self._ev[e].curve)
            elif self.keep_curves and len(self._last_curve.get(m, ())) >= 2:
                assessed[m] = self._fit((2, m), self._last_curve[m])
        return curves.fitness(assessed) if len(assessed) >= 2 else {}

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
        if self.subpopulation(member) == 0:  # P1: the policy ranks the raw scores itself
            history = {m: view[m].scores for m in fit}
            return self.exploit.select(member, history, self.rng)
        return self.exploit.select(member, {m: [f] for m, f in fit.items()}, self.rng)

    def _apply_exploit(
        self, member: int, record: ExploitRecord, view: Mapping[int, MemberState]
    ) -> list[Decision]:
        donor = view[record.donor]
        decision = self._pop.exploit(member, record, donor, self.explore, self.space, self.rng)
        last = donor.scores[-1] if donor.scores else float("-inf")
        self._curve[member] = [(donor.weights.step, last)]
        self._touched[member] = self._clock
        self._last_curve.pop(member, None)  # its weights changed: the old record is void
        return [decision, *self._unlink(member, f"member {member} lost an evolution event")]

    def _unlink(self, member: int, why: str) -> list[Decision]:
        """Stop the evaluators whose parent or target is ``member``."""
        decisions: list[Decision] = []
        for e, ev in self._ev.items():
            if member not in (ev.parent, ev.target):
                continue
            if ev.busy:
                ev.stop_requested = why
            elif ev.parent is not None:
                decisions += self._stop(e, why)
        return decisions

    # -- evaluators ---------------------------------------------------------------------------

    def _judge(self, e: int) -> str:
        """'success', 'stop: …' or 'continue' for an evaluator at its ready step."""
        ev = self._ev[e]
        assert ev.target is not None
        trained = ev.state.step - ev.start_step
        verdict = self._criteria(e, trained)
        if verdict == "continue" and ev.state.step >= self._pop.total_steps:
            return "stop: its weights reached the step budget"
        return verdict

    def _criteria(self, e: int, trained: int) -> str:
        ev = self._ev[e]
        assert ev.target is not None
        child = self._curve[ev.target]
        if len(ev.curve) < 2 or len(child) < 2:
            return "continue" if trained <= self.max_eval_steps else "stop: no curve to compare"
        eta = self._fit((1, e), ev.curve)
        kappa = self._fit((0, ev.target), child)
        p, overlap = curves.binom_test(eta, kappa)
        if overlap is None:
            if trained > self.max_eval_steps:
                return f"stop: no overlap with the target after {trained} steps"
            return "continue"
        diff = curves.best_score_diff(eta, kappa)
        if diff > 0 and p < self.p_stat:
            return f"success: best_score_diff {diff:.4g}, binomial p {p:.3g}"
        threshold = self.p_stat + max(0.0, 1.0 - trained / self.max_eval_steps)
        if p > threshold:
            return f"stop: binomial p {p:.3g} > {threshold:.3g} after {trained} steps"
        return "continue"

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
        return [decision, *self._stop(e, f"succeeded: member {ev.target} took its weights")]

    def _target_for(self, subpopulation: int) -> int | None:
        fit = self.fitness(subpopulation)
        if not fit:  # nobody assessed yet: fall back to the latest score
            fit = self._recent(self._live(subpopulation))
        # A member that copied another this round only inherits its donor's score: not a target.
        candidates = [
            m for m in fit if not self._pop.members[m].finished and self._touched[m] != self._clock
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
                or s.step < self.min_steps_before_eval[i]
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
            reason=f"least recently evaluated member of P{self.subpopulation(parent) + 1}",
        )

    def _continue_evaluator(self, e: int) -> Decision:
        ev = self._ev[e]
        ev.busy = True
        return Continue(e, ev.state.step, self._pop.next_ready(ev.state.step))

    # -- synchronous rounds -------------------------------------------------------------------

    def _release_barrier(self) -> list[Decision]:
        live_members = {m for m, s in self._pop.members.items() if s.alive and not s.finished}
        active = {e for e, ev in self._ev.items() if ev.parent is not None}
        if not (live_members | active) <= self._waiting or not (live_members | active):
            return []
        self._waiting.clear()
        self._clock += 1
        decisions: list[Decision] = []
        if all(self._pop.members[m].step >= self._pop.total_steps for m in live_members):
            # The last round: every member finishes and the evaluators stop.
            decisions = [self._pop.continue_or_finish(m) for m in sorted(live_members)]
            for e in sorted(active):
                decisions += self._stop(e, "the run is over")
            return decisions
        view = self._pop.snapshot()
        # 1. Evolution inside each sub-population, on fitness taken before anyone moves.
        exploits: dict[int, ExploitRecord] = {}
        for i in range(self.subpopulations):
            fit = self.fitness(i)
            for m in sorted(live_members & set(self._live(i))):
                record = self._evolve(m, fit, view)
                if record is not None:
                    exploits[m] = record
        losers_links: list[Decision] = []
        for m, record in exploits.items():
            decisions_m = self._apply_exploit(m, record, view)
            decisions.append(decisions_m[0])
            losers_links += decisions_m[1:]
        # 2. Evaluators still linked check their criteria; success hands weights to the target.
        handed: set[int] = set()
        evaluator_decisions: list[Decision] = []
        for e in sorted(active):
            ev = self._ev[e]
            if ev.parent is None:  # already stopped: its parent or target lost in step 1
                continue
            if ev.stop_requested:
                evaluator_decisions += self._stop(e, ev.stop_requested)
                continue
            verdict = self._judge(e)
            target = ev.target
            if (
                verdict.startswith("success")
                and target is not None
                and target not in handed
                and not self._pop.members[target].finished
            ):
                handover = self._handover(e, verdict)
                decisions.append(handover[0])
                evaluator_decisions += handover[1:]
                handed.add(target)
            elif verdict.startswith("stop") or verdict.startswith("success"):
                evaluator_decisions += self._stop(e, verdict.removeprefix("stop: "))
            else:
                evaluator_decisions.append(self._continue_evaluator(e))
        # 3. Everyone else continues or finishes.
        for m in sorted(live_members - exploits.keys() - handed):
            decisions.append(self._pop.continue_or_finish(m))
        return decisions + losers_links + evaluator_decisions + self._assign_idle()

    # -- asynchronous decisions ---------------------------------------------------------------

    def _decide_async(self, worker: int) -> list[Decision]:
        decisions: list[Decision] = []
        if worker in self._ev:
            ev = self._ev[worker]
            if self.done():
                decisions += self._stop(worker, "the run is over")
            elif ev.stop_requested:
                decisions += self._stop(worker, ev.stop_requested)
            else:
                verdict = self._judge(worker)
                target = ev.target
                if (
                    verdict.startswith("success")
                    and target is not None
                    and (not self._pop.members[target].finished)
                ):
                    ev.waiting = True  # keep the weights until the target is ready
                    ev.state.finished = True
                    ev.stop_requested = verdict
                elif verdict.startswith("continue"):
                    decisions.append(self._continue_evaluator(worker))
                else:
                    decisions += self._stop(worker, verdict.removeprefix("stop: "))
            return decisions + self._assign_idle()
        waiting = [e for e, ev in self._ev.items() if ev.waiting and ev.target == worker]
        if waiting:
            e = waiting[0]
            decisions += self._handover(e, self._ev[e].stop_requested)
        else:
            view = self._pop.snapshot()
            record = self._evolve(worker, self.fitness(self.subpopulation(worker)), view)
            if record is not None:
                decisions += self._apply_exploit(worker, record, view)
            else:
                decisions.append(self._pop.continue_or_finish(worker))
        if self.done():
            for e in sorted(self._ev):
                if not self._ev[e].busy:
                    decisions += self._stop(e, "the run is over")
            return decisions
        return decisions + self._assign_idle()
