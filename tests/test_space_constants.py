"""Values in a space that would silently mean something else are refused in one line with a
hint: a set as a choice's options (its order is hash order) and a function as a constant (a
sampler, as Ray Tune's lambdas are)."""

from __future__ import annotations

import pytest

import firepbt
from firepbt import Choice, Fixed, Space, SpaceError
from firepbt.errors import ConfigError


@pytest.mark.parametrize("options", [{3, 4, 8, 10}, frozenset({"a", "b"}), {1: 0}.keys()])
def test_a_set_of_options_is_refused(options: object) -> None:
    with pytest.raises(SpaceError, match=r"are a set, whose order is not defined.*sorted"):
        Choice(options, ordered=True)  # type: ignore[arg-type]


def test_a_list_keeps_its_order() -> None:
    assert Choice([3, 4, 8, 10], ordered=True).options == [3, 4, 8, 10]


@pytest.mark.parametrize("value", [lambda: 1.0, float, print])
def test_a_callable_constant_is_refused_everywhere(value: object) -> None:
    with pytest.raises(SpaceError, match=r"space\.a: .* a function or a class.*a sampler"):
        Space({"a": value})
    with pytest.raises(SpaceError, match=r"a function or a class.*Uniform\(low, high\)"):
        Fixed(value)

    class Flat(firepbt.Trainable):
        def train(self, steps: int) -> None: ...
        def evaluate(self) -> float:
            return 0.0

        def save(self) -> dict[str, float]:
            return {}

        def load(self, state: object) -> None: ...

    with pytest.raises(ConfigError, match=r"space\.a: .* a function or a class"):
        firepbt.run(
            Flat,
            {"a": value},
            total_steps=2,
            population=2,
            ready_every=1,
            executor="inprocess",
            progress=False,
        )
