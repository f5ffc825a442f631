"""Reports of a run: figures and one self-contained HTML page, from the store alone.

``write_report(run_dir)`` writes ``best_score.png``, ``hyperparameters.png``, ``lineage.png``,
``curves.png`` and ``report.html`` (every figure embedded, no network needed) into
``<run_dir>/report/``. Each figure has its own function taking a ``Store`` (or a run directory):

- ``plot_best_score``: the best score any member has reached so far, over steps (FIRE Figure 4b);
- ``plot_hyperparameters``: each sub-population's hyperparameters over time with the best
  member's schedule on top and the evaluator hand-overs on its lineage (FIRE Figure 4a);
- ``plot_lineage``: whose training the best member's weights carry, worker by worker, with every
  copy (exploit, assignment to an evaluator, hand-over) and the hyperparameters of each stretch;
- ``plot_curves``: every member's curve, with the curve of the best member's weights.

``table_one`` gives the FIRE paper's Table 1 numbers for the run. A run that is still going, was
killed half-way or has failures is reported from whatever the store holds.

Figures need matplotlib: ``pip install 'firepbt[plot]'``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from firepbt.lineage import segment_chain
from firepbt.registry import ConfigError
from firepbt.segments import Point
from firepbt.store import MemberRow, MemberStatus, Role, SegmentRow, SegmentStatus, Store

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 120
SUBPOPULATION_COLOURS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
)
EVALUATOR_COLOUR = "0.55"
COPY_COLOURS = {"exploit": "#c2185b", "assign": "#6a1b9a", "handover": "black", "copy": "0.4"}
COPY_LABELS = {
    "exploit": "exploit (donor → member)",
    "assign": "assign (parent → evaluator)",
    "handover": "hand-over (evaluator → member)",
    "copy": "copy",
}
STRATEGY_NAMES = {"pbt": "PBT", "fire": "FIRE PBT", "random": "random search"}
_STYLE: Any = {
    "font.size": 10,
    "axes.titlesize": 11.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.6,
}


# -- reading a run ---------------------------------------------------------------------------


@dataclass
class _Run:
    """Everything the figures and the page read from a store, read once."""

    store: Store
    config: dict[str, Any]
    members: dict[int, MemberRow]
    segments: list[SegmentRow]  # done ones, by id
    points: list[tuple[int, Point]]  # points of member-role workers, finite or not
    best: int | None
    total_steps: int
    mode: str = "max"
    metric: str = "score"
    subpopulations: list[int] = field(default_factory=list)

    @property
    def minimise(self) -> bool:
        return self.mode == "min"

    def is_member(self, worker: int) -> bool:
        row = self.members.get(worker)
        return row is not None and row.role is Role.MEMBER

    def label(self, worker: int) -> str:
        row = self.members.get(worker)
        if row is None:
            return f"worker {worker}"
        if row.role is Role.EVALUATOR:
            return f"evaluator {worker}"
        if len(self.subpopulations) > 1:
            return f"member {worker} (P{row.subpopulation + 1})"
        return f"member {worker}"

    def colour(self, worker: int) -> str:
        row = self.members.get(worker)
        if row is None or row.role is Role.EVALUATOR:
            return EVALUATOR_COLOUR
        return _subpopulation_colour(row.subpopulation)

    def scored(self) -> list[tuple[int, Point]]:
        return [(m, p) for m, p in self.points if math.isfinite(p.score)]

    def strategy_name(self) -> str:
        name = str(self.config.get("strategy", "?"))
        return STRATEGY_NAMES.get(name, name)

    def trainable_name(self) -> str:
        return str(self.config.get("trainable", "?")).rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def _subpopulation_colour(sp: int) -> str:
    return SUBPOPULATION_COLOURS[sp % len(SUBPOPULATION_COLOURS)]


def _subpopulation_label(run: _Run, sp: int) -> str:
    return f"P{sp + 1}" if len(run.subpopulations) > 1 else "members"


def _best_member(store: Store, members: Mapping[int, MemberRow], mode: str) -> int | None:
    """The run's best final member, as ``firepbt.run`` reports it; when every member failed,
    the failed one whose last score is best; None before any finite score."""
    from firepbt.api import result_from_store

    try:
        return result_from_store(store, store.path.parent).best_member
    except ConfigError:
        pass
    last: dict[int, float] = {}
    for m, p in store.points():
        row = members.get(m)
        if row is not None and row.role is Role.MEMBER:
            last[m] = p.score
    sign = -1.0 if mode == "min" else 1.0
    finite = [(sign * score, -m) for m, score in last.items() if math.isfinite(score)]
    return -max(finite)[1] if finite else None


def _read(store: Store) -> _Run:
    config = store.config()
    members = {m.id: m for m in store.members()}
    segments = [s for s in store.segments() if s.status is SegmentStatus.DONE]
    points = [(m, p) for m, p in store.points() if m in members and members[m].role is Role.MEMBER]
    reached = max([s.end_step for s in segments], default=0)
    total = int(config.get("total_steps") or reached or 1)
    mode = "min" if config.get("mode") == "min" else "max"
    return _Run(
        store=store,
        config=config,
        members=members,
        segments=segments,
        points=points,
        best=_best_member(store, members, mode),
        total_steps=max(total, reached),
        mode=mode,
        metric=str(config.get("metric") or "score"),
        subpopulations=sorted({m.subpopulation for m in members.values() if m.role is Role.MEMBER}),
    )


@contextmanager
def _opened(store: Store | str | Path) -> Iterator[Store]:
    """Use a store as given, or open (and afterwards close) the one in a run directory."""
    if isinstance(store, Store):
        yield store
        return
    opened = Store.open(store)
    try:
        yield opened
    finally:
        opened.close()


def _varying(segments: Sequence[SegmentRow]) -> tuple[list[str], list[str]]:
    """(numeric, all) names of the hyperparameters whose value differs between segments."""
    seen: dict[str, set[str]] = {}
    numeric: dict[str, bool] = {}
    for seg in segments:
        for k, v in seg.hyperparameters.items():
            seen.setdefault(k, set()).add(json.dumps(v, sort_keys=True, default=str))
            numeric[k] = numeric.get(k, True) and _is_number(v)
    varying = sorted(k for k, vs in seen.items() if len(vs) > 1)
    return [k for k in varying if numeric[k]], varying


def _is_number(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _fmt_h(h: Mapping[str, Any], names: Sequence[str] | None = None, digits: int = 4) -> str:
    keys = list(h) if names is None else [k for k in names if k in h]
    return ", ".join(f"{k}={_fmt(h[k], digits)}" for k in keys)


def _plain(text: str) -> str:
    """Text from the run, shown literally by matplotlib (no mathtext between dollar signs)."""
    return text.replace("$", r"\$")


@dataclass(frozen=True)
class _Stretch:
    """Consecutive segments of one worker with the same hyperparameters on a lineage."""

    worker: int
    start: int
    end: int
    hyperparameters: dict[str, Any]


@dataclass(frozen=True)
class _Copy:
    """A place where a lineage passes from one worker's weights to another's."""

    step: int
    parent: int
    child: int
    kind: str  # exploit, assign, handover or copy (no matching decision found)
    reason: str
    changes: list[str]


def _stretches(chain: Sequence[SegmentRow]) -> list[_Stretch]:
    out: list[_Stretch] = []
    for seg in chain:
        if seg.end_step <= seg.start_step:
            continue
        last = out[-1] if out else None
        if (
            last is not None
            and last.worker == seg.member
            and last.hyperparameters == seg.hyperparameters
            and last.end == seg.start_step
        ):
            out[-1] = _Stretch(last.worker, last.start, seg.end_step, last.hyperparameters)
        else:
            out.append(_Stretch(seg.member, seg.start_step, seg.end_step, seg.hyperparameters))
    return out


def _copies(store: Store, chain: Sequence[SegmentRow]) -> list[_Copy]:
    """Every change of worker along ``chain``, with the decision that made it."""
    decisions: dict[tuple[int, int, int], tuple[str, str, list[str]]] = {}
    for d in store.decisions():
        if d.kind in ("exploit", "assign", "handover") and d.donor is not None:
            key = (d.member, d.donor, d.source_step if d.source_step is not None else d.step)
            decisions[key] = (d.kind, d.reason, d.changes)  # the latest one wins
    out = []
    for prev, seg in zip(chain, chain[1:], strict=False):
        if seg.member == prev.member:
            continue
        kind, reason, changes = decisions.get(
            (seg.member, prev.member, seg.start_step), ("copy", "", [])
        )
        out.append(_Copy(seg.start_step, prev.member, seg.member, kind, reason, changes))
    return out


# -- matplotlib --------------------------------------------------------------------------------


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "firepbt's figures and reports need matplotlib, which is not installed: "
            "pip install 'firepbt[plot]' (or pip install matplotlib)"
        ) from e


@contextmanager
def _style() -> Iterator[None]:
    _require_matplotlib()
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        yield


def _figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global backend switch, thread-safe."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _message(ax: Axes, text: str) -> None:
    ax.text(
        0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="0.3"
    )
    ax.set_axis_off()


def _log_if_wide(ax: Axes, values: Sequence[float], ratio: float = 20.0) -> None:
    """A log y-axis when every value is positive and they span more than ``ratio``."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > ratio:
        ax.set_yscale("log")
        _plain_log_labels(ax)


