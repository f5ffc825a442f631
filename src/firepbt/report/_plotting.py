"""The matplotlib side shared by every figure: a clear error when matplotlib is missing, the
house style, figures on their own Agg canvas, saving, and axis helpers. matplotlib is imported
only inside these functions."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 120


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


def _plain(text: str) -> str:
    """Text from the run, shown literally by matplotlib (no mathtext between dollar signs)."""
    return text.replace("$", r"\$")


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


# A figure is about 9 inches wide at DPI 120: a line is drawn with at most two points per
# column of this many across its x range.
COLUMNS = 1200


def _thin(
    xs: Sequence[float], ys: Sequence[float], lo: float, hi: float, columns: int = COLUMNS
) -> tuple[list[float], list[float]]:
    """A long line made short enough to draw, looking the same: in each of ``columns`` equal
    columns of x between ``lo`` and ``hi``, only its lowest and its highest point (in their
    order), so that spikes survive; a NaN (a break in the line) is kept. A line of fewer than
    ``4 * columns`` points is returned as it is."""
    if len(xs) < 4 * columns:
        return list(xs), list(ys)
    import numpy as np

    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    breaks = np.isnan(x) | np.isnan(y)
    column = np.floor((x - lo) / ((hi - lo) / columns or 1.0))
    # A group: consecutive points of one column; a break is a group of its own.
    new = np.ones(len(x), dtype=bool)
    new[1:] = (column[1:] != column[:-1]) | breaks[1:] | breaks[:-1]
    group = np.cumsum(new) - 1
    order = np.lexsort((np.where(breaks, 0.0, y), group))  # by group, then by y
    sizes = np.diff(np.append(np.flatnonzero(new), len(x)))
    last = np.cumsum(sizes) - 1
    keep = np.unique(np.concatenate([order[last - sizes + 1], order[last]]))
    return x[keep].tolist(), y[keep].tolist()
