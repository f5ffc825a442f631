"""The trainable contract: the small class a user implements around ordinary training code.

firepbt builds a trainable from hyperparameters and a seed, trains it for some steps, asks it for
its score, changes its hyperparameters in place (no rebuild: weights and optimizer state are kept),
and saves or loads its whole state. State is any picklable object; firepbt writes it to disk
atomically with a checksum, so an exploit gets a deep copy, never a shared object.

>>> class Counter(Trainable):
...     def __init__(self, hyperparameters, seed):
...         super().__init__(hyperparameters, seed)
...         self.x = 0.0
...     def train(self, steps):
...         self.x += steps * self.hyperparameters["rate"]
...     def evaluate(self):
...         return self.x
...     def save(self):
...         return {"x": self.x}
...     def load(self, state):
...         self.x = state["x"]
>>> c = Counter({"rate": 0.5}, seed=0)
>>> c.train(4); c.evaluate()
2.0
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firepbt.errors import TrainableError
from firepbt.reads import ReadRecorder
from firepbt.space import Hyperparameters

if TYPE_CHECKING:
    from firepbt.vectorised import VectorisedTrainable


class Trainable(ABC):
    """Base class for user training code: what firepbt calls to train, score and copy a member.

    A subclass implements ``train``, ``evaluate``, ``save`` and ``load``; it may override
    ``set_hyperparameters`` (to push new values into an optimizer) and ``use_split`` (to replay
    on another data split). firepbt builds it as ``cls(hyperparameters, seed)``, so a subclass
    that overrides ``__init__`` takes the same two arguments and calls
    ``super().__init__(hyperparameters, seed)``. A segment that starts from a checkpoint (the
    member's own or, after an exploit, another member's) loads it with ``load`` into a freshly
    built trainable, unless its worker still holds the trainable that saved it. Every segment then
    sets its hyperparameters, alternates ``train`` and ``evaluate`` up to its end, and ends with
    ``save``. Higher scores are better unless the run says ``mode="min"``.
    ``evaluate`` may return one number or a mapping of named metrics (then the run names the
    ``metric`` to select on; the others are recorded alongside, e.g. a test score).

    Args:
        hyperparameters (dict[str, Any]): The member's starting hyperparameters, one value per
            name of the space; a copy is kept as ``self.hyperparameters``.
        seed: The member's seed, kept as ``self.seed`` for the subclass to seed its random
            generators with.
    """

    # "module:Class" of a VectorisedTrainable whose slots are members of this class: a run
    # given ``slots`` trains them with it (``firepbt.execution.vectorised_pool``).
    vectorised: str | None = None
    # The run's budget in steps, set by firepbt after construction and before the first
    # ``train`` (in a replay too); None outside a run. A schedule's horizon, for an adapter.
    total_steps: int | None = None

    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        # A ReadRecorder: a worker reports the names of the space that nobody reads.
        self.hyperparameters: Hyperparameters = ReadRecorder(hyperparameters)
        self.seed = seed

    @property
    def device(self) -> str:
        """Where to train.

        It is ``"cuda"`` in a worker given a GPU (``gpus_per_worker``; it sees only its own
        devices, so this is its first one), else ``"cpu"``. Outside a worker (replay,
        ``load_best``, a notebook) it is ``"cpu"`` unless ``FIREPBT_DEVICE`` says otherwise.
        Read once, when first asked: a trainable's device never changes under it.
        """
        device = self.__dict__.get("_device")
        if device is None:
            from firepbt.execution.devices import worker_device

            device = self.__dict__["_device"] = worker_device()
        return str(device)

    def set_hyperparameters(self, hyperparameters: Hyperparameters) -> None:
        """Take new hyperparameters without rebuilding; override to push them into an optimizer.

        Called at the start of every segment (and of every segment a replay follows), before
        ``train``. The default keeps a copy as ``self.hyperparameters``; an override calls
        ``super().set_hyperparameters(hyperparameters)`` and then applies the new values, keeping
        the weights and the optimizer state.

        Args:
            hyperparameters (dict[str, Any]): The new hyperparameters, one value per name of the
                space.
        """
        self.hyperparameters = ReadRecorder(hyperparameters)

    def notices(self) -> list[str]:
        """Warnings about how the trainable is set up, asked for after a member's first segment.

        Each is recorded once in the run (``result.warnings``, ``describe()``,
        ``firepbt status``). :class:`firepbt.pytorch.TorchTrainable` names a learning-rate
        scheduler it does not manage; the default has none.

        Returns:
            One line per warning.
        """
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the trainable holds outside its state (a thread, a file), when a worker
        lets it go: another trainable was built for its member, or it failed. The default does
        nothing."""

    def use_split(self, name: str) -> None:
        """Switch to another data split before training (``firepbt replay --split``).

        E.g. train on train+validation as the FIRE paper does when it replays a schedule.
        :func:`firepbt.replay` calls it once, right after building the trainable. Override to
        support it; the default refuses.

        Args:
            name: The split's name, as given to ``firepbt replay --split`` or
                ``replay(split=...)``.

        Raises:
            ValueError: Always, unless overridden: the trainable has no other split.
        """
        raise ValueError(
            f"{type(self).__name__} has no split {name!r}: implement use_split() to replay on it"
        )

    @abstractmethod
    def train(self, steps: int) -> None:
        """Advance training by ``steps`` steps with the current hyperparameters.

        Args:
            steps: How many steps to train: the run's evaluation interval (``eval_every``), or
                fewer where a segment ends sooner. Each call is followed by ``evaluate``.
        """

    @abstractmethod
    def evaluate(self) -> float | Mapping[str, float]:
        """Measure the objective Q (any metric, differentiable or not).

        Returns:
            One number, or a mapping of metric names to numbers (the run's ``metric`` names the
            one to select on; every metric is recorded). A number is an ``int``, a ``float``, or
            a numpy or torch scalar; a value that is no number (a bool, a string, an array of
            several values) fails the segment with :class:`firepbt.errors.MetricError`. A NaN or
            infinite score ranks worst.
        """

    @abstractmethod
    def save(self) -> Any:
        """Return the full training state (weights, optimizer, data position), picklable.

        Called at the end of every segment; the state is pickled into the segment's checkpoint,
        so the object returned is never shared with another trainable.

        Returns:
            Any picklable object holding everything ``load`` needs to go on training exactly
            where this trainable is. A state that cannot be pickled fails the segment.
        """

    @abstractmethod
    def load(self, state: Any) -> None:
        """Restore a state returned by ``save`` (possibly another member's).

        Called on a freshly built trainable; in a segment, ``set_hyperparameters`` follows with
        the segment's hyperparameters, so restore the weights, optimizer and data state of
        ``state``, not its hyperparameters.

        Args:
            state: What ``save`` returned, read back from a checkpoint: this member's own, or
                after an exploit the donor's.
        """


