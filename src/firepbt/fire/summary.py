"""What FIRE PBT's evaluators did in a run, read back from its store: every evaluator assignment
and how it ended, the hand-overs, and each parent sub-population's fitness ranking.

``firepbt status``, the HTML report, ``export`` and the run's final summary all read it from
here. Endings come from the release reasons (:class:`~firepbt.fire.evaluation.Ending`); a reason
written before endings were recorded counts as "other".

>>> summary = fire_summary(Store.open("runs/fire"))  # doctest: +SKIP
>>> [(s.name, s.assignments, len(s.handovers)) for s in summary.subpopulations]  # doctest: +SKIP
[('P2', 14, 2), ('P3', 11, 1)]
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from firepbt.decisions import Mode
from firepbt.fire import curves
from firepbt.fire.evaluation import WORST_SCORE, Ending
from firepbt.fire.settings import (
    DEFAULT_P_STAT,
    DEFAULT_SUCCESS_TEST,
    DEFAULT_THIN,
    points_for_success,
)
from firepbt.store import MemberStatus, Role, Store

OTHER = "other"  # a release reason that names no ending (written before endings were recorded)
ENDING_LABELS = (*(e.value for e in Ending), OTHER)
RANKING_NOTE = "fitness ranking on the latest evaluator curves"
# The names of SubpopulationSummary.counts(), in order.
COUNT_COLUMNS = ("assignments", "active", *ENDING_LABELS, "hand-overs")
_TARGET = re.compile(r"\btarget (\d+)\b")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluator assignment: ``evaluator`` trained ``parent``'s weights (parent in
    sub-population ``subpopulation``, 0-based) with the hyperparameters of ``target`` (its target
    when assigned) from ``start_step``; ``end_step`` and ``ending`` are None while it is still
    running. ``handed_to`` took its weights at ``handover_step`` (a re-targeted evaluator hands
    them to another member than ``target``)."""

    evaluator: int
    parent: int
    target: int | None
    subpopulation: int
    start_step: int
    end_step: int | None = None
    ending: Ending | None = None
    reason: str = ""  # the release's reason ("" while active)
    handed_to: int | None = None
    handover_step: int | None = None

    @property
    def active(self) -> bool:
        return self.end_step is None

    @property
    def label(self) -> str:
        """The ending's label, "other" for an unrecognised reason, "active" while running."""
        if self.active:
            return "active"
        return OTHER if self.ending is None else self.ending.value


@dataclass(frozen=True, slots=True)
class HandoverRecord:
    """``target`` took ``evaluator``'s weights (trained from ``parent``'s) at ``step``, the
    step of those weights."""

    evaluator: int
    parent: int | None
    target: int
    step: int


@dataclass(frozen=True, slots=True)
class Rank:
    """A parent member's fitness on the curve of its latest evaluator assignment."""

    member: int
    fitness: float
    evaluator: int
    points: int


@dataclass(frozen=True, slots=True)
class SubpopulationSummary:
    """Evaluations of the parents in sub-population ``subpopulation`` (0-based: P2 is 1)."""

    subpopulation: int
    assignments: int
    active: int
    endings: Mapping[str, int]  # every label of ENDING_LABELS, in that order
    handovers: tuple[HandoverRecord, ...]
    ranking: tuple[Rank, ...]  # best first; empty when fewer than 2 members have a curve
    unranked: int = 0  # parents with a curve left unranked: more than the summary was to fit

    @property
    def name(self) -> str:
        return f"P{self.subpopulation + 1}"

    def counts(self) -> tuple[int, ...]:
        """The numbers :data:`COUNT_COLUMNS` name, in that order."""
        endings = (self.endings[label] for label in ENDING_LABELS)
        return (self.assignments, self.active, *endings, len(self.handovers))


@dataclass(frozen=True, slots=True)
class FireSummary:
    """Every evaluation of a FIRE PBT run and, per parent sub-population, their counts."""

    evaluations: tuple[Evaluation, ...]
    subpopulations: tuple[SubpopulationSummary, ...]
    eval_every: int
    p_stat: float
    thin: int
    max_eval_steps: int | None  # as configured; None when the run left the default
    success_test: str = DEFAULT_SUCCESS_TEST

    @property
    def handovers(self) -> tuple[HandoverRecord, ...]:
        return tuple(h for s in self.subpopulations for h in s.handovers)

    def warning(self) -> str | None:
        """Why a run with no hand-over made none, derived from how its evaluations ended; None
        when it made one."""
        if self.handovers:
            return None
        return "no hand-over: " + _likely_cause(self)


def is_fire(store: Store) -> bool:
    """Whether the run in ``store`` is FIRE PBT (its strategy, or evaluators among its workers)."""
    return store.config().get("strategy") == "fire" or any(
        m.role is Role.EVALUATOR for m in store.members()
    )


