"""The numpy GP that smooths evaluator curves gives scikit-learn's posterior mean."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from firepbt.fire import _gp


def _sklearn_mean(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    (c_lo, c_hi), (l_lo, l_hi), (n_lo, n_hi) = _gp.BOUNDS
    c0, l0, n0 = _gp.START
    kernel = ConstantKernel(c0, (c_lo, c_hi)) * Matern(
        length_scale=l0, length_scale_bounds=(l_lo, l_hi), nu=2.5
    ) + WhiteKernel(noise_level=n0, noise_level_bounds=(n_lo, n_hi))
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x[:, None], y)
        return np.asarray(gp.predict(x[:, None]))


def _training_like_curves(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Saturating, logarithmic and drifting curves with noise, 3 to 100 points."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        m = int(rng.integers(3, 101))
        x = np.linspace(0.0, 1.0, m)
        if i % 3 == 0:
            y = rng.uniform(0.1, 1.0) * (1 - np.exp(-x * rng.uniform(1, 20)))
            y = y + rng.uniform(0.0, 0.1) * rng.standard_normal(m)
        elif i % 3 == 1:
            y = -np.log1p(10 * x) + 0.02 * rng.standard_normal(m)
        else:
            y = 5 + 1e-3 * np.cumsum(rng.standard_normal(m))
        out.append((x, y))
    return out


def test_posterior_mean_matches_scikit_learn_on_training_like_curves() -> None:
    # Same model, same start, same bounds, same optimiser: the two differ only by floating-point
    # rounding, which stays far below what FIRE's comparisons resolve (1e-6 of a curve's range).
    # On pure white noise the likelihood is flat in the length scale and the two optimisers can
    # stop at different points; evaluator curves are not white noise.
    for x, y in _training_like_curves(60):
        ours = _gp.smooth(x, y, x)
        theirs = _sklearn_mean(x, y)
        assert np.max(np.abs(ours - theirs)) <= 1e-6 * np.ptp(y), len(x)


def test_posterior_mean_reads_between_fitted_points() -> None:
    x = np.linspace(0.0, 1.0, 30)
    y = np.sqrt(x) + 0.01 * np.random.default_rng(1).standard_normal(30)
    every = _gp.smooth(x, y, x)
    between = _gp.smooth(x, y, (x[:-1] + x[1:]) / 2)
    # The mean is smooth: a midpoint lies near the average of its neighbours' means.
    assert np.max(np.abs(between - (every[:-1] + every[1:]) / 2)) < 0.01
