"""The ``[logging]`` table of a config (``firepbt.run(..., logging={...})``): which writers a run
has, checked when the config is made and built when the run starts.

    [logging]
    tensorboard = "tb"                      # a directory
    mlflow = "mlruns"                       # a directory (local store) or a tracking URI
    # mlflow = { where = "http://mlflow:5000", experiment = "nqm" }
    wandb = "my-project"                    # a W&B project
    # wandb = { project = "my-project", entity = "me", mode = "offline", group = "nqm" }
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from firepbt.callbacks import Callback
from firepbt.errors import ConfigError
from firepbt.loggers._mlflow import MLflowWriter
from firepbt.loggers._tensorboard import TensorBoardWriter
from firepbt.loggers._wandb import MODES, WandbWriter


@dataclass(frozen=True, slots=True)
class _Writer:
    """How a ``[logging]`` key becomes a writer: the name its string value stands for (None:
    only a table), the table's keys (``required`` among them), the package it needs."""

    build: Callable[..., Callback]
    package: str
    text: str | None
    keys: tuple[str, ...]
    required: tuple[str, ...] = ()
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()


WRITERS: dict[str, _Writer] = {
    "tensorboard": _Writer(
        TensorBoardWriter, "tensorboard", "directory", ("directory",), ("directory",)
    ),
    "mlflow": _Writer(MLflowWriter, "mlflow", "where", ("where", "experiment")),
    "wandb": _Writer(
        WandbWriter,
        "wandb",
        "project",
        ("project", "entity", "group", "mode", "dir"),
        ("project",),
        (("mode", MODES),),
    ),
}
"""The writers ``[logging]`` can name."""


def _options(name: str, value: Any) -> dict[str, Any]:
    """The keyword arguments of writer ``name``'s class that ``value`` stands for."""
    writer = WRITERS[name]
    field = f"logging.{name}"
    if isinstance(value, str) and writer.text is not None:
        value = {writer.text: value}
    elif not isinstance(value, Mapping):
        raise ConfigError(
            f"{field}: expected a {writer.text} (a string) or a table with keys "
            f"{', '.join(writer.keys)}, got {value!r}"
        )
    unknown = sorted(set(value) - set(writer.keys))
    if unknown:
        raise ConfigError(f"{field}: unknown key(s) {unknown}; it takes {', '.join(writer.keys)}")
    missing = [k for k in writer.required if k not in value]
    if missing:
        raise ConfigError(f"{field}: missing {', '.join(missing)}")
    for key, v in value.items():
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{field}.{key}: expected a non-empty string, got {v!r}")
    for key, allowed in writer.choices:
        if key in value and value[key] not in allowed:
            raise ConfigError(f"{field}.{key}: expected one of {allowed}, got {value[key]!r}")
    return dict(value)


def check_logging(settings: Any) -> Mapping[str, Any]:
    """``settings``, or a ``ConfigError`` naming the key unless it is a valid ``[logging]``
    table."""
    if not isinstance(settings, Mapping):
        raise ConfigError(f"logging: expected a table of writers, got {settings!r}")
    unknown = sorted(set(settings) - set(WRITERS))
    if unknown:
        raise ConfigError(
            f"logging: unknown writer(s) {unknown}; choose among {', '.join(WRITERS)}"
        )
    for name, value in settings.items():
        _options(name, value)
    return settings


def build_writers(settings: Mapping[str, Any]) -> list[Callback]:
    """The writers a ``[logging]`` table names (nothing is opened before the run starts); a
    ``ConfigError`` naming the package and the extra to install when one is missing."""
    check_logging(settings)
    writers = []
    for name, value in settings.items():
        writer = WRITERS[name]
        if importlib.util.find_spec(writer.package) is None:
            raise ConfigError(
                f"logging.{name}: the {name} writer needs the {writer.package} package; "
                f"pip install 'firepbt[{name}]' (or leave logging.{name} out)"
            )
        writers.append(writer.build(**_options(name, value)))
    return writers
