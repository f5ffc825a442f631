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


class CurveCache:
    """Fits each curve once; a curve is refitted only after it grows (one entry per key)."""

    def __init__(self) -> None:
        self._fits: dict[Hashable, tuple[int, curves.Curve]] = {}

    def fit(self, key: Hashable, points: Sequence[Point]) -> curves.Curve:
        cached = self._fits.get(key)
        if cached is not None and cached[0] == len(points):
            return cached[1]
        fitted = curves.fit_curve([p[0] for p in points], [p[1] for p in points], worst=WORST_SCORE)
        self._fits[key] = (len(points), fitted)
        return fitted


def judge(
    evaluator: curves.Curve | None,
    target: curves.Curve | None,
    trained: int,
    max_eval_steps: int,
    p_stat: float,
) -> Verdict:
    """The verdict on an evaluator that has trained ``trained`` steps; a curve of fewer than two
    points is passed as ``None``."""
    if evaluator is None or target is None:
        if trained <= max_eval_steps:
            return CONTINUE
        return Verdict(Outcome.STOP, "no curve to compare")
    p, overlap = curves.binom_test(evaluator, target)
    if overlap is None:
        if trained > max_eval_steps:
            return Verdict(Outcome.STOP, f"no overlap with the target after {trained} steps")
        return CONTINUE
    diff = curves.best_score_diff(evaluator, target)
    if diff > 0 and p < p_stat:
        return Verdict(Outcome.SUCCESS, f"success: best_score_diff {diff:.4g}, binomial p {p:.3g}")
    threshold = p_stat + max(0.0, 1.0 - trained / max_eval_steps)
    if p > threshold:
        return Verdict(Outcome.STOP, f"binomial p {p:.3g} > {threshold:.3g} after {trained} steps")
    return CONTINUE
