"""Figures of scores over steps: the best score so far (FIRE Figure 4b) and every member's
curve with the curve of the best member's weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firepbt.report._data import (
    _direction,
    _opened,
    _read,
    _Run,
    _subpopulation_colour,
    _subpopulation_label,
    _top,
)
from firepbt.report._plotting import (
    _figure,
    _log_if_wide,
    _message,
    _plain,
    _save,
    _style,
    _thin,
)
from firepbt.store import MemberStatus, Store

if TYPE_CHECKING:
    import numpy as np


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
        import numpy as np

        steps = np.fromiter((p[1] for p in pts), dtype=float, count=len(pts))
        scores = np.fromiter((p[2] for p in pts), dtype=float, count=len(pts))
        xs, ys = _thin(*_best_so_far(steps, scores, run.minimise), 0, run.total_steps)
        ax.step(
            xs, ys, where="post", lw=2.4, color="black", zorder=3, label="best in the population"
        )
        plotted = list(ys)
        if len(run.subpopulations) > 1:
            sp_of = np.array([run.members[p[0]].subpopulation for p in pts])
        for sp in run.subpopulations if len(run.subpopulations) > 1 else []:
            mine = sp_of == sp
            if not mine.any():
                continue
            xs, ys = _thin(
                *_best_so_far(steps[mine], scores[mine], run.minimise), 0, run.total_steps
            )
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
        top_m, top_step, top_score, _ = _top(pts, run.minimise) or pts[0]
        ax.scatter(
            [top_step],
            [top_score],
            marker="*",
            s=180,
            color="gold",
            edgecolors="black",
            linewidths=0.8,
            zorder=5,
            clip_on=False,
            label=_plain(f"top {run.metric} {top_score:.4g}: {run.label(top_m)}, step {top_step}"),
        )
        _log_if_wide(ax, plotted)
        ax.set_xlim(0, run.total_steps)
        ax.set_xlabel("step")
        ax.set_ylabel(_plain(f"best {run.metric} so far ({_direction(run)})"))
        ax.legend(loc="upper right" if run.minimise else "lower right")
        return _save(fig, path)


def _best_so_far(
    steps: np.ndarray, scores: np.ndarray, minimise: bool
) -> tuple[list[float], list[float]]:
    """The best score reached by each recorded step (scores finite)."""
    import numpy as np

    sign = 1.0 if minimise else -1.0  # as a minimum
    order = np.lexsort((sign * scores, steps))
    steps, values = steps[order], sign * scores[order]
    first = np.ones(len(steps), dtype=bool)
    first[1:] = steps[1:] != steps[:-1]
    running = np.minimum.accumulate(values[first])  # each step's best is its first, sorted
    return steps[first].tolist(), (sign * running).tolist()


def _member_curves(run: _Run) -> dict[int, tuple[list[float], list[float]]]:
    """Each member's curve, segment by segment, broken where it took other weights (an
    exploit or a hand-over), so that no line joins two different networks."""
    curves: dict[int, tuple[list[float], list[float]]] = {}
    last: dict[int, int] = {}  # member -> its latest segment drawn
    members = {m for m in run.members if run.is_member(m)}
    by_segment, finite, nan = run.by_segment, math.isfinite, math.nan
    for seg, m, _, _, source, _ in run.segments:
        if m not in members:
            continue
        curve = curves.get(m)
        if curve is None:
            curve = curves[m] = ([], [])
        xs, ys = curve
        if xs and source != last.get(m):
            xs.append(nan)
            ys.append(nan)
        last[m] = seg
        for step, score in by_segment.get(seg, ()):
            xs.append(step)
            ys.append(score if finite(score) else nan)
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
            xs, ys = _thin(xs, ys, 0, run.total_steps)
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
                for seg in run.chain(run.best)
                for p in st.segment_points(seg.id)
                if math.isfinite(p.score)
            ]
            if lineage:
                handles += ax.plot(
                    *_thin(
                        [p.step for p in lineage], [p.score for p in lineage], 0, run.total_steps
                    ),
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
