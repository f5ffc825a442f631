"""Trainables that print, as framework code does (importable by worker processes)."""

from __future__ import annotations

import os
import sys
from typing import Any

from firepbt import Trainable


class Chatty(Trainable):
    """Prints on stdout, writes to stderr, and writes to file descriptor 2 as C code would."""

    def __init__(self, hyperparameters: dict[str, Any], seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.step = 0
        os.write(2, b"C-LEVEL BANNER from a framework\n")

    def train(self, steps: int) -> None:
        self.step += steps
        print(f"TRAINING LINE step {self.step}")
        print("STDERR LINE", file=sys.stderr)
        if self.step > self.hyperparameters.get("raise_after", 10**9):
            print(f"loading shard {self.step} before the crash")
            raise RuntimeError("the data loader broke")
        if self.step > self.hyperparameters.get("die_after", 10**9):
            print("about to die in C code")
            os._exit(3)

    def evaluate(self) -> float:
        return float(self.step)

    def save(self) -> dict[str, int]:
        return {"step": self.step}

    def load(self, state: dict[str, int]) -> None:
        self.step = state["step"]
