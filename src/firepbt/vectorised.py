"""The vectorised trainable contract: k members ("slots") trained together in one process.

An ordinary :class:`~firepbt.trainable.Trainable` is one member. A ``VectorisedTrainable`` holds
up to ``slots`` members at once and advances all of them with one call, so that an implementation
can batch their work (``torch.func.vmap`` over stacked weights, see
:mod:`firepbt.pytorch_vectorised`). Per member, the semantics are exactly those of the ordinary
trainable it mirrors: ``assign(slot, h, seed)`` builds what ``Trainable(h, seed)`` would, a state
saved from a slot loads into the ordinary trainable and the reverse, and ``copy(src, dst)`` is
``dst.load(src.save())`` (the destination keeps its own hyperparameters).

When to use it: many small members whose single steps leave a device (or one CPU thread) under
used, e.g. the MNIST-1D CNN (on one CPU thread of a shared 2-core machine, 1.3–1.6× the
member-steps per second of sequential models: ``benchmarks/results/vectorised_step.md``).
What it costs: all slots share one process and one device's memory (k copies of the weights,
optimizer state and activations), and one slow or failing member holds up the others.
A run drives it with ``slots`` (``firepbt.run(..., slots=8)``, ``[executor] slots = 8``): each
worker process of :class:`~firepbt.execution.vectorised_pool.VectorisedPoolExecutor` hosts one
population and trains the segments of the members it holds as one batch; ``member`` names the
ordinary trainable the run records, replays and loads checkpoints into.

The base class checks slots and records each member's hyperparameters and seed; an
implementation fills in the ``*_slot`` / ``*_slots`` hooks.

>>> class Counters(VectorisedTrainable):
...     def build_slot(self, slot, hyperparameters, seed):
...         self.x[slot] = 0.0
...     def apply_hyperparameters(self, slot, hyperparameters):
...         pass  # the rate is read from self.hyperparameters_of(slot) on every step
...     def train_slots(self, slots, steps):
...         for s in slots:
...             self.x[s] += steps * self.hyperparameters_of(s)["rate"]
...     def evaluate_slots(self, slots):
...         return {s: self.x[s] for s in slots}
...     def save_slot(self, slot):
...         return {"x": self.x[slot]}
...     def load_slot(self, slot, state):
...         self.x[slot] = state["x"]
...     def copy_slot(self, src, dst):
...         self.x[dst] = self.x[src]
>>> population = Counters(slots=3)
>>> population.x = {}
>>> population.assign(0, {"rate": 1.0}, seed=0)
>>> population.assign(2, {"rate": 0.5}, seed=1)
>>> population.train(4)
>>> population.evaluate()
{0: 4.0, 2: 2.0}
>>> population.copy(0, 2)  # exploit: slot 2 takes slot 0's state, keeps its own rate
>>> population.train(2)
>>> population.evaluate()
{0: 6.0, 2: 5.0}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from firepbt.space import Hyperparameters

if TYPE_CHECKING:
    from firepbt.trainable import Trainable

Metrics = float | Mapping[str, float]


@dataclass(frozen=True, slots=True)
class SlotMember:
    """What the base class records about an occupied slot."""

    hyperparameters: Hyperparameters
    seed: int


class VectorisedTrainable(ABC):
    """Base class for ``slots`` members trained together. Slots are numbered ``0 … slots - 1``;
    a slot is empty until ``assign`` and again after ``release``."""

    # The ordinary trainable each slot is a member of (``MNIST1D`` for ``MNIST1DVectorised``):
    # what a run records, replays and loads its members' checkpoints into. The vectorised
    # executor needs it; a population used on its own may leave it out.
    member: ClassVar[type[Trainable] | None] = None

    @classmethod
    def build_population(cls, slots: int, hyperparameters: Hyperparameters) -> VectorisedTrainable:
        """The population a worker of the vectorised executor builds, fit for members with
        ``hyperparameters`` (its first member's): override when the population's shared
        settings (a model size, a batch size) come from them. The default: ``cls(slots)``."""
        return cls(slots)

    def __init__(self, slots: int) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots: expected a whole number of at least 1, got {slots!r}")
        self.slots = slots
        self._members: dict[int, SlotMember] = {}

    # -- the public contract ------------------------------------------------------------------

    @property
    def occupied(self) -> tuple[int, ...]:
        """The occupied slots, in increasing order."""
        return tuple(sorted(self._members))

    def hyperparameters_of(self, slot: int) -> Hyperparameters:
        """The hyperparameters the member in ``slot`` trains with (a copy)."""
        return dict(self._member(slot, "hyperparameters_of").hyperparameters)

    def seed_of(self, slot: int) -> int:
        """The seed the member in ``slot`` was built with."""
        return self._member(slot, "seed_of").seed

    def assign(self, slot: int, hyperparameters: Hyperparameters, seed: int) -> None:
        """Build a fresh member in ``slot`` (replacing any member there), as the ordinary
        trainable's ``Trainable(hyperparameters, seed)`` would."""
        self._check_slot(slot, "assign")
        h = dict(hyperparameters)
        self.build_slot(slot, h, seed)
        self._members[slot] = SlotMember(h, seed)

    def release(self, slot: int) -> None:
        """Empty ``slot``; its member is gone (save it first to keep it)."""
        self._member(slot, "release")
        self.clear_slot(slot)
        del self._members[slot]

    def train(self, steps: int) -> None:
        """Advance every occupied slot by ``steps`` steps with its own hyperparameters."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"train: steps must be a whole number of at least 0, got {steps!r}")
        if steps and self._members:
            self.train_slots(self.occupied, steps)

    def evaluate(self, slots: Iterable[int] | None = None) -> dict[int, Metrics]:
        """One score (a number or named metrics) per slot: ``slots`` if given, else every
        occupied slot."""
        chosen = self.occupied if slots is None else tuple(slots)
        for slot in chosen:
            self._member(slot, "evaluate")
        return self.evaluate_slots(chosen) if chosen else {}

    def set_hyperparameters(self, slot: int, hyperparameters: Hyperparameters) -> None:
        """Give the member in ``slot`` new hyperparameters without rebuilding it."""
        member = self._member(slot, "set_hyperparameters")
        h = dict(hyperparameters)
        self.apply_hyperparameters(slot, h)
        self._members[slot] = SlotMember(h, member.seed)

    def save(self, slot: int) -> Any:
        """The full state of the member in ``slot``, in the ordinary trainable's format."""
        self._member(slot, "save")
        return self.save_slot(slot)

    def load(self, slot: int, state: Any) -> None:
        """Restore a state (from ``save`` or from the ordinary trainable) into the occupied
        ``slot``, then re-apply the slot's own hyperparameters."""
        member = self._member(slot, "load")
        self.load_slot(slot, state)
        self.apply_hyperparameters(slot, dict(member.hyperparameters))

    def copy(self, src: int, dst: int) -> None:
        """Exploit inside the population: ``dst`` takes ``src``'s weights, optimizer state and
        data position, and keeps its own hyperparameters."""
        self._member(src, "copy")
        member = self._member(dst, "copy")
        if src != dst:
            self.copy_slot(src, dst)
            self.apply_hyperparameters(dst, dict(member.hyperparameters))

    # -- an implementation's hooks ------------------------------------------------------------

    @abstractmethod
    def build_slot(self, slot: int, hyperparameters: Hyperparameters, seed: int) -> None:
        """Build a fresh member in ``slot``; raise ``ValueError`` for hyperparameters the
        implementation cannot hold (the slot then stays as it was)."""

    def clear_slot(self, slot: int) -> None:  # noqa: B027 - optional hook
        """Free what ``slot`` holds, if anything (the default keeps it until reassigned)."""

    @abstractmethod
    def apply_hyperparameters(self, slot: int, hyperparameters: Hyperparameters) -> None:
        """Take new hyperparameters for ``slot`` (after ``set_hyperparameters``, ``load``,
        ``copy``)."""

    @abstractmethod
    def train_slots(self, slots: tuple[int, ...], steps: int) -> None:
        """Advance the given (occupied) slots by ``steps`` (at least 1) steps."""

    @abstractmethod
    def evaluate_slots(self, slots: tuple[int, ...]) -> dict[int, Metrics]:
        """Score the given (occupied) slots."""

    @abstractmethod
    def save_slot(self, slot: int) -> Any:
        """The state of an occupied slot, in the ordinary trainable's format."""

    @abstractmethod
    def load_slot(self, slot: int, state: Any) -> None:
        """Restore a state into an occupied slot (hyperparameters are re-applied after)."""

    @abstractmethod
    def copy_slot(self, src: int, dst: int) -> None:
        """Copy the state of ``src`` onto ``dst`` (two different occupied slots)."""

    # -- checks -------------------------------------------------------------------------------

    def _check_slot(self, slot: object, action: str) -> int:
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < self.slots:
            raise IndexError(
                f"{type(self).__name__}.{action}: slot {slot!r} is out of range; this "
                f"population has slots 0 to {self.slots - 1}"
            )
        return slot

    def _member(self, slot: object, action: str) -> SlotMember:
        index = self._check_slot(slot, action)
        member = self._members.get(index)
        if member is None:
            raise ValueError(
                f"{type(self).__name__}.{action}: slot {index} is empty; assign a member to it "
                f"first (occupied: {list(self.occupied) or 'none'})"
            )
        return member
