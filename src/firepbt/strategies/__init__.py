"""Strategies: pure decision logic that turns population events into decisions."""

from firepbt.errors import PopulationConfigError
from firepbt.strategies._base import MemberState, Strategy
from firepbt.strategies._fire import FirePBT
from firepbt.strategies._pbt import PBT
from firepbt.strategies._population import Synchrony
from firepbt.strategies._random import RandomSearch

__all__ = [
    "FirePBT",
    "PBT",
    "MemberState",
    "PopulationConfigError",
    "RandomSearch",
    "Strategy",
    "Synchrony",
]
