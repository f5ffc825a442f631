"""Every exception firepbt raises, and the kinds of failure and warning it records.

The kinds are ``str`` enums: the store keeps their values, byte for byte what it kept when they
were bare strings, and a member compares equal to its value (``FailureKind.RAISED == "raised"``).
This module imports nothing of firepbt: both sides of the engine, the store and the strategies
use it.
"""

from __future__ import annotations

from enum import Enum


class TextEnum(str, Enum):
    """A ``str`` enum that is its value wherever a string is: ``str()``, format, hash and
    equality (as ``enum.StrEnum``, Python 3.11+, whose hash is still the name's)."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(self, spec)

    def __hash__(self) -> int:
        return str.__hash__(self)


class FailureKind(TextEnum):
    """Why a segment did not finish, as the store records it."""

    RAISED = "raised"  # the trainable raised (or called sys.exit())
    BAD_METRIC = "bad_metric"  # evaluate() returned something that is not a usable score
    CHECKPOINT = "checkpoint"  # the new checkpoint could not be pickled or written
    SOURCE_UNREADABLE = "source_unreadable"  # the checkpoint it starts from is lost or corrupted
    WORKER_DIED = "worker_died"  # its worker process (or actor) died under it
    TIMEOUT = "timeout"  # it ran past segment_timeout
    UNLOADABLE = "unloadable"  # no worker could unpickle it (its trainable cannot be imported)
    SUBMIT = "submit"  # it could not be sent to a worker (e.g. it cannot be pickled)
    INTERRUPTED = "interrupted"  # stopped for another segment's sake: run again, free of charge
    REPLAYED = "replayed"  # a failure recorded before a resume, replayed (never stored)
    # handed back unstarted by a worker that stopped: submitted again, nothing recorded
    UNSTARTED = "unstarted"


# Failures that would happen again on a retry from the same source (one that cannot be repaired).
HOPELESS = frozenset({FailureKind.BAD_METRIC, FailureKind.SOURCE_UNREADABLE})


class WarningKind(TextEnum):
    """What the store's warnings are about."""

    NAN_METRIC = "nan_metric"  # a non-finite score (it ranks worst)
    REPAIRED = "repaired"  # a lost or unreadable checkpoint was trained again
    CALLBACK = "callback"  # a callback raised
    UNUSED = "unused_hyperparameter"  # a name of the space the trainable never read
    TRAINABLE = "trainable"  # the trainable's own warning about its setup (Trainable.notices)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field and what to do."""


class SlotsError(ConfigError):
    """A vectorised population and the run's settings do not fit together."""


class SpaceError(ValueError):
    """A search space or a hyperparameter value that cannot be used; the message names the field."""


class ExploreError(SpaceError):
    """An explore policy returned hyperparameters outside the space; the message names the
    policy and the value."""


class PopulationConfigError(ValueError):
    """A strategy setting that cannot work; the message names the field."""


class TrainableError(ValueError):
    """The trainable named in a config cannot be imported or is not a Trainable."""


class MetricError(ValueError):
    """``evaluate()`` returned something that is not a usable score."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted, or its state cannot be pickled."""


class SourceUnreadable(CheckpointError):
    """The checkpoint a segment starts from is missing or corrupted."""


class StoreError(RuntimeError):
    """The run directory has no store, or a store of another version."""


class ResumeError(RuntimeError):
    """A run cannot be resumed: its store and a replay of its strategy disagree."""


class RunFailed(RuntimeError):
    """Every member of the population failed; the store holds each failure."""


class FireSettingsWarning(UserWarning):
    """FIRE PBT settings under which evaluators can rarely or never succeed."""
