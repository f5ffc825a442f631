"""FIRE PBT curve comparison: smoothing, overlaps, best_score_diff, binom_test, fitness."""

from __future__ import annotations

import doctest
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import binomtest

import firepbt.fire.curves as curves_mod
from firepbt.fire import _gp
from firepbt.fire.curves import (
    Curve,
    Overlap,
    best_score_diff,
    binom_test,
    fit_curve,
    fitness,
    overlap,
)


def raw(steps: object, values: object) -> Curve:
    """A GP-free curve whose smoothed version is the raw points: overlaps are known exactly."""
    v = np.asarray(values, dtype=float)
    return Curve(np.asarray(steps, dtype=float), v, v)


def saturating(t: np.ndarray, start: float, gain: float, tau: float) -> np.ndarray:
    """Concave increasing curve: start + gain * (1 - exp(-t / tau))."""
    return start + gain * (1.0 - np.exp(-t / tau))


# ---------------------------------------------------------------------------------------------
# Figure 3 of the paper
# ---------------------------------------------------------------------------------------------


def figure3_curves(noise: float) -> tuple[Curve, Curve]:
    """The two curves of Figure 3, both reaching step 2000, evaluated every 10 steps.

    Left: copied at step 1000, starts at 0.5 and saturates fast: 0.5 + 0.3 (1 - exp(-t/tau)) with
    t = step - 1000 and tau = 150 / ln 3, so it reaches 0.70 at t = 150 (step 1150, as in the
    paper) and ends at ~0.800: average slope ~0.3 / 1000 = 3.0e-4.
    Right: copied at step 1500, starts at 0.70 (where the left one is at step 1150) and keeps
    climbing: 0.70 + C (1 - exp(-t/500)) with t = step - 1500 and C chosen so that it gains 0.12
    in its 500 steps: average slope 2.4e-4 < 3.0e-4.
    The overlap is the right curve's 51 points against the left's 51 points from step ~1150 to
    ~1650; there the left gains only ~0.097 (it has flattened out) while the right gains 0.12,
    so best_score_diff(right, left) ~ 0.82 - 0.797 > 0. A little noise (fixed seed) keeps it
    honest about smoothing.
    """
    rng = np.random.default_rng(3)
    x_left = np.arange(1000.0, 2001.0, 10.0)
    y_left = saturating(x_left - 1000.0, 0.5, 0.3, 150.0 / np.log(3.0))
    x_right = np.arange(1500.0, 2001.0, 10.0)
    y_right = saturating(x_right - 1500.0, 0.70, 0.12 / (1.0 - np.exp(-1.0)), 500.0)
    left = fit_curve(x_left, y_left + noise * rng.standard_normal(x_left.size))
    right = fit_curve(x_right, y_right + noise * rng.standard_normal(x_right.size))
    return left, right


def avg_rate(c: Curve) -> float:
    return float((c.values[-1] - c.values[0]) / (c.steps[-1] - c.steps[0]))


@pytest.mark.parametrize("noise", [0.0, 0.003])
def test_figure3_right_curve_is_better_despite_lower_average_rate(noise: float) -> None:
    left, right = figure3_curves(noise)
    assert left.steps[-1] == right.steps[-1] == 2000.0
    assert avg_rate(left) > avg_rate(right)  # the naive improvement rate prefers the left curve

    ov = overlap(right, left)
    assert ov is not None
    assert ov.start_a == 0  # the right curve starts higher: its section starts at its beginning
    crossing = float(np.interp(ov.start_b, np.arange(len(left)), left.steps))
    assert 1140.0 <= crossing <= 1160.0  # "at around 1150 steps" (interpolated: 1150 exactly)
    assert ov.length == len(right)  # the right curve constrains the length (min, not max)

    diff = best_score_diff(right, left)
    assert diff > 0.005
    assert best_score_diff(left, right) == -diff


# ---------------------------------------------------------------------------------------------
# Overlap
# ---------------------------------------------------------------------------------------------


