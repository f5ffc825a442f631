"""The noisy quadratic model: exact expected loss, seeded SGD, and the decay-beats-constant gap."""

from __future__ import annotations

import time

import numpy as np
import pytest

from firepbt.examples.nqm import (
    DEFAULT_BATCH,
    DEFAULT_DIM,
    DEFAULT_STEPS,
    LR_MAX,
    NQM,
    constant,
    cosine,
    expected_loss,
    expected_loss_constant,
    expected_loss_of_schedule,
    expected_losses,
    exponential,
    nqm_curvatures,
    nqm_space,
    step_decay,
)


def test_curvatures() -> None:
    assert nqm_curvatures(4) == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    with pytest.raises(ValueError, match="dim"):
        nqm_curvatures(0)


def test_no_steps_gives_the_initial_loss() -> None:
    h = nqm_curvatures(DEFAULT_DIM)
    assert expected_loss([]) == pytest.approx(0.5 * h.sum())
    assert expected_loss([], theta0=2.0) == pytest.approx(2.0 * h.sum())


def test_one_step_by_hand() -> None:
    # d = 2, B = 4, lr = 0.5: E[θ1²] = 0.5² + 0.25·1/4 = 0.3125
    #                         E[θ2²] = 0.75² + 0.25·0.5/4 = 0.59375
    assert expected_loss([0.5], d=2, batch_size=4) == pytest.approx(
        0.5 * (0.3125 + 0.5 * 0.59375), abs=1e-15
    )


@pytest.mark.parametrize("lr", [1e-5, 0.01, 0.24, 1.0, 1.5, LR_MAX, 2.0])
def test_recursion_matches_closed_form_for_constant_lr(lr: float) -> None:
    steps = 500
    assert expected_loss(constant(lr, steps)) == pytest.approx(
        expected_loss_constant(lr, steps), rel=1e-10
    )


def test_closed_form_limit_is_the_noise_floor() -> None:
    # E[θᵢ²] → lr/(B(2 − lr·hᵢ)) as steps → ∞
    lr, d, b = 0.3, 50, 2.0
    h = nqm_curvatures(d)
    floor = 0.5 * float(h @ (lr / (b * (2 - lr * h))))
    assert expected_loss_constant(lr, 10**7, d=d, batch_size=b) == pytest.approx(floor, rel=1e-9)


def test_piecewise_schedule_matches_per_step_recursion() -> None:
    pieces = [(0, 100, 1.0), (100, 250, 0.3), (250, 250, 5.0), (250, 400, 0.01)]
    per_step = [lr for a, b, lr in pieces for _ in range(b - a)]
    assert expected_loss_of_schedule(pieces) == pytest.approx(expected_loss(per_step), rel=1e-10)


@pytest.mark.parametrize(
    "bad", [[(1, 10, 0.1)], [(0, 10, 0.1), (11, 20, 0.1)], [(0, 10, 0.1), (5, 20, 0.1)]]
)
def test_piecewise_schedule_must_be_contiguous(bad: list[tuple[int, int, float]]) -> None:
    with pytest.raises(ValueError, match="schedule"):
        expected_loss_of_schedule(bad)


def test_batched_expected_losses_match_single() -> None:
    rows = [cosine(0.9, 300), exponential(1.0, 0.99, 300), constant(0.2, 300)]
    batched = expected_losses(rows, d=100)
    assert batched == pytest.approx([expected_loss(r, d=100) for r in rows], rel=1e-12)