def fire_summary(store: Store, *, ranking: bool | int = True) -> FireSummary | None:
    """The evaluators' record of a FIRE PBT run; None for any other run. ``ranking=False`` skips
    the fitness ranking (one GP fit per parent member); a number ranks only the sub-populations
    with at most that many parents to fit."""
    if not is_fire(store):
        return None
    config = store.config()
    options = dict(config.get("strategy_options") or {})
    members = {m.id: m for m in store.members()}
    evaluations, handovers = _evaluations(store.evaluator_decisions(), members)
    mode = Mode(config.get("mode", "max"))
    parents = sorted(
        {m.subpopulation for m in members.values() if m.role is Role.MEMBER and m.subpopulation}
        | {e.subpopulation for e in evaluations}
    )
    subs = []
    for sp in parents:
        mine = [e for e in evaluations if e.subpopulation == sp]
        counts = Counter(e.label for e in mine if not e.active)
        latest = _latest(sp, members, evaluations)
        fit = ranking is True or (ranking is not False and len(latest) <= ranking)
        subs.append(
            SubpopulationSummary(
                subpopulation=sp,
                assignments=len(mine),
                active=sum(e.active for e in mine),
                endings={label: counts.get(label, 0) for label in ENDING_LABELS},
                handovers=tuple(
                    h for h in handovers if h.parent is not None and _sp(members, h.parent) == sp
                ),
                ranking=_ranking(store, latest, evaluations, mode) if fit else (),
                unranked=0 if fit else len(latest),
            )
        )
    return FireSummary(
        evaluations=tuple(evaluations),
        subpopulations=tuple(subs),
        eval_every=int(
            options.get("eval_every") or config.get("eval_every") or config.get("ready_every") or 1
        ),
        p_stat=float(options.get("p_stat", DEFAULT_P_STAT)),
        thin=int(options.get("thin", DEFAULT_THIN)),
        max_eval_steps=options.get("max_eval_steps"),
        success_test=str(options.get("success_test", DEFAULT_SUCCESS_TEST)),
    )


def no_handover_warning(store: Store) -> str | None:
    """The final summary's warning for a FIRE PBT run that made no hand-over (None otherwise)."""
    if store.has_decision_of("handover"):
        return None
    summary = fire_summary(store, ranking=False)
    return None if summary is None else summary.warning()


# -- reading ---------------------------------------------------------------------------------


def _sp(members: Mapping[int, Any], m: int) -> int:
    row = members.get(m)
    return -1 if row is None else int(row.subpopulation)


def _evaluations(
    decisions: Sequence[tuple[int, int, int, str, int | None, int | None, str, int | None]],
    members: Mapping[int, Any],
) -> tuple[list[Evaluation], list[HandoverRecord]]:
    """Pair each assignment with the release that ended it (and a hand-over it made), from
    ``Store.evaluator_decisions``."""
    open_: dict[int, int] = {}  # evaluator → index of its running assignment
    rows: list[list[Any]] = []  # Evaluation's fields, completed as its decisions come
    handovers: list[HandoverRecord] = []
    for _, member, step, kind, donor, source_step, reason, target in decisions:
        if kind == "assign" and donor is not None:
            if target is None:  # a store made before targets were recorded: the reason's
                found = _TARGET.search(reason)
                target = int(found.group(1)) if found else None
            open_[member] = len(rows)
            rows.append([member, donor, target, _sp(members, donor), step,
                         None, None, "", None, None])  # fmt: skip
        elif kind == "handover" and donor is not None:
            at = step if source_step is None else source_step
            parent = None
            if donor in open_:
                row = rows[open_[donor]]
                row[8:10] = [member, at]  # handed_to, handover_step
                parent = row[1]
            handovers.append(HandoverRecord(donor, parent, member, at))
        elif kind == "release" and member in open_:
            rows[open_.pop(member)][5:8] = [step, Ending.of(reason), reason]
    evaluations = [Evaluation(*row) for row in rows]
    return evaluations, handovers


def _assignment_segments(
    links: Sequence[tuple[int, int, int | None]], starts: Sequence[int], ends: Sequence[float]
) -> list[list[int]]:
    """An evaluator's segments (``Store.segment_links``: id, start step, source segment, by
    id) grouped by its assignments (starting at ``starts``, released at ``ends``, ``inf``
    while running), as segment ids: a segment opens the next assignment when it starts at that
    assignment's step and does not continue the previous segment's weights, or when the
    previous assignment was released by then."""
    groups: list[list[int]] = [[] for _ in starts]
    k, prev = -1, None
    for seg, start, source in links:
        nxt = k + 1
        if (
            nxt < len(starts)
            and start == starts[nxt]
            and (prev is None or source != prev or ends[k] <= start)
        ):
            k = nxt
        if k >= 0:
            groups[k].append(seg)
        prev = seg
    return groups


def _latest(
    sp: int, members: Mapping[int, Any], evaluations: Sequence[Evaluation]
) -> dict[int, Evaluation]:
    """Each live member of parent sub-population ``sp`` that was evaluated: its latest
    evaluation."""
    live = {
        m.id
        for m in members.values()
        if m.role is Role.MEMBER and m.subpopulation == sp and m.status is not MemberStatus.FAILED
    }
    return {e.parent: e for e in evaluations if e.parent in live}


