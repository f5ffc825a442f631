"""Evaluator criteria of FIRE PBT (section 3.2 of the paper) and a cache of fitted curves.

``judge`` compares an evaluator's curve with its target's: success when the evaluator improves
faster (``best_score_diff > 0``) and significantly so (one-sided binomial p < ``p_stat``); stop
when the curves never overlap within ``max_eval_steps``, or when p exceeds
``p_stat + max(0, 1 − T / max_eval_steps)``; otherwise continue.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from firepbt.fire import curves

Point = tuple[int, float]  # (step, score oriented so that higher is better)
WORST_SCORE = -1e30  # where a curve of nothing but NaN (a diverged run) sits


class Outcome(enum.Enum):
    CONTINUE = "continue"
    SUCCESS = "success"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: str = ""


CONTINUE = Verdict(Outcome.CONTINUE)


class Ending(enum.Enum):
    """How an evaluation ended. A ``Release`` decision's reason starts with ``"<value>: "``, so
    the store, ``firepbt status``, the report and ``export`` can count endings by kind."""

    SUCCESS = "success"  # the target took the evaluator's weights
    BINOMIAL_STOP = "binomial stop"  # p above the stopping threshold
    NO_OVERLAP = "no overlap"  # no overlap with the target within max_eval_steps
    PARENT_LOST = "parent lost"  # the parent lost an evolution event (or failed)
    TARGET_LOST = "target lost"  # the target lost an evolution event (or failed)
    SUPERSEDED = "superseded"  # succeeded, but its target was already served or finished
    FAILED = "failed"  # the evaluator's own segment failed
    RUN_OVER = "run over"  # the step budget is spent

    def reason(self, detail: str) -> str:
        return f"{self.value}: {detail}"

    @classmethod
    def of(cls, reason: str) -> Ending | None:
        """The ending a release reason names; ``None`` for a reason written before endings were
        recorded."""
        try:
            return cls(reason.split(":", 1)[0])
        except ValueError:
            return None


def extend(curve: list[Point], step: int, score: float) -> None:
    """Add a point to a curve. A point at a step the curve already reached (weights copied from
    a donor that had finished, then evaluated again without training) replaces the last one:
    curve steps must strictly increase."""
    if curve and curve[-1][0] >= step:
        curve[-1] = (curve[-1][0], float(score))
    else:
        curve.append((step, float(score)))


def _fit(points: Sequence[Point]) -> curves.Curve:
    return curves.fit_curve([p[0] for p in points], [p[1] for p in points], worst=WORST_SCORE)


@dataclass(frozen=True, slots=True, eq=False)
class FittedCurve:
    """A curve fitted away from the strategy (by a worker): the points it was fitted on and the
    fit's arrays (plain arrays travel; the strategy rebuilds the read-only ``curves.Curve``)."""

    key: Hashable
    points: tuple[Point, ...]
    steps: np.ndarray
    values: np.ndarray
    smoothed: np.ndarray


@dataclass(frozen=True, slots=True)
class CurveWork:
    """A curve the strategy will judge once a segment ends: ``points``, the curve before the
    segment, extended by the segment's points. The worker that trains the segment fits it
    (called with the segment's points, oriented so that higher is better) while the controller
    and the other workers go on; the strategy takes the fit only if its own curve turned out to be
    exactly the points fitted (:meth:`CurveCache.offer`), so where the work is done changes no
    decision."""

    key: Hashable
    points: tuple[Point, ...]

    def __call__(self, new: Sequence[Point]) -> FittedCurve | None:
        curve = list(self.points)
        for step, score in new:
            extend(curve, step, score)
        if len(curve) < 2:
            return None
        fitted = _fit(curve)
        return FittedCurve(self.key, tuple(curve), fitted.steps, fitted.values, fitted.smoothed)


class CurveCache:
    """Fits each curve once. An entry is valid only for exactly the points it was fitted on:
    a curve that grew, restarted (an evaluator reassigned, a child that copied weights) or
    changed in any way is fitted again. One entry per key bounds the memory."""

    def __init__(self) -> None:
        self._fits: dict[Hashable, tuple[tuple[Point, ...], curves.Curve]] = {}
        self.fitted = 0  # number of GP fits made here (for tests and cost accounting)
        self.offered = 0  # number of fits made elsewhere and taken (``offer``)

    def offer(self, fitted: FittedCurve, current: Sequence[Point]) -> bool:
        """Take a fit made elsewhere when it was made on exactly the ``current`` points of its
        curve; otherwise leave the cache as it is. True when taken."""
        content = tuple(current)
        if fitted.points != content:
            return False
        curve = curves.Curve(fitted.steps, fitted.values, fitted.smoothed)
        self._fits[fitted.key] = (content, curve)
        self.offered += 1
        return True

    def fit(self, key: Hashable, points: Sequence[Point]) -> curves.Curve:
        content = tuple(points)
        cached = self._fits.get(key)
        if cached is not None and cached[0] == content:
            return cached[1]
        fitted = _fit(points)
        self._fits[key] = (content, fitted)
        self.fitted += 1
        return fitted


def judge(
    evaluator: curves.Curve | None,
    target: curves.Curve | None,
    trained: int,
    max_eval_steps: int,
    p_stat: float,
    thin: int = 1,
    increments: bool = False,
) -> Verdict:
    """The verdict on an evaluator that has trained ``trained`` steps; a curve of fewer than two
    points is passed as ``None``. A stop's reason starts with its :class:`Ending`."""
    if evaluator is None or target is None:
        if trained <= max_eval_steps:
            return CONTINUE
        return Verdict(Outcome.STOP, Ending.NO_OVERLAP.reason("no curve to compare"))
    p, overlap = curves.binom_test(evaluator, target, thin, increments)
    if overlap is None or overlap.length - 1 < thin:  # no overlap, or no pair past its start
        if trained > max_eval_steps:
            return Verdict(
                Outcome.STOP,
                Ending.NO_OVERLAP.reason(f"no overlap with the target after {trained} steps"),
            )
        return CONTINUE
    diff = curves.best_score_diff(evaluator, target)
    if diff > 0 and p < p_stat:
        return Verdict(
            Outcome.SUCCESS,
            Ending.SUCCESS.reason(f"best_score_diff {diff:.4g}, binomial p {p:.3g}"),
        )
    threshold = p_stat + max(0.0, 1.0 - trained / max_eval_steps)
    if p > threshold:
        return Verdict(
            Outcome.STOP,
            Ending.BINOMIAL_STOP.reason(
                f"binomial p {p:.3g} > {threshold:.3g} after {trained} steps"
            ),
        )
    return CONTINUE
