"""Figures of scores over steps: the best score so far (FIRE Figure 4b) and every member's
curve with the curve of the best member's weights."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from firepbt.lineage import segment_chain
from firepbt.report._data import (
    _direction,
    _opened,
    _read,
    _Run,
    _subpopulation_colour,
    _subpopulation_label,
    _top,
)
from firepbt.report._plotting import _figure, _log_if_wide, _message, _plain, _save, _style
from firepbt.store import MemberStatus, Store


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
