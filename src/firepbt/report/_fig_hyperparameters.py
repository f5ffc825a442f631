"""The hyperparameters figure: each sub-population's hyperparameters over time with the best
member's schedule and the evaluator hand-overs on its lineage (FIRE Figure 4a)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firepbt.report._data import (
    _is_number,
    _opened,
    _read,
    _Run,
    _subpopulation_colour,
    _subpopulation_label,
)
from firepbt.report._plotting import (
    COLUMNS,
    _figure,
    _log_if_wide,
    _message,
    _plain,
    _save,
    _style,
    _thin,
)
from firepbt.store import SegmentRow, Store

if TYPE_CHECKING:
    from matplotlib.axes import Axes


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
        numeric, _ = run.varying
        if name is not None:
            known = {k for text in {seg[5] for seg in run.segments}
                     for k in run.hyperparameters(text)}  # fmt: skip
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
        chain = run.chain(run.best) if run.best is not None else []
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

    # Each member's value over its trained segments, as (start, value), (end, value) pairs.
    by_member: dict[int, tuple[list[float], list[float]]] = {}
    value_of: dict[str, float | None] = {}  # by the segment's hyperparameters text
    members = {m for m in run.members if run.is_member(m)}
    for _, m, start, end, _, text in run.segments:
        if m not in members or end <= start:
            continue
        if text not in value_of:
            v = run.hyperparameters(text).get(hp)
            value_of[text] = float(v) if _is_number(v) else None
        value = value_of[text]
        if value is None:
            continue
        steps, levels = by_member.setdefault(m, ([], []))
        steps += (start, end)
        levels += (value, value)
    values = [v for _, levels in by_member.values() for v in levels[::2]]
    lines: dict[int, list[list[tuple[float, float]]]] = {}
    long = sum(len(x) for x, _ in by_member.values()) >= 4 * COLUMNS
    for m, (steps, levels) in sorted(by_member.items()):
        sp = run.members[m].subpopulation
        if long:  # one thinned line per member
            lines.setdefault(sp, []).append(
                list(zip(*_thin(steps, levels, 0, run.total_steps), strict=True))
            )
        else:  # one line per segment
            lines.setdefault(sp, []).extend(
                [(steps[i], levels[i]), (steps[i + 1], levels[i + 1])]
                for i in range(0, len(steps), 2)
            )
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
        xs, ys = _thin(xs, ys, 0, run.total_steps)
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
