"""The digits port as a Lightning module, written as Lightning users write one: dropout, a
shuffling DataLoader, SGD with momentum and a cosine schedule over the trainer's steps; and the
firepbt glue around it (``Digits``). Importable by workers."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from _digits import datasets
from torch import nn
from torch.utils.data import DataLoader

from firepbt.lightning import LightningTrainable


class DigitsModule(pl.LightningModule):
    def __init__(self, lr: float = 0.05, momentum: float = 0.9) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))
        self.used = (0.0, 0.0)

    def training_step(self, batch, batch_idx):
        x, y = batch
        group = self.trainer.optimizers[0].param_groups[0]
        self.used = (group["lr"], group["momentum"])  # what this step runs with, for the tests
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_acc", (logits.argmax(1) == y).float().mean())
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("lr_used", self.used[0])
        self.log("momentum_used", self.used[1])

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(
            self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum
        )
        steps = self.trainer.estimated_stepping_batches
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


# The glue: what a user writes around their module and data.
class Digits(LightningTrainable):
    def module(self):
        return DigitsModule(**self.hyperparameters)

    def data(self):
        train, val = datasets()
        return DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=256)