def _plain_log_labels(ax: Axes) -> None:
    """Log-axis labels as plain numbers (0.2, 1, 10), not 2×10⁻¹; the in-between ticks 2, 3
    and 5 labelled when the axis spans less than about two decades."""
    from matplotlib.ticker import FuncFormatter

    axis = ax.yaxis

    def major(v: float, _: object) -> str:
        return f"{v:g}"

    def minor(v: float, _: object) -> str:
        lo, hi = sorted(axis.get_view_interval())
        if lo <= 0 or hi / lo > 120 or v <= 0:
            return ""
        mantissa = round(v / 10 ** math.floor(math.log10(v) + 1e-9), 6)
        return f"{v:g}" if mantissa in (2.0, 3.0, 5.0) else ""

    axis.set_major_formatter(FuncFormatter(major))
    axis.set_minor_formatter(FuncFormatter(minor))


def _direction(run: _Run) -> str:
    return "lower is better" if run.minimise else "higher is better"


# -- figures -----------------------------------------------------------------------------------


def plot_best_score(store: Store | str | Path, path: str | Path) -> Path:
    """The best score any member has reached by each step (FIRE PBT paper, Figure 4b).

    Members only (not evaluators); ``mode`` decides what best is. With several sub-populations,
    each one's best so far is drawn thinly beside the population's.
    """
    with _opened(store) as st, _style():
        run = _read(st)
        fig = _figure(9, 4.6)
        ax = fig.add_subplot()
        pts = run.scored()
        title = f"{run.strategy_name()} · {run.trainable_name()}: best {run.metric} so far"
        ax.set_title(_plain(title))
        if not pts:
            _message(ax, "no member has recorded a score yet")
            return _save(fig, path)
        best = min if run.minimise else max
        by_sp: dict[int | None, list[tuple[int, float]]] = {None: []}
        for m, p in pts:
            by_sp[None].append((p.step, p.score))
            if len(run.subpopulations) > 1:
                by_sp.setdefault(run.members[m].subpopulation, []).append((p.step, p.score))
        xs, ys = _best_so_far(by_sp[None], best)
        ax.step(
            xs, ys, where="post", lw=2.4, color="black", zorder=3, label="best in the population"
        )
        plotted = list(ys)
        for sp in sorted(k for k in by_sp if k is not None):
            xs, ys = _best_so_far(by_sp[sp], best)
            ax.step(
                xs,
                ys,
                where="post",
                lw=1.3,
                alpha=0.8,
                color=_subpopulation_colour(sp),
                zorder=4,
                label=f"best in P{sp + 1}",
            )
        top_m, top = _top(pts, run.minimise) or pts[0]
        ax.scatter(
            [top.step],
            [top.score],
            marker="*",
            s=180,
            color="gold",
            edgecolors="black",
            linewidths=0.8,
            zorder=5,
            clip_on=False,
            label=_plain(f"top {run.metric} {top.score:.4g}: {run.label(top_m)}, step {top.step}"),
        )
        _log_if_wide(ax, plotted)
        ax.set_xlim(0, run.total_steps)
        ax.set_xlabel("step")
        ax.set_ylabel(_plain(f"best {run.metric} so far ({_direction(run)})"))
        ax.legend(loc="upper right" if run.minimise else "lower right")
        return _save(fig, path)


