"""The distributions of a search space: the prior each hyperparameter is drawn from, and how
it moves. :mod:`firepbt.space` gathers them, by name, into a ``Space``.

>>> import numpy as np
>>> lr = LogUniform(1e-4, 1e-1, bounds=(1e-6, 1.0))
>>> lr.perturb(0.9, 2.0, np.random.default_rng(0))  # clipped to the hard upper bound
1.0
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np

from firepbt.errors import SpaceError

_FMAX = sys.float_info.max  # unbounded values are still kept finite


class Distribution(ABC):
    """One hyperparameter's prior and its moves."""

    name: str = "?"  # set by Space so error messages can name the field

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """Draw a value from the prior."""

    @abstractmethod
    def perturb(self, value: Any, factor: float, rng: np.random.Generator) -> Any:
        """Move ``value`` by ``factor`` (>1 up, <1 down), staying inside the hard bounds."""

    def resample(self, rng: np.random.Generator) -> Any:
        """Draw a fresh value from the prior (the PBT paper's *resample*)."""
        return self.sample(rng)

    @abstractmethod
    def validate(self, value: Any) -> Any:
        """Return ``value`` in canonical form, or raise ``SpaceError`` naming the field."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description; ``distribution_from_dict`` reverses it."""


def _number(name: str, field: str, value: Any) -> float:
    if isinstance(value, (str, bytes)):
        raise SpaceError(f"{name}: {field} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SpaceError(f"{name}: {field} must be a number, got {value!r}") from None


def _pair(bounds: Any) -> tuple[Any, Any] | None:
    if isinstance(bounds, (str, bytes, Mapping)):
        return None
    try:
        pair = tuple(bounds)
    except TypeError:
        return None
    return (pair[0], pair[1]) if len(pair) == 2 else None


def _check_bounds(
    name: str, low: float, high: float, bounds: Any, positive: bool
) -> tuple[float, float]:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SpaceError(f"{name}: low and high must be finite numbers, got low={low}, high={high}")
    if low >= high:
        raise SpaceError(f"{name}: low must be below high, got low={low}, high={high}")
    if positive and low <= 0:
        raise SpaceError(f"{name}: a log-scale range needs low > 0, got low={low}")
    if bounds is None:  # the prior's range is the hard range unless bounds widen it
        return (low, high)
    pair = _pair(bounds)
    if pair is None:
        raise SpaceError(f"{name}: bounds must be a pair (lower, upper), got {bounds!r}")
    lo, hi = _number(name, "bounds", pair[0]), _number(name, "bounds", pair[1])
    if math.isnan(lo) or math.isnan(hi) or lo >= hi:
        raise SpaceError(f"{name}: bounds must be (lower, upper) with lower < upper, got {bounds}")
    if positive and lo < 0:
        raise SpaceError(f"{name}: bounds of a log-scale value cannot be negative, got {bounds}")
    if low < lo or high > hi:
        raise SpaceError(f"{name}: the prior [{low}, {high}] must lie inside bounds {bounds}")
    return lo, hi


class _Continuous(Distribution):
    positive = False

    def __init__(
        self, low: float, high: float, *, bounds: tuple[float, float] | None = None
    ) -> None:
        label = type(self).__name__
        self.low, self.high = _number(label, "low", low), _number(label, "high", high)
        self.bounds = _check_bounds(label, self.low, self.high, bounds, self.positive)
        self._given_bounds = None if bounds is None else _pair(bounds)

    def _rename(self, name: str) -> None:
        self.name = name
        self.bounds = _check_bounds(name, self.low, self.high, self._given_bounds, self.positive)

    def _clip(self, value: float) -> float:
        lo, hi = self.bounds
        return float(min(max(value, lo, -_FMAX), hi, _FMAX))

    def perturb(self, value: Any, factor: float, rng: np.random.Generator) -> float:
        return self._clip(float(value) * factor)

    def validate(self, value: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise SpaceError(f"{self.name}: expected a number, got {value!r}") from None
        lo, hi = self.bounds
        if not (lo <= v <= hi and math.isfinite(v)) or (self.positive and v <= 0):
            raise SpaceError(f"{self.name}: {v} is outside the allowed range [{lo}, {hi}]")
        return v

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "dist": type(self).__name__.lower(),
            "low": self.low,
            "high": self.high,
        }
        if self._given_bounds is not None:
            d["bounds"] = list(self._given_bounds)
        return d

    def __repr__(self) -> str:
        extra = f", bounds={self._given_bounds}" if self._given_bounds is not None else ""
        return f"{type(self).__name__}({self.low}, {self.high}{extra})"


class Uniform(_Continuous):
    """Uniform prior on [low, high]; perturbation multiplies by the factor.

    A perturbed value is clipped to the hard range, ``bounds``.

    Args:
        low: The lower end of the prior.
        high: The upper end of the prior, above ``low``.
        bounds: The hard range ``(lower, upper)`` a value may be perturbed to, which must
            contain ``[low, high]``; by default ``[low, high]`` itself.

    Raises:
        firepbt.SpaceError: ``low`` or ``high`` is not a finite number, ``low`` is not below
            ``high``, or ``bounds`` is not a pair ``(lower, upper)`` with ``lower < upper``
            that contains ``[low, high]``.
    """

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


class LogUniform(_Continuous):
    """Log-uniform prior on [low, high] (low > 0), the usual prior for learning rates.

    Perturbation multiplies by the factor; a perturbed value is clipped to the hard range,
    ``bounds``, and stays above 0.

    Args:
        low: The lower end of the prior.
        high: The upper end of the prior, above ``low``.
        bounds: The hard range ``(lower, upper)`` a value may be perturbed to, which must
            contain ``[low, high]`` and cannot be negative; by default ``[low, high]`` itself.

    Raises:
        firepbt.SpaceError: ``low`` or ``high`` is not a finite number, ``low`` is not above 0
            or not below ``high``, or ``bounds`` is not a pair ``(lower, upper)`` with
            ``0 <= lower < upper`` that contains ``[low, high]``.
    """

    positive = True

    def sample(self, rng: np.random.Generator) -> float:
        v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return float(min(max(v, self.low), self.high))  # exp(log(x)) can miss x by an ulp

    def _clip(self, value: float) -> float:
        lo, hi = self.bounds
        return float(min(max(value, lo if lo > 0 else 1e-300), hi, _FMAX))


class IntUniform(_Continuous):
    """Integer prior on {low, …, high}; a perturbation that would round back moves by one.

    Perturbation multiplies by the factor and rounds to the nearest integer inside the hard
    range, ``bounds``.

    Args:
        low: The lower end of the prior, an integer.
        high: The upper end of the prior, an integer above ``low``.
        bounds: The hard range ``(lower, upper)`` a value may be perturbed to, which must
            contain ``[low, high]``; by default ``[low, high]`` itself.

    Raises:
        firepbt.SpaceError: ``low`` or ``high`` is not a finite integer, ``low`` is not below
            ``high``, or ``bounds`` is not a pair ``(lower, upper)`` with ``lower < upper``
            that contains ``[low, high]``.
    """

    def __init__(
        self, low: float, high: float, *, bounds: tuple[float, float] | None = None
    ) -> None:
        super().__init__(low, high, bounds=bounds)
        if self.low != int(self.low) or self.high != int(self.high):
            raise SpaceError(
                f"IntUniform: low and high must be integers, got low={low!r}, high={high!r}"
            )

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(int(self.low), int(self.high) + 1))

    def _int_bounds(self) -> tuple[int, int]:
        lo, hi = self.bounds
        return math.ceil(max(lo, -_FMAX)), math.floor(min(hi, _FMAX))

    def _clip(self, value: float) -> int:
        """Round to the nearest integer inside the hard bounds."""
        lo, hi = self._int_bounds()
        v = float(value)
        if v <= lo:
            return lo
        if v >= hi:
            return hi
        return int(round(v))

    def perturb(self, value: Any, factor: float, rng: np.random.Generator) -> int:
        v = int(value)
        moved = self._clip(float(v) * factor)
        if moved == v and factor != 1.0:
            moved = self._clip(v + (1 if factor > 1.0 else -1))
        return moved

    def validate(self, value: Any) -> int:
        v = super().validate(value)
        if v != int(v):
            raise SpaceError(f"{self.name}: expected an integer, got {value!r}")
        return int(v)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["low"], d["high"] = int(self.low), int(self.high)
        return d

    def __repr__(self) -> str:
        extra = f", bounds={self._given_bounds}" if self._given_bounds is not None else ""
        return f"IntUniform({int(self.low)}, {int(self.high)}{extra})"


