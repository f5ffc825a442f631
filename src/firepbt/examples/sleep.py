"""A trainable whose iterations sleep: a fixed workload for measuring runtime overhead.

Each ``train`` step sleeps ``seconds`` (a fixed hyperparameter) and nudges a counter by ``x``, so
the score depends on the hyperparameters and PBT has something to exploit.

>>> s = Sleep({"x": 0.5, "seconds": 0.0}, seed=0)
>>> s.train(4); s.evaluate()
2.0
"""

from __future__ import annotations

import time
from typing import Any

from firepbt.space import Hyperparameters
from firepbt.trainable import Trainable


class Sleep(Trainable):
    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.total = 0.0

    def train(self, steps: int) -> None:
        pause = float(self.hyperparameters.get("seconds", 0.0))
        for _ in range(steps):
            if pause > 0:
                time.sleep(pause)
            self.total += float(self.hyperparameters["x"])

    def evaluate(self) -> float:
        return self.total

    def save(self) -> dict[str, Any]:
        return {"total": self.total}

    def load(self, state: Any) -> None:
        self.total = float(state["total"])