def _best_so_far(
    pts: Sequence[tuple[int, float]], best: Callable[[float, float], float]
) -> tuple[list[int], list[float]]:
    per_step: dict[int, float] = {}
    for step, score in pts:
        per_step[step] = best(per_step[step], score) if step in per_step else score
    xs, ys = [], []
    running: float | None = None
    for step in sorted(per_step):
        running = per_step[step] if running is None else best(running, per_step[step])
        xs.append(step)
        ys.append(running)
    return xs, ys


def _top(points: Sequence[tuple[int, Point]], minimise: bool) -> tuple[int, Point] | None:
    """The member and point with the best finite score (the first such point on ties)."""
    sign = -1.0 if minimise else 1.0
    top: tuple[int, Point] | None = None
    for m, p in points:
        if math.isfinite(p.score) and (top is None or sign * p.score > sign * top[1].score):
            top = (m, p)
    return top


def plot_hyperparameters(
    store: Store | str | Path,
    path: str | Path,
    name: str | None = None,
    *,
    title: str | None = None,
) -> Path:
    """Each tunable hyperparameter of every member over time (FIRE PBT paper, Figure 4a).

    One panel per numeric hyperparameter that varies during the run (or only ``name``): each
    member's value over each trained segment as a thin line coloured by sub-population, the best
    member's schedule as a thick black step line, and the evaluator hand-overs on its lineage
    (weights passed from an evaluator to a member) as circles.
    """
    with _opened(store) as st, _style():
        run = _read(st)
        numeric, _ = _varying(run.segments)
        if name is not None:
            known = {k for s in run.segments for k in s.hyperparameters}
            if run.segments and name not in known:
                raise ValueError(f"no hyperparameter {name!r} in this run; it has {sorted(known)}")
            numeric = [name]
        panels = max(1, len(numeric))
        fig = _figure(9, 1.1 + (2.9 if panels <= 2 else 2.3) * panels)
        axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
        heading = title or (
            f"{run.strategy_name()} · {run.trainable_name()}: hyperparameters over time"
        )
        fig.suptitle(_plain(heading), fontweight="bold", fontsize=11.5)
        if not numeric:
            _message(
                axes[0],
                "no numeric hyperparameter varied during the run"
                if run.segments
                else "no segment has finished yet",
            )
            return _save(fig, path)
        chain = segment_chain(st, run.best) if run.best is not None else []
        chain = [s for s in chain if s.end_step > s.start_step]
        handles = [
            _hyperparameter_panel(ax, run, hp, chain) for ax, hp in zip(axes, numeric, strict=True)
        ]
        axes[-1].set_xlabel("step")
        axes[-1].set_xlim(0, run.total_steps)
        if handles[0]:
            fig.legend(
                handles=handles[0],
                loc="outside lower center",
                ncol=min(len(handles[0]), 5),
                frameon=False,
            )
        return _save(fig, path)