def test_expected_loss_is_fast() -> None:
    lrs = cosine(1.0, 1000)
    best = min(_timed(lambda: expected_loss(lrs)) for _ in range(5))
    assert best < 0.05, f"1000 steps at d=1000 took {best * 1e3:.1f} ms"


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_schedules() -> None:
    assert constant(0.1, 3) == [0.1, 0.1, 0.1]
    assert step_decay(1.0, 8, boundaries=(0.5, 0.75), factor=0.1) == pytest.approx(
        [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    c = cosine(2.0, 4)
    assert c == pytest.approx([2.0, 1.0 + 2**-0.5, 1.0, 1.0 - 2**-0.5])
    assert exponential(1.0, 0.5, 3) == [1.0, 0.5, 0.25]
    assert len(cosine(1.0)) == len(constant(1.0)) == DEFAULT_STEPS


# --- the trainable ---------------------------------------------------------------------------


def test_monte_carlo_average_matches_expected_loss() -> None:
    """2000 seeded runs at d = 20 through a two-segment schedule: the sample mean of L(θ) must
    match the exact expected loss within 5 standard errors, and each run's tracked
    ``expected_loss`` must equal the recursion exactly."""
    d, b, seeds = 20, 4, 2000
    schedule = [(0, 30, 0.8), (30, 50, 0.1)]
    exact = expected_loss_of_schedule(schedule, d=d, batch_size=b)
    losses = np.empty(seeds)
    for seed in range(seeds):
        m = NQM({"lr": 0.8, "dim": d, "batch_size": b}, seed)
        m.train(30)
        m.set_hyperparameters({"lr": 0.1, "dim": d, "batch_size": b})
        m.train(20)
        metrics = m.evaluate()
        losses[seed] = metrics["loss"]
        if seed < 5:
            assert metrics["expected_loss"] == pytest.approx(exact, rel=1e-12)
    stderr = losses.std(ddof=1) / np.sqrt(seeds)
    assert abs(losses.mean() - exact) < 5 * stderr, (losses.mean(), exact, stderr)
    # The test has the power to see a wrong noise scale (B off by 2× either way).
    for wrong_b in (b / 2, b * 2):
        wrong = expected_loss_of_schedule(schedule, d=d, batch_size=wrong_b)
        assert abs(losses.mean() - wrong) > 5 * stderr


def test_save_load_reproduces_training_straight_through() -> None:
    straight = NQM({"lr": 0.3}, seed=7)
    straight.train(600)  # crosses the noise-chunk boundary
    first = NQM({"lr": 0.3}, seed=7)
    first.train(213)
    state = first.save()
    first.train(50)  # moving on must not touch the saved state
    resumed = NQM({"lr": 0.3}, seed=99)  # another seed: the state carries the generator
    resumed.load(state)
    resumed.train(387)
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    assert resumed.evaluate() == straight.evaluate()
    assert resumed.steps_trained == 600


def test_exploit_continues_the_donor_lineage_schedule() -> None:
    donor = NQM({"lr": 1.0, "dim": 50}, seed=1)
    donor.train(100)
    child = NQM({"lr": 0.05, "dim": 50}, seed=2)
    child.load(donor.save())
    child.set_hyperparameters({"lr": 0.2, "dim": 50})
    child.train(40)
    assert child.evaluate()["expected_loss"] == pytest.approx(
        expected_loss([1.0] * 100 + [0.2] * 40, d=50), rel=1e-10
    )


def test_load_rejects_another_dimension() -> None:
    with pytest.raises(ValueError, match="dim"):
        NQM({"lr": 0.1, "dim": 10}, 0).load(NQM({"lr": 0.1, "dim": 20}, 0).save())


def test_space_keeps_lr_stable() -> None:
    space = nqm_space()
    dist = space["lr"]
    assert dist.bounds[1] < 2.0 / nqm_curvatures(1)[0]  # lr·h₁ < 2
    assert dist.perturb(1.8, 1.2, np.random.default_rng(0)) == LR_MAX
    assert 1e-3 <= space.sample(np.random.default_rng(0))["lr"] <= LR_MAX


# --- the benchmark claim -----------------------------------------------------------------------


def test_decaying_schedules_beat_the_best_constant_lr_by_about_2_5x() -> None:
    """Under DEFAULT_STEPS steps, the best cosine and the best exponential schedule (grid over lr0,
    and the decay rate) reach an expected loss ≈ 2.5× lower than the best constant lr."""
    total = DEFAULT_STEPS
    lrs = np.geomspace(1e-3, LR_MAX, 200)
    const = np.array([expected_loss_constant(lr, total) for lr in lrs])
    i = int(const.argmin())
    assert 0 < i < len(lrs) - 1, "best constant lr must be inside the grid"
    best_const = float(const[i])
    assert expected_loss(constant(lrs[i], total)) == pytest.approx(best_const, rel=1e-10)

    lr0s = np.geomspace(0.1, LR_MAX, 30)
    cos = expected_losses([cosine(lr0, total) for lr0 in lr0s])
    best_cos = float(cos.min())

    grid = [(lr0, end**(1 / total)) for lr0 in np.geomspace(0.3, LR_MAX, 8)
            for end in np.geomspace(1e-3, 0.3, 8)]  # fmt: skip
    exp = expected_losses([exponential(lr0, gamma, total) for lr0, gamma in grid])
    best_exp = float(exp.min())

    steps = expected_losses(
        [step_decay(lr0, total) for lr0 in lr0s], d=DEFAULT_DIM, batch_size=DEFAULT_BATCH
    )
    print(
        f"\nNQM d={DEFAULT_DIM} B={DEFAULT_BATCH} steps={total}: "
        f"best constant {best_const:.4f} (lr={lrs[i]:.3f}); "
        f"best cosine {best_cos:.4f} (lr0={lr0s[int(cos.argmin())]:.3f}, "
        f"ratio {best_const / best_cos:.2f}); "
        f"best exponential {best_exp:.4f} (lr0={grid[int(exp.argmin())][0]:.3f}, "
        f"gamma={grid[int(exp.argmin())][1]:.5f}, ratio {best_const / best_exp:.2f}); "
        f"best step decay {float(steps.min()):.4f} (ratio {best_const / float(steps.min()):.2f})"
    )
    assert best_const / best_cos > 2.2
    assert best_const / best_exp > 2.2
