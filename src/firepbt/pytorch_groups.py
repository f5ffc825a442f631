"""Tuned values in a torch optimizer's param groups, for :class:`firepbt.pytorch.TorchTrainable`
and the framework adapters.

Every hyperparameter whose name is a key of the optimizer's param groups (``lr``, ``momentum``,
``weight_decay``, ``betas``, …) is written into the groups. The tuned value is the *base*: each
group keeps the ratio to it that the optimizer was built with (``group_factors``), and with a
managed learning-rate scheduler a tuned ``lr`` is the scheduler's base learning rate, which its
shape multiplies (``rebase``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from firepbt.reads import ReadRecorder
from firepbt.space import Hyperparameters


class TunedOptimizer:
    """An optimizer, its managed schedulers and each param group's factors, taken as built.

    Args:
        optimizer: The optimizer, as built (its groups' values give the factors).
        scheduler: Its learning-rate scheduler, if any (``managed_schedulers`` checks it).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any = None) -> None:
        self.optimizer = optimizer
        self.schedulers = managed_schedulers(scheduler, optimizer)
        groups = optimizer.param_groups
        self.factors = {k: group_factors(groups, k) for k in {k for g in groups for k in g}}
        for key in ("params", "initial_lr"):
            self.factors.pop(key, None)
        if self.schedulers:  # the learning rate as built is the schedulers' base, not its shape
            bases = [{"lr": lr} for lr in self.schedulers[0].base_lrs]
            self.factors["lr"] = group_factors(bases, "lr")

    def apply(self, h: Hyperparameters) -> None:
        """Write every hyperparameter named like a param-group key into the param groups, each
        scaled by its group's factor. A managed scheduler's base learning rates take a tuned
        ``lr``, and each group's learning rate keeps the scheduler's current shape (its lr over
        its base). Names written are marked read in a ``ReadRecorder``."""
        groups = self.optimizer.param_groups
        for name, value in dict.items(h):  # not h.items(): that reads every name
            factors = self.factors.get(name)
            if factors is None:
                continue
            if isinstance(h, ReadRecorder):
                h.read.add(name)  # an optimizer setting: used
            for index, (group, factor) in enumerate(zip(groups, factors, strict=True)):
                scaled = factor != 1.0 and isinstance(value, (int, float))
                value_here = value * factor if scaled else value
                if name == "lr" and self.schedulers and isinstance(value, (int, float)):
                    value_here = rebase(self.schedulers, index, group, value * factor)
                current = group.get(name)
                if isinstance(current, torch.Tensor):
                    # e.g. a tensor lr (capturable / fused optimizers): update in place
                    current.fill_(value_here)
                elif isinstance(current, tuple) and isinstance(value, (list, tuple)):
                    group[name] = tuple(value)  # betas from a config arrive as a list
                else:
                    group[name] = value_here
        for scheduler in self.schedulers:  # what get_last_lr() reports
            scheduler._last_lr = [float(g["lr"]) for g in groups]


# Schedulers that keep learning rates of their own (a peak, a plateau's history) beside
# base_lrs: a tuned lr cannot be their base.
_UNMANAGEABLE = ("OneCycleLR", "CyclicLR", "ReduceLROnPlateau")


def managed_schedulers(scheduler: Any, optimizer: torch.optim.Optimizer) -> list[LRScheduler]:
    """The schedulers whose ``base_lrs`` a tuned ``lr`` sets: ``scheduler`` itself, or the parts
    of a ``SequentialLR`` or ``ChainedScheduler``. ``ValueError`` for one firepbt cannot manage."""
    if scheduler is None:
        return []
    parts = list(getattr(scheduler, "_schedulers", None) or [scheduler])
    for part in parts:
        name = type(part).__name__
        if name in _UNMANAGEABLE or not isinstance(getattr(part, "base_lrs", None), list):
            raise ValueError(
                f"build() returned a {name}, which keeps learning rates of its own: firepbt "
                "cannot make a tuned lr its base. Use a LambdaLR (or another scheduler that "
                "scales base_lrs) with the same shape"
            )
        if _unwrapped(part.optimizer) is not _unwrapped(optimizer):
            raise ValueError(f"the {name} given schedules another optimizer than its own")
    return parts


def _unwrapped(optimizer: Any) -> Any:
    """The torch optimizer inside a wrapper (accelerate's ``AcceleratedOptimizer``)."""
    return getattr(optimizer, "optimizer", optimizer)


def rebase(schedulers: list[LRScheduler], index: int, group: dict[str, Any], base: float) -> float:
    """Make ``base`` group ``index``'s base learning rate in every scheduler; return the group's
    learning rate: ``base`` times the schedule's current shape (its lr over its old base)."""
    old = schedulers[0].base_lrs[index]
    current = group["lr"].item() if isinstance(group["lr"], torch.Tensor) else group["lr"]
    shape = current / old if old else 1.0
    for scheduler in schedulers:
        scheduler.base_lrs[index] = base
    group["initial_lr"] = base
    return float(base * shape)


def group_factors(groups: list[dict[str, Any]], name: str) -> list[float]:
    """What each param group's ``name`` is, as a multiple of the tuned value.

    The tuned value is the first group's that was built non-zero (the *base*), and the others
    keep their ratio to it: a group built at a tenth of the base learning rate stays at a tenth,
    and a group built with ``weight_decay=0`` (biases, norms) stays at 0. Where no group was
    built non-zero, or a value is not a number (``betas``), every group takes the tuned value.
    """
    numbers: list[float] = []
    for group in groups:
        value = group.get(name)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [1.0] * len(groups)
        numbers.append(float(value))
    base = next((v for v in numbers if v != 0), None)
    if base is None:
        return [1.0] * len(groups)
    return [v / base for v in numbers]
