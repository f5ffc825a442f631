"""Hand-tuned learning-rate schedule shapes shared by the examples: the baseline "random search
with a hand-tuned schedule shape" samples an initial rate and follows one of these shapes.

The effective rate at step t is ``lr × multiplier(shape, t / total_steps)``; progress is clipped
to [0, 1]. Each example names the shapes it accepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

STEP_BOUNDARIES = (0.5, 0.75)  # the "step" shape: ×0.1 from half the steps, ×0.01 from ¾
STEP_FACTORS = (1.0, 0.1, 0.01)

SHAPES: dict[str, Callable[[float], float]] = {
    "constant": lambda p: 1.0,
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
    "step": lambda p: STEP_FACTORS[sum(p >= b for b in STEP_BOUNDARIES)],
}


def multiplier(shape: str, progress: float, allowed: Sequence[str]) -> float:
    """The factor on ``lr`` of ``shape`` (one of ``allowed``) at ``progress``."""
    if shape not in allowed:
        raise ValueError(f"lr_schedule: expected one of {list(allowed)}, got {shape!r}")
    return SHAPES[shape](min(max(progress, 0.0), 1.0))


def check(h: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Refuse an unknown ``lr_schedule``, or a shaped one without a positive ``total_steps``."""
    shape = h.get("lr_schedule", "constant")
    if shape not in allowed:
        raise ValueError(f"lr_schedule: expected one of {list(allowed)}, got {shape!r}")
    total = h.get("total_steps")
    if shape != "constant" and (
        not isinstance(total, (int, float)) or isinstance(total, bool) or total <= 0
    ):
        raise ValueError(
            f"total_steps: lr_schedule {shape!r} needs total_steps, the length of the schedule "
            f"(a positive number), got {total!r}"
        )
