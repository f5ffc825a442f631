"""PyTorch Lightning adapter: a member trained by Lightning's own ``Trainer``.

Import this module only where Lightning is installed (``pip install firepbt[lightning]``).

A subclass of :class:`LightningTrainable` returns its ``LightningModule``, built from
``self.hyperparameters``, and its training and validation data; the adapter does the rest:

- **one continuous fit per member.** Lightning's fit loop runs, in a thread of the worker, to
  the run's budget (``max_steps``: a schedule that reads ``trainer.estimated_stepping_batches``
  spans the run, not a segment), and pauses at each ``train(steps)`` boundary. Epochs,
  epoch-interval schedulers and the data order are Lightning's, as without firepbt;
- **hyperparameters after the restore.** Lightning builds the optimizers and schedulers with
  ``configure_optimizers`` and then restores a checkpoint's (the donor's, after an exploit),
  values included. The adapter writes the member's hyperparameters into the param groups
  *after* that restore (lr, momentum, betas, weight decay, …), keeping each group's ratio as
  built and a scheduler's shape (:class:`firepbt.pytorch_groups.TunedOptimizer`);
- **checkpoints are Lightning's** (``trainer.save_checkpoint``: weights, optimizers,
  schedulers, loops and the position in the training data), so a member resumed on another
  worker, after a resume or in a replay goes on mid-epoch exactly where it was:
  the training data is wrapped so that Lightning can save and restore its position
  (``ResumableBatches``), and Lightning does not warn;
- **evaluation** is ``Trainer.validate`` on a copy of the module: the metrics the module logs
  in ``validation_step`` are the member's metrics;
- the best member leaves as a Lightning ``.ckpt`` (``save_lightning_checkpoint``).

Lightning's own output (banners, warnings) goes to the worker's log (``RUN_DIR/logs``).
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch

from firepbt import random_state
from firepbt.paused_loop import PausedLoop
from firepbt.pytorch_groups import TunedOptimizer
from firepbt.reads import unrecorded
from firepbt.space import Hyperparameters
from firepbt.trainable import Trainable

QUIET: dict[str, Any] = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


class LightningTrainable(Trainable):
    """Base class for a member trained by Lightning.

    A subclass implements ``module`` (the ``LightningModule``, built from
    ``self.hyperparameters``) and ``data`` (the training and validation data loaders). The
    module logs the metrics to select on in ``validation_step`` (``self.log("val_acc", ...)``).
    ``trainer_options`` adds keyword arguments to Lightning's ``Trainer``.

    Args:
        hyperparameters (dict[str, Any]): The member's starting hyperparameters.
        seed: The member's seed (firepbt has seeded the global generators with it).
    """

    # More keyword arguments for Lightning's Trainer (e.g. {"gradient_clip_val": 1.0}).
    trainer_options: dict[str, Any] = {}

    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        super().__init__(hyperparameters, seed)
        train, self._val = self.data()
        self.batches = ResumableBatches(train)
        self.lightning = self.module()
        self.step = 0
        self._checkpoint: dict[str, Any] | None = None  # Lightning's, to resume from
        self._factors: list[dict[str, list[float]]] | None = None  # per optimizer, as built
        self._fit: _Fit | None = None
        self._validator: pl.Trainer | None = None

    @abstractmethod
    def module(self) -> pl.LightningModule:
        """The member's ``LightningModule``, built from ``self.hyperparameters``."""

    @abstractmethod
    def data(self) -> tuple[Iterable[Any], Iterable[Any]]:
        """The training data loader (its length is an epoch) and the validation data loader."""

    # -- the contract ------------------------------------------------------------------------

    def set_hyperparameters(self, hyperparameters: Hyperparameters) -> None:
        """Take new hyperparameters. Where they differ from those the module was built with, the
        module is built anew from them and goes on from the member's state at its next
        ``train``; the optimizers take them when training resumes."""
        changed = unrecorded(hyperparameters) != unrecorded(self.hyperparameters)
        super().set_hyperparameters(hyperparameters)
        if changed:
            if self._fit is not None:
                self._checkpoint = self._fit.checkpoint()
                self._close_fit()
            with random_state.kept():  # built as on a fresh worker: no draws of the member's
                self.lightning = self.module()
            if self._checkpoint is not None:
                self.lightning.load_state_dict(self._checkpoint["state_dict"])

    def train(self, steps: int) -> None:
        """Train ``steps`` more optimizer steps in the member's fit (started at the first call,
        from the member's checkpoint if it has one)."""
        if self._fit is None:
            self._fit = _Fit(self)
        self._fit.advance(self.step + steps)
        self.step += steps

    def evaluate(self) -> dict[str, float]:
        """Validate a copy of the module on the validation data.

        Returns:
            Every metric the module logged in ``validation_step``.
        """
        trainer = self.lightning._trainer  # the copy must not take the fit's trainer along
        module = copy.deepcopy(self.lightning, memo={id(trainer): None} if trainer else None)
        if self._validator is None:
            options = {k: v for k, v in self.trainer_options.items() if k != "callbacks"}
            self._validator = pl.Trainer(
                **QUIET, accelerator=self._accelerator(), devices=1, **options
            )
        (metrics,) = self._validator.validate(module, dataloaders=self._val, verbose=False)
        return {name: float(value) for name, value in metrics.items()}

    def save(self) -> dict[str, Any]:
        """Lightning's checkpoint of the member (``trainer.save_checkpoint``) and its step."""
        if self._fit is not None:
            self._checkpoint = self._fit.checkpoint()
        return {
            "lightning": self._checkpoint,
            "module": None if self._checkpoint else self.lightning.state_dict(),
            "step": self.step,
            "factors": self._factors,
        }

    def load(self, state: Any) -> None:
        """Go on from a saved state at the next ``train`` (the weights are loaded at once)."""
        self._close_fit()
        self._checkpoint, self.step = state["lightning"], state["step"]
        self._factors = state["factors"]
        weights = self._checkpoint["state_dict"] if self._checkpoint else state["module"]
        self.lightning.load_state_dict(weights)

    def close(self) -> None:
        """Stop the member's paused fit (its thread ends)."""
        self._close_fit()

    def save_lightning_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write the member's state as a Lightning ``.ckpt``, which
        ``YourModule.load_from_checkpoint(path)`` and ``Trainer.fit(ckpt_path=path)`` read."""
        if self._fit is not None:
            self._checkpoint = self._fit.checkpoint()
        if self._checkpoint is None:
            raise ValueError("the member has not trained yet: there is no checkpoint to write")
        torch.save(self._checkpoint, path)

    # -- inside -------------------------------------------------------------------------------

    def _accelerator(self) -> str:
        return "gpu" if self.device == "cuda" else "cpu"

    def _close_fit(self) -> None:
        if self._fit is not None:
            self._fit.abandon()
            self._fit = None

    def apply_hyperparameters(self, trainer: pl.Trainer) -> None:
        """Write the member's hyperparameters into the fit's optimizers (called by the fit
        once Lightning has built them and restored its checkpoint into them)."""
        schedulers: dict[int, Any] = {}
        for config in trainer.lr_scheduler_configs:
            schedulers.setdefault(id(config.scheduler.optimizer), config.scheduler)
        tuned = [TunedOptimizer(o, schedulers.get(id(o))) for o in trainer.optimizers]
        if self._factors is None:  # the first fit of the member: the optimizers as built
            self._factors = [t.factors for t in tuned]
        for t, factors in zip(tuned, self._factors, strict=True):
            t.factors = factors
            t.apply(self.hyperparameters)


class _Fit(pl.Callback):
    """A member's fit: Lightning's loop in a ``PausedLoop``, paused at each ``train`` boundary."""

    def __init__(self, owner: LightningTrainable) -> None:
        self.owner = owner
        budget = owner.total_steps if owner.total_steps is not None else -1
        owned: dict[str, Any] = {
            **QUIET,
            "max_steps": budget,
            "max_epochs": -1,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 0,
            "accelerator": owner._accelerator(),
            "devices": 1,
        }
        options = dict(owner.trainer_options)
        callbacks = [*(options.pop("callbacks", None) or []), self]  # theirs see each step first
        clash = sorted(set(options) & set(owned))
        if clash:
            raise ValueError(
                f"LightningTrainable.trainer_options: firepbt sets {', '.join(clash)} itself "
                "(the fit runs to the run's budget and pauses between segments); leave them out"
            )
        self.trainer = pl.Trainer(**owned, callbacks=callbacks, **options)
        self.loop = PausedLoop(self._fit, lambda: self.trainer.global_step, "Lightning")
        self._resume: str | None = None

    def advance(self, target: int) -> None:
        self.loop.advance(target)

    def checkpoint(self) -> dict[str, Any]:
        """Lightning's checkpoint of the paused fit."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "member.ckpt")
            self.trainer.save_checkpoint(path)
            state: dict[str, Any] = torch.load(path, weights_only=False)
        return state

    def abandon(self) -> None:
        self.loop.abandon()

    def _fit(self) -> None:
        owner = self.owner
        self._resume = None
        if owner._checkpoint is not None:  # removed once Lightning has read it (on_train_start)
            fd, self._resume = tempfile.mkstemp(prefix="firepbt-", suffix=".ckpt")
            os.close(fd)
            torch.save(owner._checkpoint, self._resume)
        try:
            self.trainer.fit(
                owner.lightning,
                train_dataloaders=owner.batches,
                ckpt_path=self._resume,
                weights_only=False,  # it holds random states: firepbt wrote it just now
            )
        finally:
            self._forget_resume()

    def _forget_resume(self) -> None:
        if self._resume is not None:
            with contextlib.suppress(OSError):
                os.remove(self._resume)
            self._resume = None

    # -- hooks, in the fit's thread ---------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._forget_resume()  # Lightning has restored everything from it
        self.owner.apply_hyperparameters(trainer)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.owner.batches.trained = batch_idx + 1
        self.loop.pause_if_due()