def _hyperparameter_panel(ax: Axes, run: _Run, hp: str, chain: Sequence[SegmentRow]) -> list[Any]:
    """Draw one hyperparameter's panel; returns its legend handles."""
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    lines: dict[int, list[list[tuple[float, float]]]] = {}
    values: list[float] = []
    for seg in run.segments:
        v = seg.hyperparameters.get(hp)
        if not run.is_member(seg.member) or not _is_number(v) or seg.end_step <= seg.start_step:
            continue
        sp = run.members[seg.member].subpopulation
        lines.setdefault(sp, []).append([(seg.start_step, float(v)), (seg.end_step, float(v))])
        values.append(float(v))
    handles: list[Any] = []
    for sp in sorted(lines, reverse=True):
        colour = _subpopulation_colour(sp)
        ax.add_collection(LineCollection(lines[sp], colors=colour, linewidths=1.6, alpha=0.45))
        handles.append(Line2D([], [], color=colour, lw=2, label=_subpopulation_label(run, sp)))
    handles.reverse()
    xs: list[float] = []
    ys: list[float] = []
    marks: list[tuple[float, float]] = []
    prev: SegmentRow | None = None
    for seg in chain:
        v = seg.hyperparameters.get(hp)
        if not _is_number(v):
            prev = seg
            continue
        xs += [seg.start_step, seg.end_step]
        ys += [float(v), float(v)]
        values.append(float(v))
        if (
            prev is not None
            and not run.is_member(prev.member)
            and run.is_member(seg.member)
            and prev.member != seg.member
        ):
            marks.append((seg.start_step, float(v)))
        prev = seg
    if xs:
        best = run.best
        handles += ax.plot(
            xs, ys, color="black", lw=2.4, label=f"best member's schedule (member {best})"
        )
    if marks:
        handles.append(
            ax.scatter(
                [x for x, _ in marks],
                [y for _, y in marks],
                s=80,
                facecolors="none",
                edgecolors="black",
                linewidths=1.6,
                zorder=5,
                label="evaluator hand-over",
            )
        )
    if not values:
        _message(ax, f"{hp}: no numeric value recorded")
        return handles
    _log_if_wide(ax, values)
    ax.set_ylabel(_plain(hp))
    ax.autoscale_view()
    return handles


def plot_lineage(store: Store | str | Path, path: str | Path, member: int | None = None) -> Path:
    """The lineage of the best final member's weights (or ``member``'s).

    x is the step, y one lane per worker the weights passed through; a bar for each stretch of
    training on that worker (annotated with the hyperparameters that vary in the run where the
    bar is wide enough), and an arrow at each copy: exploit (donor → member), assign (parent →
    evaluator) and hand-over (evaluator → member), coloured by kind.
    """
    with _opened(store) as st, _style():
        run = _read(st)
        target = member if member is not None else run.best
        chain = segment_chain(st, target) if target is not None else []
        chain = [s for s in chain if s.end_step > s.start_step]
        if target is None or not chain:
            fig = _figure(9, 3)
            ax = fig.add_subplot()
            ax.set_title(_plain(f"{run.strategy_name()} · {run.trainable_name()}: lineage"))
            _message(
                ax,
                "no member has recorded a score yet"
                if target is None
                else f"{run.label(target)} has no finished segment",
            )
            return _save(fig, path)
        _draw_lineage(run, target, chain, path)
        return Path(path)


def _lane_order(run: _Run, workers: Sequence[int]) -> list[int]:
    """Lanes top to bottom: the highest sub-population first, evaluators, P1 last."""

    def rank(w: int) -> tuple[float, int]:
        row = run.members.get(w)
        if row is None or row.role is Role.EVALUATOR:
            return (0.5, w)
        return (float(row.subpopulation), w)

    return sorted(set(workers), key=lambda w: (-rank(w)[0], rank(w)[1]))


