"""Console output: a live progress bar during a run; the population table of ``firepbt status``."""

from __future__ import annotations

import math
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from firepbt.runner import Progress as RunProgress
from firepbt.store import Store


class LiveProgress:
    """A rich progress bar: mean member step of the budget, best score, exploits, failures."""

    def __init__(self, population: int, total_steps: int, console: Console | None = None) -> None:
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console or Console(stderr=True),
        )
        self._task = self._bar.add_task("training", total=total_steps, info="")

    def __enter__(self) -> LiveProgress:
        self._bar.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.__exit__(et, e, tb)

    def update(self, p: RunProgress) -> None:
        best = "–" if math.isnan(p.best_score) else f"{p.best_score:.5g}"
        info = f"best {best} · {p.exploits} exploits · {p.failures} failures"
        self._bar.update(self._task, completed=p.mean_step, info=info)


def status_table(store: Store) -> Table:
    """One row per member: status, step, latest score, best score, hyperparameters, exploits."""
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
    title = (
        f"{config.get('strategy', '?')} · {config.get('trainable', '?')} · "
        f"status: {store.meta('status')} · mode {mode}"
    )
    table = Table(title=title)
    for col in (
        "member",
        "status",
        "step",
        "latest",
        "best",
        "hyperparameters",
        "exploits",
        "failures",
    ):
        table.add_column(
            col, justify="right" if col not in ("status", "hyperparameters") else "left"
        )
    for m in store.members():
        h = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in m.hyperparameters.items()
        )
        table.add_row(
            str(m.id),
            m.status.value,
            f"{m.step}/{config.get('total_steps', '?')}",
            _num(latest.get(m.id)),
            _num(best.get(m.id)),
            h,
            str(exploits.get(m.id, 0)),
            str(failures.get(m.id, 0)),
        )
    return table


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.5g}"
