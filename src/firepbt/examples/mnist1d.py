"""MNIST-1D with a small 1-D CNN: a real network whose learning-rate schedule matters.

MNIST-1D (Greydanus, 2020) turns the ten digits into noisy, shifted, sheared 1-D signals of length
40. It is generated locally with ``make_dataset(get_dataset_args())`` (seed 42, about 2 s; never
``get_dataset()``, which downloads) and cached once per process, so a worker that runs many members
builds it once. Splits: the 4000 training examples are divided once, with a fixed seed, into
train (3000) and validation (1000); the 1000 ``x_test`` examples are the test set. Inputs are
standardised with the train split's mean and standard deviation.

The model: three convolutions (32 channels, kernel 5, stride 2, ReLU; length 40 → 20 → 10 → 5)
and a linear head, trained by SGD with momentum. One ``train`` step is one minibatch drawn with
replacement from the member's own ``torch.Generator`` (seeded by the member's seed and saved with
its state). ``evaluate`` returns ``val_accuracy`` (select on it, ``mode = "max"``),
``test_accuracy`` (report it) and ``val_loss``.

Defaults and why, from measurements on the shared 2-core development machine (others were running
jobs, so times are noisy): on one torch thread (``train`` and ``evaluate`` use one, see
``one_thread``) 100 train steps of batch 64 take 0.24–0.36 s, one ``evaluate`` (1000 validation
+ 1000 test examples) 15–30 ms, save + load ≈ 2 ms (a state is ≈ 110 kB); each process pays
≈ 2–3 s once to generate the data and ≈ 2 s for importing what torch's first optimizer needs.
``DEFAULT_STEPS = 3000`` is where a good schedule has converged and the gap is clear; test accuracy
(%) after 3000 steps, seed 0:

==========  =====  ====  ====  ====  ===========
lr          0.003  0.01  0.03  0.1   0.3
constant    70.4   83.9  90.4  88.8  9.6 (diverges)
cosine      –      80.6  88.6  94.5  8.9 (diverges)
==========  =====  ====  ====  ====  ===========

Cosine at 0.2 reaches 93.1 and the ``step`` shape at 0.1 reaches 95.3. Seed 1: constant 0.03 →
90.7, 0.1 → 89.7, cosine 0.1 → 94.5. So a decaying schedule beats the best constant rate by ≈ 4
points, and rates from ≈ 0.3 up diverge (``mnist1d_space`` samples [3e-3, 0.3]). The greedy trap:
lr 0.1 decayed early (the ``step`` shape squeezed into the first 1000 steps) leads cosine 0.1 on
validation from step ≈ 600 to ≈ 1200 (seed 0), then ends ≈ 2 points lower (test 92.1 and 92.3 vs
94.5 for seeds 0 and 1). ``examples/mnist1d_fire.toml`` (12 members in 2 sub-populations + 4
evaluators, 47 200 worker-steps on 2 worker processes) ran in 4–5 minutes on the busy machine
(load average 4–5); its training and evaluation alone add up to ≈ 2–3 CPU-minutes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from firepbt.examples import _schedules
from firepbt.pytorch import TorchTrainable
from firepbt.space import Fixed, Hyperparameters, LogUniform, Space

DEFAULT_BATCH = 64
DEFAULT_CHANNELS = 32
DEFAULT_MOMENTUM = 0.9
DEFAULT_STEPS = 3000
N_TRAIN = 3000
N_VAL = 1000
SPLIT_SEED = 0
SPLITS = ("train", "train+val")
LR_SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class MNIST1DData:
    """The three fixed splits as float32 inputs ``(n, 1, 40)`` and int64 labels ``(n,)``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


_DATA: MNIST1DData | None = None


def mnist1d_data() -> MNIST1DData:
    """Generate the data set once per process (about 2 s) and return the cached splits."""
    global _DATA
    if _DATA is None:
        _DATA = _generate()
    return _DATA


def _generate() -> MNIST1DData:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds the global `random` and numpy generators; leave them as they were.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x, y = np.asarray(raw["x"], dtype=np.float64), np.asarray(raw["y"], dtype=np.int64)
    if len(x) != N_TRAIN + N_VAL:
        raise RuntimeError(f"mnist1d: expected {N_TRAIN + N_VAL} training examples, got {len(x)}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    train, val = order[:N_TRAIN], order[N_TRAIN:]
    mean, std = x[train].mean(), x[train].std()

    def inputs(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32)).unsqueeze(1)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    x_test = np.asarray(raw["x_test"], dtype=np.float64)
    return MNIST1DData(
        inputs(x[train]),
        labels(y[train]),
        inputs(x[val]),
        labels(y[val]),
        inputs(x_test),
        labels(raw["y_test"]),
    )