def _draw_lineage(run: _Run, target: int, chain: Sequence[SegmentRow], path: str | Path) -> None:
    from matplotlib.patches import Patch

    stretches = _stretches(chain)
    copies = _copies(run.store, chain)
    lanes = _lane_order(run, [s.worker for s in stretches])
    lane_of = {w: i for i, w in enumerate(lanes)}
    _, annotate = _varying(run.segments)
    fig = _figure(10, max(3.0, 1.5 + 0.42 * len(lanes)))
    ax = fig.add_subplot()
    height = 0.56
    for s in stretches:
        ax.barh(
            lane_of[s.worker],
            s.end - s.start,
            left=s.start,
            height=height,
            color=run.colour(s.worker),
            alpha=0.85,
            edgecolor="white",
            linewidth=1.2,
        )
    kinds_seen: list[str] = []
    for c in copies:
        y0, y1 = lane_of[c.parent], lane_of[c.child]
        sign = 1 if y1 > y0 else -1
        colour = COPY_COLOURS.get(c.kind, COPY_COLOURS["copy"])
        ax.annotate(
            "",
            xy=(c.step, y1 - sign * height / 2),
            xytext=(c.step, y0 + sign * height / 2),
            arrowprops={
                "arrowstyle": "-|>",
                "color": colour,
                "lw": 1.6,
                "mutation_scale": 13,
                "shrinkA": 0,
                "shrinkB": 0,
            },
            annotation_clip=False,
        )
        ax.plot([c.step], [y0 + sign * height / 2], "o", ms=3.5, color=colour)
        if c.kind not in kinds_seen:
            kinds_seen.append(c.kind)
    final = _final_point(run, target)
    title = f"Lineage of the weights of {run.label(target)}"
    if final is not None:
        title += f": {run.metric} {final.score:.4g} at step {final.step}"
    ax.set_title(_plain(title))
    ax.set_yticks(range(len(lanes)), [_plain(run.label(w)) for w in lanes])
    for tick, w in zip(ax.get_yticklabels(), lanes, strict=True):
        tick.set_color(run.colour(w) if run.is_member(w) else "0.3")
    ax.set_ylim(len(lanes) - 0.4, -0.6)
    ax.set_xlim(0, run.total_steps)
    ax.set_xlabel("step")
    ax.grid(axis="y", visible=False)
    handles: list[Any] = []
    sps = sorted({run.members[w].subpopulation for w in lanes if run.is_member(w)})
    handles += [
        Patch(color=_subpopulation_colour(sp), alpha=0.85, label=_subpopulation_label(run, sp))
        for sp in sps
    ]
    if any(not run.is_member(w) for w in lanes):
        handles.append(Patch(color=EVALUATOR_COLOUR, alpha=0.85, label="evaluator"))
    from matplotlib.lines import Line2D

    handles += [
        Line2D([], [], color=COPY_COLOURS[k], lw=1.6, marker=">", ms=5, label=COPY_LABELS[k])
        for k in ("exploit", "assign", "handover", "copy")
        if k in kinds_seen
    ]
    fig.legend(
        handles=handles,
        loc="outside right upper",
        frameon=False,
        title=_plain("bar labels: " + ", ".join(annotate)) if annotate else None,
        title_fontsize=8.5,
        alignment="left",
    )
    fig.get_layout_engine().execute(fig)  # type: ignore[union-attr]
    _annotate_stretches(fig, ax, stretches, lane_of, annotate)
    _save(fig, path)


def _final_point(run: _Run, worker: int) -> Point | None:
    pts = [p for m, p in run.points if m == worker]
    return pts[-1] if pts else None


def _annotate_stretches(
    fig: Figure,
    ax: Axes,
    stretches: Sequence[_Stretch],
    lane_of: Mapping[int, int],
    names: Sequence[str],
) -> None:
    """Write each stretch's varying hyperparameters inside its bar, shortest form that fits."""
    if not names:
        return
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for s in stretches:
        (x0, _), (x1, _) = ax.transData.transform([(s.start, 0), (s.end, 0)])
        room = abs(x1 - x0) - 6
        texts = [_fmt_h(s.hyperparameters, names, 3)]
        if len(names) == 1:
            texts.append(_fmt(s.hyperparameters.get(names[0], ""), 3))
        else:
            texts.append(
                ", ".join(_fmt(s.hyperparameters[k], 3) for k in names if k in s.hyperparameters)
            )
        for text in texts:
            t = ax.text(
                (s.start + s.end) / 2,
                lane_of[s.worker],
                _plain(text),
                ha="center",
                va="center",
                fontsize=7.5,
                color="black",
                clip_on=True,
            )
            t.set_in_layout(False)
            if t.get_window_extent(renderer).width <= room:
                break
            t.remove()


def _member_curves(run: _Run) -> dict[int, tuple[list[float], list[float]]]:
    """Each member's curve, segment by segment, broken where it took other weights (an
    exploit or a hand-over), so that no line joins two different networks."""
    curves: dict[int, tuple[list[float], list[float]]] = {}
    last: dict[int, int] = {}  # member -> its latest segment drawn
    for seg in run.segments:
        if not run.is_member(seg.member):
            continue
        xs, ys = curves.setdefault(seg.member, ([], []))
        if xs and seg.source_segment != last.get(seg.member):
            xs.append(math.nan)
            ys.append(math.nan)
        last[seg.member] = seg.id
        for p in run.store.segment_points(seg.id):
            xs.append(p.step)
            ys.append(p.score if math.isfinite(p.score) else math.nan)
    return curves


