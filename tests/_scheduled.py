"""TorchTrainables with learning-rate schedulers, for the scheduler tests (importable by
workers). Each records, at every optimizer step, the learning rate and momentum its param groups
held and the scheduler's step, and reports the last of them with its score."""

from __future__ import annotations

from typing import Any

import torch

from firepbt.pytorch import TorchTrainable

TOTAL = 120  # the run's budget: the cosine's horizon


class Cosine(TorchTrainable):
    """SGD with momentum, two param groups (the bias at a tenth of the lr, without decay) and a
    cosine schedule over the run's budget."""

    def build(self) -> Any:
        data = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=data)
        self.y = self.x @ torch.randn(4, 1, generator=data)
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(
            [
                {"params": [model.weight], "weight_decay": 1e-3},
                {"params": [model.bias], "lr": 0.01, "weight_decay": 0.0},
            ],
            lr=0.1,
            momentum=0.9,
        )
        self.used: list[tuple[int, float, float, float]] = []
        return model, optimizer, self.schedule(optimizer)

    def schedule(self, optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=TOTAL)

    def train(self, steps: int) -> None:
        for _ in range(steps):
            self.optimizer.zero_grad()
            torch.nn.functional.mse_loss(self.model(self.x), self.y).backward()
            weight, bias = self.optimizer.param_groups
            assert self.scheduler is not None
            self.used.append(
                (self.scheduler.last_epoch, weight["lr"], bias["lr"], weight["momentum"])
            )
            self.optimizer.step()
            self.scheduler.step()

    def evaluate(self) -> dict[str, float]:
        with torch.no_grad():
            loss = torch.nn.functional.mse_loss(self.model(self.x), self.y).item()
        epoch, lr, bias_lr, momentum = self.used[-1]
        return {
            "loss": loss,
            "epoch": float(epoch),
            "lr_used": lr,
            "bias_lr_used": bias_lr,
            "momentum_used": momentum,
            "decay_used": float(self.optimizer.param_groups[1]["weight_decay"]),
        }


class WarmupCosine(Cosine):
    """A linear warm-up then a cosine: a SequentialLR of two schedulers."""

    def schedule(self, optimizer: torch.optim.Optimizer) -> Any:
        lr = torch.optim.lr_scheduler
        warmup = lr.LinearLR(optimizer, start_factor=0.1, total_iters=20)
        cosine = lr.CosineAnnealingLR(optimizer, T_max=TOTAL - 20)
        return lr.SequentialLR(optimizer, [warmup, cosine], milestones=[20])


class Unmanaged(Cosine):
    """A scheduler built and stepped, but not returned from build()."""

    def build(self) -> Any:
        model, optimizer, scheduler = super().build()
        self.own = scheduler
        return model, optimizer

    def train(self, steps: int) -> None:
        for _ in range(steps):
            self.optimizer.zero_grad()
            torch.nn.functional.mse_loss(self.model(self.x), self.y).backward()
            self.optimizer.step()
            self.own.step()

    def evaluate(self) -> dict[str, float]:
        with torch.no_grad():
            return {"loss": torch.nn.functional.mse_loss(self.model(self.x), self.y).item()}


class OneCycle(Cosine):
    def schedule(self, optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=TOTAL)
