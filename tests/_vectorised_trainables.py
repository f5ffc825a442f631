"""Vectorised trainables for the tests, apart from ``_trainables`` (which runs in subprocesses
with whichever firepbt is installed)."""

from __future__ import annotations

import os
import time

from firepbt.examples.nqm_vectorised import NQMVectorised


class FaultyNQMVectorised(NQMVectorised):
    """NQMVectorised whose members with an ``lr`` above ``fault_lr`` meet a fault: with
    ``fail_at``, the batched ``train_slots`` raises once such a member would train past that
    step; with ``die_at``, the worker process dies; with ``hang_at``, it hangs."""

    def train_slots(self, slots: tuple[int, ...], steps: int) -> None:
        for s in slots:
            h, done = self.hyperparameters_of(s), self.steps_trained[s] + steps
            if h["lr"] <= h.get("fault_lr", 10**9):
                continue
            if done > h.get("fail_at", 10**9):
                raise RuntimeError(f"boom in slot {s} at step {done}")
            if done > h.get("die_at", 10**9):
                os._exit(3)
            if done > h.get("hang_at", 10**9):
                time.sleep(3600)
        super().train_slots(slots, steps)
