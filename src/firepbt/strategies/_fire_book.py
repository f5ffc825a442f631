"""FIRE PBT's bookkeeping: the moves (exploit, assign, hand over, release) that ``FirePBT`` (in
``_fire.py``) schedules, on the state of ``_fire_state.py`` (sub-populations, evaluators, their
curves, fitness) with the evaluators' moves of ``_fire_evaluators.py``."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

from firepbt.decisions import Decision, Weights
from firepbt.exploit import ExploitRecord, select_donor
from firepbt.fire import smoothing
from firepbt.fire.evaluation import CurveWork, Ending, FittedCurve, Point, extend
from firepbt.scoreboard import ScoreBoard
from firepbt.strategies._base import MemberState
from firepbt.strategies._fire_evaluators import FireEvaluators
from firepbt.strategies._fire_state import EvaluatorState
from firepbt.strategies._population import NotBehind, Synchrony

# The longest curve whose fit is left to the worker that extends it (its points travel with the
# segment); a longer one (a member that has not copied weights for thousands of evaluations) is
# fitted by the strategy.
MAX_WORK_POINTS = 1000


class FireBook(FireEvaluators):
    """The moves FIRE PBT makes on its state (``FireState``, with the evaluators' moves of
    ``FireEvaluators``): the strategy contract, exploits inside a sub-population, assignments and
    hand-overs. ``FirePBT`` decides when to make them (a synchronous barrier or each worker when
    ready)."""

    worker_modules = smoothing.MODULES

    # -- the contract ---------------------------------------------------------------------

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
        if record is None:
            return []
        with self._pop.round() as view:
            return self._apply_exploit(member, record, view)

    def done(self) -> bool:
        return all(s.finished or not s.alive for s in self._pop.members.values())

    # -- evolution inside a sub-population ----------------------------------------------------

    def _evolve(
        self,
        member: int,
        fit: Mapping[int, float],
        view: Mapping[int, MemberState],
        boards: dict[tuple[int, bool], ScoreBoard] | None = None,
    ) -> ExploitRecord | None:
        """``boards``: the score boards of the sub-populations, kept for a round's decisions
        (all taken on ``fit`` and ``view``), so that each is ranked once."""
        state = self._pop.members[member]
        if state.step >= self._pop.total_steps or state.step < self.burn_in:
            return None
        i = self.subpopulation(member)
        greedy = i == 0 or state.step < self.warmup  # the policy ranks the raw scores itself
        history = None if boards is None else boards.get((i, greedy))
        if history is None:
            history = ScoreBoard()
            if greedy:
                peers = fit if i == 0 else [m for m in self._live(i) if view[m].scores]
                for m in peers:
                    history.set(m, view[m].scores)
            else:
                for m, f in fit.items():
                    history.set(m, [f])
            if boards is not None:
                boards[i, greedy] = history
        # never rewind to a donor's older weights (see PBT._decide)
        donors = NotBehind(view, history, state.step)
        return select_donor(self.exploit, member, history, self.rng, donors)

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

    @abstractmethod
    def _release_barrier(self) -> list[Decision]:
        """Synchronous mode: decide for everyone once every busy worker is at the barrier."""

    @abstractmethod
    def _decide_async(self, worker: int) -> list[Decision]:
        """Asynchronous mode: decide for ``worker``, which is ready now."""
