"""FIRE PBT's fitness (section 3.1.2), with each pairwise comparison kept until one of its two
curves changes.

``curves.fitness`` compares every pair of curves: at a barrier where one curve grew, all but
``n - 1`` of those comparisons are the ones made at the last barrier. ``FitnessCache`` makes only
the new ones and sums exactly as ``curves.fitness`` does, to the bit: the same comparisons, added
in the same order (a pair met the other way round is the negated value, which
``best_score_diff``'s exact antisymmetry makes the same number).

>>> import numpy as np
>>> from firepbt.fire.curves import Curve, fitness
>>> x = np.arange(4.0)
>>> slow = Curve(x, np.array([0.5, 0.55, 0.6, 0.65]), np.array([0.5, 0.55, 0.6, 0.65]))
>>> fast = Curve(x, np.array([0.6, 0.7, 0.8, 0.85]), np.array([0.6, 0.7, 0.8, 0.85]))
>>> cache = FitnessCache()
>>> cache({"a": slow, "b": fast}) == fitness({"a": slow, "b": fast}), cache.compared
(True, 1)
>>> cache({"b": fast, "a": slow}) == fitness({"b": fast, "a": slow}), cache.compared
(True, 1)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

from firepbt.fire.curves import Curve, best_score_diff

K = TypeVar("K", bound=Hashable)


class FitnessCache:
    """``curves.fitness`` over the curves given, comparing only pairs it has not compared on
    exactly these curve objects (a curve refitted on new points is a new object).

    Attributes:
        n_deltas: As for ``best_score_diff``.
        compared: Pairs compared so far (for tests and cost accounting).
    """

    def __init__(self, n_deltas: int = 16) -> None:
        self.n_deltas = n_deltas
        self.compared = 0
        self._curve: dict[Hashable, Curve] = {}  # key -> the curve its comparisons were made on
        self._diff: dict[Hashable, dict[Hashable, float]] = {}  # a -> b -> best_score_diff(a, b)

    def __call__(self, curves: Mapping[K, Curve]) -> dict[K, float]:
        for key, curve in curves.items():
            if self._curve.get(key) is not curve:
                self._forget(key)
                self._curve[key] = curve
        keys = list(curves)
        rows = [self._diff.setdefault(key, {}) for key in keys]
        for i, (a, row) in enumerate(zip(keys, rows, strict=True)):
            for j in range(i + 1, len(keys)):
                b = keys[j]
                if b not in row:
                    row[b] = best_score_diff(curves[a], curves[b], self.n_deltas)
                    rows[j][a] = -row[b]
                    self.compared += 1
        return {
            a: float(sum(row[b] for b in keys if b != a)) for a, row in zip(keys, rows, strict=True)
        }

    def _forget(self, key: Hashable) -> None:
        """Drop every comparison made on ``key``'s old curve."""
        for other in self._diff.pop(key, {}):
            self._diff.get(other, {}).pop(key, None)
        self._curve.pop(key, None)