def test_overlap_start_indices_and_min_length_on_raw_curves() -> None:
    low = raw(np.arange(10), [0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6])
    high = raw(np.arange(4), [0.3, 0.5, 0.7, 0.9])
    # high starts at 0.3; low first reaches >= 0.3 at index 3; 10 - 3 = 7 > 4 - 0 = 4.
    assert overlap(high, low) == Overlap(start_a=0, start_b=3, length=4)
    assert overlap(low, high) == Overlap(start_a=3, start_b=0, length=4)
    # The other way round: the long curve constrains nothing, the short one past its start does.
    late = raw(np.arange(12), np.linspace(-0.5, 0.6, 12))  # reaches 0.0 at index 5: 7 points left
    early = raw(np.arange(20), np.linspace(0.0, 1.9, 20))
    assert overlap(early, late) == Overlap(start_a=0, start_b=5, length=7)


def test_overlap_reaches_uses_greater_or_equal_and_ties_start_both_at_zero() -> None:
    a = raw([0, 1, 2], [0.2, 0.5, 0.6])
    b = raw([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])
    assert overlap(a, b) == Overlap(start_a=0, start_b=1, length=3)  # 0.2 >= 0.2 at index 1
    c = raw([0, 1, 2], [0.2, 0.1, 0.9])
    assert overlap(a, c) == Overlap(start_a=0, start_b=0, length=3)
    assert overlap(c, a) == Overlap(start_a=0, start_b=0, length=3)


def test_overlap_none_when_the_other_curve_never_reaches_the_start() -> None:
    high = raw([0, 1, 2], [0.8, 0.9, 1.0])
    low = raw([0, 1, 2], [0.1, 0.5, 0.79])
    assert overlap(high, low) is None
    assert overlap(low, high) is None


def test_overlap_on_smooth_noise_free_fitted_curves() -> None:
    x = np.arange(0.0, 200.0, 2.0)  # 100 points
    a = fit_curve(x, saturating(x, 0.0, 1.0, 50.0))
    b = fit_curve(x[:30], 0.5 + 0.005 * x[:30])
    assert np.max(np.abs(a.smoothed - a.values)) < 1e-3
    # a reaches 0.5 at x = 50 ln 2 = 34.66 (index 17.33, between the grid points 34 and 36);
    # 99 - 17.33 > 29 more offsets, so b's 30 points constrain the length.
    ov = overlap(b, a)
    assert ov is not None and ov.start_a == 0 and ov.length == 30
    assert ov.start_b == pytest.approx(50 * np.log(2) / 2, abs=0.02)


# ---------------------------------------------------------------------------------------------
# best_score_diff
# ---------------------------------------------------------------------------------------------


def test_flat_degenerate_curve_strictly_below_a_rising_one() -> None:
    x = np.arange(0.0, 500.0, 10.0)
    rising = fit_curve(x, saturating(x, 0.5, 0.3, 150.0))
    flat = fit_curve(x, np.full(x.size, 0.1))  # e.g. degenerate weights after a bad explore
    assert np.array_equal(flat.smoothed, flat.values)  # constant: no GP fit
    assert overlap(rising, flat) is None

    score = best_score_diff(rising, flat)
    # Shifted down onto the flat curve, the rising one still gains its whole rise.
    assert score == pytest.approx(rising.values.max() - rising.values[0], abs=0.01)
    assert best_score_diff(flat, rising) == -score

    fit = fitness({"flat": flat, "rising": rising})
    assert fit == {"flat": -score, "rising": score}
    assert max(fit, key=fit.__getitem__) == "rising"


def test_strictly_above_but_not_improving_faster_scores_zero() -> None:
    # A high flat curve against a low rising one: penalised down, the flat one never improves.
    x = np.arange(20.0)
    high_flat = raw(x, np.full(20, 0.9))
    low_rising = raw(x, np.linspace(0.1, 0.5, 20))
    assert best_score_diff(high_flat, low_rising) == 0.0
    assert best_score_diff(low_rising, high_flat) == 0.0


def test_strictly_above_and_improving_faster_picks_the_best_delta() -> None:
    x = np.arange(10.0)
    high = raw(x, 0.6 + 0.05 * x)  # 0.60 .. 1.05, slope 0.05
    low = raw(x, 0.1 + 0.02 * x)  # 0.10 .. 0.28, slope 0.02
    score = best_score_diff(high, low)
    # Shifting high so that it starts at low's start overlaps everything: 0.45 - 0.18 = 0.27
    # is the best possible (larger delta -> high starts lower, so shorter overlap for low).
    assert score == pytest.approx(0.27, abs=1e-9)
    assert best_score_diff(low, high) == -score


