"""FIRE PBT (Dalibard & Jaderberg 2020): comparing evaluator training curves by improvement rate.

:mod:`firepbt.fire.smoothing` holds the training curve and its GP smoothing (:func:`fit_curve`);
:mod:`firepbt.fire.curves` the pure curve functions of section 3 of the paper that compare smoothed
curves: overlapping sections (:func:`overlap`), ``best_score_diff`` with the penalised-δ search,
the one-sided ``binom_test`` and the sum-of-diffs ``fitness``. scipy's optimiser is imported only
when a curve is smoothed.
"""

from firepbt.fire.curves import Overlap, best_score_diff, binom_test, fitness, overlap
from firepbt.fire.smoothing import Curve, fit_curve

__all__ = ["Curve", "Overlap", "best_score_diff", "binom_test", "fit_curve", "fitness", "overlap"]
