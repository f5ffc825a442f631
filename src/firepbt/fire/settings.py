"""FIRE PBT's settings arithmetic: how many evaluation points a success needs, the default
``max_eval_steps``, and the settings under which no evaluator could ever hand its weights over.

The strategy (:mod:`firepbt.strategies._fire_state`) warns with these at construction; the run's
summary (:mod:`firepbt.fire.summary`) uses them to name why a run made no hand-over.
"""

from __future__ import annotations

import math

DEFAULT_P_STAT = 0.01
# The binomial test compares every DEFAULT_THIN-th pair of points: 1, every pair, as the paper
# does. Thinning did not bring the false-success rate near p_stat (docs/paper_readings.md).
DEFAULT_THIN = 1
DEFAULT_SUCCESS_TEST = "increments"  # compare gains, not levels: docs/paper_readings.md
# Default max_eval_steps: this many times the points a success needs at the least (and at least
# 3 ready intervals, the paper's ratio), so that an overlap that starts late can still decide.
DEFAULT_EVAL_POINTS_FACTOR = 3
# Evolution inside FIRE's sub-populations (docs/paper_readings.md): the FIRE paper's explore
# (multiply by one of these, no resampling), truncation of the bottom 1 in 8 rather than the
# paper's 25 %, and parents that evolve greedily on their own score for their first
# DEFAULT_WARMUP_INTERVALS ready intervals (at most a tenth of the budget) before evaluators
# judge them.
DEFAULT_PERTURB_FACTORS = (0.5, 0.8, 1.25, 2.0)
DEFAULT_TRUNCATION = 0.125
DEFAULT_WARMUP_INTERVALS = 3


def points_for_success(p_stat: float, thin: int = 1) -> int:
    """The fewest evaluation points an evaluator's overlap needs before a success is possible:
    the start pair, then ``n`` compared pairs all won with ``0.5 ** n < p_stat``, every
    ``thin``-th point."""
    wins = math.floor(math.log(p_stat) / math.log(0.5)) + 1
    return 1 + wins * thin


def default_max_eval_steps(ready_every: int, eval_every: int, p_stat: float, thin: int) -> int:
    """``max(3 × ready_every, DEFAULT_EVAL_POINTS_FACTOR × (points a success needs − 1) ×
    eval_every)``: the paper's 3 ready intervals, or more where those hold too few points."""
    needed = points_for_success(p_stat, thin)
    return max(3 * ready_every, DEFAULT_EVAL_POINTS_FACTOR * (needed - 1) * eval_every)


def settings_problems(
    *,
    max_eval_steps: int,
    eval_every: int,
    ready_every: int,
    p_stat: float,
    thin: int,
    parents: int,
    evaluators: int,
) -> list[str]:
    """One line per setting under which FIRE PBT would quietly hand nothing over (or waste
    workers); empty when there is none."""
    needed = points_for_success(p_stat, thin)
    points = max_eval_steps // eval_every + 1
    problems = []
    if points < needed:
        problems.append(
            f"max_eval_steps: {max_eval_steps} steps give an evaluator at most {points} "
            f"evaluation points (eval_every {eval_every}); at p_stat {p_stat} a success needs at "
            f"least {needed}: no evaluator can ever hand its weights over. Raise max_eval_steps "
            f"to >= {(needed - 1) * eval_every} (default: {DEFAULT_EVAL_POINTS_FACTOR} × that)"
        )
    if ready_every % eval_every:
        problems.append(
            f"eval_every: {eval_every} does not divide ready_every {ready_every}; evaluators and "
            "members are compared on points taken at different offsets"
        )
    if evaluators > parents:
        problems.append(
            f"evaluators: {evaluators} evaluators for {parents} parent members; a parent has at "
            f"most one evaluator, so {evaluators - parents} will stay idle (the paper uses ¾ of "
            f"the parents: {max(1, (3 * parents) // 4)})"
        )
    return problems
