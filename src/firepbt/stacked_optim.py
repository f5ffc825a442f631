"""Per-member optimizers over stacked weights: SGD with momentum, Adam and AdamW.

Each parameter is one tensor of shape ``(slots, *shape)``; each slot has its own settings (the
param-group values ``lr``, ``momentum``, ``weight_decay``, ``betas``, ``eps``) and its own state.
The update rules are those of ``torch.optim.SGD`` (dampening 0, not Nesterov) and
``torch.optim.Adam`` / ``AdamW`` (not amsgrad), operation for operation, so that one slot follows
the same trajectory as an ordinary model stepped by the torch optimizer, and ``state_dict`` /
``load_state_dict`` speak that optimizer's ``state_dict`` format for one slot.

Import only where torch is installed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from firepbt.pytorch import cpu_copy

Settings = dict[str, Any]
OPTIMIZERS = ("sgd", "adam", "adamw")
# param-group keys that change how torch computes a step, not what it computes
IGNORED = ("foreach", "differentiable", "fused", "capturable", "decoupled_weight_decay")


class StackedOptimizer(ABC):
    """Settings and state of ``slots`` independent optimizers over the same parameter names."""

    torch_class: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]
    # param-group keys this rule does not implement, with the only value it accepts
    fixed: Mapping[str, object]
    label: str

    def __init__(self, params: Mapping[str, torch.Tensor], slots: int) -> None:
        self.names = tuple(params)
        self.slots = slots
        dummy = [torch.nn.Parameter(torch.zeros(1)) for _ in self.names]
        template = self.torch_class(dummy).state_dict()["param_groups"][0]
        self.template: Settings = {k: v for k, v in template.items() if k != "params"}
        self.settings: list[Settings] = [dict(self.template) for _ in range(slots)]

    # -- settings ------------------------------------------------------------------------------

    def configure(self, slot: int, values: Mapping[str, Any]) -> None:
        """Write every value named like a param-group key into ``slot``'s settings, as
        ``TorchTrainable`` writes hyperparameters into its optimizer's param groups."""
        self.settings[slot] = self.merged(self.settings[slot], values)

    def merged(self, settings: Settings, values: Mapping[str, Any]) -> Settings:
        """``settings`` with ``values`` written over them; refuses what this rule cannot do."""
        out = dict(settings)
        for name, value in values.items():
            if name in self.fixed:
                if value != self.fixed[name]:
                    raise ValueError(
                        f"{name}: the vectorised {self.label} supports only "
                        f"{name}={self.fixed[name]!r}, got {value!r}"
                    )
            elif name == "betas":
                if not isinstance(value, (list, tuple)) or len(value) != 2:
                    raise ValueError(f"betas: expected two numbers, got {value!r}")
                out["betas"] = (_number("betas", value[0]), _number("betas", value[1]))
            elif name in self.template and name not in IGNORED:
                out[name] = _number(name, value)
        return out

    # -- state ---------------------------------------------------------------------------------

    @abstractmethod
    def reset(self, slot: int) -> None:
        """Forget ``slot``'s state (a fresh optimizer: no step taken yet)."""

    @abstractmethod
    def copy(self, src: int, dst: int) -> None:
        """``dst`` takes ``src``'s settings and state."""

    @abstractmethod
    def step(
        self,
        params: dict[str, torch.Tensor],
        grads: Mapping[str, torch.Tensor],
        slots: Sequence[int],
        index: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """New parameters after one step of every slot in ``slots``. ``params`` and ``grads``
        hold those slots only, in that order; ``index`` selects them from the state tensors
        (``None``: every slot, in order)."""

    @abstractmethod
    def slot_state(self, slot: int) -> dict[int, dict[str, torch.Tensor]]:
        """``slot``'s per-parameter state as the torch optimizer names it, CPU copies."""

    @abstractmethod
    def load_slot_state(self, slot: int, state: Mapping[int, Mapping[str, Any]]) -> None:
        """Restore what ``slot_state`` returned (or a torch optimizer's ``state``)."""

    def state_dict(self, slot: int) -> dict[str, Any]:
        """``slot``'s optimizer in the ``torch.optim`` ``state_dict`` format."""
        group = {**self.settings[slot], "params": list(range(len(self.names)))}
        return {"state": self.slot_state(slot), "param_groups": [group]}

    def load_state_dict(self, slot: int, state: Any) -> None:
        """Load a ``torch.optim`` ``state_dict`` (one param group over every parameter)."""
        if not isinstance(state, Mapping) or "state" not in state or "param_groups" not in state:
            raise ValueError(
                f"optimizer: expected a {self.torch_class.__name__} state_dict (a mapping with "
                "'state' and 'param_groups')"
            )
        groups = state["param_groups"]
        if len(groups) != 1 or len(groups[0].get("params", ())) != len(self.names):
            sizes = [len(g.get("params", ())) for g in groups]
            raise ValueError(
                f"optimizer: expected one param group over all {len(self.names)} parameters, "
                f"got groups of {sizes} parameters"
            )
        group = {k: v for k, v in groups[0].items() if k != "params" and k in self.template}
        order = {p: i for i, p in enumerate(groups[0]["params"])}
        per_param = {order[k]: v for k, v in state["state"].items() if k in order}
        for name, value in self.fixed.items():
            if group.get(name, value) != value:
                raise ValueError(
                    f"optimizer: the state has {name}={group[name]!r}; the vectorised "
                    f"{self.label} supports only {name}={value!r}"
                )
        self.configure(slot, {k: v for k, v in group.items() if k not in self.fixed})
        self.load_slot_state(slot, per_param)

    # -- helpers -------------------------------------------------------------------------------

    def column(
        self, slots: Sequence[int], value: Callable[[Settings], float], like: torch.Tensor
    ) -> torch.Tensor:
        """``value`` of each slot's settings (computed in double precision, as torch computes
        its scalars) as a tensor of ``like``'s dtype and device, shape ``(len(slots),)``."""
        values = [value(self.settings[s]) for s in slots]
        return torch.tensor(values, dtype=like.dtype, device=like.device)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _view(column: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-slot column shaped to broadcast over ``like`` (slots first)."""
    return column.view((-1,) + (1,) * (like.dim() - 1))


def _put(
    store: dict[str, torch.Tensor], name: str, value: torch.Tensor, index: torch.Tensor | None
) -> None:
    if index is None:
        store[name] = value
    else:
        store[name].index_copy_(0, index, value)


def _take(store: Mapping[str, torch.Tensor], name: str, index: torch.Tensor | None) -> torch.Tensor:
    return store[name] if index is None else store[name].index_select(0, index)


class StackedSGD(StackedOptimizer):
    """``torch.optim.SGD``: ``d = g + wd·p``; with momentum ``m ≠ 0``, ``buf = d`` on the first
    step and ``buf = m·buf + d`` after, ``d = buf``; then ``p = p − lr·d``."""

    torch_class = torch.optim.SGD
    fixed = {"dampening": 0, "nesterov": False, "maximize": False}
    label = "SGD"

    def __init__(self, params: Mapping[str, torch.Tensor], slots: int) -> None:
        super().__init__(params, slots)
        self.buffers = {n: torch.zeros_like(p) for n, p in params.items()}
        self.has_buffer = [False] * slots

    def reset(self, slot: int) -> None:
        self.has_buffer[slot] = False
        for b in self.buffers.values():
            b[slot].zero_()

    def copy(self, src: int, dst: int) -> None:
        self.settings[dst] = dict(self.settings[src])
        self.has_buffer[dst] = self.has_buffer[src]
        for b in self.buffers.values():
            b[dst].copy_(b[src])

    def step(
        self,
        params: dict[str, torch.Tensor],
        grads: Mapping[str, torch.Tensor],
        slots: Sequence[int],
        index: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        like = next(iter(params.values()))
        neg_lr = self.column(slots, lambda s: -s["lr"], like)
        decay = [self.settings[s]["weight_decay"] != 0 for s in slots]
        wd = self.column(slots, lambda s: s["weight_decay"], like) if any(decay) else None
        uses = [self.settings[s]["momentum"] != 0 for s in slots]
        later = [u and self.has_buffer[s] for s, u in zip(slots, uses, strict=True)]
        m = self.column(slots, lambda s: s["momentum"], like)
        out: dict[str, torch.Tensor] = {}
        for name, p in params.items():
            d = grads[name]
            if wd is not None:
                d = d + _view(wd, p) * p
            if any(uses):
                buf = _take(self.buffers, name, index)
                new = buf * _view(m, p) + d
                if not all(later):  # a first step with momentum: the buffer is the step
                    new = torch.where(_mask(later, p), new, d)
                if all(uses):
                    d = new
                else:  # slots without momentum keep their buffer and step by d
                    new, d = (
                        torch.where(_mask(uses, p), new, buf),
                        torch.where(_mask(uses, p), new, d),
                    )
                _put(self.buffers, name, new, index)
            out[name] = p + _view(neg_lr, p) * d
        for s, u in zip(slots, uses, strict=True):
            self.has_buffer[s] = self.has_buffer[s] or u
        return out

    def slot_state(self, slot: int) -> dict[int, dict[str, torch.Tensor]]:
        if not self.has_buffer[slot]:
            return {}
        return {
            i: {"momentum_buffer": cpu_copy(self.buffers[n][slot])}
            for i, n in enumerate(self.names)
        }

    def load_slot_state(self, slot: int, state: Mapping[int, Mapping[str, Any]]) -> None:
        self.reset(slot)
        buffers = [state.get(i, {}).get("momentum_buffer") for i in range(len(self.names))]
        present = [b is not None for b in buffers]
        if any(present) and not all(present):
            raise ValueError("optimizer: the state has momentum buffers for some parameters only")
        for name, b in zip(self.names, buffers, strict=True):
            if b is not None:
                self.buffers[name][slot].copy_(b)
        self.has_buffer[slot] = all(present)


def _mask(flags: Sequence[bool], like: torch.Tensor) -> torch.Tensor:
    return _view(torch.tensor(flags, device=like.device), like)


class StackedAdam(StackedOptimizer):
    """``torch.optim.Adam`` (``g = g + wd·p``) and, with ``decoupled``, ``AdamW``
    (``p = p·(1 − lr·wd)``); then ``m = lerp(m, g, 1 − β₁)``, ``v = β₂·v + (1 − β₂)·g²`` and
    ``p = p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)``."""

    fixed = {"amsgrad": False, "maximize": False}

    def __init__(
        self, params: Mapping[str, torch.Tensor], slots: int, *, decoupled: bool = False
    ) -> None:
        self.torch_class = torch.optim.AdamW if decoupled else torch.optim.Adam
        self.label = "AdamW" if decoupled else "Adam"
        self.decoupled = decoupled
        super().__init__(params, slots)
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}
        self.steps = [0] * slots

    def merged(self, settings: Settings, values: Mapping[str, Any]) -> Settings:
        out = super().merged(settings, values)
        if "beta1" in values or "beta2" in values:  # one number each: what a Space can perturb
            b1, b2 = out["betas"]
            out["betas"] = (
                _number("beta1", values.get("beta1", b1)),
                _number("beta2", values.get("beta2", b2)),
            )
        return out

    def reset(self, slot: int) -> None:
        self.steps[slot] = 0
        for store in (self.exp_avg, self.exp_avg_sq):
            for t in store.values():
                t[slot].zero_()

    def copy(self, src: int, dst: int) -> None:
        self.settings[dst] = dict(self.settings[src])
        self.steps[dst] = self.steps[src]
        for store in (self.exp_avg, self.exp_avg_sq):
            for t in store.values():
                t[dst].copy_(t[src])

    def step(
        self,
        params: dict[str, torch.Tensor],
        grads: Mapping[str, torch.Tensor],
        slots: Sequence[int],
        index: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        for s in slots:
            self.steps[s] += 1
        like = next(iter(params.values()))
        step = {s: float(self.steps[s]) for s in slots}

        def col(value: Callable[[Settings], float]) -> torch.Tensor:
            return self.column(slots, value, like)

        decay = any(self.settings[s]["weight_decay"] != 0 for s in slots)
        shrink = col(lambda g: 1 - g["lr"] * g["weight_decay"]) if decay else None
        wd = col(lambda g: g["weight_decay"]) if decay else None
        one_minus_b1 = col(lambda g: 1 - g["betas"][0])
        b2 = col(lambda g: g["betas"][1])
        one_minus_b2 = col(lambda g: 1 - g["betas"][1])
        eps = col(lambda g: g["eps"])
        values = [self.settings[s] for s in slots]
        neg_step_size = torch.tensor(
            [
                -(g["lr"] / (1 - g["betas"][0] ** step[s]))
                for s, g in zip(slots, values, strict=True)
            ],
            dtype=like.dtype,
            device=like.device,
        )
        bc2_sqrt = torch.tensor(
            [(1 - g["betas"][1] ** step[s]) ** 0.5 for s, g in zip(slots, values, strict=True)],
            dtype=like.dtype,
            device=like.device,
        )
        out: dict[str, torch.Tensor] = {}
        for name, p in params.items():
            g = grads[name]
            if wd is not None and shrink is not None:
                if self.decoupled:
                    p = p * _view(shrink, p)
                else:
                    g = g + _view(wd, p) * p
            m = torch.lerp(_take(self.exp_avg, name, index), g, _view(one_minus_b1, p))
            v = _take(self.exp_avg_sq, name, index) * _view(b2, p) + _view(one_minus_b2, p) * g * g
            _put(self.exp_avg, name, m, index)
            _put(self.exp_avg_sq, name, v, index)
            denom = v.sqrt() / _view(bc2_sqrt, p) + _view(eps, p)
            out[name] = p + _view(neg_step_size, p) * m / denom
        return out

    def slot_state(self, slot: int) -> dict[int, dict[str, torch.Tensor]]:
        if self.steps[slot] == 0:
            return {}
        return {
            i: {
                "step": torch.tensor(float(self.steps[slot]), dtype=torch.float32),
                "exp_avg": cpu_copy(self.exp_avg[n][slot]),
                "exp_avg_sq": cpu_copy(self.exp_avg_sq[n][slot]),
            }
            for i, n in enumerate(self.names)
        }

    def load_slot_state(self, slot: int, state: Mapping[int, Mapping[str, Any]]) -> None:
        self.reset(slot)
        entries = [state.get(i) for i in range(len(self.names))]
        if not any(entries):
            return
        if not all(entries):
            raise ValueError("optimizer: the state has Adam moments for some parameters only")
        steps = {float(e["step"]) for e in entries if e is not None}
        if len(steps) != 1:
            raise ValueError(f"optimizer: the parameters were stepped different times {steps}")
        self.steps[slot] = int(steps.pop())
        for name, e in zip(self.names, entries, strict=True):
            assert e is not None
            self.exp_avg[name][slot].copy_(e["exp_avg"])
            self.exp_avg_sq[name][slot].copy_(e["exp_avg_sq"])


def stacked_optimizer(
    name: str, params: Mapping[str, torch.Tensor], slots: int
) -> StackedOptimizer:
    """The stacked optimizer called ``name`` (one of ``OPTIMIZERS``)."""
    if name == "sgd":
        return StackedSGD(params, slots)
    if name in ("adam", "adamw"):
        return StackedAdam(params, slots, decoupled=name == "adamw")
    raise ValueError(f"optimizer: expected one of {list(OPTIMIZERS)}, got {name!r}")