def test_no_overlap_and_no_dominance_scores_zero() -> None:
    falling = raw([0, 1, 2, 3], [0.9, 0.5, 0.2, 0.1])
    rising = raw([0, 1, 2, 3], [0.2, 0.4, 0.6, 0.8])  # never reaches 0.9
    assert overlap(falling, rising) is None
    assert best_score_diff(falling, rising) == 0.0
    assert best_score_diff(rising, falling) == 0.0


def test_identical_curves_diff_zero_and_binom_p_one() -> None:
    x = np.arange(0.0, 300.0, 10.0)
    y = saturating(x, 0.2, 0.5, 100.0) + 0.01 * np.random.default_rng(1).standard_normal(x.size)
    a, b = fit_curve(x, y), fit_curve(x, y)
    assert best_score_diff(a, b) == 0.0
    p, ov = binom_test(a, b)
    assert ov == Overlap(0, 0, x.size)
    assert p == binomtest(0, x.size, 0.5, alternative="greater").pvalue == 1.0


def test_antisymmetry_with_overlap_and_strictly_above() -> None:
    rng = np.random.default_rng(7)
    x = np.arange(0.0, 400.0, 10.0)
    fitted = [
        fit_curve(x, saturating(x, s, g, t) + 0.01 * rng.standard_normal(x.size))
        for s, g, t in [(0.1, 0.5, 100.0), (0.3, 0.2, 50.0), (0.2, 0.6, 300.0), (1.5, 0.3, 80.0)]
    ]
    overlapping = fitted[0], fitted[1]
    assert overlap(*overlapping) is not None
    above = fitted[3], fitted[0]
    assert overlap(*above) is None and above[0].values.min() > above[1].values.max()
    for a in fitted:
        for b in fitted:
            assert best_score_diff(a, b) == -best_score_diff(b, a)
    assert best_score_diff(*overlapping) != 0.0
    assert best_score_diff(*above) > 0.0


def test_n_deltas_validated() -> None:
    a = raw([0, 1], [0.0, 1.0])
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="n_deltas"):
            best_score_diff(a, a, n_deltas=bad)  # type: ignore[arg-type]


def test_doctests() -> None:
    result = doctest.testmod(curves_mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------------------------------------
# binom_test
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 3, 9, 11])
def test_binom_test_counts_strict_wins_on_aligned_overlap_points(k: int) -> None:
    # b starts higher (0.5); a reaches 0.5 at index 4, so a's section is a[4:16], b's is b[0:12].
    n = 12
    b_smooth = np.linspace(0.5, 0.94, n)
    a_smooth = np.concatenate([np.linspace(0.1, 0.4, 4), b_smooth])
    b_vals = b_smooth.copy()
    a_vals = a_smooth.copy()
    section = a_vals[4:]
    section[0] += 0.01  # the start pair is left out: a win there counts for nothing
    section[1 : k + 1] += 0.01  # strict wins at the next k aligned points
    section[k + 1 : k + 3] -= 0.01  # losses; the remaining points tie and count for neither
    a = Curve(np.arange(16.0), a_vals, a_smooth)
    b = Curve(np.arange(100.0, 112.0), b_vals, b_smooth)
    p, ov = binom_test(a, b)
    assert ov == Overlap(start_a=4, start_b=0, length=n)
    assert p == pytest.approx(binomtest(k, n - 1, 0.5, alternative="greater").pvalue, rel=1e-12)


def test_binom_test_without_overlap() -> None:
    high = raw([0, 1, 2], [0.8, 0.9, 1.0])
    low = raw([0, 1, 2], [0.1, 0.5, 0.79])
    assert binom_test(high, low) == (1.0, None)
    assert binom_test(low, high) == (1.0, None)


# ---------------------------------------------------------------------------------------------
# Smoothing
# ---------------------------------------------------------------------------------------------


def test_gp_smoothing_smooths_a_noisy_increasing_curve() -> None:
    x = np.linspace(0.0, 5000.0, 100)
    truth = saturating(x, 0.1, 0.8, 1500.0)
    noisy = truth + 0.05 * np.random.default_rng(2).standard_normal(x.size)
    c = fit_curve(x, noisy)
    assert np.array_equal(c.values, noisy)  # raw points are kept as they are
    rmse_raw = np.sqrt(np.mean((noisy - truth) ** 2))
    rmse_smooth = np.sqrt(np.mean((c.smoothed - truth) ** 2))
    assert rmse_smooth < 0.5 * rmse_raw


