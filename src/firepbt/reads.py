"""Hyperparameters that remember which names the training code read.

A name in the space that the trainable never reads (a misspelt ``"wd"`` for ``"weight_decay"``)
is sampled, mutated, recorded and plotted, and changes nothing. A worker hands the trainable its
hyperparameters as ``ReadRecorder`` dicts and, after a member's first segment, reports the names
nobody read, which the run records as a warning.

Only a read of one name counts as reading it (``h["lr"]``, ``h.get("lr")``, ``"lr" in h``,
``pop``, ``setdefault``). Whole-dict use (iterating, ``items()``, ``values()``, ``keys()``,
``copy()``, ``**h``) marks every name as read: such code may pass them all on, and a false
warning is worse than a missed one.

>>> h = ReadRecorder({"lr": 0.1, "wd": 1e-4})
>>> h["lr"]
0.1
>>> sorted(h.read)
['lr']
>>> _ = list(h.items())
>>> sorted(h.read)
['lr', 'wd']
"""

from __future__ import annotations

from _collections_abc import dict_items, dict_keys, dict_values
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


class ReadRecorder(dict[str, Any]):
    """A dict of hyperparameters that records, in ``read``, the names read from it."""

    def __init__(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        # dict.items: copying another recorder must not count as reading it
        super().__init__(dict.items(values) if isinstance(values, dict) else values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return super().get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return super().__contains__(name)

    def pop(self, name: str, *default: Any) -> Any:
        self.read.add(name)
        return super().pop(name, *default)

    def setdefault(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return super().setdefault(name, default)

    def _all(self) -> None:
        self.read.update(dict.keys(self))

    def __iter__(self) -> Iterator[str]:
        self._all()
        return super().__iter__()

    def keys(self) -> dict_keys[str, Any]:
        self._all()
        return super().keys()

    def items(self) -> dict_items[str, Any]:
        self._all()
        return super().items()

    def values(self) -> dict_values[str, Any]:
        self._all()
        return super().values()

    def copy(self) -> dict[str, Any]:
        self._all()
        return dict(dict.items(self))

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (a checkpoint may hold it) as a dict
        return (dict, (dict(dict.items(self)),))


def unrecorded(h: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``h`` as a plain dict, without marking them read in a ``ReadRecorder``
    (whole-dict use counts as reading every name)."""
    return dict(dict.items(h)) if isinstance(h, dict) else dict(h)


def unread(names: Iterable[str], *recorders: object) -> list[str]:
    """The ``names`` that none of the ``recorders`` saw read (objects that are not a
    ``ReadRecorder``, e.g. a plain dict a trainable made itself, count as having read all)."""
    names = list(dict.keys(names)) if isinstance(names, dict) else list(names)  # no read
    if any(not isinstance(r, ReadRecorder) for r in recorders):
        return []
    seen: set[str] = set()
    for r in recorders:
        assert isinstance(r, ReadRecorder)
        seen |= r.read
    return sorted(n for n in names if n not in seen)
