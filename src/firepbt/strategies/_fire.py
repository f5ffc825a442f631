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

from firepbt.decisions import Decision
from firepbt.exploit import ExploitRecord
from firepbt.fire.evaluation import Ending, Outcome
from firepbt.strategies._fire_book import FireBook

RUN_OVER = Ending.RUN_OVER.reason("the step budget is spent")


class FirePBT(FireBook):
    """FIRE PBT over ``subpopulations`` sub-populations splitting ``population`` members equally,
    plus ``evaluators`` evaluator workers (default ¾ of the parents' total size).

    ``max_eval_steps`` (default 3 × ``ready_every``) and ``p_stat`` (0.01) are the paper's
    stopping and success settings; ``min_steps_before_eval`` holds per sub-population (an int for
    all, or one value per sub-population, the first being unused). Parents evolve greedily on
    their own score, as P1 does, for their first ``warmup`` steps (default 3 × ``ready_every``,
    at most a tenth of ``total_steps``) and are evaluated only after it. Inside each
    sub-population the defaults are the FIRE paper's explore (multiply by 0.5, 0.8, 1.25 or 2)
    and truncation of the bottom 12.5 %.
    Evaluators check their criteria every ``ready_every`` steps.

    >>> import numpy as np
    >>> from firepbt.space import Space, LogUniform
    >>> fire = FirePBT(Space({"lr": LogUniform(1e-3, 1.0)}), population=8, total_steps=100,
    ...                ready_every=10, rng=np.random.default_rng(0), subpopulations=2)
    >>> len(fire.start()), fire.evaluator_ids
    (8, [8, 9, 10])
    """

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
                decisions += self._stop(e, RUN_OVER)
            return decisions
        view = self._pop.snapshot()
        fits = [self.fitness(i) for i in range(self.subpopulations)]  # before anyone moves
        # 1. Evaluators are judged first, so that one that has just succeeded hands its weights
        #    over before an evolution event of its parent or target could stop it.
        handed: set[int] = set()
        handovers: list[Decision] = []
        evaluator_decisions: list[Decision] = []
        continuing: list[int] = []
        for e in sorted(active):
            ev = self._ev[e]
            if ev.stop_requested:
                evaluator_decisions += self._stop(e, ev.stop_requested)
                continue
            verdict = self._judge(e)
            target = ev.target
            if verdict.outcome is Outcome.CONTINUE:
                continuing.append(e)
            elif verdict.outcome is Outcome.SUCCESS:
                if target is None or target in handed or self._pop.members[target].finished:
                    why = f"member {target} was already served or has finished"
                    evaluator_decisions += self._stop(e, Ending.SUPERSEDED.reason(why))
                    continue
                handover = self._handover(e, verdict.reason)
                handovers.append(handover[0])
                evaluator_decisions += handover[1:]
                handed.add(target)
            else:
                evaluator_decisions += self._stop(e, verdict.reason)
        # 2. Evolution inside each sub-population, on the fitness taken before anyone moved; a
        #    member that has just taken an evaluator's weights is not exploited this round.
        exploits: dict[int, ExploitRecord] = {}
        for i in range(self.subpopulations):
            for m in sorted((live_members & set(self._live(i))) - handed):
                record = self._evolve(m, fits[i], view)
                if record is not None:
                    exploits[m] = record
        losers_links: list[Decision] = []
        for m, record in exploits.items():
            decisions_m = self._apply_exploit(m, record, view)
            decisions.append(decisions_m[0])
            losers_links += decisions_m[1:]
        # 3. Evaluators still linked after evolution go on; everyone else continues or finishes.
        for e in continuing:
            if self._ev[e].parent is not None:
                evaluator_decisions.append(self._continue_evaluator(e))
        for m in sorted(live_members - exploits.keys() - handed):
            decisions.append(self._pop.continue_or_finish(m))
        return decisions + handovers + losers_links + evaluator_decisions + self._assign_idle()

    # -- asynchronous decisions ---------------------------------------------------------------

    def _decide_async(self, worker: int) -> list[Decision]:
        decisions: list[Decision] = []
        if worker in self._ev:
            ev = self._ev[worker]
            if self.done():
                decisions += self._stop(worker, RUN_OVER)
            elif ev.stop_requested:
                decisions += self._stop(worker, ev.stop_requested)
            else:
                verdict = self._judge(worker)
                target = ev.target
                if verdict.outcome is Outcome.CONTINUE:
                    decisions.append(self._continue_evaluator(worker))
                elif verdict.outcome is Outcome.SUCCESS:
                    if target is None or self._pop.members[target].finished:
                        why = Ending.SUPERSEDED.reason(f"member {target} has finished")
                        decisions += self._stop(worker, why)
                    else:
                        ev.waiting = True  # keep the weights until the target is ready
                        ev.state.finished = True
                        ev.stop_requested = verdict.reason
                else:
                    decisions += self._stop(worker, verdict.reason)
            return decisions + self._assign_idle()
        waiting = [e for e, ev in self._ev.items() if ev.waiting and ev.target == worker]
        if waiting:
            e, *others = waiting
            decisions += self._handover(e, self._ev[e].stop_requested)
            for other in others:  # judged against the curve the target has just dropped
                why = f"member {worker} took evaluator {e}'s weights first"
                decisions += self._stop(other, Ending.SUPERSEDED.reason(why))
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
                    decisions += self._stop(e, RUN_OVER)
            return decisions
        return decisions + self._assign_idle()
