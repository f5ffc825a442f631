"""Callbacks: per-member logging from the controller.

The runner calls every :class:`Callback` of a run with each event it records in the store: each
curve point a member reports (:class:`MemberPoint`), each decision (start, exploit with its donor
and explore record, FIRE PBT's assignment, hand-over and release, finish) and each failed
segment (:class:`MemberFailure`). They run in the controller process, so no worker needs the
credentials of a logging service.

A callback sees only *new* events: a resumed run replays what its store recorded without calling
callbacks again, and goes on calling them with what it records from then on.

A callback that raises is recorded in the store as a warning of kind ``"callback"`` (shown by
``firepbt status`` and the report) and is not called again; the run goes on.

>>> class Printer(Callback):
...     def on_point(self, point: MemberPoint) -> None:
...         print(point.member, point.step, point.metrics)
>>> # firepbt.run(..., callbacks=[Printer()])
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firepbt.decisions import Assign, Continue, Decision, Exploit, Finish, Handover, Release, Start
from firepbt.space import Hyperparameters


@dataclass(frozen=True, slots=True)
class RunStart:
    """The run a callback is about to hear of: its directory, its config as the store keeps it
    (``RunConfig.to_dict()``), whether it is a resume, and which workers are FIRE PBT's
    evaluators rather than population members."""

    run_dir: Path
    config: Mapping[str, Any]
    resumed: bool
    evaluators: frozenset[int]
    created: str = ""  # when the run's store was made (a run directory may be used again)

    @property
    def name(self) -> str:
        """The run's name, which is its directory's name."""
        return self.run_dir.resolve().name


@dataclass(frozen=True, slots=True)
class MemberPoint:
    """One evaluation a member (or a FIRE evaluator) reported at ``step``: its selection
    ``score``, every metric, and the hyperparameters it trained with up to ``step``."""

    member: int
    step: int
    score: float
    metrics: Mapping[str, float]
    hyperparameters: Hyperparameters
    segment: int
    evaluator: bool = False


@dataclass(frozen=True, slots=True)
class MemberFailure:
    """A segment of ``member`` from ``step`` failed. ``final``: the member leaves the population
    (otherwise the segment is tried again)."""

    member: int
    step: int
    segment: int
    kind: str
    message: str
    final: bool
    evaluator: bool = False


class Callback:
    """Base class of run callbacks; override the methods you need (each does nothing here).

    The methods are called in the controller process in the order events are recorded:
    ``on_start`` once, then ``on_point``, ``on_decision`` and ``on_failure`` as they happen, and
    ``on_end`` once with how the run ended: ``"finished"``, ``"failed"`` (every member failed),
    ``"interrupted"`` (Ctrl-C) or ``"error"``. Keep them quick: the runner waits for them.
    """

    def on_start(self, run: RunStart) -> None:
        """The run starts (or resumes).

        Args:
            run: The run's directory, its config, whether it is a resume, and which workers
                are FIRE PBT's evaluators.
        """

    def on_point(self, point: MemberPoint) -> None:
        """A member reported an evaluation.

        Args:
            point: The member (or FIRE PBT evaluator) and step, the selection score, every
                metric, and the hyperparameters it trained with up to that step.
        """

    def on_decision(self, decision: Decision) -> None:
        """The strategy decided: see ``firepbt.decisions`` (``decision_step`` gives its step).

        Args:
            decision: A :class:`firepbt.Start`, :class:`firepbt.Continue`,
                :class:`firepbt.Exploit` or :class:`firepbt.Finish`, or one of FIRE PBT's
                :class:`firepbt.decisions.Assign`, :class:`firepbt.decisions.Handover` and
                :class:`firepbt.decisions.Release`.
        """

    def on_failure(self, failure: MemberFailure) -> None:
        """A segment failed.

        Args:
            failure: The member and step, the segment, the kind of failure and its message, and
                whether it is final (the member leaves the population) or the segment is tried
                again.
        """

    def on_end(self, status: str) -> None:
        """The run ended; release what the callback holds (files, connections).

        Also called, with ``"error"``, on a callback that raised in another method, which is
        then called no more.

        Args:
            status: How the run ended: ``"finished"``, ``"failed"`` (every member failed),
                ``"interrupted"`` (Ctrl-C) or ``"error"`` (any other exception).
        """


def decision_step(d: Decision) -> int:
    """The step a decision is taken at (an assignment's: the step of the weights it copies)."""
    if isinstance(d, Start):
        return 0
    if isinstance(d, Assign):
        return d.source.step
    return d.step


def describe(d: Decision) -> str:
    """One line saying what a decision did, for a log (``exploit: copied member 3 at step 200;
    lr: 0.1 → 0.08 (×0.8)``)."""
    if isinstance(d, Start):
        return f"start: {_values(d.hyperparameters)}"
    if isinstance(d, Exploit):
        changes = "; ".join(map(str, d.changes)) or "no change"
        copied = (
            f"kept its own weights (step {d.source.step})"
            if d.donor == d.member
            else f"copied member {d.donor} at step {d.source.step}"
        )
        return f"exploit: {copied}; {changes} ({d.reason})"
    if isinstance(d, Assign):
        return (
            f"assign: evaluates member {d.parent} (step {d.source.step}) with the hyperparameters "
            f"of member {d.target}: {_values(d.hyperparameters)} ({d.reason})"
        )
    if isinstance(d, Handover):
        return (
            f"handover: took the weights of evaluator {d.evaluator} at step {d.source.step} "
            f"({d.reason})"
        )
    if isinstance(d, Release):
        return f"release: {d.reason}"
    if isinstance(d, Continue):
        return f"continue until step {d.until}"
    if isinstance(d, Finish):
        return "finish"
    raise TypeError(f"not a decision: {d!r}")


def _values(h: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in h.items())


def numeric(h: Mapping[str, Any]) -> dict[str, float]:
    """The hyperparameters that can be plotted: finite numbers (not flags or strings)."""
    return {
        k: float(v)
        for k, v in h.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def scalars(point: MemberPoint) -> dict[str, float]:
    """A point as the writers log it: ``metrics/<name>`` for each metric and
    ``hyperparameters/<name>`` for each numeric hyperparameter the member trained with."""
    values = {f"metrics/{k}": v for k, v in point.metrics.items()}
    values |= {f"hyperparameters/{k}": v for k, v in numeric(point.hyperparameters).items()}
    return values


def describe_failure(failure: MemberFailure) -> str:
    """One line saying what failed and what follows, for a log."""
    then = "the member leaves the population" if failure.final else "it is tried again"
    return f"{failure.kind}: {failure.message} ({then})"


Warn = Callable[[int, int | None, int, str], None]
"""Records a callback's failure: (member, segment or None, step, message)."""


class Dispatcher:
    """Calls each callback in turn; one that raises is reported through ``warn`` (and as a Python
    warning) and is not called again."""

    def __init__(self, callbacks: Sequence[Callback], warn: Warn) -> None:
        self._live = list(callbacks)
        self._warn = warn

    def __bool__(self) -> bool:
        return bool(self._live)

    def start(self, run: RunStart) -> None:
        self._call("on_start", (run,), -1, None, 0)

    def point(self, point: MemberPoint) -> None:
        self._call("on_point", (point,), point.member, point.segment, point.step)

    def decision(self, d: Decision) -> None:
        self._call("on_decision", (d,), d.member, None, decision_step(d))

    def failure(self, failure: MemberFailure) -> None:
        self._call("on_failure", (failure,), failure.member, failure.segment, failure.step)

    def end(self, status: str) -> None:
        self._call("on_end", (status,), -1, None, 0)

    def _call(
        self, method: str, args: tuple[Any, ...], member: int, segment: int | None, step: int
    ) -> None:
        for callback in list(self._live):
            try:
                getattr(callback, method)(*args)
            except Exception as e:  # a writer's bug or a lost connection must not stop the run
                self._live.remove(callback)
                name = type(callback).__name__
                message = (
                    f"callback {name} raised {type(e).__name__} in {method}: {e}; it is not "
                    "called again in this run (the run goes on)"
                )
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                self._warn(member, segment, step, message)
                if method != "on_end":  # let it release what it holds
                    with contextlib.suppress(Exception):
                        callback.on_end("error")