def _ranking(
    store: Store,
    latest: Mapping[int, Evaluation],
    evaluations: Sequence[Evaluation],
    mode: Mode,
) -> tuple[Rank, ...]:
    """Rank parents by FIRE fitness on the curve of each one's latest evaluator assignment
    (``latest``; scores oriented so that higher is better)."""
    if len(latest) < 2:
        return ()
    fitted: dict[int, curves.Curve] = {}
    sizes: dict[int, int] = {}
    links: dict[int, list[tuple[int, int, int | None]]] = {}  # evaluator → its segments
    for parent, e in latest.items():
        if e.evaluator not in links:
            links[e.evaluator] = store.segment_links(e.evaluator)
        points = _curve(store, e, evaluations, mode, links[e.evaluator])
        if len(points) >= 2:
            steps, values = zip(*points, strict=True)
            fitted[parent] = curves.fit_curve(steps, values, worst=WORST_SCORE)
            sizes[parent] = len(points)
    if len(fitted) < 2:
        return ()
    fit = curves.fitness(fitted)
    order = sorted(fit, key=lambda m: (-fit[m], m))
    return tuple(Rank(m, fit[m], latest[m].evaluator, sizes[m]) for m in order)


def _curve(
    store: Store,
    e: Evaluation,
    evaluations: Sequence[Evaluation],
    mode: Mode,
    links: Sequence[tuple[int, int, int | None]],
) -> list[tuple[int, float]]:
    """The evaluation's curve as the strategy saw it: the parent's score at the start step, then
    the evaluator's points up to its release (``links``: the evaluator's segments)."""
    mine = [x for x in evaluations if x.evaluator == e.evaluator]
    groups = _assignment_segments(
        links,
        [x.start_step for x in mine],
        [math.inf if x.end_step is None else x.end_step for x in mine],
    )
    index = next(i for i, x in enumerate(mine) if x is e)
    by_step: dict[int, float] = {}
    for point in store.points_at(e.parent, e.start_step):
        by_step[point.step] = point.score
    end = math.inf if e.end_step is None else e.end_step
    for seg in groups[index]:
        for p in store.segment_points(seg):
            if e.start_step < p.step <= end:
                by_step[p.step] = p.score
    return [(step, mode.orient(v)) for step, v in sorted(by_step.items())]


# -- the likely cause of no hand-over -------------------------------------------------------------


def _likely_cause(s: FireSummary) -> str:
    if not s.evaluations:
        return (
            "no evaluator was ever assigned: no parent member became ready for evaluation "
            "(are min_steps_before_eval and warmup within the step budget?)"
        )
    ended = [e for e in s.evaluations if e.end_step is not None]
    counts = Counter(e.label for e in ended)
    needed = points_for_success(s.p_stat, s.thin)
    longest = max((e.end_step - e.start_step for e in ended if e.end_step is not None), default=0)
    causes = []
    too_short = s.max_eval_steps is not None and s.max_eval_steps // s.eval_every + 1 < needed
    if too_short and s.max_eval_steps is not None:
        causes.append(
            f"max_eval_steps {s.max_eval_steps} is too short for p_stat {s.p_stat:g}: it holds "
            f"{s.max_eval_steps // s.eval_every + 1} evaluation points (eval_every "
            f"{s.eval_every}) and a success needs at least {needed}"
        )
    lost = counts[Ending.TARGET_LOST.value] + counts[Ending.PARENT_LOST.value]
    stops = counts[Ending.BINOMIAL_STOP.value] + counts[Ending.NO_OVERLAP.value]
    if ended and 2 * lost >= len(ended):
        causes.append(
            f"{lost} of {len(ended)} evaluations ended by 'target lost' "
            f"({counts[Ending.TARGET_LOST.value]}) or 'parent lost' "
            f"({counts[Ending.PARENT_LOST.value]}) before enough evaluation points: evolution "
            "inside the sub-populations stops the evaluators (a longer ready_every, or larger "
            "sub-populations, lets them live longer)"
        )
    elif ended and not too_short and longest // s.eval_every + 1 < needed:
        causes.append(
            f"too few evaluation points: the longest evaluation lasted {longest} steps "
            f"({longest // s.eval_every + 1} points); a success at p_stat {s.p_stat:g} needs at "
            f"least {needed}"
        )
    elif ended and not too_short and 2 * stops >= len(ended):
        causes.append(
            f"{stops} of {len(ended)} evaluations ended by 'binomial stop' or 'no overlap': "
            "the parents' weights did not improve faster than their targets'"
            + (
                " by enough to pass the default test of gains, which rarely passes (0-2 hand-overs "
                "per run on the NQM benchmark, where FIRE still halved PBT's loss: its parents' "
                "own schedule can make the best member)"
                if s.success_test == "increments"
                else ""
            )
        )
    if counts[Ending.SUPERSEDED.value]:
        causes.append(
            f"{counts[Ending.SUPERSEDED.value]} evaluations succeeded after their target was "
            "already served or finished (superseded)"
        )
    if not causes:
        shown = ", ".join(f"{n} {label}" for label, n in counts.items()) or "none ended yet"
        causes.append(f"none succeeded ({shown})")
    return f"{len(s.evaluations)} evaluator assignments; likely cause: " + "; ".join(causes)
