"""FIRE PBT's evaluator moves: judging an evaluator, stopping it, handing its weights over to
its target, and assigning an idle evaluator a parent to evaluate and a target to beat."""

from __future__ import annotations

from firepbt.decisions import Assign, Continue, Decision, Handover, Release, Weights
from firepbt.fire.evaluation import Ending, Outcome, Verdict, judge
from firepbt.strategies._fire_state import FireState


class FireEvaluators(FireState):
    """The evaluators' moves on FIRE PBT's state (``FireState``): judge, stop, hand over,
    assign."""

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
        child = self._pop.changing(ev.target)
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
        self._pop.set_scores(ev.target, [*child.scores, last])
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
