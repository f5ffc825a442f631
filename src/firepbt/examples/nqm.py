"""The noisy quadratic model (NQM): a benchmark where any learning-rate schedule is scored exactly.

Loss L(θ) = ½ Σᵢ hᵢ θᵢ² with curvatures hᵢ = 1/i (i = 1..d), θ₀ = 1. One SGD step with batch size B:

    θᵢ ← θᵢ − lr·(hᵢ θᵢ + εᵢ),   εᵢ ~ N(0, hᵢ / B)

Because the noise is zero-mean and independent, the second moment of each coordinate follows

    E[θᵢ²] ← (1 − lr·hᵢ)² E[θᵢ²] + lr² hᵢ / B,   E[L] = ½ Σᵢ hᵢ E[θᵢ²]

so the *expected* loss of any schedule is computed exactly, without sampling. That is what makes the
NQM a clean test of schedule search: high learning rates make fast progress on the flat directions
but sit on a high noise floor; low ones have a low floor but never reach the flat directions. Only a
*decaying* schedule gets both, and greedy PBT tends to decay too early.

Defaults, chosen by grid searches over schedule parameters (``tests/examples/test_nqm.py``):
``DEFAULT_DIM = 1000``, ``DEFAULT_BATCH = 4``, ``DEFAULT_STEPS = 3000``. With them the best constant
learning rate (lr ≈ 0.24) reaches E[L] ≈ 0.169, the best cosine schedule (lr0 ≈ 0.93) ≈ 0.068 and
the best exponential one ≈ 0.065: decay wins by ≈ 2.5×, as in the literature. With B = 1 and 1000
steps the gap is only ≈ 1.5× (the noise floor dominates); with B = 4 and 1000 steps it is ≈ 2×.

Stability: coordinate i contracts iff ``|1 − lr·hᵢ| < 1``; the stiffest is h₁ = 1, so lr < 2 is
needed.
``nqm_space`` caps lr at ``LR_MAX = 1.9`` so that every coordinate strictly contracts
(``|1 − lr·hᵢ| ≤ 0.9``); at lr = 2 the first coordinate's variance would grow without bound.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from firepbt.space import Hyperparameters, LogUniform, Space
from firepbt.trainable import Trainable

DEFAULT_DIM = 1000
DEFAULT_BATCH = 4
DEFAULT_STEPS = 3000
THETA0 = 1.0
LR_MAX = 1.9

_NOISE_CHUNK = 256  # steps of noise drawn per call; the normal stream does not depend on chunking


def nqm_curvatures(d: int = DEFAULT_DIM) -> np.ndarray:
    """The curvatures hᵢ = 1/i, i = 1..d."""
    if d < 1:
        raise ValueError(f"dim: the NQM needs at least one dimension, got {d}")
    return 1.0 / np.arange(1, d + 1, dtype=np.float64)


def expected_losses(
    schedules: Sequence[Sequence[float]] | np.ndarray,
    d: int = DEFAULT_DIM,
    batch_size: float = DEFAULT_BATCH,
    theta0: float = THETA0,
) -> np.ndarray:
    """Exact expected loss of each of several equal-length schedules (rows: schedules, cols: steps).

    Vectorised over schedules and coordinates, looping over steps: the fast way to grid-search.
    """
    lrs = np.asarray(schedules, dtype=np.float64)
    if lrs.ndim != 2:
        raise ValueError(
            f"schedules: expected a 2-D array (schedules × steps), got shape {lrs.shape}"
        )
    h = nqm_curvatures(d)
    m2 = np.full((lrs.shape[0], d), float(theta0) ** 2)
    noise = h / float(batch_size)
    for t in range(lrs.shape[1]):
        lr = lrs[:, t : t + 1]
        a = 1.0 - lr * h
        m2 *= a * a
        m2 += (lr * lr) * noise
    return np.asarray(0.5 * (m2 @ h), dtype=np.float64)


def expected_loss(
    learning_rates: Sequence[float],
    d: int = DEFAULT_DIM,
    batch_size: float = DEFAULT_BATCH,
    theta0: float = THETA0,
) -> float:
    """Exact expected loss after following ``learning_rates`` (one per step) from θ = ``theta0``.

    >>> round(expected_loss([0.5] * 100, d=10, batch_size=4), 4)
    0.1067
    """
    h = nqm_curvatures(d)
    m2 = np.full(d, float(theta0) ** 2)
    noise = h / float(batch_size)
    for lr in learning_rates:
        lr = float(lr)
        a = 1.0 - lr * h
        m2 *= a * a
        m2 += (lr * lr) * noise
    return float(0.5 * (h @ m2))


def _advance_constant(
    m2: np.ndarray, h: np.ndarray, lr: float, steps: int, batch_size: float
) -> np.ndarray:
    """E[θ²] after ``steps`` steps at a constant lr, in closed form (a geometric series).

    With a = (1 − lr·h)²: m2_k = aᵏ m2_0 + (lr² h / B)·(1 − aᵏ)/(1 − a); written with log1p/expm1
    so that tiny lr·h (a ≈ 1) keeps full precision.
    """
    if steps == 0:
        return np.array(m2, dtype=np.float64)
    x = lr * h
    with np.errstate(divide="ignore", invalid="ignore"):
        log_a = np.where(
            x < 1.0, 2.0 * np.log1p(-np.minimum(x, 1.0)), 2.0 * np.log(np.abs(1.0 - x))
        )
        a_k = np.exp(steps * log_a)
        one_minus_a = x * (2.0 - x)
        geometric = np.where(one_minus_a != 0.0, -np.expm1(steps * log_a) / one_minus_a, steps)
    return np.asarray(a_k * m2 + (lr * lr * h / batch_size) * geometric, dtype=np.float64)


def expected_loss_constant(
    lr: float,
    steps: int,
    d: int = DEFAULT_DIM,
    batch_size: float = DEFAULT_BATCH,
    theta0: float = THETA0,
) -> float:
    """Exact expected loss after ``steps`` steps at a constant ``lr`` (closed form, O(d))."""
    h = nqm_curvatures(d)
    m2 = _advance_constant(np.full(d, float(theta0) ** 2), h, float(lr), int(steps), batch_size)
    return float(0.5 * (h @ m2))


def expected_loss_of_schedule(
    schedule: Sequence[tuple[int, int, float]],
    d: int = DEFAULT_DIM,
    batch_size: float = DEFAULT_BATCH,
    theta0: float = THETA0,
) -> float:
    """Exact expected loss of a piecewise-constant schedule given as ``(from_step, to_step, lr)``.

    Segments are half-open [from_step, to_step), must start at step 0 and follow each other without
    gap or overlap (the shape of a PBT member's hyperparameter schedule). Each segment costs O(d).

    >>> round(expected_loss_of_schedule([(0, 60, 0.5), (60, 100, 0.05)], d=10), 4)
    0.0314
    >>> round(expected_loss([0.5] * 60 + [0.05] * 40, d=10), 4)
    0.0314
    """
    h = nqm_curvatures(d)
    m2 = np.full(d, float(theta0) ** 2)
    expected_start = 0
    for k, (start, stop, lr) in enumerate(schedule):
        if start != expected_start:
            raise ValueError(
                f"schedule[{k}]: segment starts at step {start}, expected {expected_start} "
                "(segments must start at 0 and be contiguous)"
            )
        if stop < start:
            raise ValueError(f"schedule[{k}]: to_step {stop} is before from_step {start}")
        m2 = _advance_constant(m2, h, float(lr), int(stop - start), float(batch_size))
        expected_start = stop
    return float(0.5 * (h @ m2))


# --- schedules: per-step learning-rate lists -------------------------------------------------


def constant(lr: float, total: int = DEFAULT_STEPS) -> list[float]:
    """``lr`` at every step."""
    return [float(lr)] * int(total)


def step_decay(
    lr0: float,
    total: int = DEFAULT_STEPS,
    boundaries: Sequence[float] = (0.5, 0.75),
    factor: float = 0.1,
) -> list[float]:
    """``lr0``, multiplied by ``factor`` at each boundary (given as fractions of ``total``)."""
    cuts = sorted(int(round(b * total)) for b in boundaries)
    return [float(lr0) * factor ** sum(t >= c for c in cuts) for t in range(int(total))]


def cosine(lr0: float, total: int = DEFAULT_STEPS, lr_min: float = 0.0) -> list[float]:
    """Cosine decay from ``lr0`` at step 0 towards ``lr_min`` at step ``total``."""
    return [
        lr_min + (lr0 - lr_min) * 0.5 * (1.0 + math.cos(math.pi * t / total)) for t in range(total)
    ]


def exponential(lr0: float, gamma: float, total: int = DEFAULT_STEPS) -> list[float]:
    """``lr0 · gammaᵗ`` for t = 0..total−1."""
    return [float(lr0) * gamma**t for t in range(int(total))]


# --- the trainable ---------------------------------------------------------------------------


class NQM(Trainable):
    """SGD on the noisy quadratic model, with seeded gradient noise.

    Hyperparameters: ``lr`` (tuned); optional ``batch_size`` (default ``DEFAULT_BATCH``) and
    ``dim`` (default ``DEFAULT_DIM``, read once at construction). ``evaluate`` returns
    ``{"loss": L(θ)}`` of the sampled θ (select with ``mode="min"``) and ``"expected_loss"``, the
    exact expected loss of the learning-rate schedule this state has followed (its lineage's
    schedule, after exploits), tracked in O(d) per step. The noise generator's state is part of
    ``save()``, so save → load → train reproduces training straight through exactly.

    With ``slots = k`` (``[executor]``), a run trains k members per worker as one
    ``NQMVectorised`` (exactly the same members; see ``firepbt.execution.vectorised_pool``).

    >>> m = NQM({"lr": 0.5, "dim": 10}, seed=0)
    >>> m.train(100)
    >>> sorted(m.evaluate())
    ['expected_loss', 'loss']
    >>> round(m.evaluate()["expected_loss"], 4) == round(expected_loss([0.5] * 100, d=10), 4)
    True
    """

    vectorised = "firepbt.examples.nqm_vectorised:NQMVectorised"

    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.dim = int(self.hyperparameters.get("dim", DEFAULT_DIM))
        self.curvatures = nqm_curvatures(self.dim)
        self.theta = np.full(self.dim, THETA0)
        self.second_moment = np.full(self.dim, THETA0**2)  # E[θᵢ²] under the followed schedule
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.steps_trained = 0

    def train(self, steps: int) -> None:
        lr = float(self.hyperparameters["lr"])
        batch = float(self.hyperparameters.get("batch_size", DEFAULT_BATCH))
        h = self.curvatures
        noise_std = np.sqrt(h / batch)
        done = 0
        while done < steps:
            n = min(_NOISE_CHUNK, steps - done)
            eps = self.rng.standard_normal((n, self.dim))
            for t in range(n):
                self.theta -= lr * (h * self.theta + noise_std * eps[t])
            done += n
        # All `steps` steps used one lr: advance the second moment in closed form (O(d)).
        self.second_moment = _advance_constant(self.second_moment, h, lr, steps, batch)
        self.steps_trained += steps

    def evaluate(self) -> dict[str, float]:
        h = self.curvatures
        return {
            "loss": float(0.5 * (h @ self.theta**2)),
            "expected_loss": float(0.5 * (h @ self.second_moment)),
        }

    def save(self) -> dict[str, Any]:
        return {
            "theta": self.theta.copy(),
            "second_moment": self.second_moment.copy(),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "steps_trained": self.steps_trained,
        }

    def load(self, state: Any) -> None:
        theta = np.array(state["theta"], dtype=np.float64)
        if theta.shape != (self.dim,):
            raise ValueError(
                f"NQM.load: state has dim {theta.shape[0]}, this trainable has dim {self.dim}"
            )
        self.theta = theta
        self.second_moment = np.array(state["second_moment"], dtype=np.float64)
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.steps_trained = int(state["steps_trained"])


def nqm_space() -> Space:
    """``lr`` log-uniform on [1e-3, 1.9]; bounds (1e-5, 1.9) keep every coordinate stable."""
    return Space({"lr": LogUniform(1e-3, LR_MAX, bounds=(1e-5, LR_MAX))})
