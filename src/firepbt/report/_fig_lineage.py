"""The lineage figure: whose training the best member's weights carry, worker by worker, with
every copy of weights and the hyperparameters of each stretch of training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firepbt.lineage import segment_chain
from firepbt.report._data import (
    EVALUATOR_COLOUR,
    _copies,
    _final_point,
    _fmt,
    _fmt_h,
    _opened,
    _read,
    _Run,
    _Stretch,
    _stretches,
    _subpopulation_colour,
    _subpopulation_label,
    _varying,
)
from firepbt.report._plotting import _figure, _message, _plain, _save, _style
from firepbt.store import Role, SegmentRow, Store

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COPY_COLOURS = {"exploit": "#c2185b", "assign": "#6a1b9a", "handover": "black", "copy": "0.4"}
COPY_LABELS = {
    "exploit": "exploit (donor → member)",
    "assign": "assign (parent → evaluator)",
    "handover": "hand-over (evaluator → member)",
    "copy": "copy",
}


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
