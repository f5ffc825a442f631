"""Per-member Weights & Biases runs, grouped by the firepbt run: ``pip install
'firepbt[wandb]'``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from firepbt.callbacks import (
    Callback,
    MemberFailure,
    MemberPoint,
    RunStart,
    decision_step,
    describe,
    describe_failure,
    scalars,
)
from firepbt.decisions import Continue, Decision, Exploit
from firepbt.loggers._tensorboard import worker_name

MODES = ("online", "offline", "disabled")
STEP = "step"  # every logged value is plotted against the member's step


class WandbWriter(Callback):
    """Logs each member to its own W&B run in ``project``, the runs of one firepbt run grouped
    together (``group``: the run directory's name unless given):

    * ``metrics/<name>`` and ``hyperparameters/<name>`` (numeric ones) at each evaluation,
      against the member's ``step``, so an exploit shows as a step in the curve;
    * ``decisions``: a line per decision but continue (an exploit's donor and explore record,
      FIRE PBT's assignments and hand-overs), and ``exploit/donor``; ``failures``: a line per
      failed segment;
    * the member's starting hyperparameters as its config.

    Each member's W&B run id is derived from the run directory (and when its store was made), so
    a resumed run goes on logging to the same W&B runs (online).

    Args:
        project: The W&B project.
        entity: The W&B entity (user or team); None leaves it to W&B.
        group: The group the member runs are in (default: the run directory's name).
        mode: ``"online"``, ``"offline"`` (write to ``dir`` only; ``wandb sync`` uploads it
            later) or ``"disabled"``; None leaves it to W&B (``WANDB_MODE``).
        dir: Where W&B writes its files (default: the run directory).

    Raises:
        ValueError: ``mode`` is none of ``"online"``, ``"offline"``, ``"disabled"`` and None.

    >>> writer = WandbWriter("my-project", mode="offline")  # firepbt.run(..., callbacks=[writer])
    """

    package = "wandb"

    def __init__(
        self,
        project: str,
        *,
        entity: str | None = None,
        group: str | None = None,
        mode: str | None = None,
        dir: str | Path | None = None,
    ) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        self.project = project
        self.entity = entity
        self.group = group
        self.mode = mode
        self.dir = None if dir is None else Path(dir).absolute()
        self._runs: dict[int, Any] = {}
        self._start: RunStart | None = None
        self._digest = ""

    def on_start(self, run: RunStart) -> None:
        import wandb

        self._wandb: Any = wandb  # typed loosely: checked by the package, not here
        self._start = run
        # The run directory and when its store was made: a resume continues the same W&B runs,
        # a new run in a directory used before gets runs of its own.
        where = f"{run.run_dir.resolve()}|{run.created}"
        self._digest = hashlib.sha256(where.encode()).hexdigest()[:12]

    def _run(self, member: int, config: dict[str, Any] | None = None) -> Any:
        w = self._runs.get(member)
        if w is None:
            start = self._start
            assert start is not None, "on_start was not called"
            evaluator = member in start.evaluators
            directory = self.dir or start.run_dir.resolve()
            directory.mkdir(parents=True, exist_ok=True)
            w = self._wandb.init(
                project=self.project,
                entity=self.entity,
                group=self.group or start.name,
                job_type="evaluator" if evaluator else "member",
                name=f"{start.name}/{worker_name(member, evaluator)}",
                id=f"{self._digest}-{member}",
                dir=str(directory),
                mode=self.mode,
                config=config,
                resume="allow" if start.resumed else None,
                reinit="create_new",
            )
            w.define_metric(STEP)
            w.define_metric("*", step_metric=STEP)
            self._runs[member] = w
        return w

    def on_point(self, point: MemberPoint) -> None:
        self._run(point.member).log({STEP: point.step, **scalars(point)})

    def on_decision(self, decision: Decision) -> None:
        if isinstance(decision, Continue):
            return
        config = dict(getattr(decision, "hyperparameters", {})) or None
        values: dict[str, Any] = {STEP: decision_step(decision), "decisions": describe(decision)}
        if isinstance(decision, Exploit):
            values["exploit/donor"] = decision.donor
        self._run(decision.member, config).log(values)

    def on_failure(self, failure: MemberFailure) -> None:
        line = describe_failure(failure)
        self._run(failure.member).log({STEP: failure.step, "failures": line})

    def on_end(self, status: str) -> None:
        runs, self._runs = self._runs, {}
        for w in runs.values():
            w.finish(exit_code=0 if status == "finished" else 1)
