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

from firepbt.report._data import EVALUATOR_COLOUR, STRATEGY_NAMES, SUBPOPULATION_COLOURS, reading
from firepbt.report._fig_hyperparameters import plot_hyperparameters
from firepbt.report._fig_lineage import COPY_COLOURS, COPY_LABELS, plot_lineage
from firepbt.report._fig_scores import plot_best_score, plot_curves
from firepbt.report._page import FIGURES, write_report
from firepbt.report._plotting import DPI
from firepbt.report._table import table_one

__all__ = [
    "COPY_COLOURS",
    "COPY_LABELS",
    "DPI",
    "EVALUATOR_COLOUR",
    "FIGURES",
    "STRATEGY_NAMES",
    "SUBPOPULATION_COLOURS",
    "plot_best_score",
    "plot_curves",
    "plot_hyperparameters",
    "plot_lineage",
    "reading",
    "table_one",
    "write_report",
]
