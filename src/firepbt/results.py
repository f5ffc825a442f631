"""The result read model: a run's best member, its score and the schedule that made it, read
from the store. ``firepbt.run`` returns it, and ``status``, ``export``, the report and replay
read it the same way."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firepbt.checkpoints import member_state, read_checkpoint
from firepbt.decisions import Mode
from firepbt.errors import ConfigError, WarningKind
from firepbt.fire.summary import no_handover_warning
from firepbt.lineage import ScheduleEntry, fold_schedule, schedule
from firepbt.space import Hyperparameters
from firepbt.store import MemberStatus, Role, Store
from firepbt.text import printable
from firepbt.trainable import Trainable

DESCRIBE_ROWS = 12  # stretches of a schedule that ``RunResult.describe`` prints unfolded


@dataclass(frozen=True)
class RunResult:
    """What a run hands back: the best final member, its score and the schedule that made it.

    The best member is chosen among the population's members that did not fail and whose last
    recorded score is finite (FIRE PBT's evaluators are not candidates), by that score in the
    run's ``mode``; a tie goes to the later step, then to the lower member id. ``describe()``
    summarises the result as text; ``load_best()`` rebuilds the best model.

    Attributes:
        run_dir: The run's directory.
        best_member: The best member's id.
        best_score: Its last score on the selection metric, as ``evaluate()`` reported it.
        best_step: The step of that score.
        hyperparameters: The hyperparameters the best member holds in the store (at the end of
            a finished run).
        schedule: The hyperparameter schedule behind its latest weights (:func:`firepbt.schedule`).
        checkpoint: ``(path, sha256)`` of the checkpoint its last finished segment wrote, or
            ``None`` when that checkpoint is not on disk.
        mode: Whether higher (``Mode.MAX``) or lower (``Mode.MIN``) scores are better.
        wall_seconds: How long the run took, in seconds; NaN when the store does not record it.
        worker_steps: The steps trained in every finished segment, by members and evaluators:
            the compute the run spent.
        metrics: Every metric of the best member's last evaluation.
        warnings: What looks wrong with the run, e.g. a FIRE PBT run that made no hand-over
            (and why), or a ``test_metric`` that ``evaluate()`` never returned.
    """

    run_dir: Path
    best_member: int
    best_score: float
    best_step: int
    hyperparameters: Hyperparameters
    schedule: list[ScheduleEntry]
    checkpoint: tuple[str, str] | None  # (path, sha256) of the best member's final weights
    mode: Mode
    wall_seconds: float
    worker_steps: int
    metrics: dict[str, float]  # every metric of the best member's final evaluation
    warnings: tuple[str, ...] = ()  # e.g. a FIRE PBT run that made no hand-over, and why

    def load_best(self, trainable: type[Trainable], seed: int = 0) -> Trainable:
        """Rebuild the best member's trainable with its final weights.

        Args:
            trainable: The run's trainable class.
            seed: The seed passed to its constructor.

        Returns:
            A new trainable built with the best member's final hyperparameters, with the state
            of its checkpoint loaded.

        Raises:
            FileNotFoundError: The run kept no checkpoint of the best member on disk.
        """
        if self.checkpoint is None:
            raise FileNotFoundError(f"no checkpoint of member {self.best_member} in {self.run_dir}")
        t = trainable(dict(self.hyperparameters), seed)
        t.load(member_state(read_checkpoint(*self.checkpoint)).state)
        return t

    def describe(self, full: bool = False) -> str:
        """Summarise the result for a terminal.

        Args:
            full: Print every stretch of a long schedule (by default one of more than
                ``DESCRIBE_ROWS`` stretches is folded, as ``firepbt status`` folds it).

        Returns:
            The best member, its score, step, metrics and hyperparameters, its schedule one
            stretch per line, the worker-steps and wall time spent, the run directory and any
            warnings.
        """
        lines = [
            f"best member {self.best_member}: score {self.best_score:.6g} at step {self.best_step}",
            f"metrics: {_fmt_h(self.metrics)}",
            f"hyperparameters: {_fmt_h(self.hyperparameters)}",
            "schedule:",
        ]
        rows, note = fold_schedule(self.schedule, None if full else DESCRIBE_ROWS)
        for r in rows:
            who = f"member {r.workers[0]}" if len(r.workers) == 1 else f"{len(r.workers)} workers"
            lines.append(f"  steps {r.start:>6}–{r.end:<6} {r.text()}  ({who})")
        if note:
            lines.append(f"  ({note}; RunResult.schedule holds every one)")
        lines.append(
            f"{self.worker_steps} worker-steps in {self.wall_seconds:.1f} s; "
            f"run directory {self.run_dir}"
        )
        lines += [f"warning: {w}" for w in self.warnings]
        return printable("\n".join(lines))


def _fmt_h(h: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in h.items())


def result_from_store(store: Store, run_dir: Path) -> RunResult:
    """The best member among those that finished (or are training, for a partial run)."""
    config = store.config()
    mode = Mode(config.get("mode", "max"))
    latest = store.latest_points()
    last = {member: (p.step, p.score) for member, p in latest.items()}
    metrics = {member: p.metrics for member, p in latest.items()}
    usable = {
        m.id: m
        for m in store.members()
        if m.status is not MemberStatus.FAILED and m.role is Role.MEMBER
    }
    candidates = [
        (mode.orient(score), step, member)
        for member, (step, score) in last.items()
        if member in usable and math.isfinite(score)
    ]
    if not candidates:
        raise ConfigError(f"{run_dir}: no member has a finite score yet")
    _, best_step, best = max(candidates, key=lambda c: (c[0], c[1], -c[2]))
    chain = schedule(store, best)
    final = store.last_done_segment(best)
    checkpoint = store.checkpoint_of_segment(final.id) if final is not None else None
    wall = store.meta("wall_seconds")
    return RunResult(
        run_dir=run_dir,
        best_member=best,
        best_score=last[best][1],
        best_step=best_step,
        hyperparameters=usable[best].hyperparameters,
        schedule=chain,
        checkpoint=checkpoint,
        mode=mode,
        wall_seconds=float(wall) if wall else math.nan,
        worker_steps=store.worker_steps(),
        metrics=metrics[best],
        warnings=tuple(
            w
            for w in [
                no_handover_warning(store),
                _missing_test_metric(config, metrics),
                *(m for *_, m in store.failures((WarningKind.UNUSED, WarningKind.TRAINABLE))),
            ]
            if w is not None
        ),
    )


def _missing_test_metric(
    config: Mapping[str, Any], metrics: Mapping[int, Mapping[str, float]]
) -> str | None:
    """A warning when the config names a ``test_metric`` that no evaluation returned."""
    name = config.get("test_metric")
    if not name or any(name in m for m in metrics.values()):
        return None
    seen = sorted({k for m in metrics.values() for k in m})
    return (
        f"test_metric {name!r} was never returned by evaluate() (it returned {seen}); the "
        "report's Table 1 has no test score"
    )
