"""An evaluator's training curve (:class:`Curve`) and its Gaussian-process smoothing
(:func:`fit_curve`), the first step of FIRE PBT's curve comparison (section 3 of Dalibard &
Jaderberg 2020; :mod:`firepbt.fire.curves` compares the smoothed curves).

A curve is smoothed once, when it is fitted. The GP itself (Matérn 5/2, empirical Bayes,
deterministic) is :mod:`firepbt.fire._gp`; scipy's optimiser is imported only when a curve is
smoothed (``MODULES``). Steps are strictly increasing and finite; values are "higher is better".

Non-finite values (NaN, +inf, -inf) are failed evaluations and rank worst, as everywhere else in
firepbt (:func:`firepbt.exploit.rank_key`). :func:`fit_curve` replaces them, before smoothing, by
``worst`` when given, otherwise by ``min(finite) - margin`` where ``margin`` is the range of the
finite values (``max(|min(finite)|, 1)`` when that range is 0). A curve with no finite value at
all has no scale to put "worst" on: :func:`fit_curve` raises ``ValueError`` unless ``worst`` is
given (a caller that knows the population can pass e.g. the population's minimum minus a margin,
or treat the member as the worst / exempt it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from firepbt.fire import _gp, _pchip

__all__ = ["Curve", "fit_curve"]

FloatArray = npt.NDArray[np.float64]

MODULES = _gp.MODULES  # what fitting a curve imports on first use
MAX_GP_POINTS = 100


def _as_vector(name: str, x: npt.ArrayLike) -> FloatArray:
    try:
        arr = np.array(x, dtype=np.float64)  # a copy: callers' arrays are never aliased
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D sequence of numbers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_steps(steps: FloatArray) -> None:
    if steps.size == 0:
        raise ValueError("a curve needs at least 1 point, got 0")
    if not np.isfinite(steps).all():
        raise ValueError("steps must be finite")
    if steps.size > 1 and not (np.diff(steps) > 0).all():
        bad = int(np.flatnonzero(np.diff(steps) <= 0)[0])
        raise ValueError(
            f"steps must be strictly increasing: steps[{bad}]={steps[bad]:g} "
            f">= steps[{bad + 1}]={steps[bad + 1]:g}"
        )


@dataclass(frozen=True, slots=True, eq=False)
class Curve:
    """An evaluator's training curve, smoothed once.

    ``steps`` strictly increase; ``values`` are the raw objective values (higher is better,
    finite); ``smoothed`` is the GP posterior mean at the same steps. Build it with
    :func:`fit_curve` from raw data; constructing it directly (e.g. ``smoothed=values`` for a
    curve that needs no smoothing) is allowed and validated. The arrays are read-only float64
    copies. Instances compare by identity (``eq=False``): element-wise array equality has no
    single truth value.
    """

    steps: FloatArray
    values: FloatArray
    smoothed: FloatArray
    # the shape-preserving cubic's slopes at the smoothed points, computed once per curve: every
    # comparison with another curve reads them
    slopes: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        steps = _as_vector("steps", self.steps)
        values = _as_vector("values", self.values)
        smoothed = _as_vector("smoothed", self.smoothed)
        _check_steps(steps)
        if values.shape != steps.shape or smoothed.shape != steps.shape:
            raise ValueError(
                f"steps, values and smoothed must have the same length, got "
                f"{steps.size}, {values.size} and {smoothed.size}"
            )
        if not (np.isfinite(values).all() and np.isfinite(smoothed).all()):
            raise ValueError(
                "Curve values and smoothed must be finite; use fit_curve() on raw data with NaN/inf"
            )
        slopes = _pchip.slopes(smoothed)
        for name, arr in (
            ("steps", steps),
            ("values", values),
            ("smoothed", smoothed),
            ("slopes", slopes),
        ):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return int(self.steps.size)


def _replace_non_finite(values: FloatArray, worst: float | None) -> FloatArray:
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if worst is not None:
        if not math.isfinite(worst):
            raise ValueError(f"worst must be finite, got {worst}")
        fill = float(worst)
    else:
        finite = values[~bad]
        if finite.size == 0:
            raise ValueError(
                "curve has no finite value (every evaluation is NaN or inf): it has no improvement "
                "rate; pass worst=<a value below the population's scores> or treat it as the worst"
            )
        lo = float(finite.min())
        spread = float(finite.max()) - lo
        margin = spread if spread > 0 else max(abs(lo), 1.0)
        fill = lo - margin
    out: FloatArray = values.copy()
    out[bad] = fill
    return out


def _gp_smooth(steps: FloatArray, values: FloatArray) -> FloatArray:
    """GP posterior mean at ``steps``: Matérn 5/2, empirical Bayes, deterministic (``_gp``)."""
    # Steps rescaled to [0, 1] so that one set of length-scale bounds fits any step range; the
    # values are normalised inside.
    x = (steps - steps[0]) / (steps[-1] - steps[0])
    # A long curve (a member that has not copied weights for a long time) is fitted on evenly
    # spaced points, first and last included, and the posterior mean is read at every step: the
    # cost stays bounded (O(MAX_GP_POINTS³) for the fit) while the smoothing is the same kind.
    fit_idx = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), MAX_GP_POINTS)).round())
    fit_idx = fit_idx.astype(int)
    try:
        mean = _gp.smooth(x[fit_idx], values[fit_idx], x)
    except (np.linalg.LinAlgError, ValueError):
        mean = values.copy()  # numerically hopeless fit: use the raw points
    if mean.shape != values.shape or not np.isfinite(mean).all():
        mean = values.copy()
    return mean


def fit_curve(steps: npt.ArrayLike, values: npt.ArrayLike, *, worst: float | None = None) -> Curve:
    """Validate a raw training curve and smooth it once with a Gaussian process.

    Kernel: constant × Matérn 5/2 + white noise on steps rescaled to [0, 1], values normalised;
    hyperparameters maximise the marginal likelihood (empirical Bayes) with one optimisation from
    a fixed start, so the result is deterministic (``firepbt.fire._gp``; restarts tripled the cost
    without changing a test's outcome). Curves of 1 or 2 points and
    constant curves are not fitted: ``smoothed = values``. Non-finite values rank worst and are
    replaced before smoothing (see the module docstring); a curve with no finite value raises
    ``ValueError`` unless ``worst`` is given. Steps must be finite and strictly increasing, and
    ``values`` as long as ``steps``.
    """
    x = _as_vector("steps", steps)
    y = _as_vector("values", values)
    _check_steps(x)
    if y.shape != x.shape:
        raise ValueError(f"steps and values must have the same length, got {x.size} and {y.size}")
    y = _replace_non_finite(y, worst)
    degenerate = y.size <= 2 or float(np.ptp(y)) == 0.0
    smoothed = y.copy() if degenerate else _gp_smooth(x, y)
    return Curve(steps=x, values=y, smoothed=smoothed)
