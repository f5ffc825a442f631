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
    constant,
    distribution_from_dict,
)
from firepbt.errors import SpaceError

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
        return [k for k, d in self._dists.items() if not isinstance(d, Fixed)]

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
