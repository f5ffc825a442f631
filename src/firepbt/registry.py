"""Named presets: one registry per concept maps a name to a factory and refuses duplicates, so a
config or the command line can say ``exploit = {name = "truncation", fraction = 0.2}``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from firepbt import exploit as xp
from firepbt import explore as xr
from firepbt.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T]) -> None:
        if name in self._factories:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def build(self, spec: str | Mapping[str, Any], field: str) -> T:
        """Build from ``"name"`` or ``{name = "...", option = value, ...}``."""
        if not isinstance(spec, (str, Mapping)):
            raise ConfigError(
                f"{field}: expected the name of an {self.kind} or a table with its name and "
                f"options, got {spec!r}"
            )
        options = {"name": spec} if isinstance(spec, str) else dict(spec)
        name = options.pop("name", None)
        if not isinstance(name, str) or name not in self._factories:
            raise ConfigError(
                f"{field}: unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}"
            )
        _check_numbers(self._factories[name], options, f"{field}.")
        try:
            return self._factories[str(name)](**options)
        except TypeError as e:
            raise ConfigError(f"{field}: bad options for {self.kind} {name!r}: {e}") from None
        except ValueError as e:
            raise ConfigError(f"{field}: {e}") from None


_EXPECTED = {
    "count": "an integer >= 0",
    "positive": "a positive integer",
    "number": "a number",
    "flag": "true or false",
    "text": "a string",
}


def is_kind(kind: str, value: Any) -> bool:
    """Whether ``value`` is of ``kind`` (see ``check_type``)."""
    if kind == "flag":
        return isinstance(value, bool)
    if kind == "text":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind == "number":
        return True
    return isinstance(value, int) and value >= (1 if kind == "positive" else 0)


def check_type(name: str, value: Any, kind: str) -> None:
    """A ``ConfigError`` naming ``name`` unless ``value`` (when given) is of ``kind``: "count" (an
    int >= 0), "positive" (an int >= 1), "number" (an int or float), "flag" (a bool) or "text" (a
    str). A bool is not an int, and a string is not a number."""
    if value is not None and not is_kind(kind, value):
        raise ConfigError(f"{name}: expected {_EXPECTED[kind]}, got {value!r}")


def _check_numbers(factory: Callable[..., Any], options: Mapping[str, Any], prefix: str) -> None:
    """An option whose default is a number must be given a number (a bool or a string is not
    one), so the message names the option instead of failing inside the policy."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return
    for key, value in options.items():
        default = parameters[key].default if key in parameters else None
        if is_kind("number", default):
            check_type(f"{prefix}{key}", value, "number")


EXPLOITS: Registry[xp.ExploitPolicy] = Registry("exploit policy")
EXPLOITS.register("truncation", xp.Truncation)
EXPLOITS.register("tournament", xp.BinaryTournament)
EXPLOITS.register("ttest", xp.WelchTTest)
EXPLOITS.register("keep_own", xp.KeepOwn)
EXPLOITS.register("none", xp.NoExploit)

EXPLORES: Registry[xr.ExplorePolicy] = Registry("explore policy")
EXPLORES.register("perturb", lambda factors=(0.8, 1.2): xr.Perturb(tuple(factors)))
EXPLORES.register("resample", xr.Resample)
EXPLORES.register("noise", xr.AddNoise)
EXPLORES.register("none", xr.NoExplore)


def build_explore(spec: Any, field: str = "strategy.explore") -> xr.ExplorePolicy:
    """A single policy spec, or a list of them chained in order."""
    if isinstance(spec, list):
        return xr.chain(*(EXPLORES.build(s, f"{field}[{i}]") for i, s in enumerate(spec)))
    return EXPLORES.build(spec, field)
