"""The score board and FIRE's fitness cache decide exactly as the plain computations do."""

from __future__ import annotations

import math

import numpy as np
import pytest

from firepbt.exploit import BinaryTournament, Truncation, WelchTTest
from firepbt.fire.curves import Curve, fitness
from firepbt.fire.fitness import FitnessCache
from firepbt.scoreboard import ScoreBoard

POLICIES = [
    Truncation(0.25),
    Truncation(0.5, window=3),
    Truncation(0.1),
    BinaryTournament(),
    BinaryTournament(window=2),
    WelchTTest(window=3, alpha=0.3),
]


def _score(rng: np.random.Generator) -> float:
    u = rng.random()
    if u < 0.03:
        return math.nan
    if u < 0.05:
        return -math.inf
    if u < 0.15:
        return 0.5  # ties
    return float(rng.normal())


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_policies_decide_the_same_on_the_board_and_on_a_plain_mapping(policy: object) -> None:
    rng = np.random.default_rng(0)
    board = ScoreBoard()
    plain: dict[int, list[float]] = {}
    members = 40
    for m in range(members):
        plain[m] = []
        board.set(m, plain[m])
    decided = 0
    for _ in range(300):
        m = int(rng.integers(members))
        action = rng.random()
        if action < 0.5 and m in plain:  # a score arrives
            plain[m].append(_score(rng))
            board.set(m, plain[m])
        elif action < 0.6 and m in plain:  # a copy: the record replaced
            donor = int(rng.choice(list(plain)))
            plain[m] = list(plain[donor])
            board.set(m, plain[m])
        elif action < 0.63 and m in plain:  # a member leaves
            del plain[m]
            board.remove(m)
        elif action < 0.65 and m not in plain:  # a replacement comes back
            plain[m] = [_score(rng)]
            board.set(m, plain[m])
        ready = int(rng.integers(members))
        donors = None if rng.random() < 0.5 else {d for d in plain if rng.random() < 0.7}
        seed = int(rng.integers(2**31))
        a = policy.select(ready, board, np.random.default_rng(seed), donors)  # type: ignore[attr-defined]
        b = policy.select(ready, plain, np.random.default_rng(seed), donors)  # type: ignore[attr-defined]
        assert a == b
        decided += a is not None
    assert decided > 20  # the comparison covered real decisions, not only refusals


def test_a_held_board_shows_the_round_as_it_began() -> None:
    board = ScoreBoard()
    board.set(0, [1.0])
    board.set(1, [2.0])
    assert board.ranked(1) == [(1.0, 0), (2.0, 1)]
    board.hold()
    board.set(0, [3.0])
    board.remove(1)
    assert board.ranked(1) == [(1.0, 0), (2.0, 1)] and 1 in board
    board.release()
    assert board.ranked(1) == [(3.0, 0)] and 1 not in board and board.scored(1) == [0]


def _curve(rng: np.random.Generator, n: int) -> Curve:
    x = np.arange(float(n))
    y = np.cumsum(rng.normal(0.1, 0.2, n)) + rng.normal()
    return Curve(x, y, y + rng.normal(0.0, 0.05, n))


def test_fitness_cache_is_the_plain_fitness_to_the_bit_while_curves_change() -> None:
    rng = np.random.default_rng(1)
    cache = FitnessCache()
    curves = {m: _curve(rng, int(rng.integers(2, 12))) for m in range(10)}
    pairs = 0
    for _ in range(40):
        m = int(rng.integers(14))
        if rng.random() < 0.2:
            curves.pop(m, None)
        else:
            curves[m] = _curve(rng, int(rng.integers(2, 12)))
        order = list(curves)
        if rng.random() < 0.3:
            rng.shuffle(order)
        given = {k: curves[k] for k in order}
        got = cache(given)
        want = fitness(given)
        assert list(got) == list(want)
        assert all(got[k].hex() == want[k].hex() for k in want)
        pairs += len(given) * (len(given) - 1) // 2
    assert 0 < cache.compared < pairs / 3  # most comparisons were reused
