"""Hugging Face adapter: a member trained by ``transformers.Trainer``.

Import this module only where transformers is installed (``pip install firepbt[huggingface]``).

A subclass of :class:`HFTrainable` returns its model (``model_init``), its
``TrainingArguments`` and its datasets; the adapter does the rest:

- **one continuous ``Trainer.train()`` per member**, in a thread of the worker, to the run's
  budget (``max_steps``: the default linear schedule, or a cosine, decays over the run, not to
  0 at the end of each segment), paused wherever a segment or an evaluation ends;
- **hyperparameters after the restore.** A name of the space that is a ``TrainingArguments``
  field (``learning_rate``, ``weight_decay``, ``warmup_ratio``, …) sets it when the member's
  trainer is built; ``learning_rate`` (or ``lr``), ``weight_decay`` and any other param-group
  key are also written into the optimizer's param groups *after* the Trainer restores a
  checkpoint (the donor's, after an exploit), with the scheduler's base learning rates, so
  that the schedule's shape multiplies the member's own value
  (:class:`firepbt.pytorch_groups.TunedOptimizer`; the no-decay group stays at 0);
- **checkpoints are the Trainer's own** (model, optimizer, scheduler, random states and
  trainer state, the files of a ``checkpoint-N`` directory), so a member resumed on another
  worker, after a resume or in a replay goes on exactly, the Trainer skipping the batches it
  had trained;
- **evaluation** is ``Trainer.evaluate()``; its metrics without the timings
  (``eval_runtime``, ``…_per_second``), which differ from run to run;
- the best member leaves as a directory that ``from_pretrained`` loads
  (``save_pretrained``).

The Trainer's own output goes to the worker's log (``RUN_DIR/logs``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import weakref
from abc import abstractmethod
from pathlib import Path
from typing import Any, cast

import torch
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments

from firepbt import random_state
from firepbt.paused_loop import PausedLoop
from firepbt.pytorch_groups import TunedOptimizer
from firepbt.reads import unrecorded
from firepbt.space import Hyperparameters
from firepbt.trainable import Trainable

ALIASES = {"learning_rate": "lr"}  # a TrainingArguments name -> the param-group key it sets
# TrainingArguments fields firepbt sets itself
OWNED = (
    "output_dir", "max_steps", "seed", "save_strategy", "eval_strategy", "logging_strategy",
    "report_to", "disable_tqdm", "use_cpu",
)  # fmt: skip
# fields that change what a step is: a checkpoint's data position would be read wrongly
SHAPING = ("per_device_train_batch_size", "train_batch_size", "gradient_accumulation_steps")
_TIMINGS = ("_runtime", "_per_second")


class HFTrainable(Trainable):
    """Base class for a member trained by Hugging Face's ``Trainer``.

    A subclass implements ``model_init`` (the model, built from a config: nothing is
    downloaded unless you do it), ``arguments`` (``TrainingArguments``; firepbt sets
    ``output_dir``, ``max_steps``, ``seed`` and turns off saving, evaluating and reporting on
    its own schedule) and ``datasets`` (training and evaluation). ``trainer_options`` adds
    keyword arguments to ``Trainer`` (``data_collator``, ``compute_metrics``, …).

    Args:
        hyperparameters (dict[str, Any]): The member's starting hyperparameters.
        seed: The member's seed: the Trainer's ``seed``.
    """

    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.model = self.model_init()
        self.step = 0
        self._files: dict[str, bytes] | None = None  # the Trainer's checkpoint, to resume from
        self._factors: dict[str, list[float]] | None = None  # the optimizer's, as built
        self._run: _Run | None = None

    @abstractmethod
    def model_init(self) -> PreTrainedModel:
        """The member's model, built from ``self.hyperparameters`` where it reads any."""

    @abstractmethod
    def arguments(self) -> TrainingArguments:
        """The ``TrainingArguments`` the member trains with."""

    @abstractmethod
    def datasets(self) -> tuple[Any, Any]:
        """The training and evaluation datasets."""

    def trainer_options(self) -> dict[str, Any]:
        """More keyword arguments for ``Trainer`` (e.g. ``compute_metrics``)."""
        return {}

    # -- the contract ------------------------------------------------------------------------

    def set_hyperparameters(self, hyperparameters: Hyperparameters) -> None:
        """Take new hyperparameters: the optimizer takes them at once; where a value that only
        a new Trainer or model would read changes, the member goes on from its state in a new
        one at the next ``train``."""
        before = unrecorded(self.hyperparameters)
        super().set_hyperparameters(hyperparameters)
        if self._run is not None and before != unrecorded(self.hyperparameters):
            self._files = self._run.checkpoint()
            self._close_run()
            with random_state.kept():  # built as on a fresh worker: no draws of the member's
                self.model = self.model_init()

    def train(self, steps: int) -> None:
        """Train ``steps`` more optimizer steps in the member's ``Trainer.train()``."""
        if self._run is None:
            self._run = _Run(self)
        self._run.advance(self.step + steps)
        self.step += steps

    def evaluate(self) -> dict[str, float]:
        """``Trainer.evaluate()`` on the evaluation dataset, without its timings."""
        if self._run is None:
            self._run = _Run(self)
        metrics = self._run.trainer.evaluate()
        return {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not k.endswith(_TIMINGS)
        }

    def save(self) -> dict[str, Any]:
        """The files of the Trainer's checkpoint, and the member's step."""
        if self._run is not None and self._run.started:
            self._files = self._run.checkpoint()
        model = None if self._files else {k: v.cpu() for k, v in self.model.state_dict().items()}
        return {"files": self._files, "model": model, "step": self.step, "factors": self._factors}

    def load(self, state: Any) -> None:
        """Go on from a saved state at the next ``train`` (the weights are loaded at once)."""
        self._close_run()
        self._files, self.step, self._factors = state["files"], state["step"], state["factors"]
        if self._files is None:
            self.model.load_state_dict(state["model"])
            return
        with tempfile.TemporaryDirectory() as tmp:
            _write(self._files, tmp)
            self.model = type(self.model).from_pretrained(tmp)

    def close(self) -> None:
        """Stop the member's paused training (its thread ends) and remove its files."""
        self._close_run()

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Write the member's model where ``from_pretrained(path)`` loads it."""
        self.model.save_pretrained(path)

    # -- inside -------------------------------------------------------------------------------

    def _close_run(self) -> None:
        if self._run is not None:
            self._run.close()
            self._run = None

    def apply_hyperparameters(self, trainer: Trainer) -> None:
        """Write the member's hyperparameters into the optimizer (after the Trainer restored
        its checkpoint into it)."""
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        scheduler = getattr(trainer.lr_scheduler, "scheduler", trainer.lr_scheduler)
        tuned = TunedOptimizer(cast(torch.optim.Optimizer, optimizer), scheduler)
        if self._factors is None:
            self._factors = tuned.factors
        tuned.factors = self._factors
        h = self.hyperparameters
        named = {ALIASES.get(k, k): v for k, v in dict.items(h)}
        tuned.apply(named)
        for name in dict.keys(h):  # read through the alias
            if ALIASES.get(name, name) in tuned.factors and hasattr(h, "read"):
                h.read.add(name)


