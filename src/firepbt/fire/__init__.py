"""FIRE PBT (Dalibard & Jaderberg 2020): comparing evaluator training curves by improvement rate.

:mod:`firepbt.fire.curves` holds the pure curve functions of section 3 of the paper: GP smoothing
(:func:`fit_curve`), overlapping sections (:func:`overlap`), ``best_score_diff`` with the
penalised-δ search, the one-sided ``binom_test`` and the sum-of-diffs ``fitness``. scipy's optimiser
is imported only when a curve is smoothed.
"""

from firepbt.fire.curves import (
    Curve,
    Overlap,
    best_score_diff,
    binom_test,
    fit_curve,
    fitness,
    overlap,
)

__all__ = ["Curve", "Overlap", "best_score_diff", "binom_test", "fit_curve", "fitness", "overlap"]