class Choice(Distribution):
    """A choice among options. Ordered choices perturb to a neighbour; unordered ones to another.

    An ordered choice steps to the next option for a factor above 1 and to the previous one for a
    factor below 1, staying put at either end; an unordered choice moves to one of the other
    options (if there is one), drawn uniformly.

    Args:
        options: The values to choose from: a sequence (not a string or a mapping) of at least
            one value, no two equal (``1`` and ``1.0`` count as equal).
        ordered: Whether the options are in order (e.g. batch sizes, smallest first), so that
            perturbation steps to a neighbour.

    Raises:
        firepbt.SpaceError: ``options`` is a string, a mapping or not iterable, is empty, or
            holds two equal values.

    >>> import numpy as np
    >>> Choice([16, 32, 64], ordered=True).perturb(32, 1.2, np.random.default_rng(0))
    64
    """

    def __init__(self, options: Sequence[Any], *, ordered: bool = False) -> None:
        if isinstance(options, (str, bytes, Mapping)) or not isinstance(options, Iterable):
            raise SpaceError(f"Choice: options must be a list of values, got {options!r}")
        if isinstance(options, AbstractSet):
            raise SpaceError(
                f"Choice: options {options!r} are a set, whose order is not defined (an ordered "
                "choice would move between neighbours in hash order, which can change from one "
                "interpreter to the next); give a list, e.g. Choice(sorted(options))"
            )
        self.options = [data("Choice", o, option=True) for o in options]
        self.ordered = ordered
        self._check()

    def _check(self) -> None:
        label = "Choice" if self.name == "?" else self.name
        if not self.options:
            raise SpaceError(f"{label}: a Choice needs at least one option")
        # Equality, not repr: 1 and 1.0 (or True) cannot be told apart by ``validate``/``perturb``.
        for i, a in enumerate(self.options):
            if any(a == b for b in self.options[i + 1 :]):
                raise SpaceError(f"{label}: Choice options must be distinct, got {self.options}")

    def _rename(self, name: str) -> None:
        self.name = name
        self._check()

    def sample(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def _index(self, value: Any) -> int:
        for i, o in enumerate(self.options):
            if o == value:
                return i
        raise SpaceError(f"{self.name}: {value!r} is not one of {self.options}")

    def perturb(self, value: Any, factor: float, rng: np.random.Generator) -> Any:
        i = self._index(value)
        if not self.ordered:
            others = [o for j, o in enumerate(self.options) if j != i]
            return others[int(rng.integers(len(others)))] if others else value
        if factor == 1.0:
            return value
        j = min(max(i + (1 if factor > 1.0 else -1), 0), len(self.options) - 1)
        return self.options[j]

    def validate(self, value: Any) -> Any:
        return self.options[self._index(value)]

    def to_dict(self) -> dict[str, Any]:
        return {"dist": "choice", "options": list(self.options), "ordered": self.ordered}

    def __repr__(self) -> str:
        return f"Choice({self.options}, ordered={self.ordered})"


class Fixed(Distribution):
    """A constant carried along with the tuned hyperparameters; never moves.

    :class:`firepbt.Space` stands a plain value for ``Fixed(value)``.

    Args:
        value: The constant.
    """

    def __init__(self, value: Any) -> None:
        if callable(value):
            raise SpaceError(
                f"Fixed: {value!r} is a function or a class, kept as one constant value; a "
                "sampler? write Uniform(low, high), LogUniform(low, high) or Choice([...]) "
                "for firepbt to sample and tune it"
            )
        self.value = data("Fixed", value)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.value

    def perturb(self, value: Any, factor: float, rng: np.random.Generator) -> Any:
        return self.value

    def validate(self, value: Any) -> Any:
        if value is self.value and value == value:  # carried along unchanged (NaN never is)
            return self.value
        try:
            same = data(self.name, value) == self.value
        except SpaceError:
            same = False
        if not same:
            raise SpaceError(f"{self.name}: fixed at {self.value!r}, got {value!r}")
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return {"dist": "fixed", "value": self.value}

    def __repr__(self) -> str:
        return f"Fixed({self.value!r})"


def data(where: str, value: Any, *, option: bool = False) -> Any:
    """``value`` as the run's record keeps it: JSON data (``None``, a bool, a number, a string,
    and lists and string-keyed dicts of them), in the form a resumed run reads back, so that a
    run and its resume see the same value. A tuple becomes a list and a numpy scalar a Python
    number; anything else (an object, a function, a dtype) is refused, since the record could
    keep only its text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return data(where, value.item(), option=option)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [data(where, v, option=option) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: data(where, v, option=option) for k, v in value.items()}
    hint = (
        "choose among names, e.g. Choice(['relu', 'tanh']), and map each name to its object in "
        "your trainable"
        if option
        else "pass its name or parameters as data and build the object in your trainable"
    )
    raise SpaceError(
        f"{where}: {value!r} is not data (a number, string, bool, None, or lists and dicts of "
        f"them), so the run's record would keep only its text and a resumed run would see "
        f"something else; {hint}"
    )
