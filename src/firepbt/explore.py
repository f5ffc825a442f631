"""Explore policies: how a member's copied hyperparameters are mutated.

A policy takes hyperparameters, the space and a generator and returns the new hyperparameters
with a record of every change (``lr: 0.1 → 0.08 (×0.8)``). Policies compose with ``chain``:
``chain(Perturb(), Resample(0.25))`` perturbs every value, then resamples each from the prior
with probability 0.25 — the PBT paper's *perturb* and *resample* together.

>>> import numpy as np
>>> from firepbt.space import Space, LogUniform
>>> space = Space({"lr": LogUniform(1e-3, 1.0)})
>>> h, changes = Perturb((0.5,))({"lr": 0.1}, space, np.random.default_rng(0))
>>> str(changes[0])
'lr: 0.1 → 0.05 (×0.5)'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from firepbt.distributions import _Continuous
from firepbt.errors import ExploreError, SpaceError
from firepbt.space import Hyperparameters, Space


@dataclass(frozen=True, slots=True)
class Change:
    """One hyperparameter moved by an explore step."""

    name: str
    old: Any
    new: Any
    how: str

    def __str__(self) -> str:
        return f"{self.name}: {_fmt(self.old)} → {_fmt(self.new)} ({self.how})"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)


class ExplorePolicy(Protocol):
    """Mutates hyperparameters; returns the new values and what changed."""

    def __call__(
        self, h: Mapping[str, Any], space: Space, rng: np.random.Generator
    ) -> tuple[Hyperparameters, tuple[Change, ...]]:
        """Explore from the hyperparameters ``h`` a member has just copied.

        Args:
            h: The copied hyperparameters.
            space: The run's space: keep every value inside its hard range.
            rng: The strategy's seeded generator: draw every random choice from it.

        Returns:
            The new hyperparameters and one record per value changed. They hold every name of
            the space and no other, each value inside its hard range or one of its options:
            firepbt checks them and raises :class:`firepbt.ExploreError`, naming the policy,
            if not.
        """
        ...


@dataclass(frozen=True, slots=True)
class Perturb:
    """Multiply each tunable hyperparameter by a factor drawn uniformly from ``factors``.

    The PBT paper uses (0.8, 1.2); the FIRE PBT paper (0.5, 0.8, 1.25, 2.0). Hard bounds of the
    space are respected; integers are rounded, ordered choices step to a neighbour (up for a
    factor above 1) and unordered ones move to another option.

    Attributes:
        factors: The factors to draw from, one draw per hyperparameter: at least one, each a
            positive finite number.

    Raises:
        ValueError: ``factors`` is empty or holds a factor that is not positive and finite.
    """

    factors: Sequence[float] = (0.8, 1.2)

    def __post_init__(self) -> None:
        if not self.factors or any(not (0 < f < math.inf) for f in self.factors):
            raise ValueError(f"Perturb.factors must be positive numbers, got {self.factors!r}")

    def __call__(
        self, h: Mapping[str, Any], space: Space, rng: np.random.Generator
    ) -> tuple[Hyperparameters, tuple[Change, ...]]:
        new = dict(h)
        changes = []
        for name in space.tunable():
            factor = float(self.factors[int(rng.integers(len(self.factors)))])
            new[name] = space[name].perturb(h[name], factor, rng)
            changes.append(Change(name, h[name], new[name], f"×{factor:g}"))
        return new, tuple(changes)


@dataclass(frozen=True, slots=True)
class Resample:
    """Replace each tunable hyperparameter by a draw from its prior with ``probability``.

    Attributes:
        probability: The chance, in ``[0, 1]``, that each tunable hyperparameter is resampled,
            drawn independently for each.

    Raises:
        ValueError: ``probability`` is not in ``[0, 1]``.
    """

    probability: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"Resample.probability must lie in [0, 1], got {self.probability}")

    def __call__(
        self, h: Mapping[str, Any], space: Space, rng: np.random.Generator
    ) -> tuple[Hyperparameters, tuple[Change, ...]]:
        new = dict(h)
        changes = []
        for name in space.tunable():
            if rng.random() < self.probability:
                new[name] = space[name].resample(rng)
                changes.append(Change(name, h[name], new[name], "resampled"))
        return new, tuple(changes)


@dataclass(frozen=True, slots=True)
class AddNoise:
    """Add Gaussian noise of standard deviation ``std`` to each numeric tunable value, clipped to
    its hard bounds (the PBT paper's toy example explores this way). Integer values are rounded,
    log-scale values stay positive; choices are left alone.

    Attributes:
        std: The noise's standard deviation, on the value's own scale (also for a log-scale
            value): a finite number, 0 or more.

    Raises:
        ValueError: ``std`` is negative or not finite.
    """

    std: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.std < math.inf:
            raise ValueError(f"AddNoise.std must be a finite number >= 0, got {self.std}")

    def __call__(
        self, h: Mapping[str, Any], space: Space, rng: np.random.Generator
    ) -> tuple[Hyperparameters, tuple[Change, ...]]:
        new = dict(h)
        changes = []
        for name in space.tunable():
            dist = space[name]
            if not isinstance(dist, _Continuous):
                continue
            noise = float(rng.normal(0.0, self.std))
            new[name] = dist._clip(float(h[name]) + noise)
            changes.append(Change(name, h[name], new[name], f"{noise:+.3g}"))
        return new, tuple(changes)


@dataclass(frozen=True, slots=True)
class NoExplore:
    """Keep the copied hyperparameters as they are (PBT's *exploit only* ablation)."""

    def __call__(
        self, h: Mapping[str, Any], space: Space, rng: np.random.Generator
    ) -> tuple[Hyperparameters, tuple[Change, ...]]:
        return dict(h), ()


@dataclass(frozen=True, slots=True)
class Chain:
    """Apply policies in order; the record lists every change of every policy.

    :func:`firepbt.chain` builds one.

    Attributes:
        policies (tuple): The explore policies, applied left to right, each to the
            hyperparameters the one before it returned.
    """

    policies: tuple[ExplorePolicy, ...]

    def __call__(
        self, h: Mapping[str, Any], space: Space, rng: np.random.Generator
    ) -> tuple[Hyperparameters, tuple[Change, ...]]:
        current: Hyperparameters = dict(h)
        changes: list[Change] = []
        for policy in self.policies:
            current, done = explore_within(policy, current, space, rng)
            changes.extend(done)
        return current, tuple(changes)


def chain(*policies: ExplorePolicy) -> Chain:
    """Compose explore policies left to right.

    Args:
        *policies (``ExplorePolicy``): Explore policies (:class:`firepbt.Perturb`,
            :class:`firepbt.Resample`, ...), applied in the order given, each to the
            hyperparameters the one before it returned.

    Returns:
        One policy that applies them all, its record listing every change of every policy.
    """
    return Chain(tuple(policies))


def explore_within(
    policy: ExplorePolicy, h: Mapping[str, Any], space: Space, rng: np.random.Generator
) -> tuple[Hyperparameters, tuple[Change, ...]]:
    """Call an explore policy and check what it returns against the space: every name of the
    space and no other, each value inside its hard range (or one of its options), in canonical
    form. A policy that breaks this (a custom one that forgets to clip) is named in one line,
    rather than training a member on a value the space forbids.

    Raises:
        firepbt.errors.ExploreError: The policy returned a value outside the space.
    """
    new, changes = policy(h, space, rng)
    if type(policy) is Chain and policy.policies:
        return new, changes  # the last policy's values were checked as it returned them
    try:
        return space.validate(new), changes
    except SpaceError as e:
        name = getattr(policy, "__qualname__", None) or type(policy).__name__
        raise ExploreError(
            f"explore policy {name} returned a value outside the space ({e}); an explore step "
            "returns every name of the space and no other, each value inside its hard range "
            "(clip it: min(max(value, low), high)) or one of its options"
        ) from None
