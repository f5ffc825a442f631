"""MNIST-1D, vectorised: k members of :class:`~firepbt.examples.mnist1d.MNIST1D` in one process.

Each slot is exactly an ``MNIST1D`` member: the same CNN (``mnist1d_cnn``), data
(``mnist1d_data()``), SGD with momentum (default 0.9), minibatches drawn with
``torch.randint(len(y), (batch,), generator=…)`` from the member's own generator, learning-rate
schedule shapes (``lr_schedule``, ``total_steps``), ``use_split`` and metrics (``val_accuracy``,
``test_accuracy``, ``val_loss``); a slot's state loads into ``MNIST1D`` and the reverse. Training
and evaluation run on one torch thread, as ``MNIST1D`` does.

What differs: ``channels`` and ``batch_size`` are the population's (given when it is built; a
member whose hyperparameters ask for others is refused), and ``use_split`` switches every slot.
Results match ``MNIST1D`` up to float rounding: the batched convolutions add in another order
(weights differ by ≈ 1e-7 after 60 steps; differences grow slowly over training).

>>> population = MNIST1DVectorised(slots=2)
>>> population.assign(0, {"lr": 0.05}, seed=0)
>>> population.assign(1, {"lr": 0.1, "momentum": 0.5}, seed=1)
>>> population.train(10)
>>> sorted(population.evaluate()[1])
['test_accuracy', 'val_accuracy', 'val_loss']
"""

from __future__ import annotations

import torch

from firepbt.examples import _schedules
from firepbt.examples.mnist1d import (
    DEFAULT_BATCH,
    DEFAULT_CHANNELS,
    DEFAULT_MOMENTUM,
    LR_SCHEDULES,
    MNIST1D,
    SPLITS,
    lr_multiplier,
    mnist1d_cnn,
    mnist1d_data,
    one_thread,
)
from firepbt.pytorch_vectorised import TorchVectorised
from firepbt.space import Hyperparameters
from firepbt.vectorised import Metrics


class MNIST1DVectorised(TorchVectorised):
    """``slots`` MNIST-1D members with ``channels`` and ``batch_size`` shared by all of them."""

    member = MNIST1D

    @classmethod
    def build_population(cls, slots: int, hyperparameters: Hyperparameters) -> MNIST1DVectorised:
        """The population for members with these ``channels`` and ``batch_size`` (defaults: 32
        and 64), as the vectorised executor's workers build it."""
        return cls(
            slots,
            channels=int(hyperparameters.get("channels", DEFAULT_CHANNELS)),
            batch_size=int(hyperparameters.get("batch_size", DEFAULT_BATCH)),
        )

    def __init__(
        self, slots: int, *, channels: int = DEFAULT_CHANNELS, batch_size: int = DEFAULT_BATCH
    ) -> None:
        self.data = mnist1d_data()
        self.channels = channels
        self.split = "train"
        super().__init__(
            slots,
            lambda h: mnist1d_cnn(channels),
            torch.nn.functional.cross_entropy,
            self.data.x_train,
            self.data.y_train,
            optimizer="sgd",
            optimizer_defaults={"momentum": DEFAULT_MOMENTUM},
            batch_size=batch_size,
        )

    def check_hyperparameters(self, hyperparameters: Hyperparameters) -> None:
        super().check_hyperparameters(hyperparameters)
        channels = hyperparameters.get("channels", DEFAULT_CHANNELS)
        if not isinstance(channels, (int, float)) or int(channels) != self.channels:
            raise ValueError(
                f"channels: every slot of this population has {self.channels} channels, got "
                f"{channels!r}; build MNIST1DVectorised(channels={channels!r}) for those"
            )
        _schedules.check(hyperparameters, LR_SCHEDULES)

    def use_split(self, name: str) -> None:
        """Train every slot on ``"train"`` or ``"train+val"`` (as ``MNIST1D.use_split``)."""
        if name not in SPLITS:
            raise ValueError(f"MNIST1DVectorised has no split {name!r}; choose one of {SPLITS}")
        self.split = name
        d = self.data
        if name == "train":
            self.inputs, self.targets = d.x_train, d.y_train
        else:
            self.inputs = torch.cat([d.x_train, d.x_val])
            self.targets = torch.cat([d.y_train, d.y_val])

    def learning_rate(self, slot: int) -> float:
        """``lr`` times the schedule shape at the slot's global step (``MNIST1D.current_lr``)."""
        h = self.hyperparameters_of(slot)
        shape = str(h.get("lr_schedule", "constant"))
        if shape == "constant":
            return float(h["lr"])
        progress = self.global_steps[slot] / float(h["total_steps"])
        return float(h["lr"]) * lr_multiplier(shape, progress)

    def train_slots(self, slots: tuple[int, ...], steps: int) -> None:
        with one_thread():
            super().train_slots(slots, steps)

    def evaluate_slots(self, slots: tuple[int, ...]) -> dict[int, Metrics]:
        d, on = self.data, self.device
        y_val, y_test = d.y_val.to(on), d.y_test.to(on)
        with one_thread():
            val_logits = self.forward(d.x_val, slots)
            test_logits = self.forward(d.x_test, slots)
        metrics: dict[int, Metrics] = {}
        for i, slot in enumerate(slots):
            val, test = val_logits[i], test_logits[i]
            metrics[slot] = {
                "val_accuracy": float((val.argmax(1) == y_val).float().mean()),
                "test_accuracy": float((test.argmax(1) == y_test).float().mean()),
                "val_loss": float(torch.nn.functional.cross_entropy(val, y_val)),
            }
        return metrics
