"""Decisions as data: what a strategy tells the runner to do with a member.

Every decision that keeps a member training names the step it trains ``until`` (its next ready
step); the runner turns it into a segment. Decisions are recorded in the store before the runner
acts on them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from firepbt.explore import Change
from firepbt.space import Hyperparameters


class Mode(enum.Enum):
    """Whether a higher or a lower score is better."""

    MAX = "max"
    MIN = "min"

    def orient(self, score: float) -> float:
        """The score as the strategies see it: higher is always better."""
        return score if self is Mode.MAX else -score


@dataclass(frozen=True, slots=True)
class Weights:
    """Where a member's current weights live: the checkpoint of ``member`` at ``step``, trained
    with ``hyperparameters`` (the values an exploit copies)."""

    member: int
    step: int
    hyperparameters: Hyperparameters


@dataclass(frozen=True, slots=True)
class Start:
    """Build ``member`` from scratch with ``hyperparameters`` and ``seed``; train to ``until``."""

    member: int
    hyperparameters: Hyperparameters
    seed: int
    until: int
    subpopulation: int = 0


@dataclass(frozen=True, slots=True)
class Continue:
    """Member keeps its weights and hyperparameters; train from ``step`` until ``until``."""

    member: int
    step: int
    until: int


@dataclass(frozen=True, slots=True)
class Exploit:
    """Member (ready at ``step``) copies ``donor``'s current weights (the checkpoint ``source``)
    and trains with explored ``hyperparameters`` from ``source.step`` until ``until``. A member
    that keeps its own weights and only explores has ``donor == member``."""

    member: int
    step: int
    donor: int
    source: Weights
    old_hyperparameters: Hyperparameters
    hyperparameters: Hyperparameters
    changes: tuple[Change, ...]
    reason: str
    until: int


@dataclass(frozen=True, slots=True)
class Assign:
    """FIRE PBT: evaluator ``member`` copies the weights of ``parent`` (``source``) and trains
    them with the hyperparameters of ``target``, the best member of the child sub-population, from
    ``source.step`` until ``until``; its curve measures the parent's improvement rate."""

    member: int
    parent: int
    target: int
    source: Weights
    hyperparameters: Hyperparameters
    seed: int
    until: int
    reason: str


@dataclass(frozen=True, slots=True)
class Handover:
    """FIRE PBT: the evaluator succeeded; its target ``member`` copies the evaluator's weights
    (``source``), keeps its own ``hyperparameters`` and trains from ``source.step`` to ``until``."""

    member: int
    step: int
    evaluator: int
    source: Weights
    hyperparameters: Hyperparameters
    reason: str
    until: int


@dataclass(frozen=True, slots=True)
class Release:
    """FIRE PBT: evaluator ``member`` stops at ``step`` (criteria met, its parent or target lost an
    evolution event, or the budget is spent) and drops its weights."""

    member: int
    step: int
    reason: str


@dataclass(frozen=True, slots=True)
class Finish:
    """Member reached the end of its budget at ``step``."""

    member: int
    step: int


Decision = Start | Continue | Exploit | Assign | Handover | Release | Finish


@dataclass(frozen=True, slots=True)
class Record:
    """What the store records of a decision, and what a resume checks its replay against:
    who, at which step, what kind, from whom (donor, parent or evaluator) and from which
    weights, with which hyperparameters (``None`` where the kind sets none)."""

    member: int
    step: int
    kind: str
    donor: int | None = None
    source_member: int | None = None
    source_step: int | None = None
    hyperparameters: Hyperparameters | None = None


def record_of(d: Decision) -> Record:
    """The :class:`Record` of a decision."""
    if isinstance(d, Start):
        return Record(d.member, 0, "start", hyperparameters=d.hyperparameters)
    if isinstance(d, Exploit):
        source = d.source
        return Record(d.member, d.step, "exploit", d.donor, source.member, source.step,
                      d.hyperparameters)  # fmt: skip
    if isinstance(d, Assign):
        source = d.source
        return Record(d.member, source.step, "assign", d.parent, source.member, source.step,
                      d.hyperparameters)  # fmt: skip
    if isinstance(d, Handover):
        source = d.source
        return Record(d.member, d.step, "handover", d.evaluator, source.member, source.step,
                      d.hyperparameters)  # fmt: skip
    if isinstance(d, (Continue, Release, Finish)):
        return Record(d.member, d.step, type(d).__name__.lower())
    raise TypeError(f"not a decision: {d!r}")