@dataclass(frozen=True, slots=True)
class ResolvedTrainable:
    """A run's trainable, resolved once. ``member`` is the ordinary class its segments, replay
    and checkpoints use; ``population`` is the vectorised class that trains several members per
    worker: the one the run named, or, when the run gives ``slots``, the ``vectorised`` twin its
    ordinary trainable names (None when there is neither)."""

    member: type[Trainable]
    population: type[VectorisedTrainable] | None = None

    @classmethod
    def of(cls, found: object, slots: int | None = None) -> ResolvedTrainable:
        """Resolve a class given as an object (``firepbt.run(MyTrainable, ...)``): it is not
        imported again, so a class defined in a notebook or a function resolves too."""
        name = f"{getattr(found, '__module__', '?')}:{getattr(found, '__qualname__', found)}"
        return _resolved(found, name, slots)


def resolve_trainable(path: str, slots: int | None = None) -> ResolvedTrainable:
    """Import ``"package.module:ClassName"`` once, with a clear error when it fails, and resolve
    it (``ResolvedTrainable``): a vectorised trainable's path gives the ordinary trainable its
    slots mirror (its ``member``) and itself as the population."""
    return _resolved(_imported(path), path, slots)


def import_trainable(path: str) -> type[Trainable]:
    """The ordinary trainable at ``path`` (``resolve_trainable(path).member``): the class a
    run's segments, replay and checkpoints use."""
    return resolve_trainable(path).member


