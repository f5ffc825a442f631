"""Comparing evaluator training curves: FIRE PBT's ``best_score_diff``, ``binom_test`` and fitness.

Section 3 of Dalibard & Jaderberg (2020), "Faster Improvement Rate Population Based Training".
Every function here is pure: numpy arrays in, numbers out, no I/O and no global state.

The Figure 3 story
------------------
Two evaluators both reach step 2000. The *left* one copied its parent's weights at step 1000 and
starts around 0.5; the *right* one copied at step 1500 and starts higher. Over its whole life the
left curve has the higher average improvement rate, yet FIRE finds the right curve better:

1. **Smooth** each curve with a Gaussian process (:func:`fit_curve`, once per curve; see
   :mod:`firepbt.fire.smoothing`).
2. **Find the overlap starts** on the smoothed curves: the right curve starts higher, so its
   section starts at its first point; the left curve's section starts where its smoothed curve
   reaches (``>=``) the right curve's smoothed start: at step 1150, a *fractional* index ``r``
   between two evaluation points (the paper takes the first whole point at or above, up to one
   evaluation interval later: a head start for the curve that had to reach; see
   :func:`overlap`).
3. **Find the overlap length**: the number ``n`` of matching offsets ``r + i`` and ``s + i`` that
   both curves cover; the right curve has fewer points past its start, so it constrains ``n``.
   (The paper prints ``max``; its text and Figure 3 mean ``min``.)
4. **Compare the best raw score** in each section: ``max y_right(s + i) - max y_left(r + i)``
   over ``i < n`` is positive, because from the same level the right curve climbs higher in the
   same number of evaluations. Between two points a value is the smoothed curve's shape plus the
   nearest raw point's residual (:func:`section`).

Conventions
-----------
* Steps are strictly increasing and finite; values are "higher is better" (orient losses first).
* Smoothed curves are used only to *locate* overlaps (starts, and whether an overlap can exist);
  every score and every binomial comparison uses the raw points (read between two points as
  the smoothed shape plus the nearest raw point's residual, where an overlap starts between
  points).
* **The paper's binomial test of levels is anti-conservative.** Successive points of one curve
  are autocorrelated (the weights at one evaluation are the weights at the last one plus a few
  steps), so wins come in runs and ``n`` pairs carry less than ``n`` independent comparisons.
  ``binom_test(increments=True)`` (FIRE PBT's default) compares the gains between points
  instead, which are nearly independent; ``thin=k`` reads every k-th point.
  ``benchmarks/fire_false_success.py`` measures the false-success rate between two copies of one
  process for both tests (``benchmarks/results/fire_false_success.md``; ``docs/paper_readings.md``
  says which default it chose and why).
* Non-finite values (NaN, +inf, -inf) are failed evaluations and rank worst, as everywhere else in
  firepbt; :func:`fit_curve` replaces them before smoothing (:mod:`firepbt.fire.smoothing` says by
  what, and when it raises instead).
* "Reaches" in step 2 allows a float tolerance of ``1e-9`` times the largest ``|smoothed|`` of the
  two curves, so that a curve shifted onto another one's level by the penalised-δ search is not lost
  to rounding.
* Penalised δ (one curve strictly above the other, no overlap): ``n_deltas`` evenly spaced δ over
  the paper's range ``[min(y_a) - max(y_b), min(y_a) - min(y_b)]`` on raw values, plus
  ``n_deltas`` over the same range measured where overlaps are decided,
  ``[ŷ_a[0] - max(ŷ_b), ŷ_a[0] - min(ŷ_b)]`` on smoothed values (a's smoothed start placed inside
  b's smoothed range). Without the second grid,
  a δ chosen on raw values can miss the overlap by the smoothing error, e.g. against a flat curve
  where the raw range is a single δ. The highest positive overlap score wins, else ``0.0``.
  "Strictly above" is ``min(y_a) > max(y_b)`` (the paper's test, raw) or ``min(ŷ_a) > max(ŷ_b)``
  (noisy curves whose raw extremes touch though their smoothed curves are clearly apart).
* **Antisymmetry** ``best_score_diff(a, b) == -best_score_diff(b, a)`` holds exactly, in every
  case: with an overlap both directions compare the same two sections; the paper only defines the
  penalised search for the higher curve, so the lower curve gets the negated search; without an
  overlap and without strict dominance both directions give ``0.0``. Hence fitness values of a
  population sum to 0. ``binom_test`` is *not* antisymmetric (ties count for neither side and the
  test is one-sided and discrete).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from firepbt.fire import _pchip
from firepbt.fire.smoothing import Curve, fit_curve

__all__ = ["Curve", "Overlap", "best_score_diff", "binom_test", "fit_curve", "fitness", "overlap"]

K = TypeVar("K", bound=Hashable)

FloatArray = _pchip.FloatArray

_REACH_RTOL = 1e-9


@dataclass(frozen=True, slots=True)
class Overlap:
    """Overlapping sections: ``a`` at offsets ``start_a + i`` and ``b`` at ``start_b + i`` for
    ``i < length``. One start is 0; the other is a fractional index (the interpolated crossing),
    and values between two points are read by linear interpolation (:func:`section`)."""

    start_a: float
    start_b: float
    length: int


def _reach_tol(a: Curve, b: Curve) -> float:
    scale = max(float(np.abs(a.smoothed).max()), float(np.abs(b.smoothed).max()))
    return _REACH_RTOL * scale


def _overlap(a_smoothed: FloatArray, b_smoothed: FloatArray, tol: float) -> Overlap | None:
    a_leads = bool(a_smoothed[0] >= b_smoothed[0])
    lead, other = (a_smoothed, b_smoothed) if a_leads else (b_smoothed, a_smoothed)
    crossing = _pchip.crossing(other, float(lead[0]), tol)
    if crossing is None:
        return None
    start_a, start_b = (0.0, crossing) if a_leads else (crossing, 0.0)
    room = min(a_smoothed.size - 1 - start_a, b_smoothed.size - 1 - start_b)
    return Overlap(start_a=start_a, start_b=start_b, length=int(math.floor(room + 1e-9)) + 1)


def overlap(a: Curve, b: Curve) -> Overlap | None:
    """Steps 2-3 of section 3.1.1: where the two curves' overlapping sections start, and how long.

    The curve with the higher smoothed start starts at index 0 (``a`` on a tie); the other starts
    where its smoothed curve first reaches that start (``>=``, up to a float tolerance): a
    *fractional* index between the last point below and the first point at or above, on the
    shape-preserving cubic (PCHIP) through the smoothed points. ``length`` counts the matching
    offsets ``start + 0, 1, …`` that both curves cover (at least 1). ``None`` if the other curve
    never reaches the start. ``overlap(b, a)`` mirrors ``overlap(a, b)``.

    The paper takes the first whole point at or above: that point can lie up to one evaluation
    interval past the crossing, a head start for the curve that had to reach (on steep early
    curves a large one). Interpolating removes it.
    """
    return _overlap(a.smoothed, b.smoothed, _reach_tol(a, b))


def section(
    values: FloatArray,
    smoothed: FloatArray,
    start: float,
    length: int,
    slopes: FloatArray | None = None,
) -> FloatArray:
    """A curve's values at the offsets ``start + 0 .. start + length - 1``.

    At whole offsets these are the raw points. Between two points (a fractional ``start``) the
    value is the smoothed curve there (the shape-preserving cubic through the smoothed points)
    plus the residual from it of the nearest raw point. Straight lines between raw points would
    sit below a concave curve and so hand every comparison to the other curve; residuals
    interpolated between two points would have less noise than a raw point, and so a lower
    maximum over the section. Offsets past the last point read the last point. ``slopes`` are
    :func:`_slopes` of ``smoothed`` when the caller has them already.
    """
    offsets = start + np.arange(length, dtype=np.float64)
    lo = np.minimum(np.floor(offsets + 1e-9).astype(int), values.size - 1)
    t = float(np.clip(offsets[0] - lo[0], 0.0, 1.0)) if length else 0.0
    if t < 1e-9:
        return np.asarray(values[lo], dtype=np.float64)
    nearest = np.minimum(lo + 1, values.size - 1) if t >= 0.5 else lo
    residual = values - smoothed
    shape = _pchip.hermite(smoothed, _pchip.slopes(smoothed) if slopes is None else slopes, lo, t)
    return np.asarray(shape + residual[nearest], dtype=np.float64)


def _sections(
    a_values: FloatArray,
    a_smoothed: FloatArray,
    b_values: FloatArray,
    b_smoothed: FloatArray,
    ov: Overlap,
    slopes: tuple[FloatArray, FloatArray] | None = None,
) -> tuple[FloatArray, FloatArray]:
    n = ov.length
    a_slopes, b_slopes = (None, None) if slopes is None else slopes
    return (
        section(a_values, a_smoothed, ov.start_a, n, a_slopes),
        section(b_values, b_smoothed, ov.start_b, n, b_slopes),
    )


def _section_diff(
    a_values: FloatArray,
    a_smoothed: FloatArray,
    b: Curve,
    ov: Overlap,
    slopes: tuple[FloatArray, FloatArray] | None = None,
) -> float:
    sa, sb = _sections(a_values, a_smoothed, b.values, b.smoothed, ov, slopes)
    return float(sa.max() - sb.max())


def _strictly_above(a: Curve, b: Curve) -> bool:
    return bool(
        a.values.min() > b.values.max() or a.smoothed.min() > b.smoothed.max()
    )  # raw test from the paper, or the same on the smoothed curves


def _penalised_score(a: Curve, b: Curve, n_deltas: int) -> float:
    """Best positive ``best_score_diff(penalised_δ(a), b)`` over the δ grid, else 0 (a above b).

    Every δ's shifted curve, tolerance and first reaching point are computed at once (one row per
    δ); the section at a whole start is a prefix, whose maximum is read off a running maximum
    (``max(x_i - δ)`` is ``max(x_i) - δ`` exactly: rounding is monotonic). Each number is made by
    the same floating-point operations as one δ at a time, so the result is the same to the bit
    (``tests/fire/test_curves.py`` compares both on random curves)."""
    raw = np.linspace(a.values.min() - b.values.max(), a.values.min() - b.values.min(), n_deltas)
    smooth = np.linspace(
        a.smoothed[0] - b.smoothed.max(), a.smoothed[0] - b.smoothed.min(), n_deltas
    )
    deltas = np.concatenate([raw, smooth])
    a_slopes, b_slopes = a.slopes, b.slopes  # a shift by δ leaves slopes unchanged
    shifted = a.smoothed[None, :] - deltas[:, None]  # one row per δ
    tols = np.maximum(_reach_tol(a, b), _REACH_RTOL * np.abs(shifted).max(axis=1))
    leads = shifted[:, 0] >= b.smoothed[0]  # a's shifted start is the higher: b must reach it
    reach_b = b.smoothed[None, :] >= (shifted[:, 0] - tols)[:, None]
    reach_a = shifted >= (b.smoothed[0] - tols)[:, None]
    a_top = np.maximum.accumulate(a.values)
    b_top = np.maximum.accumulate(b.values)
    last_a, last_b = a.smoothed.size - 1, b.smoothed.size - 1
    # The first point of the curve that must reach the other's start, per δ (none: no overlap).
    every = np.arange(deltas.size)
    first_b, first_a = reach_b.argmax(axis=1), reach_a.argmax(axis=1)
    first = np.where(leads, first_b, first_a)
    found = np.where(leads, reach_b[every, first_b], reach_a[every, first_a])
    start = np.zeros(deltas.size)  # where the overlap starts on the curve that must reach
    b_reaches = leads & found & (first > 0)
    for d in np.flatnonzero(b_reaches):
        start[d] = _pchip.refine(b.smoothed, int(first[d]), float(shifted[d, 0]), b_slopes)
    a_reaches = ~leads & found & (first > 0)
    if a_reaches.any():
        shifted_slopes = _pchip.slopes(shifted)  # a shifted curve's own (rounding differs)
        level = float(b.smoothed[0])
        for d in np.flatnonzero(a_reaches):
            start[d] = _pchip.refine(shifted[d], int(first[d]), level, shifted_slopes[d])
    room = np.where(leads, np.minimum(last_a, last_b - start), np.minimum(last_a - start, last_b))
    length = (np.floor(room + 1e-9).astype(int) + 1)[found]
    # A section at a whole start is a prefix: its top is read off the running maximum.
    top_a = a_top[length - 1] - deltas[found]
    top_b = b_top[length - 1]
    at = np.flatnonzero(a_reaches[found])
    if at.size:
        rows = every[found][at]
        values = a.values[None, :] - deltas[rows, None]
        top_a[at] = _section_tops(values, shifted[rows], a_slopes, start[rows], length[at])
    at = np.flatnonzero(b_reaches[found])
    if at.size:
        rows = every[found][at]
        top_b[at] = _section_tops(
            b.values[None, :], b.smoothed[None, :], b_slopes, start[rows], length[at]
        )
    return max(0.0, float((top_a - top_b).max())) if found.any() else 0.0


def _section_tops(
    values: FloatArray,
    smoothed: FloatArray,
    slopes: FloatArray,
    starts: FloatArray,
    lengths: npt.NDArray[np.int_],
) -> FloatArray:
    """``section(values[r], smoothed[r], starts[r], lengths[r], slopes).max()`` for each row r
    (one row of ``values`` and ``smoothed`` each, or one row for all), by the same
    floating-point operations as :func:`section` and ``_pchip.hermite``."""
    size = values.shape[1]
    count = starts.size
    values = np.broadcast_to(values, (count, size))
    smoothed = np.broadcast_to(smoothed, (count, size))
    offsets = starts[:, None] + np.arange(int(lengths.max()), dtype=np.float64)[None, :]
    lo = np.minimum(np.floor(offsets + 1e-9).astype(int), size - 1)
    hi = np.minimum(lo + 1, size - 1)
    t = np.clip(offsets[:, 0] - lo[:, 0], 0.0, 1.0)[:, None]
    every = np.arange(count)[:, None]
    shape = _pchip.blend(smoothed[every, lo], slopes[lo], smoothed[every, hi], slopes[hi], t)
    nearest = np.where(t >= 0.5, hi, lo)
    between = shape + (values - smoothed)[every, nearest]
    read = np.where(t < 1e-9, values[every, lo], between)
    inside = np.arange(read.shape[1])[None, :] < lengths[:, None]
    return np.asarray(np.where(inside, read, -np.inf).max(axis=1), dtype=np.float64)


def best_score_diff(a: Curve, b: Curve, n_deltas: int = 16) -> float:
    """Positive if ``a`` improves faster than ``b``, negative if ``b`` does (section 3.1.1).

    With an overlap: ``max(a.values[section_a]) - max(b.values[section_b])``. Without one, if
    ``a`` is strictly above ``b``: the penalised-δ search (``a`` shifted down by each δ, the highest
    positive overlap score, else 0); if ``b`` is strictly above ``a``: minus that search with the
    roles swapped; otherwise 0. Exactly antisymmetric. See the module docstring for the δ grids.

    >>> import numpy as np
    >>> x = np.arange(6.0)
    >>> y_slow = np.array([0.50, 0.55, 0.60, 0.65, 0.70, 0.75])
    >>> y_fast = np.array([0.60, 0.70, 0.80, 0.85, 0.88, 0.90])
    >>> slow, fast = Curve(x, y_slow, y_slow), Curve(x, y_fast, y_fast)  # no smoothing needed
    >>> overlap(fast, slow)  # fast starts higher; slow reaches 0.60 at index 2
    Overlap(start_a=0.0, start_b=2.0, length=4)
    >>> round(best_score_diff(fast, slow), 6)  # max(0.60..0.85) - max(0.60..0.75)
    0.1
    >>> flat = Curve(x, np.full(6, 0.1), np.full(6, 0.1))  # degenerate, strictly below slow
    >>> round(best_score_diff(slow, flat), 6), round(best_score_diff(flat, slow), 6)
    (0.25, -0.25)
    """
    if isinstance(n_deltas, bool) or not isinstance(n_deltas, (int, np.integer)) or n_deltas < 2:
        raise ValueError(f"n_deltas must be an integer >= 2, got {n_deltas!r}")
    ov = overlap(a, b)
    if ov is not None:
        return _section_diff(a.values, a.smoothed, b, ov, (a.slopes, b.slopes))
    a_above, b_above = _strictly_above(a, b), _strictly_above(b, a)
    if a_above and not b_above:
        return _penalised_score(a, b, int(n_deltas))
    if b_above and not a_above:
        return -_penalised_score(b, a, int(n_deltas))
    return 0.0


def binom_test(
    a: Curve, b: Curve, thin: int = 1, increments: bool = False
) -> tuple[float, Overlap | None]:
    """One-sided binomial test that ``a`` beats ``b`` point by point on their overlap (3.2).

    The sections are compared at matching offsets from the overlap start (see :func:`overlap`),
    read every ``thin``-th offset: 0, thin, 2·thin, … (``thin = 1``: all of them; see the module
    docstring on autocorrelation). ``k`` counts the pairs ``a`` wins strictly (a tie is no win)
    among the ``n`` pairs, and the p-value is ``P(X ≥ k)`` for ``X ~ Binomial(n, ½)``, computed
    exactly (``scipy.stats.binomtest(k, n, 0.5, alternative="greater").pvalue`` within 3e-14
    relative, without importing scipy.stats); ``1.0`` when there is no pair. No overlap:
    ``(1.0, None)``.

    ``increments=False`` (the paper's test) compares levels past the start pair, which is left
    out as in the paper (``y_{r+1} > y_{s+1}, …``): the two curves sit level there by
    construction. ``increments=True`` (FIRE PBT's default) compares gains: pair ``i`` is won when
    ``a`` gained more than ``b`` from offset ``(i - 1)·thin`` to ``i·thin``. Between two copies of
    one process the levels drift apart like a random walk, so level comparisons come in long runs
    (the paper's test succeeds falsely far more often than ``p_stat``); the gains are nearly
    independent (``benchmarks/results/fire_false_success.md``).
    """
    if isinstance(thin, bool) or not isinstance(thin, (int, np.integer)) or thin < 1:
        raise ValueError(f"thin must be an integer >= 1, got {thin!r}")
    ov = overlap(a, b)
    if ov is None:
        return 1.0, None
    sa, sb = _sections(a.values, a.smoothed, b.values, b.smoothed, ov, (a.slopes, b.slopes))
    # Both read the points at offsets 0, thin, 2·thin, …; levels compare them past the start
    # pair, increments compare the gains between consecutive ones.
    ta, tb = sa[::thin], sb[::thin]
    pairs = np.diff(ta) > np.diff(tb) if increments else (ta > tb)[1:]
    n = int(pairs.size)
    if n == 0:
        return 1.0, ov
    k = int(np.count_nonzero(pairs))
    return binomial_tail(k, n), ov


def binomial_tail(k: int, n: int) -> float:
    """``P(X ≥ k)`` for ``X ~ Binomial(n, ½)``: the one-sided p-value of ``k`` wins in ``n``
    fair trials, exact (integer sums, one rounding)."""
    return float(sum(math.comb(n, i) for i in range(max(k, 0), n + 1)) / 2**n)


def fitness(curves: Mapping[K, Curve], n_deltas: int = 16) -> dict[K, float]:
    """Section 3.1.2: ``fitness(j) = sum over k != j of best_score_diff(curve_j, curve_k)``.

    Uses the already smoothed curves: no GP is fitted here (fit each curve once with
    :func:`fit_curve` and keep it). A single curve has fitness 0. Each pair is compared once:
    ``best_score_diff`` is exactly antisymmetric, so ``diff(k, j)`` is ``-diff(j, k)`` to the bit.
    """
    items = list(curves.items())
    diff: dict[tuple[int, int], float] = {}
    for i, (_, curve) in enumerate(items):
        for j in range(i + 1, len(items)):
            diff[i, j] = best_score_diff(curve, items[j][1], n_deltas)
            diff[j, i] = -diff[i, j]
    return {
        key: float(sum(diff[i, j] for j in range(len(items)) if j != i))
        for i, (key, _) in enumerate(items)
    }