def plot_curves(store: Store | str | Path, path: str | Path) -> Path:
    """Every member's curve (score against step, evaluators excluded), coloured by
    sub-population, and the curve of the best member's weights along its lineage in black."""
    with _opened(store) as st, _style():
        from matplotlib.lines import Line2D

        run = _read(st)
        fig = _figure(9, 4.6)
        ax = fig.add_subplot()
        ax.set_title(
            _plain(f"{run.strategy_name()} · {run.trainable_name()}: every member's {run.metric}")
        )
        if not run.scored():
            _message(ax, "no member has recorded a score yet")
            return _save(fig, path)
        curves = _member_curves(run)
        values: list[float] = []
        failed: list[tuple[float, float]] = []
        for m, (xs, ys) in sorted(curves.items()):
            ax.plot(xs, ys, lw=0.8, alpha=0.55, color=run.colour(m))
            values += ys
            if run.members[m].status is MemberStatus.FAILED and xs and math.isfinite(ys[-1]):
                failed.append((xs[-1], ys[-1]))
        handles: list[Any] = [
            Line2D(
                [], [], color=_subpopulation_colour(sp), lw=1.5, label=_subpopulation_label(run, sp)
            )
            for sp in run.subpopulations
        ]
        if run.best is not None:
            lineage = [
                p
                for seg in segment_chain(st, run.best)
                for p in st.segment_points(seg.id)
                if math.isfinite(p.score)
            ]
            if lineage:
                handles += ax.plot(
                    [p.step for p in lineage],
                    [p.score for p in lineage],
                    color="black",
                    lw=2.0,
                    label=f"best member {run.best}: the curve its weights followed",
                )
                last = lineage[-1]
                ax.scatter([last.step], [last.score], color="black", s=25, zorder=5)
        if failed:
            handles.append(
                ax.scatter(
                    [x for x, _ in failed],
                    [y for _, y in failed],
                    marker="x",
                    s=40,
                    color="tab:red",
                    zorder=4,
                    label="member failed here",
                )
            )
        _log_if_wide(ax, values)
        ax.set_xlim(0, run.total_steps)
        ax.set_xlabel("step")
        ax.set_ylabel(_plain(f"{run.metric} ({_direction(run)})"))
        ax.legend(handles=handles, loc="upper right" if run.minimise else "lower right")
        return _save(fig, path)


# -- Table 1 -----------------------------------------------------------------------------------


def table_one(store: Store | str | Path) -> dict[str, Any]:
    """The FIRE PBT paper's Table 1 numbers for this run.

    - ``top_validation``: the best score any member reached during the run (``mode`` decides),
      with ``top_member`` and ``top_step`` where it happened;
    - ``matching_test``: the config's ``test_metric`` at that same point, or None;
    - ``replay_test``: the mean final ``test_metric`` (the score when the run names no
      ``test_metric``) of the finished replays recorded in the store, ``replay_test_std`` their
      standard deviation when there are several, ``replay_count``, ``replay_members``; None
      when the store holds no finished replay.
    """
    with _opened(store) as st:
        config = st.config()
        mode = "min" if config.get("mode") == "min" else "max"
        test_metric = config.get("test_metric")
        members = {m.id: m for m in st.members()}
        out: dict[str, Any] = {
            "metric": str(config.get("metric") or "score"),
            "mode": mode,
            "test_metric": test_metric,
            "top_validation": None,
            "top_member": None,
            "top_step": None,
            "matching_test": None,
            "replay_test": None,
            "replay_test_std": None,
            "replay_count": 0,
            "replay_members": [],
        }
        top = _top(
            [(m, p) for m, p in st.points() if m in members and members[m].role is Role.MEMBER],
            mode == "min",
        )
        if top is not None:
            m, p = top
            out.update(top_validation=p.score, top_member=m, top_step=p.step)
            if test_metric and test_metric in p.metrics:
                out["matching_test"] = float(p.metrics[test_metric])
        finals = _replay_finals(st.path, test_metric)
        if finals:
            values = [v for _, v in finals]
            out.update(
                replay_test=statistics.fmean(values),
                replay_test_std=statistics.stdev(values) if len(values) > 1 else None,
                replay_count=len(values),
                replay_members=sorted({m for m, _ in finals}),
            )
        return out


