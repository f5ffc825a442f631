"""A trainable whose iterations sleep: a fixed workload for measuring runtime overhead.

Each ``train`` step sleeps ``seconds`` (a fixed hyperparameter) and nudges a counter by ``x``, so
the score depends on the hyperparameters and PBT has something to exploit. With ``state_mb``, the
state also carries that many megabytes of "weights" (changed a little at every step), so that
checkpoints cost what a model's would.

>>> s = Sleep({"x": 0.5, "seconds": 0.0}, seed=0)
>>> s.train(4); s.evaluate()
2.0
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from firepbt.space import Hyperparameters
from firepbt.trainable import Trainable


class Sleep(Trainable):
    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.total = 0.0
        size = int(float(hyperparameters.get("state_mb", 0.0)) * 2**20) // 8
        self.weights = np.random.default_rng(seed).standard_normal(size)

    def train(self, steps: int) -> None:
        pause = float(self.hyperparameters.get("seconds", 0.0))
        for _ in range(steps):
            if pause > 0:
                time.sleep(pause)
            self.total += float(self.hyperparameters["x"])
            self.weights[:1] += 1.0

    def evaluate(self) -> float:
        return self.total

    def save(self) -> dict[str, Any]:
        return {"total": self.total, "weights": self.weights.copy()}

    def load(self, state: Any) -> None:
        self.total = float(state["total"])
        self.weights = np.array(state.get("weights", self.weights))
