"""FIRE PBT's evaluator criteria and its cache of fitted curves."""

from __future__ import annotations

import numpy as np

from firepbt.fire.curves import fit_curve
from firepbt.fire.evaluation import CurveCache, Ending, Outcome, judge


def test_the_cache_refits_a_curve_of_the_same_length_with_other_points() -> None:
    cache = CurveCache()
    first = [(0, 0.1), (10, 0.2), (20, 0.4)]
    second = [(30, 0.5), (40, 0.3), (50, 0.35)]  # same key and length: a reassigned evaluator
    assert list(cache.fit("e", first).values) == [0.1, 0.2, 0.4]
    assert list(cache.fit("e", second).values) == [0.5, 0.3, 0.35]
    assert cache.fit("e", second) is cache.fit("e", list(second))  # unchanged: no refit
    assert cache.fitted == 2


def test_verdicts_name_their_ending() -> None:
    x = np.arange(0.0, 200.0, 10.0)
    fast = fit_curve(x, 0.3 + 0.03 * np.arange(20.0))
    slow = fit_curve(x + 500, 0.3 + 0.001 * np.arange(20.0))
    win = judge(fast, slow, trained=190, max_eval_steps=300, p_stat=0.01)
    assert win.outcome is Outcome.SUCCESS and Ending.of(win.reason) is Ending.SUCCESS
    lose = judge(slow, fast, trained=190, max_eval_steps=190, p_stat=0.01)
    assert lose.outcome is Outcome.STOP and Ending.of(lose.reason) is Ending.BINOMIAL_STOP
    below = fit_curve(x, np.full(20, 0.1))
    apart = judge(below, fast, trained=200, max_eval_steps=190, p_stat=0.01)
    assert Ending.of(apart.reason) is Ending.NO_OVERLAP
    assert judge(below, fast, trained=100, max_eval_steps=190, p_stat=0.01).outcome is (
        Outcome.CONTINUE
    )


def test_ending_of_a_reason_written_before_endings_is_none() -> None:
    assert Ending.of("the run is over") is None
    assert Ending.of(Ending.TARGET_LOST.reason("target 3: it failed")) is Ending.TARGET_LOST
