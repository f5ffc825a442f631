"""Console output: a live progress bar during a run; the population table of ``firepbt status`` and
the schedule of the best member."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from firepbt.control.lock import LOCK_FILE
from firepbt.control.progress import RunProgress
from firepbt.errors import ConfigError
from firepbt.fire.summary import COUNT_COLUMNS, RANKING_NOTE, FireSummary, fire_summary
from firepbt.results import RunResult, result_from_store
from firepbt.store import MemberRow, Role, Store, pid_alive
from firepbt.text import printable

BEST_MARK = "★"


class LiveProgress:
    """A rich progress bar: mean member step of the budget, best score, exploits, failures."""

    def __init__(
        self,
        population: int,
        total_steps: int,
        console: Console | None = None,
        *,
        starting: str = "",
        phases: Mapping[str, str] | None = None,
    ) -> None:
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console or Console(stderr=True),
        )
        # What is shown while nothing has finished yet: each phase's message (``phases``, keyed
        # by ``Progress.phase``: "starting workers", "first segments"), or ``starting``.
        self._phases = dict(phases or {})
        self._task = self._bar.add_task("training", total=total_steps, info=starting)

    def __enter__(self) -> LiveProgress:
        self._bar.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.__exit__(et, e, tb)

    def update(self, p: RunProgress) -> None:
        if p.phase in self._phases:
            self._bar.update(self._task, completed=p.mean_step, info=self._phases[p.phase])
            return
        best = "–" if math.isnan(p.best_score) else f"{p.best_score:.5g}"
        info = f"top score so far {best} · {p.exploits} exploits · {p.failures} failures"
        self._bar.update(self._task, completed=p.mean_step, info=info)


def status_table(store: Store) -> Table:
    """One row per member: status, step, latest score, best score, hyperparameters, exploits.

    The current best member is marked with ★; a "role" column (P1, P2, …, evaluator) appears when
    the run has evaluators or more than one sub-population.
    """
    config = store.config()
    mode = config.get("mode", "max")
    latest: dict[int, float] = {}
    best: dict[int, float] = {}
    for member, point in store.points():
        latest[member] = point.score
        if math.isfinite(point.score):
            old = best.get(member)
            better = old is None or (point.score > old if mode == "max" else point.score < old)
            if better:
                best[member] = point.score
    exploits: dict[int, int] = {}
    for d in store.decisions():
        if d.kind == "exploit" and d.donor != d.member:
            exploits[d.member] = exploits.get(d.member, 0) + 1
    failures: dict[int, int] = {}
    for member, *_ in store.failures():
        failures[member] = failures.get(member, 0) + 1
    members = store.members()
    show_role = any(m.role is Role.EVALUATOR for m in members) or (
        len({m.subpopulation for m in members if m.role is Role.MEMBER}) > 1
    )
    result = best_result(store)
    best_member = None if result is None else result.best_member
    state = store.meta("status")
    live = state == "running" and _driven(store)
    if state == "running" and not live:
        state = "stopped (no process is running it; firepbt resume continues it)"
    elif live and store.meta("waiting"):
        state = f"running, waiting for workers: {store.meta('waiting')}"
    title = _shown(
        f"{config.get('strategy', '?')} · {config.get('trainable', '?')} · "
        f"status: {state} · mode {mode}"
    )
    table = Table(title=title)
    columns = ["member", *(["role"] if show_role else []), "status", "step", "latest", "best"]
    columns += ["hyperparameters", "exploits", "failures"]
    for col in columns:
        table.add_column(
            col, justify="left" if col in ("role", "status", "hyperparameters") else "right"
        )
    # While the run runs, a training member without a segment on a worker waits for one.
    running = store.meta("running") if live else None
    on_workers = {int(x) for x in running.split(",") if x} if running is not None else None
    for m in members:
        marker = f"{BEST_MARK} {m.id}" if m.id == best_member else str(m.id)
        queued = on_workers is not None and m.status.value == "training" and m.id not in on_workers
        table.add_row(
            marker,
            *([role_label(m)] if show_role else []),
            "queued" if queued else m.status.value,
            f"{m.step}/{config.get('total_steps', '?')}",
            _num(latest.get(m.id)),
            _num(best.get(m.id)),
            _fmt_h(m.hyperparameters),
            str(exploits.get(m.id, 0)),
            str(failures.get(m.id, 0)),
        )
    return table


def schedule_table(store: Store) -> Table | None:
    """The hyperparameter schedule behind the current best member's weights: one row per range of
    steps, with the worker that trained it ("evaluator" when an evaluator did). None while no
    member has a finite score."""
    result = best_result(store)
    if result is None:
        return None
    roles = {m.id: m.role for m in store.members()}
    metric = store.config().get("metric") or "score"
    table = Table(
        title=f"schedule of the best member (member {result.best_member})",
        caption=_shown(f"{metric} {_num(result.best_score)} at step {result.best_step}"),
    )
    for col in ("from step", "to step", "trained by", "hyperparameters"):
        table.add_column(col, justify="right" if "step" in col else "left")
    for e in result.schedule:
        by = str(e.member)
        if roles.get(e.member) is Role.EVALUATOR:
            by += " (evaluator)"
        table.add_row(str(e.from_step), str(e.to_step), by, _fmt_h(e.hyperparameters))
    return table


def fire_section(store: Store) -> list[Table | str]:
    """What FIRE PBT's evaluators did, per parent sub-population: assignments and how each
    evaluation ended, the hand-overs, and the fitness ranking (nothing for other strategies)."""
    summary = fire_summary(store)
    if summary is None:
        return []
    out: list[Table | str] = [evaluations_table(summary)]
    if summary.handovers:
        handovers = Table(title="FIRE hand-overs (the target trains on from the evaluator's step)")
        for col in ("parents", "step", "evaluator", "weights of parent", "target"):
            handovers.add_column(col, justify="left" if col == "parents" else "right")
        for sp in summary.subpopulations:
            for h in sp.handovers:
                handovers.add_row(
                    sp.name, str(h.step), str(h.evaluator), _opt(h.parent), str(h.target)
                )
        out.append(handovers)
    for sp in summary.subpopulations:
        if sp.ranking:
            ranks = " > ".join(f"{r.member} ({r.fitness:.3g})" for r in sp.ranking)
            out.append(f"{sp.name} {RANKING_NOTE}: {_shown(ranks)}")
        else:
            out.append(f"{sp.name} {RANKING_NOTE}: – (fewer than 2 members have a curve)")
    warning = summary.warning()
    if warning is not None:
        out.append(f"[bold yellow]warning:[/] {_shown(warning)}")
    return out


def evaluations_table(summary: FireSummary) -> Table:
    """One row per parent sub-population: evaluator assignments, how many still run, and how
    the others ended, by kind."""
    # One row per count and one column per parent sub-population: it fits a narrow terminal.
    table = Table(title="FIRE evaluations")
    table.add_column("by parent sub-population", justify="left")
    for sp in summary.subpopulations:
        table.add_column(sp.name, justify="right")
    counts = [sp.counts() for sp in summary.subpopulations]
    for i, name in enumerate(COUNT_COLUMNS):
        table.add_row(name, *(str(c[i]) for c in counts))
    return table


def best_result(store: Store) -> RunResult | None:
    """The run's current best member (as ``firepbt.run`` would report it), or None while no member
    has a finite score."""

    try:
        return result_from_store(store, store.path.parent)
    except ConfigError:
        return None


def _driven(store: Store) -> bool:
    """Whether the process that holds the run's lock (it wrote its id there) is alive."""

    try:
        pid = int((store.path.parent / LOCK_FILE).read_text().strip())
    except (OSError, ValueError):
        return False
    return pid_alive(pid)


def role_label(m: MemberRow) -> str:
    """The role column of a worker: P1, P2, … by sub-population, or "evaluator"."""
    return "evaluator" if m.role is Role.EVALUATOR else f"P{m.subpopulation + 1}"


def _fmt_h(h: Mapping[str, Any]) -> str:
    return _shown(
        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in h.items())
    )


def _shown(text: object) -> str:
    """Text from the run (names, values, messages) for a rich table: control characters and
    markup escaped."""
    return escape(printable(str(text)))


def _opt(x: int | None) -> str:
    return "–" if x is None else str(x)


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.5g}"
