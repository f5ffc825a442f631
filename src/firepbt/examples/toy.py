"""The toy problem of the PBT paper (Jaderberg et al. 2017, Figure 2).

Two weights θ = (θ0, θ1) start at (0.9, 0.9). The true objective is
Q(θ) = 1.2 − (θ0² + θ1²), maximal at θ = 0. Training cannot see Q: it climbs the surrogate
Q̂(θ|h) = 1.2 − (h0·θ0² + h1·θ1²), so a member with h = (1, 0) only ever shrinks θ0 and one with
h = (0, 1) only θ1. Neither reaches the optimum alone; PBT, by copying θ between them, does.

Everything is deterministic (no noise), so step numbers can be checked by hand.
"""

from __future__ import annotations

from typing import Any

from firepbt.space import Hyperparameters, Space, Uniform
from firepbt.trainable import Trainable

THETA_START = (0.9, 0.9)
DEFAULT_STEP_SIZE = 0.01


class Toy(Trainable):
    """Gradient ascent on the surrogate Q̂(θ|h); ``evaluate`` returns the true Q(θ).

    One step: θi ← θi + η·∂Q̂/∂θi = θi·(1 − 2·η·hi), with η = ``step_size`` (default 0.01).

    >>> toy = Toy({"h0": 1.0, "h1": 0.0}, seed=0)
    >>> toy.train(1)
    >>> [round(x, 6) for x in toy.theta]
    [0.882, 0.9]
    >>> round(toy.evaluate(), 6)
    -0.387924
    """

    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.theta: list[float] = list(THETA_START)

    def train(self, steps: int) -> None:
        h = (float(self.hyperparameters["h0"]), float(self.hyperparameters["h1"]))
        eta = float(self.hyperparameters.get("step_size", DEFAULT_STEP_SIZE))
        for _ in range(steps):
            # ∂Q̂/∂θi = −2·hi·θi; ascent adds η times the gradient.
            self.theta = [t + eta * (-2.0 * hi * t) for t, hi in zip(self.theta, h, strict=True)]

    def evaluate(self) -> float:
        return 1.2 - (self.theta[0] ** 2 + self.theta[1] ** 2)

    def save(self) -> dict[str, Any]:
        return {"theta": list(self.theta)}

    def load(self, state: Any) -> None:
        self.theta = [float(x) for x in state["theta"]]


def toy_space() -> Space:
    """Priors h0, h1 ~ U(0, 1); perturbation may take them up to 2 (still a stable ascent)."""
    return Space(
        {
            "h0": Uniform(0.0, 1.0, bounds=(0.0, 2.0)),
            "h1": Uniform(0.0, 1.0, bounds=(0.0, 2.0)),
        }
    )
