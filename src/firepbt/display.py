"""Console output: a live progress bar during a run; the population table of ``firepbt status`` and
the schedule of the best member."""

from __future__ import annotations

import math
from collections import Counter
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
from firepbt.lineage import fold_schedule
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


# ``firepbt status`` fits a terminal by default (``--full`` prints everything): at most this many
# member rows, schedule stretches and hand-overs.
MEMBER_ROWS = 8
SCHEDULE_ROWS = 8  # rows of a folded schedule (lineage.fold_schedule)
HANDOVER_ROWS = 3
RANKED_PARENTS = 8  # the fitness ranking fits one curve per parent (a GP): ~0.1 s each


def status_table(store: Store, result: RunResult | None = None, *, full: bool = False) -> Table:
    """One row per member: status, step, latest score, best score, hyperparameters, exploits.

    The current best member (``result``, read from the store when not given) is marked with ★;
    a "role" column (P1, P2, …, evaluator) appears when the run has evaluators or more than one
    sub-population. Unless ``full``, a population of more than ``MEMBER_ROWS`` shows its best
    members by latest score, and a caption counts the others.
    """
    config = store.config()
    mode = config.get("mode", "max")
    latest = {m: p.score for m, p in store.latest_points().items()}
    best = store.best_scores(minimise=mode == "min")
    exploits = store.exploit_counts()
    failures = store.failure_counts()
    members = store.members()
    show_role = any(m.role is Role.EVALUATOR for m in members) or (
        len({m.subpopulation for m in members if m.role is Role.MEMBER}) > 1
    )
    result = result if result is not None else best_result(store)
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
    shown, caption = (members, None) if full else _fold_members(members, latest, best_member, mode)
    table = Table(title=title, caption=caption)
    columns = ["member", *(["role"] if show_role else []), "status", "step", "latest", "best"]
    columns += ["hyperparameters", "exploits", "failures"]
    for col in columns:
        table.add_column(
            col, justify="left" if col in ("role", "status", "hyperparameters") else "right"
        )
    # While the run runs, a training member without a segment on a worker waits for one.
    running = store.meta("running") if live else None
    on_workers = {int(x) for x in running.split(",") if x} if running is not None else None
    for m in shown:
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


def _fold_members(
    members: list[MemberRow], latest: Mapping[int, float], best: int | None, mode: str
) -> tuple[list[MemberRow], str | None]:
    """The rows a terminal shows: every worker of a small population; else the best
    ``MEMBER_ROWS`` members by latest score (the best member among them), best first, and a
    caption counting the others by role and status."""
    if len(members) <= MEMBER_ROWS + 2:
        return members, None
    sign = -1.0 if mode == "min" else 1.0

    def rank(m: MemberRow) -> tuple[bool, bool, float, int]:
        score = latest.get(m.id, math.nan)
        finite = math.isfinite(score)
        return (m.id != best, not finite, -sign * score if finite else 0.0, m.id)

    candidates = sorted((m for m in members if m.role is Role.MEMBER), key=rank)
    shown = candidates[:MEMBER_ROWS]
    hidden = [m for m in members if m not in shown]
    kinds = Counter(
        f"{'evaluators' if m.role is Role.EVALUATOR else 'members'} {m.status.value}"
        for m in hidden
    )
    folded = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    caption = f"the {len(shown)} best members by latest score; also {folded} (--full: all)"
    return shown, caption


def schedule_table(
    store: Store, result: RunResult | None = None, *, full: bool = False
) -> Table | None:
    """The hyperparameter schedule behind the current best member's weights: one row per range of
    steps, with the worker that trained it ("evaluator" when an evaluator did). None while no
    member has a finite score. Unless ``full``, a long schedule is folded
    (:func:`firepbt.lineage.fold_schedule`)."""
    result = result if result is not None else best_result(store)
    if result is None:
        return None
    roles = {m.id: m.role for m in store.members()}
    metric = store.config().get("metric") or "score"
    rows, note = fold_schedule(result.schedule, rows=None if full else SCHEDULE_ROWS)
    caption = f"{metric} {_num(result.best_score)} at step {result.best_step}"
    table = Table(
        title=f"schedule of the best member (member {result.best_member})",
        caption=_shown(caption + (f"\n{note} (--full: all)" if note else "")),
    )
    for col in ("from step", "to step", "trained by", "hyperparameters"):
        table.add_column(col, justify="right" if "step" in col else "left")
    for r in rows:
        if len(r.workers) == 1:
            (w,) = r.workers
            by = str(w) + (" (evaluator)" if roles.get(w) is Role.EVALUATOR else "")
        else:
            by = f"{len(r.workers)} workers"
        table.add_row(str(r.start), str(r.end), by, _shown(r.text()))
    return table


def fire_section(store: Store, *, full: bool = False) -> list[Table | str]:
    """What FIRE PBT's evaluators did, per parent sub-population: assignments and how each
    evaluation ended, the hand-overs, and the fitness ranking (nothing for other strategies).
    Unless ``full``: counts that are zero left out, the last ``HANDOVER_ROWS`` hand-overs, and
    the ranking only of sub-populations with at most ``RANKED_PARENTS`` parents to fit."""
    summary = fire_summary(store, ranking=True if full else RANKED_PARENTS)
    if summary is None:
        return []
    out: list[Table | str] = [evaluations_table(summary, full=full)]
    every = [(sp.name, h) for sp in summary.subpopulations for h in sp.handovers]
    if every:
        shown = every if full else sorted(every, key=lambda x: x[1].step)[-HANDOVER_ROWS:]
        caption = None
        if len(shown) < len(every):
            caption = f"the last {len(shown)} of {len(every)} (--full: all)"
        handovers = Table(title="FIRE hand-overs (targets train on from there)", caption=caption)
        for col in ("parents", "step", "evaluator", "weights of parent", "target"):
            handovers.add_column(col, justify="left" if col == "parents" else "right")
        for name, h in shown:
            handovers.add_row(name, str(h.step), str(h.evaluator), _opt(h.parent), str(h.target))
        out.append(handovers)
    for sp in summary.subpopulations:
        if sp.unranked:
            out.append(
                f"{sp.name} {RANKING_NOTE}: {sp.unranked} parents to fit, one curve each "
                "(firepbt status --full ranks them)"
            )
        elif sp.ranking:
            ranks = " > ".join(f"{r.member} ({r.fitness:.3g})" for r in sp.ranking)
            out.append(f"{sp.name} {RANKING_NOTE}: {_shown(ranks)}")
        else:
            out.append(f"{sp.name} {RANKING_NOTE}: – (fewer than 2 members have a curve)")
    warning = summary.warning()
    if warning is not None:
        out.append(f"[bold yellow]warning:[/] {_shown(warning)}")
    return out


def evaluations_table(summary: FireSummary, *, full: bool = True) -> Table:
    """One row per parent sub-population: evaluator assignments, how many still run, and how
    the others ended, by kind (unless ``full``, the kinds that never happened left out)."""
    # One row per count and one column per parent sub-population: it fits a narrow terminal.
    counts = [sp.counts() for sp in summary.subpopulations]
    rows = [(i, name) for i, name in enumerate(COUNT_COLUMNS) if full or any(c[i] for c in counts)]
    left_out = len(COUNT_COLUMNS) - len(rows)
    table = Table(
        title="FIRE evaluations",
        caption=f"{left_out} kinds of ending at 0 left out" if left_out else None,
    )
    table.add_column("by parent sub-population", justify="left")
    for sp in summary.subpopulations:
        table.add_column(sp.name, justify="right")
    for i, name in rows:
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
