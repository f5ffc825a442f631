"""The Gaussian process that smooths evaluator curves, written directly in numpy.

Model: ``c · Matérn₅/₂(ℓ) + σ²·I`` on inputs rescaled to [0, 1] and outputs normalised to zero
mean and unit variance (population standard deviation), with the hyperparameters
``θ = log(c, ℓ, σ²)`` chosen by maximising the log marginal likelihood with L-BFGS-B from one
fixed start, and a jitter of 1e-10 on the diagonal. This is the model (and the optimisation) of
scikit-learn's ``GaussianProcessRegressor(ConstantKernel * Matern(nu=2.5) + WhiteKernel,
normalize_y=True)``, which smoothed the curves before; ``tests/fire/test_gp.py`` checks that both
give the same posterior mean. Written out here because the generic estimator spent ~1 ms of
kernel bookkeeping per likelihood evaluation: with FIRE PBT's hundreds of fits per run, the
controller spent more time fitting curves than the workers spent training on cheap problems.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
# What a fit imports on first use (not at import time: it takes ~0.4 s).
MODULES = ("scipy.linalg", "scipy.optimize")

_SQRT5 = math.sqrt(5.0)
_JITTER = 1e-10  # on the diagonal, for numerical stability
_LOG_2PI = math.log(2.0 * math.pi)
# Start and bounds of (constant, length scale, noise level), before the log.
START = (1.0, 0.3, 1e-2)
BOUNDS = ((1e-3, 1e3), (1e-2, 1e2), (1e-8, 1e1))


def _matern(dist: FloatArray, length: float) -> tuple[FloatArray, FloatArray]:
    """Matérn 5/2 at distances ``dist``, and its derivative in log(length)."""
    r = dist * (_SQRT5 / length)  # √5·d/ℓ
    e = np.exp(-r)
    k = (1.0 + r + r * r / 3.0) * e
    dk = (r * r / 3.0) * (1.0 + r) * e  # ∂k/∂log ℓ = (5d²/3ℓ²)(1 + √5 d/ℓ) e^{-√5 d/ℓ}
    return k, dk


def _neg_log_likelihood(
    theta: FloatArray, dist: FloatArray, y: FloatArray
) -> tuple[float, FloatArray]:
    """Negative log marginal likelihood of ``y`` at ``theta`` and its gradient (``dist``: the
    distances between the inputs)."""
    from scipy.linalg import cho_solve

    c, length, noise = np.exp(theta)
    m, dm = _matern(dist, float(length))
    n = y.size
    k = c * m
    k[np.diag_indices(n)] += noise + _JITTER
    try:
        low = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        return math.inf, np.zeros(3)
    alpha = cho_solve((low, True), y, check_finite=False)
    lml = -0.5 * float(y @ alpha) - float(np.log(np.diag(low)).sum()) - 0.5 * n * _LOG_2PI
    # ∂lml/∂θ = ½ tr((ααᵀ − K⁻¹) ∂K/∂θ), with ∂K/∂log c = c·M, ∂K/∂log ℓ = c·∂M, ∂K/∂log σ² = σ²I.
    inner = np.outer(alpha, alpha) - cho_solve((low, True), np.eye(n), check_finite=False)
    grad = 0.5 * np.array(
        [
            float(np.sum(inner * (c * m))),
            float(np.sum(inner * (c * dm))),
            float(noise * np.trace(inner)),
        ]
    )
    return -lml, -grad


def smooth(x: FloatArray, y: FloatArray, at: FloatArray) -> FloatArray:
    """The posterior mean at ``at`` of the GP fitted to ``(x, y)`` (see the module docstring).

    Raises ``numpy.linalg.LinAlgError`` when the fitted kernel matrix is not positive definite.
    """
    from scipy.linalg import cho_solve
    from scipy.optimize import minimize

    mean = float(y.mean())
    std = float(y.std())
    if std < 10 * np.finfo(np.float64).eps:
        std = 1.0
    yn = (y - mean) / std
    start = np.log(np.array(START))
    bounds = [(math.log(lo), math.log(hi)) for lo, hi in BOUNDS]
    dist = np.abs(x[:, None] - x[None, :])
    result = minimize(
        _neg_log_likelihood, start, args=(dist, yn), method="L-BFGS-B", jac=True, bounds=bounds
    )
    c, length, noise = np.exp(result.x)
    m, _ = _matern(dist, float(length))
    k = c * m
    k[np.diag_indices(x.size)] += noise + _JITTER
    low = np.linalg.cholesky(k)
    alpha = cho_solve((low, True), yn, check_finite=False)
    cross, _ = _matern(np.abs(at[:, None] - x[None, :]), float(length))
    out: FloatArray = std * ((c * cross) @ alpha) + mean
    return out