def test_fit_curve_is_deterministic() -> None:
    x = np.arange(40.0)
    y = np.sqrt(x) + 0.3 * np.random.default_rng(5).standard_normal(x.size)
    assert np.array_equal(fit_curve(x, y).smoothed, fit_curve(x, y).smoothed)


def test_degenerate_curves_are_not_fitted(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("GP fitted on a degenerate curve")

    monkeypatch.setattr(_gp, "smooth", boom)
    for steps, values in [([5], [0.3]), ([1, 2], [0.1, 0.7]), ([1, 2, 3, 4], [0.4] * 4)]:
        c = fit_curve(steps, values)
        assert np.array_equal(c.smoothed, np.asarray(values, dtype=float))


def test_curve_arrays_are_read_only_copies() -> None:
    x, y = np.arange(5.0), np.linspace(0.0, 1.0, 5)
    c = fit_curve(x, y)
    x[0] = -10.0
    assert c.steps[0] == 0.0
    with pytest.raises(ValueError):
        c.values[0] = 3.0


def test_fire_package_imports_without_scipy_optimize() -> None:
    code = "import sys, firepbt, firepbt.fire; assert 'scipy.optimize' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# Fitness
# ---------------------------------------------------------------------------------------------


def test_fitness_is_the_sum_of_pairwise_diffs() -> None:
    x = np.arange(0.0, 300.0, 10.0)
    rng = np.random.default_rng(11)
    cs = {
        name: fit_curve(x, saturating(x, s, g, t) + 0.005 * rng.standard_normal(x.size))
        for name, (s, g, t) in {
            "a": (0.1, 0.6, 100.0),
            "b": (0.3, 0.3, 60.0),
            "c": (0.9, 0.2, 200.0),
        }.items()
    }
    cs["flat"] = Curve(x, np.full(x.size, 0.05), np.full(x.size, 0.05))  # no overlap: δ search
    fit = fitness(cs)
    for j in cs:
        expected = sum(best_score_diff(cs[j], cs[k]) for k in cs if k != j)
        assert fit[j] == expected  # to the bit: each pair once, the other way round negated
    assert sum(fit.values()) == pytest.approx(0.0, abs=1e-12)  # antisymmetry
    assert fitness({"only": cs["a"]}) == {"only": 0.0}
    assert fitness({}) == {}


def test_fitness_compares_each_pair_of_curves_once(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.arange(0.0, 100.0, 10.0)
    cs = {k: Curve(x, x * (k + 1) / 100.0, x * (k + 1) / 100.0) for k in range(6)}
    pairs: list[tuple[float, float]] = []
    compare = curves_mod.best_score_diff

    def counted(a: Curve, b: Curve, n_deltas: int = 16) -> float:
        pairs.append((float(a.values[-1]), float(b.values[-1])))
        return compare(a, b, n_deltas)

    monkeypatch.setattr(curves_mod, "best_score_diff", counted)
    fitness(cs)
    assert len(pairs) == 15  # 6 curves: 6·5/2 pairs
    assert len({frozenset(p) for p in pairs}) == 15


def test_fitness_of_16_curves_fits_each_gp_exactly_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = _gp.smooth

    def counting_fit(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_gp, "smooth", counting_fit)
    rng = np.random.default_rng(4)
    x = np.arange(0.0, 500.0, 10.0)  # 50 points
    cs = {
        i: fit_curve(
            x,
            saturating(x, rng.uniform(0, 1), rng.uniform(0.1, 1), rng.uniform(50, 400))
            + 0.01 * rng.standard_normal(x.size),
        )
        for i in range(16)
    }
    assert calls == 16
    fit = fitness(cs)
    assert calls == 16
    assert set(fit) == set(range(16)) and all(np.isfinite(list(fit.values())))


# ---------------------------------------------------------------------------------------------
# Non-finite values and validation
# ---------------------------------------------------------------------------------------------


def test_nan_and_inf_rank_worst_one_range_below_the_finite_minimum() -> None:
    x = np.arange(6.0)
    y = np.array([0.2, np.nan, 0.5, np.inf, 0.6, -np.inf])
    c = fit_curve(x, y)
    assert np.isfinite(c.values).all() and np.isfinite(c.smoothed).all()
    # finite range [0.2, 0.6] -> failures at 0.2 - 0.4 = -0.2
    assert c.values[[1, 3, 5]] == pytest.approx([-0.2, -0.2, -0.2])
    assert c.values[[0, 2, 4]] == pytest.approx([0.2, 0.5, 0.6])


def test_nan_fill_with_a_single_finite_value_and_explicit_worst() -> None:
    c = fit_curve([0, 1, 2], [np.nan, 3.0, np.nan])
    assert c.values.tolist() == [0.0, 3.0, 0.0]  # margin max(|3|, 1) = 3
    c = fit_curve([0, 1, 2], [np.nan, 3.0, np.nan], worst=-7.0)
    assert c.values.tolist() == [-7.0, 3.0, -7.0]


def test_all_nan_curve_raises_unless_worst_is_given() -> None:
    with pytest.raises(ValueError, match="no finite value"):
        fit_curve([0, 1, 2], [np.nan, np.nan, -np.inf])
    c = fit_curve([0, 1, 2], [np.nan, np.nan, np.nan], worst=-1.0)
    assert c.values.tolist() == [-1.0, -1.0, -1.0] and c.smoothed.tolist() == [-1.0] * 3
    with pytest.raises(ValueError, match="worst must be finite"):
        fit_curve([0, 1], [np.nan, 1.0], worst=np.nan)


def test_a_diverged_curve_loses_to_a_healthy_one() -> None:
    x = np.arange(0.0, 300.0, 10.0)
    healthy = fit_curve(x, saturating(x, 0.2, 0.5, 100.0))
    y = saturating(x, 0.2, 0.5, 100.0)
    y[10:] = np.nan  # diverged at step 100
    diverged = fit_curve(x, y)
    assert best_score_diff(healthy, diverged) > 0.0


@pytest.mark.parametrize(
    ("steps", "values", "match"),
    [
        ([], [], "at least 1 point"),
        ([0, 1, 2], [0.1, 0.2], "same length"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "strictly increasing"),
        ([0, 1, 1], [0.1, 0.2, 0.3], "strictly increasing"),
        ([0, np.nan], [0.1, 0.2], "steps must be finite"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
        (["a", "b"], [0.1, 0.2], "steps must be"),
    ],
)
def test_fit_curve_validation(steps: object, values: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_curve(steps, values)  # type: ignore[arg-type]


def test_curve_constructor_validation() -> None:
    with pytest.raises(ValueError, match="same length"):
        Curve(np.arange(3.0), np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        Curve(np.arange(2.0), np.array([0.0, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="strictly increasing"):
        Curve(np.array([1.0, 0.0]), np.zeros(2), np.zeros(2))


# ---------------------------------------------------------------------------------------------
# An unbiased comparison: interpolated overlap starts, the start pair left out
# ---------------------------------------------------------------------------------------------


def test_overlap_starts_at_the_interpolated_crossing_between_two_points() -> None:
    high = raw(np.arange(4), [0.25, 0.35, 0.45, 0.55])
    low = raw(np.arange(8), [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    ov = overlap(high, low)
    assert ov is not None and ov.start_a == 0 and ov.length == 4
    assert ov.start_b == pytest.approx(2.5)  # 0.25 is half-way between 0.2 and 0.3
    # On these straight lines the two sections coincide: neither curve is ahead.
    assert best_score_diff(high, low) == pytest.approx(0.0, abs=1e-12)


def test_the_same_concave_process_sampled_later_gets_no_head_start() -> None:
    """Two samplings of one saturating curve, the second started half an interval later. The
    first whole point at or above the crossing would put the first curve 5 steps ahead at every
    offset; the interpolated crossing compares them level."""
    t = np.arange(0.0, 300.0, 10.0)
    early = fit_curve(t, saturating(t, 0.0, 1.0, 60.0))
    late = fit_curve(t[:20] + 1000.0, saturating(t[:20] + 5.0, 0.0, 1.0, 60.0))
    ov = overlap(late, early)
    assert ov is not None and ov.start_b == pytest.approx(0.5, abs=0.02)
    head_start = float(saturating(np.array([195.0]), 0.0, 1.0, 60.0)[0]) - float(
        saturating(np.array([190.0]), 0.0, 1.0, 60.0)[0]
    )  # what a 5-step lead is worth at the end of the overlap
    assert abs(best_score_diff(late, early)) < 0.1 * head_start


def test_binom_test_leaves_the_start_pair_out() -> None:
    a = raw([0, 1], [0.5, 0.9])
    b = raw([0, 1], [0.4, 0.95])  # a starts higher and wins the start pair; b reaches 0.5 late
    p, ov = binom_test(a, b)
    assert ov is not None and ov.start_a == 0 and ov.length == 1
    assert p == 1.0  # one pair, the start pair: nothing to test


def test_binom_test_thinning_compares_every_kth_pair() -> None:
    x = np.arange(9.0)
    a = raw(x, 0.5 + 0.1 * x + np.array([0, 1, -1, 1, -1, 1, -1, 1, -1]) * 0.01)
    b = raw(x, 0.5 + 0.1 * x)
    p1, _ = binom_test(a, b)  # pairs 1..8: 4 wins of 8
    p2, _ = binom_test(a, b, thin=2)  # pairs 2, 4, 6, 8: all lost
    assert p1 == pytest.approx(binomtest(4, 8, 0.5, alternative="greater").pvalue, rel=1e-12)
    assert p2 == pytest.approx(binomtest(0, 4, 0.5, alternative="greater").pvalue, rel=1e-12)
    with pytest.raises(ValueError, match="thin"):
        binom_test(a, b, thin=0)


def test_identical_processes_score_even_when_the_overlap_starts_between_points() -> None:
    """Two noisy copies of one linear process; the lower one is read between points (offset
    0.5). Residuals interpolated between two points would have half a point's variance and so
    a lower section maximum (P(diff > 0) was 0.23 at sd 0.2); the nearest point's residual
    keeps the noise whole, and neither curve is favoured."""
    rng = np.random.default_rng(0)
    wins = 0
    trials = 400
    for _ in range(trials):
        ta, tb = np.arange(0.0, 30.0), np.arange(10.5, 30.5)
        ya = 0.02 * ta + rng.normal(0, 0.2, ta.size)
        yb = 0.02 * tb + rng.normal(0, 0.2, tb.size)
        a, b = Curve(ta, ya, 0.02 * ta), Curve(tb, yb, 0.02 * tb)  # smoothed: the true mean
        wins += best_score_diff(a, b) > 0
    assert 0.4 < wins / trials < 0.6


def test_binom_test_on_increments_compares_gains_not_levels() -> None:
    x = np.arange(9.0)
    b = raw(x, 0.10 * x)  # gains 0.10 at every step
    # a gains 0.2 first and 0.09 after: ahead of b at every offset, slower at all but one step
    a = raw(x, np.concatenate([[0.0], np.cumsum([0.2] + [0.09] * 7)]))
    p_levels, ov = binom_test(a, b)
    p_gains, ov_gains = binom_test(a, b, increments=True)
    assert ov == ov_gains and ov is not None and ov.start_a == 0 and ov.start_b == 0
    assert p_levels == pytest.approx(binomtest(8, 8, 0.5, alternative="greater").pvalue, rel=1e-12)
    assert p_gains == pytest.approx(binomtest(1, 8, 0.5, alternative="greater").pvalue, rel=1e-12)


def test_thinned_increments_compare_gains_across_thin_offsets() -> None:
    x = np.arange(9.0)
    b = raw(x, 0.10 * x)  # gains 0.10 at every step, 0.20 across two
    # a alternates gains of 0.25 and 0.0: it loses every single step's gain to b but one in
    # two, and wins every gain across two steps (0.25 > 0.20)
    a = raw(x, np.concatenate([[0.0], np.cumsum([0.25, 0.0] * 4)]))
    p_single, _ = binom_test(a, b, increments=True)
    p_pairs, _ = binom_test(a, b, thin=2, increments=True)
    assert p_single == pytest.approx(binomtest(4, 8, 0.5, alternative="greater").pvalue, rel=1e-12)
    assert p_pairs == pytest.approx(binomtest(4, 4, 0.5, alternative="greater").pvalue, rel=1e-12)


def test_a_success_test_fire_does_not_know_is_refused() -> None:
    from firepbt.errors import PopulationConfigError
    from firepbt.space import LogUniform, Space
    from firepbt.strategies import FirePBT

    with pytest.raises(PopulationConfigError, match="success_test"):
        FirePBT(
            Space({"lr": LogUniform(1e-3, 1.0)}),
            4,
            100,
            10,
            np.random.default_rng(0),
            success_test="slopes",
        )


def test_binomial_tail_is_scipys_one_sided_binomial_test() -> None:
    from firepbt.fire.curves import binomial_tail

    for n in range(0, 121):
        for k in range(0, n + 1):
            expected = binomtest(k, n, 0.5, alternative="greater").pvalue if n else 1.0
            assert binomial_tail(k, n) == pytest.approx(expected, rel=1e-12, abs=0), (k, n)
    assert binomial_tail(0, 10) == 1.0 and binomial_tail(10, 10) == 2.0**-10


# ---------------------------------------------------------------------------------------------
# The penalised-δ search, all δ at once, against one δ at a time
# ---------------------------------------------------------------------------------------------


def _penalised_one_delta_at_a_time(a: Curve, b: Curve, n_deltas: int) -> float:
    """The search as it was written before it took every δ at once (the reference)."""
    from firepbt.fire import _pchip, curves

    raw_grid = np.linspace(
        a.values.min() - b.values.max(), a.values.min() - b.values.min(), n_deltas
    )
    smooth_grid = np.linspace(
        a.smoothed[0] - b.smoothed.max(), a.smoothed[0] - b.smoothed.min(), n_deltas
    )
    tol = curves._reach_tol(a, b)
    slopes = (_pchip.slopes(a.smoothed), _pchip.slopes(b.smoothed))
    best = 0.0
    for delta in np.concatenate([raw_grid, smooth_grid]):
        shifted = a.smoothed - delta
        reach = max(tol, curves._REACH_RTOL * float(np.abs(shifted).max()))
        ov = curves._overlap(shifted, b.smoothed, reach)
        if ov is None:
            continue
        score = curves._section_diff(a.values - delta, shifted, b, ov, slopes)
        if score > best:
            best = score
    return best


def test_penalised_search_is_the_one_delta_at_a_time_search_to_the_bit() -> None:
    from firepbt.fire import curves

    rng = np.random.default_rng(7)
    searched = positive = 0
    for _ in range(600):
        n_a, n_b = (int(k) for k in rng.integers(2, 30, size=2))
        shape = rng.choice(["noisy", "smooth", "flat", "steps"])
        curves_ = []
        for n in (n_a, n_b):
            x = np.arange(float(n))
            y = saturating(x, rng.normal(), rng.exponential(1.0), rng.exponential(5.0) + 0.5)
            if shape == "flat":
                y = np.full(n, rng.normal())
            if shape == "steps":
                y = np.round(y, 1)
            noise = rng.normal(0.0, 0.05, n) if shape == "noisy" else np.zeros(n)
            curves_.append(Curve(x, y + noise, y))
        a, b = curves_
        a = Curve(a.steps, a.values + 3.0 * rng.random(), a.smoothed + 3.0 * rng.random())
        if not curves._strictly_above(a, b):
            continue
        n_deltas = int(rng.integers(2, 20))
        want = _penalised_one_delta_at_a_time(a, b, n_deltas)
        got = curves._penalised_score(a, b, n_deltas)
        assert got.hex() == want.hex()
        searched += 1
        positive += want > 0
    assert searched > 200 and positive > 50  # the search found overlaps, not only zeros


def test_slopes_of_many_rows_are_each_rows_slopes_and_slope_at_to_the_bit() -> None:
    from firepbt.fire import _pchip

    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 4, 11):
        ys = np.cumsum(rng.normal(0.2, 1.0, size=(50, n)), axis=1)
        ys[::5] = np.round(ys[::5])  # flat stretches and ties
        together = _pchip.slopes(ys)
        for y, row in zip(ys, together, strict=True):
            assert [x.hex() for x in row] == [x.hex() for x in _pchip.slopes(y)]
            if n >= 2:
                assert [x.hex() for x in row] == [_pchip.slope_at(y, k).hex() for k in range(n)]
