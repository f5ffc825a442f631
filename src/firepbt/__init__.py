"""firepbt: Population Based Training and FIRE PBT — train a population of models, tune their
hyperparameters while they train, and take home the best model and the schedule that made it.

>>> import firepbt
>>> space = {"lr": firepbt.LogUniform(1e-3, 1.0)}
"""

from firepbt.api import RunResult, resume, run, run_config
from firepbt.callbacks import Callback, MemberFailure, MemberPoint, RunStart
from firepbt.config import RunConfig
from firepbt.decisions import Continue, Exploit, Finish, Mode, Start
from firepbt.exploit import BinaryTournament, KeepOwn, NoExploit, Truncation, WelchTTest
from firepbt.explore import AddNoise, NoExplore, Perturb, Resample, chain
from firepbt.lineage import ScheduleEntry, schedule
from firepbt.loggers import MLflowWriter, TensorBoardWriter, WandbWriter
from firepbt.registry import ConfigError
from firepbt.replay import ReplayResult, replay
from firepbt.space import Choice, Fixed, IntUniform, LogUniform, Space, SpaceError, Uniform
from firepbt.store import Store
from firepbt.strategies import PBT, FirePBT, RandomSearch, Strategy, Synchrony
from firepbt.trainable import Trainable

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
