"""firepbt: Population Based Training and FIRE PBT — train a population of models, tune their
hyperparameters while they train, and take home the best model and the schedule that made it.

>>> import firepbt
>>> space = {"lr": firepbt.LogUniform(1e-3, 1.0)}
"""

# Names are imported on first use (PEP 562), so that a worker process, which imports
# firepbt.execution and the trainable's module only, does not pay for the store, the strategies
# and the console: a worker starts in about a third of the time.
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firepbt._replay import ReplayResult, replay
    from firepbt.api import resume, run, run_config
    from firepbt.callbacks import Callback, MemberFailure, MemberPoint, RunStart
    from firepbt.config import RunConfig
    from firepbt.decisions import Continue, Exploit, Finish, Mode, Start
    from firepbt.errors import ConfigError, ExploreError, SpaceError
    from firepbt.exploit import BinaryTournament, KeepOwn, NoExploit, Truncation, WelchTTest
    from firepbt.explore import AddNoise, NoExplore, Perturb, Resample, chain
    from firepbt.lineage import ScheduleEntry, schedule
    from firepbt.loggers import MLflowWriter, TensorBoardWriter, WandbWriter
    from firepbt.results import RunResult
    from firepbt.space import Choice, Fixed, IntUniform, LogUniform, Space, Uniform
    from firepbt.store import Store
    from firepbt.strategies import PBT, FirePBT, RandomSearch, Strategy, Synchrony
    from firepbt.trainable import Trainable

_EXPORTS = {
    "AddNoise": "firepbt.explore",
    "BinaryTournament": "firepbt.exploit",
    "Callback": "firepbt.callbacks",
    "chain": "firepbt.explore",
    "Choice": "firepbt.space",
    "ConfigError": "firepbt.errors",
    "Continue": "firepbt.decisions",
    "Exploit": "firepbt.decisions",
    "Finish": "firepbt.decisions",
    "FirePBT": "firepbt.strategies",
    "Fixed": "firepbt.space",
    "IntUniform": "firepbt.space",
    "KeepOwn": "firepbt.exploit",
    "LogUniform": "firepbt.space",
    "MemberFailure": "firepbt.callbacks",
    "MemberPoint": "firepbt.callbacks",
    "MLflowWriter": "firepbt.loggers",
    "Mode": "firepbt.decisions",
    "NoExploit": "firepbt.exploit",
    "NoExplore": "firepbt.explore",
    "PBT": "firepbt.strategies",
    "Perturb": "firepbt.explore",
    "RandomSearch": "firepbt.strategies",
    "replay": "firepbt._replay",
    "ReplayResult": "firepbt._replay",
    "Resample": "firepbt.explore",
    "resume": "firepbt.api",
    "run": "firepbt.api",
    "run_config": "firepbt.api",
    "RunConfig": "firepbt.config",
    "RunResult": "firepbt.results",
    "RunStart": "firepbt.callbacks",
    "schedule": "firepbt.lineage",
    "ScheduleEntry": "firepbt.lineage",
    "Space": "firepbt.space",
    "SpaceError": "firepbt.errors",
    "ExploreError": "firepbt.errors",
    "Start": "firepbt.decisions",
    "Store": "firepbt.store",
    "Strategy": "firepbt.strategies",
    "Synchrony": "firepbt.strategies",
    "TensorBoardWriter": "firepbt.loggers",
    "Trainable": "firepbt.trainable",
    "Truncation": "firepbt.exploit",
    "Uniform": "firepbt.space",
    "WandbWriter": "firepbt.loggers",
    "WelchTTest": "firepbt.exploit",
}
__all__ = [
    "PBT",
    "FirePBT",
    "AddNoise",
    "BinaryTournament",
    "Callback",
    "Choice",
    "ConfigError",
    "Continue",
    "Exploit",
    "ExploreError",
    "Finish",
    "Fixed",
    "IntUniform",
    "KeepOwn",
    "LogUniform",
    "MLflowWriter",
    "MemberFailure",
    "MemberPoint",
    "Mode",
    "NoExplore",
    "NoExploit",
    "Perturb",
    "RandomSearch",
    "ReplayResult",
    "Resample",
    "RunConfig",
    "RunResult",
    "RunStart",
    "ScheduleEntry",
    "Space",
    "SpaceError",
    "Start",
    "Store",
    "Strategy",
    "Synchrony",
    "TensorBoardWriter",
    "Trainable",
    "Truncation",
    "Uniform",
    "WandbWriter",
    "WelchTTest",
    "chain",
    "run",
    "replay",
    "resume",
    "run_config",
    "schedule",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        try:  # a submodule, e.g. firepbt.fire after a bare `import firepbt`
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
