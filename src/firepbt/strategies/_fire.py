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

from collections.abc import Mapping

from firepbt.decisions import Decision
from firepbt.exploit import ExploitRecord
from firepbt.fire.evaluation import Ending, Outcome
from firepbt.scoreboard import ScoreBoard
from firepbt.strategies._base import MemberState
from firepbt.strategies._fire_book import FireBook

RUN_OVER = Ending.RUN_OVER.reason("the step budget is spent")


class FirePBT(FireBook):
    """FIRE PBT over ``subpopulations`` sub-populations splitting ``population`` members equally,
    plus ``evaluators`` evaluator workers (default ¾ of the parents' total size).

    ``max_eval_steps`` and ``p_stat`` are the paper's stopping and success settings. Parents
    evolve greedily on their own score, as P1 does, for their first ``warmup`` steps and are
    evaluated only after it. Inside each sub-population the defaults are the FIRE paper's explore
    (multiply by 0.5, 0.8, 1.25 or 2) and truncation of the bottom 12.5 %. Evaluators check their
    criteria every ``ready_every`` steps. The evaluators' ids follow the members'
    (``evaluator_ids``).

    Args:
        space: The search space: the prior of the starting hyperparameters, and the ranges
            explore moves in.
        population: Members trained across the sub-populations (evaluators come on top): a
            multiple of ``subpopulations`` giving each at least 2 members.
        total_steps: Steps each member trains for, at least 1.
        ready_every: Steps between a worker's ready points, where members evolve and evaluators
            are judged; at least 1.
        rng: The generator every random choice of the strategy draws from.
        subpopulations: How many sub-populations, at least 2: P1, which evolves greedily on its
            score, and the parents P2, P3, ...
        evaluators: Evaluator workers, at least 1 (default ¾ of the parents' total size,
            rounded down, at least 1).
        exploit (``ExploitPolicy | None``): The exploit policy inside each sub-population
            (default ``Truncation(0.125)``).
        explore (``ExplorePolicy | None``): The explore policy inside each sub-population
            (default ``Perturb((0.5, 0.8, 1.25, 2.0))``).
        synchrony: ``"sync"`` (the default): decide for every worker at a barrier;
            ``"async"``: decide for each worker when it is ready.
        burn_in: Steps before which a member does not evolve, 0 or more.
        max_eval_steps: Steps after which an evaluator whose curve has no overlap with its
            target's is stopped, and by which the binomial test's stopping threshold has come
            down to ``p_stat``. Default ``max(3 × ready_every, 3 × (n - 1) × eval_every)``,
            where ``n`` is the number of points a success needs at the least (8 with the
            default ``p_stat`` and ``thin``).
        p_stat: The significance level, in ``(0, 1)``, of the one-sided binomial test an
            evaluator's success needs (default 0.01).
        min_steps_before_eval: Steps a parent trains before an evaluator may be assigned to it:
            one int for every sub-population, or one value per sub-population (the first, P1's,
            is unused).
        warmup: Steps a parent sub-population evolves greedily before it is evaluated (default
            3 × ``ready_every``, at most a tenth of ``total_steps``).
        keep_curves: Whether a parent whose evaluator stopped keeps that evaluator's curve as
            its fitness until it copies weights (the paper drops it).
        retarget: Whether an evaluator whose target loses an evolution event or fails is
            pointed at the child sub-population's best, where there is one, instead of being
            stopped.
        eval_every: Steps between evaluations, the curves' resolution (default
            ``ready_every``).
        thin: The binomial test compares every ``thin``-th pair of points (default 1: every
            pair); an integer of at least 1.
        success_test: ``"increments"`` (the default: the binomial test compares the curves'
            gains) or ``"levels"`` (the paper's: it compares their levels).
        replace_failed: How many times each member that fails for good is replaced by an
            exploit of the best other member of its sub-population, instead of leaving the
            population.
        initial_hyperparameters: One set of starting hyperparameters per member, checked
            against the space, instead of samples from it.

    Raises:
        firepbt.errors.PopulationConfigError: A setting cannot work; the message names it.

    Warns:
        firepbt.errors.FireSettingsWarning: Settings under which no evaluator could ever hand
            its weights over, evaluators and members would be compared on points taken at
            different offsets (``eval_every`` does not divide ``ready_every``), or evaluators
            would stay idle.

    >>> import numpy as np
    >>> from firepbt.space import Space, LogUniform
    >>> fire = FirePBT(Space({"lr": LogUniform(1e-3, 1.0)}), population=8, total_steps=100,
    ...                ready_every=10, rng=np.random.default_rng(0), subpopulations=2)
    >>> len(fire.start()), fire.evaluator_ids
    (8, [8, 9, 10])
    """

    # -- synchronous rounds -------------------------------------------------------------------

    def _release_barrier(self) -> list[Decision]:
        training = self._pop.training
        active = {e for e, ev in self._ev.items() if ev.parent is not None}
        if len(self._waiting) < len(training) + len(active):
            return []  # someone is not at the barrier yet: no need to find out whom
        live_members = set(training)
        if not (live_members | active) <= self._waiting or not (live_members | active):
            return []
        self._waiting.clear()
        self._clock += 1
        if all(self._pop.members[m].step >= self._pop.total_steps for m in live_members):
            # The last round: every member finishes and the evaluators stop.
            decisions = [self._pop.continue_or_finish(m) for m in sorted(live_members)]
            for e in sorted(active):
                decisions += self._stop(e, RUN_OVER)
            return decisions
        with self._pop.round() as view:
            return self._round(live_members, active, view)

    def _round(
        self, live_members: set[int], active: set[int], view: Mapping[int, MemberState]
    ) -> list[Decision]:
        """Decide for everyone at the barrier, on one view of the population."""
        decisions: list[Decision] = []
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
        boards: dict[tuple[int, bool], ScoreBoard] = {}  # ranked once for the round
        for i in range(self.subpopulations):
            for m in sorted((live_members & set(self._live(i))) - handed):
                record = self._evolve(m, fits[i], view, boards)
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
            with self._pop.round() as view:
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
