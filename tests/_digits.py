"""A port of ordinary PyTorch code, written as people write it: an MLP with dropout on
scikit-learn's digits, a shuffling DataLoader, SGD with momentum, and (``DigitsCosine``) a cosine
schedule. Nothing in it seeds a generator or saves random state (importable by workers)."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from firepbt.pytorch import TorchTrainable

BUDGET = 300  # the runs' total steps: the cosine's horizon


def datasets() -> tuple[TensorDataset, TensorDataset]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    return TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])


class Digits(TorchTrainable):
    def build(self):
        train, val = datasets()
        self.loader = DataLoader(train, batch_size=32, shuffle=True)
        self.val = val.tensors
        self.used = (0.0, 0.0, -1)  # what the optimizer ran with at the last step, for the tests
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return model, optimizer

    def train(self, steps):
        self.model.train()
        done = 0
        while done < steps:
            for x, y in self.loader:
                group = self.optimizer.param_groups[0]
                epoch = self.scheduler.last_epoch if self.scheduler is not None else -1
                self.used = (group["lr"], group["momentum"], epoch)
                self.optimizer.zero_grad()
                nn.functional.cross_entropy(self.model(x), y).backward()
                self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                done += 1
                if done == steps:
                    break

    def evaluate(self):
        self.model.eval()
        with torch.no_grad():
            x, y = self.val
            logits = self.model(x)
            accuracy = (logits.argmax(1) == y).float().mean().item()
            loss = nn.functional.cross_entropy(logits, y).item()
        lr, momentum, epoch = self.used
        return {
            "accuracy": accuracy,
            "loss": loss,
            "lr_used": lr,
            "momentum_used": momentum,
            "epoch": float(epoch),
        }


class DigitsCosine(Digits):
    def build(self):
        model, optimizer = super().build()
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=BUDGET)
        return model, optimizer, scheduler
