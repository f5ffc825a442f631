"""A trainable written as ordinary code is: it draws from the process-global generators (Python's
``random``, numpy's, torch's) and keeps none of their state in ``save``. Its own module, so that
only the workers that train it import torch."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from firepbt import Trainable


class GlobalNoise(Trainable):
    """A noisy walk towards 0, scored by ``-|x|``."""

    def __init__(self, hyperparameters: dict[str, Any], seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.x = 1.0 + float(np.random.rand())  # the start draws too

    def train(self, steps: int) -> None:
        lr = self.hyperparameters["lr"]
        for _ in range(steps):
            noise = random.gauss(0, 0.1) + np.random.normal(0, 0.1) + float(torch.randn(()) * 0.1)
            self.x -= lr * (self.x + noise)

    def evaluate(self) -> float:
        return -abs(self.x)

    def save(self) -> dict[str, float]:
        return {"x": self.x}

    def load(self, state: dict[str, float]) -> None:
        self.x = state["x"]
