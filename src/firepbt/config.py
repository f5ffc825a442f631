"""Run configuration: one validated record behind both ``firepbt.run`` and ``firepbt run CONFIG``.

A TOML config looks like::

    trainable = "firepbt.examples.nqm:NQM"
    mode = "min"
    metric = "loss"
    run_dir = "runs/nqm"
    # checkpoint_every = 100    # steps between a member's checkpoints on disk (default: budget / 5)
    # max_retries = 2           # retries of a failing segment before the member fails
    # segment_timeout = 600     # seconds before a segment is stopped (process pool, ray)
    # storage = "s3://bucket/runs"  # where checkpoints go (default: the run directory); a path
    #                           # or any URI fsspec opens (pip install 'firepbt[s3]')
    # storage_options = { endpoint_url = "http://127.0.0.1:9000" }   # fsspec's, no credentials

    [space]
    lr = { dist = "loguniform", low = 1e-3, high = 2.0 }

    [strategy]
    name = "pbt"                # or "random"
    population = 8
    ready_every = 20
    synchrony = "sync"          # or "async"
    exploit = { name = "truncation", fraction = 0.25 }
    explore = [{ name = "perturb", factors = [0.8, 1.2] },
               { name = "resample", probability = 0.25 }]

    [budget]
    steps = 400

    [executor]
    kind = "process"            # or "inprocess", or "ray" (pip install 'firepbt[ray]')
    workers = 2
    # address = "auto"          # ray only: join a running cluster ("auto", "ray://host:10001")
    # runtime_env = { working_dir = "." }   # ray only: each worker actor's Ray runtime_env
    # num_cpus_per_worker = 1   # ray only: CPUs each worker actor reserves
    # gpus_per_worker = 1       # process, ray: GPUs per worker (0.5: two workers share one)
    # devices = [0, 1]          # process only: the GPUs to hand out (default: all visible)
    # slots = 8                 # process only: members per worker, trained as one vectorised
    #                           # population (the trainable is a VectorisedTrainable)

    [logging]                   # per-member logs, written by the controller (firepbt.loggers)
    tensorboard = "tb"          # a directory (pip install 'firepbt[tensorboard]')
    mlflow = "mlruns"           # a directory (local store) or a tracking URI ('firepbt[mlflow]')
    wandb = "my-project"        # or { project = "...", mode = "offline" } ('firepbt[wandb]')
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firepbt import storage
from firepbt.decisions import Mode
from firepbt.errors import ConfigError, PopulationConfigError, SpaceError
from firepbt.executor_options import check_executor_options
from firepbt.loggers import WRITERS, check_logging
from firepbt.registry import EXPLOITS, build_explore, check_type, is_kind
from firepbt.space import Space
from firepbt.strategies import PBT, FirePBT, RandomSearch, Strategy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STRATEGIES = ("pbt", "fire", "random")
_EVOLUTION = {"exploit", "explore", "synchrony", "burn_in", "initial_hyperparameters"}
STRATEGY_OPTIONS: dict[str, set[str]] = {
    "pbt": _EVOLUTION | {"replace_failed"},
    "fire": _EVOLUTION
    | {
        "replace_failed",
        "subpopulations",
        "evaluators",
        "max_eval_steps",
        "p_stat",
        "min_steps_before_eval",
        "warmup",
        "keep_curves",
        "retarget",
        "thin",
        "success_test",
    },
    "random": {"initial_hyperparameters"},
}
EXECUTORS = ("process", "inprocess", "ray")

# Where a firepbt.run keyword goes in a TOML config when it is not a top-level key.
_PLACES = {
    "total_steps": "under [budget] as steps = N",
    "steps": "under [budget] as steps = N",
    "population": "under [strategy] (population = N)",
    "ready_every": "under [strategy] (ready_every = N)",
    "strategy_options": "under [strategy], one key per option",
    "workers": "under [executor] (workers = N)",
    "address": "under [executor] (address = ...; executor kind 'ray')",
    "runtime_env": "under [executor] (runtime_env = { ... }; executor kind 'ray')",
    "num_cpus_per_worker": "under [executor] (kind 'ray')",
    "gpus_per_worker": "under [executor] (gpus_per_worker = 1, or 0.5 to share a GPU)",
    "devices": "under [executor] (devices = [0, 1]; kind 'process')",
    "slots": "under [executor] (slots = 8, with a vectorised trainable)",
    "callbacks": "in Python only (firepbt.run(..., callbacks=[...])); a config names its "
    "writers under [logging]",
    **{name: f'under [logging] ({name} = "...")' for name in WRITERS},
    **{
        option: f"under [strategy] ({option} = ...)"
        for option in sorted(set().union(*STRATEGY_OPTIONS.values()))
    },
}

# The type every scalar setting must have (the kinds of ``registry.check_type``); settings that
# may be left out (None) are checked only when given.
FIELD_TYPES = {
    "trainable": "text",
    "seed": "count",
    "max_retries": "count",
    "eval_every": "positive",
    "metric": "text",
    "test_metric": "text",
    "run_dir": "text",
}
OPTION_TYPES = {
    "replace_failed": "count",
    "subpopulations": "positive",
    "evaluators": "positive",
    "max_eval_steps": "positive",
    "p_stat": "number",
    "keep_curves": "flag",
    "retarget": "flag",
    "thin": "positive",
    "success_test": "text",
    "synchrony": "text",
    "burn_in": "count",
    "warmup": "count",
}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, validated at construction."""

    trainable: str
    space: dict[str, Any]
    total_steps: int
    strategy: str = "pbt"
    population: int = 8
    ready_every: int = 10
    eval_every: int | None = None
    mode: str = "max"
    metric: str | None = None
    test_metric: str | None = None  # a recorded metric reported beside the selection metric
    seed: int = 0
    executor: str = "process"
    workers: int = 2
    max_retries: int = 2
    checkpoint_every: int | None = None  # steps between checkpoints on disk; None: budget / 5
    segment_timeout: float | None = None  # seconds; a longer segment is stopped (process, ray)
    address: str | None = None  # ray: None starts a local Ray; "auto" / "ray://..." joins one
    runtime_env: dict[str, Any] | None = None  # ray: each worker actor's Ray runtime_env
    num_cpus_per_worker: float | None = None  # ray: CPUs per worker actor (default 1)
    gpus_per_worker: float | None = None  # process, ray: GPUs per worker (0.5: two share one)
    devices: list[str] | None = None  # process: the GPUs to hand out (default: all visible)
    slots: int | None = None  # process: members per worker, as one vectorised population
    run_dir: str | None = None
    storage: str | None = None  # checkpoints: a path or URI (s3://...); None: the run directory
    storage_options: dict[str, Any] | None = None  # fsspec's options for a storage URI
    strategy_options: dict[str, Any] = field(default_factory=dict)
    logging: dict[str, Any] = field(default_factory=dict)  # [logging]: writer name -> settings

    def __post_init__(self) -> None:
        check_logging(self.logging)
        for name, kind in FIELD_TYPES.items():
            check_type(name, getattr(self, name), kind)
        for name, kind in OPTION_TYPES.items():
            check_type(f"strategy.{name}", self.strategy_options.get(name), kind)
        steps = self.strategy_options.get("min_steps_before_eval")
        for i, value in enumerate(steps if isinstance(steps, list) else [steps]):
            where = f"[{i}]" if isinstance(steps, list) else ""
            check_type(f"strategy.min_steps_before_eval{where}", value, "count")
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"strategy.name: unknown strategy {self.strategy!r}; choose one of {STRATEGIES}"
            )
        if self.executor not in EXECUTORS:
            raise ConfigError(
                f"executor.kind: unknown executor {self.executor!r}; choose one of {EXECUTORS}"
            )
        check_executor_options(self)
        storage.check_options(self.storage, self.storage_options)
        if self.mode not in ("max", "min"):
            raise ConfigError(f"mode: expected 'max' or 'min', got {self.mode!r}")
        if self.checkpoint_every is not None and (
            not isinstance(self.checkpoint_every, int)
            or isinstance(self.checkpoint_every, bool)
            or self.checkpoint_every < 1
        ):
            raise ConfigError(
                f"checkpoint_every: expected a positive integer, got {self.checkpoint_every!r}"
            )
        for name in ("total_steps", "population", "ready_every", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
        if self.segment_timeout is not None and not (
            is_kind("number", self.segment_timeout) and self.segment_timeout > 0
        ):
            raise ConfigError(
                "segment_timeout: expected a positive number of seconds, "
                f"got {self.segment_timeout!r}"
            )
        try:
            Space.from_dict(self.space)
        except SpaceError as e:
            raise ConfigError(str(e)) from None
        self.build_strategy()  # validates the options

    @property
    def mode_enum(self) -> Mode:
        return Mode(self.mode)

    @property
    def eval_interval(self) -> int:
        return self.eval_every or self.ready_every

    def build_space(self) -> Space:
        return Space.from_dict(self.space)

    def build_strategy(self, objects: Mapping[str, Any] | None = None) -> Strategy:
        """The configured strategy; ``objects`` are options given from Python as objects (e.g.
        an exploit policy instance), used as they are instead of being built by name."""
        objects = dict(objects or {})
        opts = {**self.strategy_options, **objects}
        allowed = STRATEGY_OPTIONS[self.strategy]
        unknown = sorted(set(opts) - allowed)
        if unknown:
            raise ConfigError(
                f"strategy: unknown option(s) {unknown} for {self.strategy!r}; "
                f"it takes {sorted(allowed)}"
            )
        rng = np.random.default_rng(self.seed)
        space = self.build_space()
        try:
            if self.strategy == "random":
                return RandomSearch(
                    space, self.population, self.total_steps, self.ready_every, rng, **opts
                )
            if "exploit" in opts and "exploit" not in objects:
                opts["exploit"] = EXPLOITS.build(opts["exploit"], "strategy.exploit")
            if "explore" in opts and "explore" not in objects:
                opts["explore"] = build_explore(opts["explore"])
            if self.strategy == "fire":
                opts.setdefault("eval_every", self.eval_interval)  # the curves' resolution
                return FirePBT(
                    space, self.population, self.total_steps, self.ready_every, rng, **opts
                )
            return PBT(space, self.population, self.total_steps, self.ready_every, rng, **opts)
        except (PopulationConfigError, SpaceError) as e:
            raise ConfigError(f"strategy.{e}") from None

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data, as the run's store keeps them."""
        return asdict(self)

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        """Read and validate a TOML config file.

        Raises:
            firepbt.ConfigError: The file is not valid TOML or a setting is wrong; the message
                names the field.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"{path} is a directory; give the path of a TOML config") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML ({e})") from None
        return cls.from_mapping(data, where=str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "config") -> RunConfig:
        """Validate a config given as a mapping, laid out as a TOML config is.

        Args:
            data: The config's tables and keys (``{"trainable": ..., "space": {...}, ...}``).
            where: What to call the config in error messages (a file name).

        Raises:
            firepbt.ConfigError: A setting is wrong; the message names the field.
        """
        data = dict(data)
        known_top = {
            "test_metric",
            "segment_timeout",
            "trainable",
            "space",
            "strategy",
            "budget",
            "executor",
            "mode",
            "metric",
            "seed",
            "run_dir",
            "eval_every",
            "max_retries",
            "checkpoint_every",
            "logging",
            "storage",
            "storage_options",
        }
        unknown = sorted(set(data) - known_top)
        placed = [f"{k} belongs {_PLACES[k]}" for k in unknown if k in _PLACES]
        if placed:  # a firepbt.run keyword written at the top level
            raise ConfigError(f"{where}: " + "; ".join(placed))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known_top)}")
        for required in ("trainable", "space", "budget"):
            if required not in data:
                raise ConfigError(
                    f"{where}: missing [{required}]"
                    if required != "trainable"
                    else f"{where}: missing trainable = 'module:Class'"
                )
        strategy = dict(_table(data, "strategy", where))
        budget = dict(_table(data, "budget", where))
        executor = dict(_table(data, "executor", where))
        if set(budget) - {"steps"} or "steps" not in budget:
            raise ConfigError(f"{where}: [budget] takes exactly 'steps' (steps per member)")
        executor_keys = (
            "kind",
            "workers",
            "address",
            "runtime_env",
            "num_cpus_per_worker",
            "gpus_per_worker",
            "devices",
            "slots",
        )
        if set(executor) - set(executor_keys):
            raise ConfigError(
                f"{where}: [executor] takes {', '.join(map(repr, executor_keys))}; "
                f"unknown: {sorted(set(executor) - set(executor_keys))}"
            )
        name = strategy.pop("name", "pbt")
        common = {k: strategy.pop(k) for k in ("population", "ready_every") if k in strategy}
        return cls(
            trainable=data["trainable"],
            space=dict(_table(data, "space", where)),
            total_steps=budget["steps"],
            strategy=name,
            mode=data.get("mode", "max"),
            metric=data.get("metric"),
            test_metric=data.get("test_metric"),
            seed=data.get("seed", 0),
            run_dir=data.get("run_dir"),
            storage=data.get("storage"),
            storage_options=data.get("storage_options"),
            eval_every=data.get("eval_every"),
            max_retries=data.get("max_retries", 2),
            checkpoint_every=data.get("checkpoint_every"),
            segment_timeout=data.get("segment_timeout"),
            executor=executor.get("kind", "process"),
            workers=executor.get("workers", 2),
            address=executor.get("address"),
            runtime_env=executor.get("runtime_env"),
            num_cpus_per_worker=executor.get("num_cpus_per_worker"),
            gpus_per_worker=executor.get("gpus_per_worker"),
            devices=executor.get("devices"),
            slots=executor.get("slots"),
            strategy_options=strategy,
            logging=dict(_table(data, "logging", where)),
            **common,
        )


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value