def _resolved(found: object, path: str, slots: int | None) -> ResolvedTrainable:
    from firepbt.vectorised import VectorisedTrainable

    if isinstance(found, type) and issubclass(found, VectorisedTrainable):
        member = found.member
        if not (isinstance(member, type) and issubclass(member, Trainable)):
            raise TrainableError(
                f"trainable: {path!r} is a vectorised trainable without the ordinary "
                "firepbt.Trainable its slots mirror; set its class attribute member"
            )
        return ResolvedTrainable(member, found)
    if not (isinstance(found, type) and issubclass(found, Trainable)):
        raise TrainableError(f"trainable: {path!r} is not a subclass of firepbt.Trainable")
    twin = None
    if slots is not None and found.vectorised:
        try:  # a twin that does not import is no population (``slots`` is then refused)
            imported = _imported(found.vectorised)
        except TrainableError:
            imported = None
        if isinstance(imported, type) and issubclass(imported, VectorisedTrainable):
            twin = imported
    return ResolvedTrainable(found, twin)


def _imported(path: str) -> object:
    """What ``"package.module:Name"`` names, with a clear error when it cannot be imported."""
    if not isinstance(path, str) or ":" not in path:
        raise TrainableError(
            "trainable: expected 'module:ClassName' (e.g. 'firepbt.examples.toy:Toy'), "
            f"got {path!r}"
        )
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise TrainableError(
            f"trainable: cannot import module {module_name!r} ({e}); "
            "is it installed or on PYTHONPATH?"
        ) from None
    except SyntaxError as e:
        where = f"{e.filename}, line {e.lineno}" if e.filename else module_name
        raise TrainableError(
            f"trainable: module {module_name!r} has a syntax error ({where}: {e.msg})"
        ) from None
    except Exception as e:  # the module's own code raised while it was imported
        raise TrainableError(
            f"trainable: importing module {module_name!r} raised {type(e).__name__}: {e}"
        ) from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise TrainableError(f"trainable: module {module_name!r} has no attribute {attr!r}")
    return cls


# A run whose trainable cannot be imported by module and name keeps it here, pickled by value.
BY_VALUE_FILE = "trainable.pkl"


def ships_by_value(cls: type) -> bool:
    """Whether another process cannot import ``cls`` by module and name: a class defined in
    ``__main__`` of a session without a script file (a notebook, ``python -c``, a script read
    from stdin) or inside a function. Such a class travels to worker processes, and into the run
    directory, pickled by value (cloudpickle)."""
    if "<locals>" in getattr(cls, "__qualname__", ""):
        return True
    found: object = sys.modules.get(cls.__module__)
    for part in getattr(cls, "__qualname__", "").split("."):
        found = getattr(found, part, None)
    if found is not cls:  # its name leads elsewhere here: e.g. loaded from a run's BY_VALUE_FILE
        return True
    if cls.__module__ != "__main__":
        return False
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return not path or not os.path.isfile(path)


def kept_by_value(cls: type) -> bool:
    """Whether a run keeps ``cls`` pickled by value in its directory (``BY_VALUE_FILE``) for
    later commands: every class that ships by value, and every class of ``__main__``, even a
    script file's: ``firepbt replay`` or ``resume`` run in another process, whose ``__main__``
    is not that script."""
    return cls.__module__ == "__main__" or ships_by_value(cls)


def dumps_by_value(obj: object) -> bytes:
    """``obj`` pickled with the classes and functions it names from ``__main__`` or a function
    body carried by value, as cloudpickle does."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - a dependency of firepbt
        raise TrainableError(
            "trainable: a class defined in a notebook, python -c or stdin travels to the "
            "workers pickled by value, which needs cloudpickle: pip install cloudpickle, or "
            "move the class into a module"
        ) from None
    return bytes(cloudpickle.dumps(obj))


def stored_trainable(run_dir: str | os.PathLike[str]) -> type[Trainable] | None:
    """The trainable a run stored by value (``BY_VALUE_FILE``), or None if it stored none."""
    path = Path(run_dir) / BY_VALUE_FILE
    if not path.exists():
        return None
    try:
        cls = pickle.loads(path.read_bytes())
    except Exception as e:
        raise TrainableError(
            f"trainable: {path} holds the run's trainable class pickled by value, but it "
            f"cannot be loaded here ({type(e).__name__}: {e}); pass the class itself "
            "(trainable=...)"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Trainable)):
        raise TrainableError(f"trainable: {path} does not hold a firepbt.Trainable subclass")
    return cls


def trainable_of_run(path: str, run_dir: str | os.PathLike[str]) -> type[Trainable]:
    """A run's trainable: the class it stored by value if it did, else ``path`` imported."""
    return stored_trainable(run_dir) or import_trainable(path)
