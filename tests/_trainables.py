"""Small trainables for integration tests (importable by worker processes)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import numpy as np

from firepbt import Trainable


class Quad(Trainable):
    """The PBT toy: gradient ascent on 1.2 - (h0 θ0² + h1 θ1²); evaluates the true Q.

    Optional hyperparameters steer faults: ``fail_at`` raises once training passes that step,
    ``nan_at`` makes evaluate return NaN from that step on, ``die_at`` kills the worker process.
    """

    def __init__(self, hyperparameters: dict[str, Any], seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.theta = np.array([0.9, 0.9])
        self.step = 0

    def train(self, steps: int) -> None:
        h = self.hyperparameters
        for _ in range(steps):
            self.step += 1
            if self.step > h.get("fail_at", 10**9):
                raise RuntimeError(f"boom at step {self.step}")
            if self.step > h.get("die_at", 10**9):
                os._exit(3)
            if self.step > h.get("hang_at", 10**9):
                time.sleep(3600)
            self.theta = self.theta - 0.02 * np.array([h["h0"], h["h1"]]) * self.theta

    def evaluate(self) -> float:
        if self.step >= self.hyperparameters.get("nan_at", 10**9):
            return float("nan")
        return float(1.2 - (self.theta**2).sum())

    def save(self) -> dict[str, Any]:
        return {"theta": self.theta.copy(), "step": self.step}

    def load(self, state: dict[str, Any]) -> None:
        self.theta = state["theta"].copy()
        self.step = state["step"]


class TwoMetrics(Quad):
    def evaluate(self) -> dict[str, float]:  # type: ignore[override]
        q = super().evaluate()
        return {"q": q, "test_q": q - 0.01}


class BadMetric(Quad):
    def evaluate(self) -> Any:
        return "not a number"


class Sleeper(Quad):
    """Writes its process id into the directory named by ``FIREPBT_TEST_PIDS`` and then trains
    for an hour: a worker that is busy when its controller dies."""

    def train(self, steps: int) -> None:
        folder = os.environ["FIREPBT_TEST_PIDS"]
        with open(os.path.join(folder, str(os.getpid())), "w") as f:
            f.write("busy")
        time.sleep(3600)


class DeviceProbe(Quad):
    """Quad that also reports where it ran: its worker's process id, the GPUs the worker was
    given (the first of ``CUDA_VISIBLE_DEVICES``; -1 when unset), whether ``self.device`` is
    CUDA."""

    def evaluate(self) -> dict[str, float]:  # type: ignore[override]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return {
            "q": float(super().evaluate()),
            "pid": float(os.getpid()),
            "visible": float(visible.split(",")[0]) if visible else -1.0,
            "cuda": 1.0 if self.device == "cuda" else 0.0,
        }


class ForkProbe(Quad):
    """Quad that also reports how its worker process started: whether its parent is the process
    named by ``FIREPBT_TEST_CONTROLLER`` (a forked worker's is; a fork server's child's is the
    server), and how many of its open files are the run's lock file."""

    def evaluate(self) -> dict[str, float]:  # type: ignore[override]
        locks = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # closed since it was listed
                locks += os.readlink(f"/proc/self/fd/{fd}").endswith("firepbt.lock")
        forked = os.getppid() == int(os.environ["FIREPBT_TEST_CONTROLLER"])
        return {"q": float(super().evaluate()), "forked": float(forked), "locks": float(locks)}


class ThreadProbe(Quad):
    """Quad that also reports the most threads any native thread pool of its worker process
    (BLAS, OpenMP) would use."""

    def evaluate(self) -> dict[str, float]:  # type: ignore[override]
        from threadpoolctl import threadpool_info

        threads = max((p["num_threads"] for p in threadpool_info()), default=0)
        return {"q": float(super().evaluate()), "threads": float(threads)}


def reuse_faults() -> int:
    """Minor page faults while this process, three times over, allocates four blocks of 3 MiB
    and frees them together (after one pass that maps them in, and one 4 MiB block freed
    first). With glibc's defaults that block raises the threshold at which freed memory at the
    heap's top goes back to the system to 8 MiB, so the 12 MiB freed each pass is returned and
    faulted in again (about 2 300 faults a pass); a heap that keeps freed memory takes none."""
    import resource

    import numpy as np

    def allocate() -> None:
        blocks = [np.ones(3 * 2**20 // 8) for _ in range(4)]
        del blocks

    block = np.ones(4 * 2**20 // 8)
    del block
    allocate()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        allocate()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


class HeapProbe(Quad):
    """Quad that also reports ``reuse_faults`` in its worker process."""

    def evaluate(self) -> dict[str, float]:  # type: ignore[override]
        return {"q": float(super().evaluate()), "faults": float(reuse_faults())}


class EnvScore(Trainable):
    """Scores the number in its worker's ``FIREPBT_TEST_SCORE`` variable (NaN without one): a
    worker's environment, such as a Ray ``runtime_env``, reached it."""

    def __init__(self, hyperparameters: dict[str, Any], seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.step = 0

    def train(self, steps: int) -> None:
        self.step += steps * (1 + 0 * self.hyperparameters["x"])

    def evaluate(self) -> float:
        return float(os.environ.get("FIREPBT_TEST_SCORE", "nan"))

    def save(self) -> int:
        return self.step

    def load(self, state: int) -> None:
        self.step = state