def _replay_finals(path: Path, test_metric: str | None) -> list[tuple[int, float]]:
    """(member, final value) of each finished replay; [] when the store has no replay tables."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error:
        return []
    try:
        tables = {
            str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not {"replays", "replay_points"} <= tables:
            return []
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(replays)")}
        sql = "SELECT id, member FROM replays"
        if "status" in columns:
            sql += " WHERE status IN ('done', 'finished')"
        replays = {int(i): int(m) for i, m in conn.execute(sql)}
        last: dict[int, tuple[int, float | None, str]] = {}
        for r, step, score, metrics in conn.execute(
            "SELECT replay, step, score, metrics FROM replay_points ORDER BY rowid"
        ):
            if r in replays and (r not in last or step >= last[r][0]):
                last[r] = (int(step), score, str(metrics))
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    out = []
    for r, (_, score, metrics) in sorted(last.items()):
        value: Any = score
        if test_metric:
            try:
                value = json.loads(metrics).get(test_metric)
            except (ValueError, AttributeError):
                value = None
        if value is not None and math.isfinite(float(value)):
            out.append((replays[r], float(value)))
    return out


# -- the HTML page -----------------------------------------------------------------------------

FIGURES: tuple[tuple[str, Callable[[Store, Path], Path], str], ...] = (
    (
        "best_score",
        plot_best_score,
        "The best {metric} reached by any member up to each step ({direction}), as in Figure 4b "
        "of the FIRE PBT paper. With several sub-populations, each one's best is drawn thinly.",
    ),
    (
        "hyperparameters",
        plot_hyperparameters,
        "Hyperparameters of every member over time, coloured by sub-population (one line per "
        "trained segment); black: the schedule behind the best member's final weights; "
        "circles: evaluator hand-overs on that lineage (Figure 4a of the FIRE PBT paper).",
    ),
    (
        "lineage",
        plot_lineage,
        "Whose training the best member's final weights carry: one lane per worker, a bar per "
        "stretch of training (labelled with the hyperparameters that vary in the run where "
        "there is room), an arrow per copy of weights.",
    ),
    (
        "curves",
        plot_curves,
        "Every member's {metric} over training (evaluators left out), coloured by "
        "sub-population; black: the curve followed by the best member's weights along its "
        "lineage.",
    ),
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1120px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
.sub{color:#555;margin-top:0}.status{display:inline-block;padding:0 .5em;border-radius:4px;
background:#eee;font-weight:600}.status.finished{background:#d8f0dc}
.status.running{background:#fff1c2}.note{background:#fff6d6;border-left:4px solid #e0b100;
padding:.6em 1em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;
font-variant-numeric:tabular-nums}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#444;font-size:.93em;margin-top:.3em}code,pre{font-size:.9em}
pre{background:#f7f7f7;padding:.8em;overflow:auto}
"""


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the four figures and a self-contained ``report.html``; returns the page's path.

    ``out_dir`` defaults to ``<run_dir>/report/``. Works on finished, running, killed and
    failed runs alike; a run without any score yet gets a page that says so.
    """
    _require_matplotlib()
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    with _opened(run_dir) as st:
        run = _read(st)
        figures: list[tuple[str, str, str | None]] = []  # (name, caption, base64 png or error)
        if run.scored():
            for name, plot, caption in FIGURES:
                text = caption.format(metric=run.metric, direction=_direction(run))
                try:
                    png = plot(st, out / f"{name}.png")
                except Exception as e:  # one broken figure must not cost the whole report
                    figures.append((name, f"figure failed: {type(e).__name__}: {e}", None))
                    continue
                figures.append((name, text, base64.b64encode(png.read_bytes()).decode("ascii")))
        page = _page(run, table_one(st), figures, run_dir)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _page(
    run: _Run,
    table: Mapping[str, Any],
    figures: Sequence[tuple[str, str, str | None]],
    run_dir: Path,
) -> str:
    st = run.store
    status = st.meta("status") or "unknown"
    title = f"{run.strategy_name()} · {run.config.get('trainable', '?')}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>firepbt report: {_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">status <span class="status {_e(status)}">{_e(status)}</span> · '
        f"run directory <code>{_e(run_dir)}</code> · report written "
        f"{_e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
    ]
    parts += _summary(run)
    if not run.scored():
        parts.append(
            '<p class="note">No member has recorded a score yet: there is nothing to plot. '
            "Write the report again once the run has made progress.</p>"
        )
    else:
        parts += _best_section(run)
        parts += _table_one_section(run, table)
        parts.append("<h2>Figures</h2>")
        for name, caption, data in figures:
            if data is None:
                parts.append(f'<p class="note">{_e(name)}: {_e(caption)}</p>')
                continue
            parts.append(
                f'<figure id="{_e(name)}"><img alt="{_e(name)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption>'
                "</figure>"
            )
    parts += _failures_section(run)
    parts.append("<h2>Configuration</h2><details><summary>the run's config</summary><pre>")
    parts.append(_e(json.dumps(run.config, indent=2, sort_keys=True, default=str)))
    parts.append("</pre></details></body></html>")
    return "\n".join(parts) + "\n"


def _rows(rows: Sequence[tuple[str, Any]]) -> list[str]:
    out = ["<table>"]
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    out.append("</table>")
    return out


def _summary(run: _Run) -> list[str]:
    st = run.store
    members = [m for m in run.members.values() if m.role is Role.MEMBER]
    evaluators = [m for m in run.members.values() if m.role is Role.EVALUATOR]
    statuses = Counter(m.status.value for m in members)
    queued = sum(1 for s in st.segments() if s.status is SegmentStatus.QUEUED)
    reached = [m.step for m in members]
    rows: list[tuple[str, Any]] = [
        ("strategy", run.strategy_name()),
        ("trainable", run.config.get("trainable", "?")),
        ("status", st.meta("status") or "unknown"),
        (
            "population",
            f"{len(members)} members"
            + (
                f" in {len(run.subpopulations)} sub-populations"
                if len(run.subpopulations) > 1
                else ""
            )
            + (f", {len(evaluators)} evaluators" if evaluators else ""),
        ),
        ("members by status", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "–"),
        (
            "steps",
            f"{run.config.get('total_steps', '?')} per member; reached "
            + (f"{min(reached)}–{max(reached)}" if reached else "–"),
        ),
        ("worker-steps", f"{st.worker_steps()} (segments still queued: {queued})"),
        ("selection metric", f"{run.metric} ({_direction(run)})"),
    ]
    wall = st.meta("wall_seconds")
    if wall:
        rows.append(("wall time", f"{float(wall):.1f} s"))
    if run.best is not None:
        final = _final_point(run, run.best)
        if final is not None:
            rows.append(
                (
                    "best member",
                    f"{run.label(run.best)}: {run.metric} {final.score:.6g} at step {final.step}",
                )
            )
    return ["<h2>Summary</h2>", *_rows(rows)]


def _best_section(run: _Run) -> list[str]:
    if run.best is None:
        return []
    st = run.store
    chain = [s for s in segment_chain(st, run.best) if s.end_step > s.start_step]
    stretches = _stretches(chain)
    _, varying = _varying(run.segments)
    names = sorted({k for s in stretches for k in s.hyperparameters})
    names = [k for k in names if k in varying] + [k for k in names if k not in varying]
    out = [
        f"<h2>Schedule of the best member: {_e(run.label(run.best))}</h2>",
        "<p>The hyperparameters in force over each range of steps behind its final weights, and "
        "the worker that trained them.</p>",
        "<table><tr><th>from step</th><th>to step</th><th>trained by</th>",
        *[f"<th>{_e(k)}</th>" for k in names],
        "</tr>",
    ]
    for s in stretches:
        cells = "".join(
            f'<td class="num">{_e(_fmt(s.hyperparameters[k]))}</td>'
            if k in s.hyperparameters
            else "<td></td>"
            for k in names
        )
        out.append(
            f'<tr><td class="num">{s.start}</td><td class="num">{s.end}</td>'
            f"<td>{_e(run.label(s.worker))}</td>{cells}</tr>"
        )
    out.append("</table>")
    copies = _copies(st, chain)
    if copies:
        out += [
            f"<details><summary>copies of weights on this lineage ({len(copies)})</summary><table>",
            "<tr><th>step</th><th>kind</th><th>from</th><th>to</th><th>changes</th>"
            "<th>reason</th></tr>",
        ]
        for c in copies:
            out.append(
                f'<tr><td class="num">{c.step}</td><td>{_e(c.kind)}</td>'
                f"<td>{_e(run.label(c.parent))}</td><td>{_e(run.label(c.child))}</td>"
                f"<td>{_e('; '.join(c.changes))}</td><td>{_e(c.reason)}</td></tr>"
            )
        out.append("</table></details>")
    return out


def _table_one_section(run: _Run, t: Mapping[str, Any]) -> list[str]:
    def num(x: Any) -> str:
        return "–" if x is None else f"{x:.6g}"

    test = t.get("test_metric")
    top = (
        "–"
        if t["top_validation"] is None
        else f"{num(t['top_validation'])} ({run.label(t['top_member'])}, step {t['top_step']})"
    )
    if t["replay_test"] is None:
        replay = "– (no finished replay recorded)"
    else:
        replay = num(t["replay_test"])
        if t["replay_test_std"] is not None:
            replay += f" ± {num(t['replay_test_std'])}"
        members = ", ".join(str(m) for m in t["replay_members"])
        replay += f" over {t['replay_count']} replay(s) of member(s) {members}"
        if not test:
            replay += f" (final {run.metric}: the run names no test_metric)"
    rows = [
        (f"top validation ({run.metric}, {_direction(run)})", top),
        (
            f"test at the same point ({test})" if test else "test at the same point",
            num(t["matching_test"]) if test else "– (the run names no test_metric)",
        ),
        ("schedule replay, final test" if test else "schedule replay, final score", replay),
    ]
    return [
        "<h2>Table 1 numbers</h2>",
        "<p>As in Table 1 of the FIRE PBT paper: the best validation score any member reached, "
        "the test score at that same point, and the final test score of replays of the found "
        "schedule from scratch.</p>",
        *_rows(rows),
    ]


def _failures_section(run: _Run) -> list[str]:
    failures = run.store.failures()
    if not failures:
        return []
    out = [
        f"<h2>Failures and warnings ({len(failures)})</h2><details><summary>the last "
        f"{min(len(failures), 20)}</summary><table>",
        "<tr><th>worker</th><th>step</th><th>kind</th><th>message</th></tr>",
    ]
    for member, step, kind, message in failures[-20:]:
        out.append(
            f'<tr><td>{_e(run.label(member))}</td><td class="num">{_e(step)}</td>'
            f"<td>{_e(kind)}</td><td>{_e(message)}</td></tr>"
        )
    out.append("</table></details>")
    return out