def _loadable(value: Any) -> Any:
    """``value`` with numpy arrays as lists: a checkpoint that ``torch.load`` reads with its
    default ``weights_only=True`` (as ``LightningModule.load_from_checkpoint`` does)."""
    if isinstance(value, dict):
        return {k: _loadable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_loadable(v) for v in value)
    tolist = getattr(value, "tolist", None)
    if tolist is not None and type(value).__module__.startswith("numpy"):
        return tolist()
    return value


class ResumableBatches:
    """A training data loader whose position Lightning can save and restore mid-epoch.

    Each pass iterates the loader afresh (a shuffling loader reshuffles, drawing from the
    member's generators). The state is the global random state when the pass began and the
    number of batches trained in it; restored, the pass is rebuilt from that random state and
    the batches already trained are skipped, and the generators are then put back as they were.

    Args:
        loader: The training data loader (its length is one epoch).
    """

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        self.trained = 0  # batches trained in this pass (set by the fit after each batch)
        self._started: random_state.RandomState | None = None
        self._restore: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        restore, self._restore = self._restore, None
        if restore is not None and restore["trained"] > 0 and restore["random"] is not None:
            now = random_state.capture()
            random_state.restore(restore["random"])
            batches = iter(self.loader)
            for _ in range(restore["trained"]):
                next(batches)
            random_state.restore(now)
            self._started, self.trained = restore["random"], restore["trained"]
        else:
            self._started, self.trained = random_state.capture(), 0
            batches = iter(self.loader)
        yield from batches

    def state_dict(self) -> dict[str, Any]:
        return {"random": _loadable(self._started), "trained": self.trained}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restore = state
