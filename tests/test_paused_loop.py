"""A framework loop paused at step boundaries: it trains to each target, and a loop whose step
count passes a target within one batch is named for what it is."""

from __future__ import annotations

import pytest

from firepbt.paused_loop import PausedLoop


def _loop(per_batch: int, batches: int) -> tuple[PausedLoop, list[int]]:
    count = [0]

    def run() -> None:
        for _ in range(batches):
            count[0] += per_batch
            loop.pause_if_due()

    loop = PausedLoop(run, lambda: count[0], "The loop")
    return loop, count


def test_it_trains_to_each_target_and_ends_when_abandoned() -> None:
    loop, count = _loop(1, 100)
    loop.advance(10)
    assert count[0] == 10
    loop.advance(25)
    assert count[0] == 25
    loop.abandon()
    assert count[0] == 25


def test_two_steps_per_batch_over_an_odd_target_say_why() -> None:
    loop, _ = _loop(2, 100)
    with pytest.raises(RuntimeError, match="counts more than one step per batch"):
        loop.advance(5)
    loop.abandon()


def test_a_loop_that_ends_early_says_so() -> None:
    loop, _ = _loop(1, 4)
    with pytest.raises(RuntimeError, match="stopped at step 4, before step 10"):
        loop.advance(10)
