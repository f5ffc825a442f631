"""The shape-preserving cubic (PCHIP) through a smoothed curve's points, and where it first
reaches a level: what FIRE's overlap search (``curves``) reads between two points."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def slopes(y: FloatArray) -> FloatArray:
    """Shape-preserving (PCHIP, Fritsch-Carlson) derivatives of ``y`` at unit spacing: the
    piecewise cubic through the points with them never overshoots its neighbours. ``y`` is one
    curve, or one curve per row (the same arithmetic, row by row)."""
    n = y.shape[-1]
    if n < 2:
        return np.zeros_like(y)
    d = np.diff(y, axis=-1)
    if n == 2:
        return np.stack([d[..., 0], d[..., 0]], axis=-1).astype(np.float64)
    m = np.zeros_like(y)
    before, after = d[..., :-1], d[..., 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = np.where(before * after > 0, 2.0 * before * after / (before + after), 0.0)
    m[..., 1:-1] = inner
    for end, d0, d1 in ((0, d[..., 0], d[..., 1]), (-1, d[..., -1], d[..., -2])):
        slope = (3.0 * d0 - d1) / 2.0
        overshoots = (np.sign(d0) != np.sign(d1)) & (np.abs(slope) > 3.0 * np.abs(d0))
        m[..., end] = np.where(
            np.sign(slope) != np.sign(d0), 0.0, np.where(overshoots, 3.0 * d0, slope)
        )
    return m


def hermite(y: FloatArray, m: FloatArray, lo: npt.NDArray[np.int_], t: float) -> FloatArray:
    """The cubic Hermite curve through ``y`` with slopes ``m``, at ``lo + t`` (``0 <= t <= 1``)."""
    hi = np.minimum(lo + 1, y.size - 1)
    return blend(y[lo], m[lo], y[hi], m[hi], t)


def blend(
    y_lo: FloatArray, m_lo: FloatArray, y_hi: FloatArray, m_hi: FloatArray, t: Any
) -> FloatArray:
    """The cubic Hermite curve between points of values ``y_lo``, ``y_hi`` and slopes ``m_lo``,
    ``m_hi``, a share ``t`` of the way (a number, or one per row)."""
    t2, t3 = t * t, t * t * t
    return np.asarray(
        (2 * t3 - 3 * t2 + 1) * y_lo
        + (t3 - 2 * t2 + t) * m_lo
        + (-2 * t3 + 3 * t2) * y_hi
        + (t3 - t2) * m_hi,
        dtype=np.float64,
    )


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def slope_at(y: FloatArray, k: int) -> float:
    """The derivative :func:`_slopes` gives at index ``k`` alone (scalar arithmetic: the
    crossing search needs two of them per comparison)."""
    n = y.size
    if n < 2:
        return 0.0
    if n == 2:
        return float(y[1] - y[0])
    if 0 < k < n - 1:
        d0, d1 = float(y[k] - y[k - 1]), float(y[k + 1] - y[k])
        return 2.0 * d0 * d1 / (d0 + d1) if d0 * d1 > 0 else 0.0
    if k == 0:
        d0, d1 = float(y[1] - y[0]), float(y[2] - y[1])
    else:
        d0, d1 = float(y[-1] - y[-2]), float(y[-2] - y[-3])
    slope = (3.0 * d0 - d1) / 2.0
    if _sign(slope) != _sign(d0):
        return 0.0
    if _sign(d0) != _sign(d1) and abs(slope) > 3.0 * abs(d0):
        return 3.0 * d0
    return slope


def crossing(smoothed: FloatArray, level: float, tol: float) -> float | None:
    """The fractional index where ``smoothed``, read as the shape-preserving cubic through its
    points, first reaches ``level`` (up to ``tol``); ``None`` if it never does."""
    reached = np.flatnonzero(smoothed >= level - tol)
    if reached.size == 0:
        return None
    j = int(reached[0])
    return 0.0 if j == 0 else refine(smoothed, j, level)


def refine(smoothed: FloatArray, j: int, level: float, known: FloatArray | None = None) -> float:
    """Where ``smoothed`` crosses ``level`` between points ``j - 1`` (below) and ``j`` (at or
    above, within the tolerance), as a fractional index. ``known``: ``slopes(smoothed)``, when
    the caller has them (``slope_at`` gives the same numbers)."""
    y0, y1 = float(smoothed[j - 1]), float(smoothed[j])
    if known is None:
        m0, m1 = slope_at(smoothed, j - 1), slope_at(smoothed, j)
    else:
        m0, m1 = float(known[j - 1]), float(known[j])
    target = min(level, y1)  # reached within tol at j: the crossing is j
    # y0 < target <= y1, and the shape-preserving cubic does not fall on [0, 1]: its one crossing
    # by safeguarded Newton from the straight-line guess, within a bracket lo < root <= hi.
    a3 = 2 * y0 + m0 - 2 * y1 + m1  # value(t) = a3 t³ + a2 t² + m0 t + y0
    a2 = -3 * y0 - 2 * m0 + 3 * y1 - m1
    lo, hi = 0.0, 1.0
    t = (target - y0) / (y1 - y0)
    for _ in range(60):
        miss = ((a3 * t + a2) * t + m0) * t + y0 - target
        if miss >= 0:
            hi = t
        else:
            lo = t
        if hi - lo < 1e-12 or miss == 0:
            break
        slope = (3 * a3 * t + 2 * a2) * t + m0
        step = t - miss / slope if slope > 0 else -1.0
        if abs(step - t) < 1e-13:  # converged
            break
        t = step if lo < step < hi else 0.5 * (lo + hi)
    return j - 1 + (1.0 if t > 1.0 - 1e-9 else t)  # a crossing at a point is that point