def lr_multiplier(shape: str, progress: float) -> float:
    """The hand-tuned schedule shape at ``progress`` = step / total_steps (clipped to [0, 1]).

    ``constant``: 1; ``cosine``: ½(1 + cos πp), from 1 down to 0; ``step``: 1, then 0.1 from
    half way, 0.01 from three quarters.

    >>> lr_multiplier("cosine", 0.5), lr_multiplier("step", 0.8)
    (0.5, 0.01)
    """
    return _schedules.multiplier(shape, progress, LR_SCHEDULES)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the caller's setting. Convolutions
    this small gain nothing from more threads, and on a busy machine threads that wait for each
    other made training 20× slower (2 threads on 2 shared cores: 6 s instead of 0.3 s per 100
    steps), in the main process too (``executor = "inprocess"``, ``firepbt replay``)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def mnist1d_cnn(channels: int = DEFAULT_CHANNELS) -> torch.nn.Module:
    """Three stride-2 convolutions (kernel 5) with ReLU, then a linear head over 10 classes."""
    c = channels
    return torch.nn.Sequential(
        torch.nn.Conv1d(1, c, 5, stride=2, padding=2),
        torch.nn.ReLU(),
        torch.nn.Conv1d(c, c, 5, stride=2, padding=2),
        torch.nn.ReLU(),
        torch.nn.Conv1d(c, c, 5, stride=2, padding=2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(c * 5, 10),
    )


class MNIST1D(TorchTrainable):
    """A 1-D CNN on MNIST-1D, trained by SGD with momentum.

    Hyperparameters: ``lr`` (tuned); optional ``momentum`` (default 0.9), ``weight_decay``
    (default 0), ``batch_size`` (default 64), ``channels`` (default 32, read once at
    construction), and a hand-tuned schedule shape: ``lr_schedule`` (``"constant"``, the default,
    ``"cosine"`` or ``"step"``) with ``total_steps``, so that the learning rate at global step t
    is ``lr × lr_multiplier(lr_schedule, t / total_steps)``; the global step is saved with the
    state. ``use_split("train+val")`` trains on train and validation together.

    With ``slots = k`` (``[executor]``), a run trains k members per worker as one
    ``MNIST1DVectorised`` (see ``firepbt.execution.vectorised_pool``).

    >>> m = MNIST1D({"lr": 0.05}, seed=0)
    >>> m.train(10)
    >>> sorted(m.evaluate())
    ['test_accuracy', 'val_accuracy', 'val_loss']
    """

    vectorised = "firepbt.examples.mnist1d_vectorised:MNIST1DVectorised"

    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        self.data = mnist1d_data()  # before seeding: generation must not move torch's generator
        self.split = "train"
        self.x, self.y = self.data.x_train, self.data.y_train
        self.generator = torch.Generator().manual_seed(seed)
        self.global_step = 0
        super().__init__(hyperparameters, seed)
        _schedules.check(self.hyperparameters, LR_SCHEDULES)

    def build(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = mnist1d_cnn(int(self.hyperparameters.get("channels", DEFAULT_CHANNELS)))
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=float(self.hyperparameters["lr"]),
            momentum=float(self.hyperparameters.get("momentum", DEFAULT_MOMENTUM)),
        )
        return model, optimizer

    def set_hyperparameters(self, hyperparameters: Hyperparameters) -> None:
        _schedules.check(hyperparameters, LR_SCHEDULES)
        super().set_hyperparameters(hyperparameters)

    def use_split(self, name: str) -> None:
        if name not in SPLITS:
            raise ValueError(f"MNIST1D has no split {name!r}; choose one of {SPLITS}")
        self.split = name
        d = self.data
        if name == "train":
            self.x, self.y = d.x_train, d.y_train
        else:
            self.x, self.y = torch.cat([d.x_train, d.x_val]), torch.cat([d.y_train, d.y_val])

    def current_lr(self) -> float:
        """The learning rate the next step uses: ``lr`` times the schedule shape."""
        h = self.hyperparameters
        shape = str(h.get("lr_schedule", "constant"))
        if shape == "constant":
            return float(h["lr"])
        return float(h["lr"]) * lr_multiplier(shape, self.global_step / float(h["total_steps"]))

    def train(self, steps: int) -> None:
        batch = int(self.hyperparameters.get("batch_size", DEFAULT_BATCH))
        on = self.device
        self.model.train()
        with one_thread():
            for _ in range(steps):
                lr = self.current_lr()
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                index = torch.randint(len(self.y), (batch,), generator=self.generator)
                self.optimizer.zero_grad()
                x, y = self.x[index].to(on), self.y[index].to(on)
                loss = torch.nn.functional.cross_entropy(self.model(x), y)
                loss.backward()  # type: ignore[no-untyped-call]
                self.optimizer.step()
                self.global_step += 1

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        d, on = self.data, self.device  # the data stays on the CPU; batches move to the device
        y_val, y_test = d.y_val.to(on), d.y_test.to(on)
        with one_thread():
            val_logits = self.model(d.x_val.to(on))
            test_logits = self.model(d.x_test.to(on))
        return {
            "val_accuracy": float((val_logits.argmax(1) == y_val).float().mean()),
            "test_accuracy": float((test_logits.argmax(1) == y_test).float().mean()),
            "val_loss": float(torch.nn.functional.cross_entropy(val_logits, y_val)),
        }

    def extra_state(self) -> Any:
        return {"generator": self.generator.get_state(), "global_step": self.global_step}

    def load_extra_state(self, state: Any) -> None:
        self.generator.set_state(state["generator"])
        self.global_step = int(state["global_step"])


def mnist1d_space() -> Space:
    """``lr`` log-uniform on [3e-3, 0.3] (bounds [1e-5, 1]) with momentum fixed at 0.9."""
    return Space(
        {"lr": LogUniform(3e-3, 0.3, bounds=(1e-5, 1.0)), "momentum": Fixed(DEFAULT_MOMENTUM)}
    )
