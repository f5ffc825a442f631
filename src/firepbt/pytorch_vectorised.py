"""PyTorch vectorised population: k copies of one ``nn.Module`` trained with ``torch.func.vmap``.

Import this module only where torch is installed. The k members' weights are stacked
(``torch.func.stack_module_state``: each parameter becomes one ``(slots, *shape)`` tensor);
one step draws every occupied slot's minibatch from that slot's own ``torch.Generator``, computes
all per-member gradients at once with ``vmap(grad(loss ∘ functional_call))`` and applies each
member's optimizer with its own hyperparameters held as tensors (``firepbt.stacked_optim``:
``sgd``, ``adam``, ``adamw``, with the update rules of ``torch.optim``).

A slot's ``save`` is the state :class:`~firepbt.pytorch.TorchTrainable` saves — ``model`` (a
state dict), ``optimizer`` (the torch optimizer's ``state_dict``), ``torch_rng`` and ``extra``
(``{"generator": …, "global_step": …}``) — on the CPU, so it loads into the ordinary trainable
and the reverse. ``load`` ignores ``torch_rng``: torch's global generator is one per process, not
one per member, so a vectorised member must draw its randomness from its own generator.

When to use it: many small members on one device (the MNIST-1D CNN on one CPU thread: 1.3–1.6×
the member-steps per second of sequential models, ``benchmarks/vectorised_step.py``). What it
costs: every slot's weights, optimizer state and activations live in one process on one device.

Not supported (refused with a clear error): models with buffers (BatchNorm running statistics),
models that draw random numbers in ``forward`` (dropout in training mode: ``vmap`` refuses it),
different architectures or batch sizes in one population, SGD with dampening or Nesterov
momentum, amsgrad, ``maximize``, and more than one param group. A parameter that gets no
gradient is stepped with a zero gradient (torch would skip it). The vectorised executor
(:class:`~firepbt.execution.vectorised_pool.VectorisedPoolExecutor`) runs a subclass in worker
processes.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from firepbt.pytorch import cpu_copy
from firepbt.space import Hyperparameters
from firepbt.stacked_optim import StackedOptimizer, stacked_optimizer
from firepbt.vectorised import Metrics, VectorisedTrainable

ModelFactory = Callable[[Hyperparameters], torch.nn.Module]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TorchVectorised(VectorisedTrainable):
    """k members of one ``nn.Module`` architecture, each trained on minibatches of
    ``(inputs, targets)`` drawn with replacement from its own generator.

    ``model(hyperparameters)`` builds one member (torch is seeded with the member's seed first,
    as ``TorchTrainable`` does before ``build``); ``loss(outputs, targets)`` is its training loss.
    ``optimizer`` is ``"sgd"``, ``"adam"`` or ``"adamw"``; ``optimizer_defaults`` are the values
    the ordinary trainable's ``build`` passes to its optimizer (e.g. ``{"momentum": 0.9}``), and
    hyperparameters named like a param-group key (``lr``, ``momentum``, ``weight_decay``,
    ``betas``, ``eps``; also ``beta1``, ``beta2``) are written over them per member. A subclass
    implements ``evaluate_slots`` (``forward`` runs the occupied slots on shared inputs) and may
    override ``learning_rate`` (a schedule) and ``draw_batch``.

    >>> class Lines(TorchVectorised):
    ...     def evaluate_slots(self, slots):
    ...         w = self.params["weight"]
    ...         return {s: round(float(w[s]), 2) for s in slots}
    >>> x = torch.linspace(-1, 1, 32).unsqueeze(1)
    >>> lines = Lines(2, lambda h: torch.nn.Linear(1, 1, bias=False),
    ...               torch.nn.functional.mse_loss, x, 3 * x, batch_size=8)
    >>> lines.assign(0, {"lr": 0.2, "momentum": 0.5}, seed=0)
    >>> lines.assign(1, {"lr": 0.0}, seed=0)
    >>> lines.train(200)
    >>> lines.evaluate()
    {0: 3.0, 1: -0.01}
    """

    def __init__(
        self,
        slots: int,
        model: ModelFactory,
        loss: Loss,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        optimizer: str = "sgd",
        optimizer_defaults: Mapping[str, Any] | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(slots)
        if optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"optimizer: expected 'sgd', 'adam' or 'adamw', got {optimizer!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"batch_size: expected a whole number of at least 1, got {batch_size!r}"
            )
        if len(inputs) != len(targets) or len(targets) == 0:
            raise ValueError(
                f"inputs and targets: expected the same positive number of examples, got "
                f"{len(inputs)} and {len(targets)}"
            )
        from firepbt.execution.devices import worker_device

        self.device = worker_device()
        self.model_factory, self.loss = model, loss
        self.inputs, self.targets = inputs, targets
        self.optimizer_name = optimizer
        self.optimizer_defaults = dict(optimizer_defaults or {})
        self.batch_size = batch_size
        self.params: dict[str, torch.Tensor] = {}
        self._base: torch.nn.Module | None = None  # one member's structure, on the meta device
        self._optimizer: StackedOptimizer | None = None
        self.generators: list[torch.Generator | None] = [None] * slots
        self.global_steps = [0] * slots

    # -- hooks a subclass may override --------------------------------------------------------

    def learning_rate(self, slot: int) -> float | None:
        """The learning rate ``slot``'s next step uses (``None``: its ``lr`` as it stands)."""
        return None

    def draw_batch(self, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``slot``'s next minibatch, drawn with replacement from its own generator."""
        index = torch.randint(
            len(self.targets), (self.batch_size,), generator=self.generators[slot]
        )
        return self.inputs[index], self.targets[index]

    def extra_state(self, slot: int) -> Any:
        """What the ordinary trainable's ``extra_state`` returns: generator and global step."""
        generator = self.generators[slot]
        assert generator is not None
        return {"generator": generator.get_state(), "global_step": self.global_steps[slot]}

    def load_extra_state(self, slot: int, state: Any) -> None:
        """Restore what ``extra_state`` returned."""
        if not isinstance(state, Mapping) or "generator" not in state:
            raise ValueError(
                f"{type(self).__name__}.load: the state's 'extra' has no generator state; "
                "expected {'generator': ..., 'global_step': ...}"
            )
        generator = self.generators[slot]
        assert generator is not None
        generator.set_state(state["generator"])
        self.global_steps[slot] = int(state.get("global_step", 0))

    def check_hyperparameters(self, hyperparameters: Hyperparameters) -> None:
        """Refuse hyperparameters this population cannot train with (called by ``assign`` and
        ``set_hyperparameters`` before anything changes)."""
        if "lr" not in hyperparameters:
            raise ValueError("lr: missing; every member needs a learning rate 'lr'")
        batch = hyperparameters.get("batch_size", self.batch_size)
        if batch != self.batch_size:
            raise ValueError(
                f"batch_size: every slot of this population draws batches of {self.batch_size}, "
                f"got {batch!r}; build the population with batch_size={batch!r} instead"
            )

    @abstractmethod
    def evaluate_slots(self, slots: tuple[int, ...]) -> dict[int, Metrics]:
        """Score the given slots (``forward`` gives their outputs on shared inputs)."""

    # -- evaluation helper --------------------------------------------------------------------

    @torch.no_grad()
    def forward(self, x: torch.Tensor, slots: Sequence[int]) -> torch.Tensor:
        """The outputs of ``slots`` on the same inputs ``x``, shape ``(len(slots), len(x), …)``,
        in evaluation mode. One slot at a time: on shared inputs ``vmap`` turns the slots'
        convolutions into one grouped convolution that was 4× slower than running each slot
        (32 MNIST-1D slots on 2000 examples, one CPU thread: 0.8 s against 0.2 s), and each
        slot's outputs are then exactly the ordinary model's on the same weights."""
        from torch.func import functional_call

        base = self._structure()
        base.eval()
        x = x.to(self.device)
        outputs = [
            functional_call(base, {n: t[slot] for n, t in self.params.items()}, (x,))
            for slot in slots
        ]
        return torch.stack(outputs)

    # -- the contract's hooks -----------------------------------------------------------------

    def build_slot(self, slot: int, hyperparameters: Hyperparameters, seed: int) -> None:
        self.check_hyperparameters(hyperparameters)
        torch.manual_seed(seed)
        model = self.model_factory(hyperparameters)
        if any(True for _ in model.buffers()):
            names = [n for n, _ in model.named_buffers()]
            raise ValueError(
                f"model: vectorised training does not support modules with buffers yet "
                f"(this one has {names}, e.g. BatchNorm running statistics)"
            )
        if self._base is None:
            self._first_model(model)
        else:
            self._check_same_structure(slot, model)
        optimizer = self._stacked_optimizer()
        settings = optimizer.merged(optimizer.template, self.optimizer_defaults)
        settings = optimizer.merged(settings, hyperparameters)
        for name, p in model.named_parameters():
            self.params[name][slot].copy_(p.detach())
        optimizer.reset(slot)
        optimizer.settings[slot] = settings
        self.generators[slot] = torch.Generator().manual_seed(seed)
        self.global_steps[slot] = 0

    def clear_slot(self, slot: int) -> None:
        self._stacked_optimizer().reset(slot)
        self.generators[slot] = None
        self.global_steps[slot] = 0

    def apply_hyperparameters(self, slot: int, hyperparameters: Hyperparameters) -> None:
        self.check_hyperparameters(hyperparameters)
        self._stacked_optimizer().configure(slot, hyperparameters)

    def train_slots(self, slots: tuple[int, ...], steps: int) -> None:
        from torch.func import grad, vmap

        optimizer = self._stacked_optimizer()
        base = self._structure()
        base.train()
        every = slots == tuple(range(self.slots))
        index = None if every else torch.tensor(slots, device=self.device)
        per_member_grad = vmap(grad(self._member_loss), randomness="error")
        for _ in range(steps):
            for s in slots:
                lr = self.learning_rate(s)
                if lr is not None:
                    optimizer.settings[s]["lr"] = lr
            batches = [self.draw_batch(s) for s in slots]
            x = torch.stack([b[0] for b in batches]).to(self.device)
            y = torch.stack([b[1] for b in batches]).to(self.device)
            params = self.params if index is None else self._take(index)
            try:
                grads = per_member_grad(params, x, y)
            except RuntimeError as e:
                if "randomness" not in str(e):
                    raise
                raise ValueError(
                    "model: its forward draws random numbers (e.g. dropout in training mode), "
                    "which vectorised training does not support yet: one member's random "
                    "stream could not match the ordinary trainable's"
                ) from None
            new = optimizer.step(params, grads, slots, index)
            if index is None:
                self.params = new
            else:
                for name, t in new.items():
                    self.params[name].index_copy_(0, index, t)
            for s in slots:
                self.global_steps[s] += 1

    def save_slot(self, slot: int) -> dict[str, Any]:
        model = OrderedDict((n, cpu_copy(t[slot])) for n, t in self.params.items())
        return {
            "model": model,
            "optimizer": self._stacked_optimizer().state_dict(slot),
            "torch_rng": torch.get_rng_state(),
            "extra": copy.deepcopy(self.extra_state(slot)),
        }

    def load_slot(self, slot: int, state: Any) -> None:
        if not isinstance(state, Mapping) or "model" not in state or "optimizer" not in state:
            raise ValueError(
                f"{type(self).__name__}.load: expected a state returned by save or by "
                "TorchTrainable.save (a mapping with 'model' and 'optimizer')"
            )
        weights = state["model"]
        expected = {n: tuple(t.shape[1:]) for n, t in self.params.items()}
        got = (
            {n: tuple(t.shape) for n, t in weights.items()} if isinstance(weights, Mapping) else {}
        )
        if got != expected:
            raise ValueError(
                f"{type(self).__name__}.load: the state's model does not fit this population's "
                f"architecture (expected {expected}, got {got})"
            )
        self._stacked_optimizer().load_state_dict(slot, copy.deepcopy(state["optimizer"]))
        self.load_extra_state(slot, copy.deepcopy(state.get("extra")))
        for name, t in weights.items():
            self.params[name][slot].copy_(t)

    def copy_slot(self, src: int, dst: int) -> None:
        for t in self.params.values():
            t[dst].copy_(t[src])
        self._stacked_optimizer().copy(src, dst)
        source, target = self.generators[src], self.generators[dst]
        assert source is not None and target is not None
        target.set_state(source.get_state())
        self.global_steps[dst] = self.global_steps[src]

    # -- internals ----------------------------------------------------------------------------

    def _member_loss(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        from torch.func import functional_call

        return self.loss(functional_call(self._structure(), params, (x,)), y)

    def _first_model(self, model: torch.nn.Module) -> None:
        from torch.func import stack_module_state

        params, _ = stack_module_state([model] * self.slots)
        self.params = {n: t.detach().to(self.device) for n, t in params.items()}
        self._base = copy.deepcopy(model).to("meta")
        self._optimizer = stacked_optimizer(self.optimizer_name, self.params, self.slots)

    def _check_same_structure(self, slot: int, model: torch.nn.Module) -> None:
        expected = {n: tuple(t.shape[1:]) for n, t in self.params.items()}
        got = {n: tuple(p.shape) for n, p in model.named_parameters()}
        if got != expected:
            differ = sorted(
                n for n in expected.keys() | got.keys() if expected.get(n) != got.get(n)
            )
            raise ValueError(
                f"slot {slot}: its model's parameters differ from the population's "
                f"({', '.join(f'{n}: {got.get(n)} vs {expected.get(n)}' for n in differ[:3])}); "
                "every slot must build the same architecture"
            )

    def _take(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.index_select(0, index) for n, t in self.params.items()}

    def _structure(self) -> torch.nn.Module:
        assert self._base is not None, "no member has been assigned yet"
        return self._base

    def _stacked_optimizer(self) -> StackedOptimizer:
        if self._optimizer is None:
            raise ValueError(f"{type(self).__name__}: no member has been assigned yet")
        return self._optimizer
