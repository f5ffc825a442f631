"""PyTorch helper: a ``Trainable`` that handles optimizer hyperparameters and deep-copied state.

Import this module only where torch is installed (``pip install firepbt[torch]``); the package's
``__init__`` does not import it.

Two torch pitfalls it takes care of:

* ``opt_b.load_state_dict(opt_a.state_dict())`` leaves both optimizers *sharing* their state tensors
  (momentum buffers, Adam moments): stepping one silently changes the other. Here ``save`` returns
  deep copies and ``load`` deep-copies again, so no two trainables ever share a tensor.
* Loading an optimizer state also loads the donor's ``lr`` (and momentum, …) into the param groups.
  An exploit loads the donor's state and then explores new hyperparameters, so after ``load`` the
  hyperparameters this trainable currently holds are written back into the param groups.

torch's random generator is process-global: ``save`` records it and ``load`` restores it, which
makes save → load → train reproducible outside a run too. In a run, firepbt's workers also keep
each member's global generators (Python's, numpy's, torch's) per member
(``firepbt.random_state``), so dropout and a shuffling ``DataLoader`` need no generator of their
own.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from firepbt.pytorch_groups import TunedOptimizer
from firepbt.space import Hyperparameters
from firepbt.trainable import Trainable


class TorchTrainable(Trainable):
    """Base class for a torch model trained by one optimizer.

    A subclass implements ``build`` (return the model and its optimizer; torch is already seeded
    with ``seed``), ``train`` and ``evaluate`` (as for :class:`firepbt.Trainable`); ``save`` and
    ``load`` are done here. The constructor keeps what ``build`` returned as ``self.model`` and
    ``self.optimizer`` and moves the model to ``self.device`` in place, so ``train`` moves its
    batches there with ``.to(self.device)``.

    Every hyperparameter whose name is a key of the optimizer's param groups (``lr``,
    ``momentum``, ``weight_decay``, ``betas``, …) is written into the param groups, at
    construction and on every ``set_hyperparameters`` and ``load``. The tuned value is the
    base: each group keeps the ratio to it that ``build`` gave it, so a group built at a tenth
    of the learning rate stays at a tenth and a group built with ``weight_decay=0`` stays at 0
    (see :func:`firepbt.pytorch_groups.group_factors`). Others (e.g. a dropout rate)
    are the subclass's to read from ``self.hyperparameters``. Extra state such as a data
    iterator's position goes through ``extra_state`` / ``load_extra_state``.

    ``save`` keeps CPU copies of the model's and the optimizer's state dicts, torch's random
    generator state (and CUDA's, once CUDA is initialised) and a deep copy of ``extra_state()``;
    ``load`` restores them without sharing a tensor with the state it is given.

    Args:
        hyperparameters (dict[str, Any]): The member's starting hyperparameters, as for
            :class:`firepbt.Trainable`.
        seed: The member's seed: torch is seeded with it (``torch.manual_seed``) before
            ``build``.

    >>> class Line(TorchTrainable):
    ...     def build(self):
    ...         model = torch.nn.Linear(1, 1)
    ...         return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ...     def train(self, steps):
    ...         for _ in range(steps):
    ...             self.optimizer.zero_grad()
    ...             x = torch.linspace(-1, 1, 16).unsqueeze(1)
    ...             ((self.model(x) - 3 * x) ** 2).mean().backward()
    ...             self.optimizer.step()
    ...     def evaluate(self):
    ...         return self.model.weight.item()
    >>> line = Line({"lr": 0.05, "momentum": 0.5}, seed=0)
    >>> line.optimizer.param_groups[0]["lr"], line.optimizer.param_groups[0]["momentum"]
    (0.05, 0.5)
    >>> line.train(200)
    >>> round(line.evaluate(), 3)
    3.0
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler | None

    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        super().__init__(hyperparameters, seed)
        torch.manual_seed(seed)
        built = self.build()
        self.model, self.optimizer = built[0], built[1]
        self.scheduler = built[2] if len(built) > 2 else None
        self._tuned = TunedOptimizer(self.optimizer, self.scheduler)  # its groups, as built
        # Moved in place: the optimizer keeps the same parameter objects. A worker given a GPU
        # trains there; train() moves its batches with .to(self.device).
        self.model.to(self.device)
        self._tuned.apply(self.hyperparameters)

    @abstractmethod
    def build(
        self,
    ) -> (
        tuple[torch.nn.Module, torch.optim.Optimizer]
        | tuple[torch.nn.Module, torch.optim.Optimizer, LRScheduler]
    ):
        """Create the model and its optimizer, and optionally a learning-rate scheduler (called
        once, from ``__init__``, after seeding).

        A scheduler returned here is firepbt's to manage: it is saved and loaded with the
        member, and a tuned ``lr`` is its base learning rate, which its shape multiplies (a
        cosine schedule at half way runs at half the tuned value). The scheduler's own
        ``step()`` stays the subclass's to call, in ``train``.

        Returns:
            The model and the optimizer that trains its parameters, and optionally the
            scheduler of that optimizer (any of torch's that scale ``base_lrs``, and
            ``SequentialLR`` or ``ChainedScheduler`` of them). The model may be built on the
            CPU: the constructor moves it to ``self.device``.
        """

    def set_hyperparameters(self, hyperparameters: Hyperparameters) -> None:
        """Take new hyperparameters and write those named like a param-group key into the
        optimizer's param groups, keeping the weights and the optimizer state.

        Args:
            hyperparameters (dict[str, Any]): The new hyperparameters, one value per name of the
                space.
        """
        super().set_hyperparameters(hyperparameters)
        self._tuned.apply(self.hyperparameters)

    def extra_state(self) -> Any:
        """Subclass hook: more picklable state to save (e.g. a data iterator position).

        Returns:
            Any picklable object, deep-copied into the state ``save`` returns; ``None`` (the
            default) for none.
        """
        return None

    def load_extra_state(self, state: Any) -> None:
        """Subclass hook: restore what ``extra_state`` returned.

        Args:
            state: A deep copy of what ``extra_state`` returned when the state was saved
                (``None`` for a state that holds none).
        """

    def save(self) -> dict[str, Any]:
        """Copies of the model and optimizer state on the CPU (a checkpoint made on one GPU loads
        on another worker's GPU or on a machine without one), the torch RNG state and
        ``extra_state``.

        Returns:
            A dict with ``"model"`` and ``"optimizer"`` (CPU copies of their state dicts),
            ``"torch_rng"`` (torch's CPU generator state), ``"extra"`` (a deep copy of
            ``extra_state()``), with a scheduler ``"scheduler"`` (its state dict) and, when CUDA
            is initialised, ``"cuda_rng"`` (the generator state of every visible GPU).
        """
        state: dict[str, Any] = {
            "model": cpu_copy(self.model.state_dict()),
            "optimizer": cpu_copy(self.optimizer.state_dict()),
            "torch_rng": torch.get_rng_state(),
            "extra": copy.deepcopy(self.extra_state()),
        }
        if self.scheduler is not None:
            state["scheduler"] = cpu_copy(self.scheduler.state_dict())
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load(self, state: Any) -> None:
        """Restore a saved state without sharing any tensor with it, then re-apply this
        trainable's own hyperparameters (an exploit must not revert them to the donor's).

        The model's and the optimizer's states, the random generator states the state holds
        (CUDA's for as many GPUs as this process sees) and the extra state are restored.

        Args:
            state: A state returned by ``save``, this member's or another's.

        Raises:
            ValueError: ``state`` is not a mapping with ``"model"`` and ``"optimizer"``.
        """
        if not isinstance(state, Mapping) or "model" not in state or "optimizer" not in state:
            raise ValueError(
                f"{type(self).__name__}.load: expected a state returned by TorchTrainable.save "
                "(a mapping with 'model' and 'optimizer')"
            )
        self.model.load_state_dict(state["model"])  # copies values into this model's tensors
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(copy.deepcopy(state["scheduler"]))
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            # A worker sees only its own devices: restore as many as this process has.
            for index, rng in enumerate(state["cuda_rng"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(rng, index)
        self.load_extra_state(copy.deepcopy(state.get("extra")))
        self._tuned.apply(self.hyperparameters)

    def notices(self) -> list[str]:
        """A learning-rate scheduler attached to the optimizer that ``build()`` did not return.

        Returns:
            One warning when a param group carries a scheduler's ``initial_lr`` and this
            trainable manages no scheduler, else none.
        """
        if self.scheduler is None and any("initial_lr" in g for g in self.optimizer.param_groups):
            return [
                f"{type(self).__name__}: a learning-rate scheduler is attached to the optimizer "
                "but build() did not return it: it is not checkpointed, an exploited member "
                "keeps its own schedule step, and the recorded lr is not the one used. Return "
                "(model, optimizer, scheduler) from build()"
            ]
        return []


def cpu_copy(obj: Any) -> Any:
    """A deep copy of a state dict whose tensors are all on the CPU (copied, never shared)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, Mapping):
        return type(obj)((k, cpu_copy(v)) for k, v in obj.items())  # type: ignore[call-arg]
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)
