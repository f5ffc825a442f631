"""The lineage figure: whose training the best member's weights carry, worker by worker, with
every copy of weights and the hyperparameters of each stretch of training."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firepbt.report._data import (
    EVALUATOR_COLOUR,
    _Copy,
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
)
from firepbt.report._plotting import _figure, _message, _plain, _save, _style
from firepbt.store import Role, SegmentRow, Store

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COPY_COLOURS = {"exploit": "#c2185b", "assign": "#6a1b9a", "handover": "black", "copy": "0.4"}
COPY_NOUNS = {"exploit": "exploits", "assign": "assignments", "handover": "hand-overs",
              "copy": "other copies"}  # fmt: skip
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
        chain = run.chain(target) if target is not None else []
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


# A lineage with more copies than this is drawn as an overview (who trained it when, how often it
# was copied) over the last ``ARROWS`` copies drawn in full.
ARROWS = 40
HEIGHT = 0.56  # a bar's height in a lane


def _draw_lineage(run: _Run, target: int, chain: Sequence[SegmentRow], path: str | Path) -> None:
    stretches = _stretches(chain)
    copies = run.copies(target)
    _, annotate = run.varying
    if len(copies) <= ARROWS:
        lanes = _lane_order(run, [s.worker for s in stretches])
        fig = _figure(10, max(3.0, 1.5 + 0.42 * len(lanes)))
        ax = fig.add_subplot()
        _draw_lanes(ax, run, stretches, copies, lanes, 0, run.total_steps)
        ax.set_title(_plain(_title(run, target)))
        _finish(fig, run, lanes, {c.kind for c in copies}, annotate)
        _annotate_stretches(fig, ax, stretches, {w: i for i, w in enumerate(lanes)}, annotate)
        _save(fig, path)
        return
    # A long lineage: an overview of who trained it when and how often it was copied, then the
    # last ARROWS copies in full.
    start = copies[-ARROWS].step
    start -= max(1, (run.total_steps - start) // 20)
    recent = [replace(s, start=max(s.start, start)) for s in stretches if s.end > start]
    lanes = _lane_order(run, [s.worker for s in stretches])
    recent_lanes = _lane_order(run, [s.worker for s in recent])
    fig = _figure(10, max(6.0, 3.2 + 0.3 * len(lanes) + 0.36 * len(recent_lanes)))
    top, strip, bottom = fig.subplots(
        3,
        1,
        gridspec_kw={
            "height_ratios": [max(2, len(lanes)), 1.6, max(2, len(recent_lanes))],
        },
    )
    counts = Counter(c.kind for c in copies)
    _draw_overview(top, strip, run, stretches, copies, lanes)
    top.axvspan(start, run.total_steps, color="0.5", alpha=0.12, lw=0)
    top.set_title(
        _plain(
            f"{_title(run, target)}\nshare of each span of steps trained on each worker; "
            f"{len(copies)} copies ("
            + ", ".join(f"{n} {COPY_NOUNS[k]}" for k, n in sorted(counts.items()))
            + ")"
        )
    )
    _draw_lanes(bottom, run, recent, copies[-ARROWS:], recent_lanes, start, run.total_steps)
    bottom.set_title(
        _plain(f"the last {ARROWS} copies, from step {start} (shaded above)"), fontsize=10
    )
    _finish(fig, run, lanes, set(counts), annotate)
    _annotate_stretches(fig, bottom, recent, {w: i for i, w in enumerate(recent_lanes)}, annotate)
    _save(fig, path)


SPANS = 200  # columns of a long lineage's overview


def _draw_overview(
    ax: Axes,
    strip: Axes,
    run: _Run,
    stretches: Sequence[_Stretch],
    copies: Sequence[_Copy],
    lanes: Sequence[int],
) -> None:
    """A long lineage at a glance: one lane per worker and one column per span of steps,
    shaded by the share of the span's steps that the worker trained (the lineage is on one
    worker at a time); hand-overs marked; below, the copies of weights per span, by kind."""
    import numpy as np

    total = run.total_steps
    width = total / SPANS
    lane_of = {w: i for i, w in enumerate(lanes)}
    share = np.zeros((len(lanes), SPANS))
    for s in stretches:
        a, b = s.start / width, s.end / width
        for k in range(int(a), min(SPANS, int(np.ceil(b)))):
            share[lane_of[s.worker], k] += min(b, k + 1) - max(a, k)
    ax.imshow(
        share,
        aspect="auto",
        cmap="Greys",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=(0, total, len(lanes) - 0.5, -0.5),
    )
    handovers = [c for c in copies if c.kind == "handover"]
    if handovers:
        ax.scatter(
            [c.step for c in handovers],
            [lane_of[c.child] for c in handovers],
            marker="v",
            s=28,
            color=COPY_COLOURS["handover"],
            zorder=3,
        )
    ax.set_yticks(range(len(lanes)), [_plain(run.label(w)) for w in lanes])
    for tick, w in zip(ax.get_yticklabels(), lanes, strict=True):
        tick.set_color(run.colour(w) if run.is_member(w) else "0.3")
        if len(lanes) > 16:
            tick.set_fontsize(7)
    ax.set_xlim(0, total)
    ax.tick_params(labelbottom=False)
    ax.grid(visible=False)
    bottom = np.zeros(SPANS)
    edges = np.linspace(0, total, SPANS + 1)
    for kind in COPY_COLOURS:
        mine = [c.step for c in copies if c.kind == kind]
        if mine:
            n, _ = np.histogram(mine, bins=edges)
            strip.bar(edges[:-1], n, width=width, bottom=bottom, align="edge",
                      color=COPY_COLOURS[kind], lw=0)  # fmt: skip
            bottom += n
    strip.set_xlim(0, total)
    strip.set_ylabel("copies", fontsize=8)
    strip.tick_params(labelsize=7)
    strip.set_xlabel("step")


def _title(run: _Run, target: int) -> str:
    final = _final_point(run, target)
    title = f"Lineage of the weights of {run.label(target)}"
    if final is not None:
        title += f": {run.metric} {final.score:.4g} at step {final.step}"
    return title


def _draw_lanes(
    ax: Axes,
    run: _Run,
    stretches: Sequence[_Stretch],
    copies: Sequence[_Copy],
    lanes: Sequence[int],
    start: float,
    end: float,
) -> None:
    """One lane per worker with a bar per stretch of training and an arrow per copy."""

    lane_of = {w: i for i, w in enumerate(lanes)}
    for s in stretches:
        ax.barh(
            lane_of[s.worker],
            s.end - max(s.start, start),
            left=max(s.start, start),
            height=HEIGHT,
            color=run.colour(s.worker),
            alpha=0.85,
            edgecolor="white",
            linewidth=1.2,
        )
    for c in copies:
        _arrow(ax, c, lane_of)
    ax.set_yticks(range(len(lanes)), [_plain(run.label(w)) for w in lanes])
    for tick, w in zip(ax.get_yticklabels(), lanes, strict=True):
        tick.set_color(run.colour(w) if run.is_member(w) else "0.3")
    ax.set_ylim(len(lanes) - 0.4, -0.6)
    ax.set_xlim(start, end)
    ax.set_xlabel("step")
    ax.grid(axis="y", visible=False)


def _arrow(ax: Axes, c: _Copy, lane_of: Mapping[int, int]) -> None:
    y0, y1 = lane_of[c.parent], lane_of[c.child]
    sign = 1 if y1 > y0 else -1
    colour = COPY_COLOURS.get(c.kind, COPY_COLOURS["copy"])
    ax.annotate(
        "",
        xy=(c.step, y1 - sign * HEIGHT / 2),
        xytext=(c.step, y0 + sign * HEIGHT / 2),
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
    ax.plot([c.step], [y0 + sign * HEIGHT / 2], "o", ms=3.5, color=colour)


def _finish(
    fig: Figure, run: _Run, lanes: Sequence[int], kinds: set[str], annotate: Sequence[str]
) -> None:
    """The legend: sub-populations, evaluators and the kinds of copy drawn."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = []
    sps = sorted({run.members[w].subpopulation for w in lanes if run.is_member(w)})
    handles += [
        Patch(color=_subpopulation_colour(sp), alpha=0.85, label=_subpopulation_label(run, sp))
        for sp in sps
    ]
    if any(not run.is_member(w) for w in lanes):
        handles.append(Patch(color=EVALUATOR_COLOUR, alpha=0.85, label="evaluator"))
    handles += [
        Line2D([], [], color=COPY_COLOURS[k], lw=1.6, marker=">", ms=5, label=COPY_LABELS[k])
        for k in ("exploit", "assign", "handover", "copy")
        if k in kinds
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