def _read(directory: str) -> dict[str, bytes]:
    root = Path(directory)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _write(files: dict[str, bytes], directory: str) -> None:
    for name, data in files.items():
        target = Path(directory) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


class _Run(TrainerCallback):
    """A member's ``Trainer.train()`` in a ``PausedLoop``, paused at each boundary."""

    def __init__(self, owner: HFTrainable) -> None:
        self.owner = owner
        self.directory = tempfile.mkdtemp(prefix="firepbt-hf-")
        # removed by close(), or when the worker process ends with the trainable still alive
        weakref.finalize(self, shutil.rmtree, self.directory, True)
        fields = {f.name for f in dataclasses.fields(TrainingArguments)}
        h = owner.hyperparameters
        refused = [k for k in dict.keys(h) if k in OWNED + SHAPING]
        if refused:
            raise ValueError(
                f"HFTrainable: {', '.join(map(repr, refused))} cannot be tuned: firepbt sets "
                f"{', '.join(OWNED)} itself, and {', '.join(SHAPING)} change what a step is, so "
                "a member resumed from a checkpoint would skip the wrong batches"
            )
        tuned = {k: h[k] for k in dict.keys(h) if k in fields}
        arguments = dataclasses.replace(
            owner.arguments(),
            **tuned,
            output_dir=self.directory,
            max_steps=owner.total_steps if owner.total_steps is not None else -1,
            seed=owner.seed % 2**32,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=owner.device == "cpu",
        )
        train, evaluation = owner.datasets()
        options = dict(owner.trainer_options())
        callbacks = [*(options.pop("callbacks", None) or []), self]  # theirs see each step first
        clash = sorted(set(options) & {"model", "args", "train_dataset", "eval_dataset"})
        if clash:
            raise ValueError(
                f"HFTrainable.trainer_options: {', '.join(clash)} come from model_init(), "
                "arguments() and datasets(); leave them out"
            )
        self.trainer = Trainer(
            model=owner.model,
            args=arguments,
            train_dataset=train,
            eval_dataset=evaluation,
            callbacks=callbacks,
            **options,
        )
        self.loop = PausedLoop(self._train, lambda: self.trainer.state.global_step, "the Trainer")

    @property
    def started(self) -> bool:
        return self.loop.started

    def advance(self, target: int) -> None:
        self.loop.advance(target)

    def checkpoint(self) -> dict[str, bytes]:
        """The files of a Trainer checkpoint of the paused training."""
        trainer = self.trainer
        trainer._save_checkpoint(cast(torch.nn.Module, trainer.model), trial=None)
        folder = os.path.join(self.directory, f"checkpoint-{trainer.state.global_step}")
        try:
            return _read(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        self.loop.abandon()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _train(self) -> None:
        resume = None
        if self.owner._files is not None:
            resume = os.path.join(self.directory, "resume")
            _write(self.owner._files, resume)
        self.trainer.train(resume_from_checkpoint=resume)

    # -- callbacks, in the training thread ----------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.owner.apply_hyperparameters(self.trainer)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.loop.pause_if_due()
