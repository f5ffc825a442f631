"""Search spaces: the prior each hyperparameter is drawn from, and how it moves.

Each distribution (:mod:`firepbt.distributions`) can ``sample`` a value from its prior,
``perturb`` a value by a factor (multiplicative moves, as in the PBT paper) and ``resample`` it
from the prior. A value never leaves its hard range: the prior's ``[low, high]``, unless
``bounds`` widen it (a learning rate that should decay below the range it is drawn from needs a
lower bound below ``low``). Perturbation clips to the hard range.

>>> import numpy as np
>>> lr = LogUniform(1e-4, 1e-1, bounds=(1e-6, 1.0))
>>> space = Space({"lr": lr, "batch": Choice([32, 64, 128])})
>>> h = space.sample(np.random.default_rng(0))
>>> sorted(h)
['batch', 'lr']
>>> lr.perturb(0.9, 2.0, np.random.default_rng(0))  # clipped to the hard upper bound
1.0
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from firepbt.distributions import (
    Choice,
    Distribution,
    Fixed,
    IntUniform,
    LogUniform,
    Uniform,
    data,
)
from firepbt.errors import ConfigError, SpaceError

Hyperparameters = dict[str, Any]

__all__ = [
    "Choice",
    "Distribution",
    "Fixed",
    "Hyperparameters",
    "IntUniform",
    "LogUniform",
    "Space",
    "Uniform",
    "distribution_from_dict",
]


_KINDS: dict[str, type[Distribution]] = {
    "uniform": Uniform,
    "loguniform": LogUniform,
    "intuniform": IntUniform,
    "choice": Choice,
    "fixed": Fixed,
}


def constant(name: str, value: Any) -> Fixed:
    """A plain value in a space: a constant. A plain list or tuple is refused, since it reads as
    a range or a choice as easily as a constant; ``Fixed`` says a constant."""
    if callable(value):
        raise SpaceError(
            f"space.{name}: {value!r} is a function or a class, which would be kept as one "
            "constant value (a sampler, as Ray Tune's lambdas are?); write Uniform(low, high), "
            "LogUniform(low, high) or Choice([...]) for firepbt to sample and tune it"
        )
    if isinstance(value, Mapping):
        key = f"{name}.{next(iter(value), 'key')}"
        raise SpaceError(
            f"space.{name}: a nested dict; a space is flat, one name per hyperparameter: write "
            f'"{key}": ... for each entry (a dotted name, read as hyperparameters["{key}"]), or '
            "Fixed({...}) to keep the dict as one constant"
        )
    if not isinstance(value, (list, tuple)):
        return Fixed(data(f"space.{name}", value))
    numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    ranges = []
    if len(value) == 2 and len(numbers) == 2 and value[0] < value[1]:
        low, high = value
        ranges = [f"Uniform({low!r}, {high!r})"]
        if low > 0:
            ranges.insert(0, f"LogUniform({low!r}, {high!r})")
    tune = f"{' or '.join(ranges)} to tune it in that range, " if ranges else ""
    raise SpaceError(
        f"space.{name}: {value!r} would be kept as one constant value; write {tune}"
        f"Choice({list(value)!r}) to choose among its values, or Fixed({value!r}) to keep it "
        "as a constant"
    )


def distribution_from_dict(name: str, spec: Mapping[str, Any]) -> Distribution:
    """Build a distribution from a config table such as
    ``{dist = "loguniform", low = 1e-4, high = 0.1}``; a plain value stands for a constant
    (see ``constant``)."""
    if not isinstance(spec, Mapping):
        return constant(name, spec)
    spec = dict(spec)
    if "dist" not in spec:
        key = f"{name}.{next(iter(spec), 'key')}"
        raise SpaceError(
            f"space.{name}: missing field 'dist'; use one of {', '.join(sorted(_KINDS))} (a "
            f'space is flat: for a nested table, write "{key}" = {{ dist = ... }} for each '
            'entry, its key quoted, or { dist = "fixed", value = {...} } for a constant)'
        )
    kind = str(spec.pop("dist")).lower().replace("_", "")
    if kind not in _KINDS:
        raise SpaceError(
            f"space.{name}: unknown dist {kind!r}; use one of {', '.join(sorted(_KINDS))}"
        )
    dist: Distribution
    try:
        if kind == "choice":
            ordered = spec.pop("ordered", False)
            if not isinstance(ordered, bool):
                raise SpaceError(f"ordered must be true or false, got {ordered!r}")
            dist = Choice(spec.pop("options"), ordered=ordered)
        elif kind == "fixed":
            dist = Fixed(spec.pop("value"))
        else:
            bounds = spec.pop("bounds", None)
            low, high = spec.pop("low"), spec.pop("high")
            dist = _KINDS[kind](low, high, bounds=bounds)  # type: ignore[call-arg]
    except KeyError as e:
        raise SpaceError(f"space.{name}: missing field {e.args[0]!r} for dist {kind!r}") from None
    except SpaceError as e:
        raise SpaceError(f"space.{name}: {e}") from None
    if spec:
        raise SpaceError(f"space.{name}: unknown field(s) {sorted(spec)} for dist {kind!r}")
    return dist


class Space(Mapping[str, Distribution]):
    """A named set of distributions; a plain value stands for a constant.

    A read-only mapping from names to distributions; each distribution learns its name here, so
    that its errors name the field.

    Args:
        dists: Hyperparameter names mapped to distributions (:class:`firepbt.LogUniform`,
            :class:`firepbt.Choice`, ...) or to plain values, each of which stands for
            :class:`firepbt.Fixed`.

    Raises:
        firepbt.SpaceError: ``dists`` is empty, or a name is not a non-empty string.

    >>> import numpy as np
    >>> s = Space({"lr": LogUniform(1e-3, 1.0), "momentum": 0.9})
    >>> s.sample(np.random.default_rng(1))["momentum"]
    0.9
    """

    def __init__(self, dists: Mapping[str, Distribution | Any]) -> None:
        if not dists:
            raise SpaceError("space: declare at least one hyperparameter")
        self._dists: dict[str, Distribution] = {}
        for name, d in dists.items():
            if not isinstance(name, str) or not name:
                raise SpaceError(
                    f"space: hyperparameter names must be non-empty strings, got {name!r}"
                )
            if not isinstance(d, Distribution):
                d = constant(name, d)
            rename = getattr(d, "_rename", None)
            if rename is not None:
                rename(name)
            else:
                d.name = name
            self._dists[name] = d
        self._tunable = [k for k, d in self._dists.items() if not isinstance(d, Fixed)]

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Space:
        return cls({k: distribution_from_dict(k, v) for k, v in spec.items()})

    def to_dict(self) -> dict[str, Any]:
        return {k: d.to_dict() for k, d in self._dists.items()}

    def __getitem__(self, key: str) -> Distribution:
        return self._dists[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dists)

    def __len__(self) -> int:
        return len(self._dists)

    def sample(self, rng: np.random.Generator) -> Hyperparameters:
        return {k: d.sample(rng) for k, d in self._dists.items()}

    def tunable(self) -> list[str]:
        """Names of the hyperparameters that can move (not ``Fixed``)."""
        return list(self._tunable)

    def validate(self, h: Mapping[str, Any]) -> Hyperparameters:
        """Check a full set of hyperparameters: every key known, none missing, each in range.

        Args:
            h: Hyperparameter names mapped to values.

        Returns:
            The values in canonical form and in the space's order (a float for ``Uniform`` and
            ``LogUniform``, an int for ``IntUniform``, the matching option for ``Choice``).

        Raises:
            firepbt.SpaceError: A key is unknown or missing, or a value is out of its range, not
                one of its choice's options, or not its fixed value.
        """
        if h.keys() == self._dists.keys():  # the usual case, without building sets
            return {k: d.validate(h[k]) for k, d in self._dists.items()}
        unknown = sorted(set(h) - set(self._dists))
        if unknown:
            raise SpaceError(
                f"hyperparameters: unknown key(s) {unknown}; "
                f"the space declares {sorted(self._dists)}"
            )
        missing = sorted(set(self._dists) - set(h))
        if missing:
            raise SpaceError(f"hyperparameters: missing key(s) {missing}")
        return {k: self._dists[k].validate(h[k]) for k in self._dists}

    def __repr__(self) -> str:
        return f"Space({self._dists!r})"


def space_config(space: Mapping[str, Any]) -> dict[str, Any]:
    """A space given to ``firepbt.run`` as its config keeps it: each distribution's ``to_dict``,
    a plain value read as ``Space`` reads it (a constant; a nested dict, a function, a list or
    anything that is not data refused with the same words).

    Raises:
        firepbt.ConfigError: A value is refused; the message names it.
    """
    try:
        return {
            k: (d if isinstance(d, Distribution) else constant(k, d)).to_dict()
            for k, d in space.items()
        }
    except SpaceError as e:
        raise ConfigError(str(e)) from None
