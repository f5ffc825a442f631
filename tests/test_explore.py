"""Tests for firepbt.explore: perturb, resample, noise, composition and the change records."""

from __future__ import annotations

import dataclasses
import doctest
import math

import numpy as np
import pytest

import firepbt.explore
from firepbt.explore import AddNoise, Chain, Change, NoExplore, Perturb, Resample, chain
from firepbt.space import Choice, Fixed, IntUniform, LogUniform, Space, Uniform


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def make_space() -> Space:
    return Space(
        {
            "lr": LogUniform(1e-4, 1e-1, bounds=(1e-6, 1.0)),
            "dropout": Uniform(0.0, 0.5, bounds=(0.0, 0.9)),
            "layers": IntUniform(1, 8, bounds=(1, 16)),
            "batch": Choice([32, 64, 128, 256], ordered=True),
            "opt": Choice(["adam", "sgd", "rmsprop"]),
            "schedule": "cosine",
        }
    )


H0 = {"lr": 0.01, "dropout": 0.2, "layers": 4, "batch": 64, "opt": "adam", "schedule": "cosine"}


def test_doctests_pass() -> None:
    result = doctest.testmod(firepbt.explore)
    assert result.attempted > 0
    assert result.failed == 0


# --- Change --------------------------------------------------------------------------------


def test_change_str_formats_old_new_and_how() -> None:
    assert str(Change("lr", 0.1, 0.08, "×0.8")) == "lr: 0.1 → 0.08 (×0.8)"
    # Floats are shown with 4 significant digits, so rounding noise does not leak into logs.
    assert str(Change("lr", 0.1, 0.1 * 0.8, "×0.8")) == "lr: 0.1 → 0.08 (×0.8)"
    assert str(Change("lr", 1.23456e-4, 2.5e-4, "resampled")) == (
        "lr: 0.0001235 → 0.00025 (resampled)"
    )
    assert str(Change("opt", "adam", "sgd", "resampled")) == "opt: 'adam' → 'sgd' (resampled)"
    assert str(Change("layers", 4, 5, "×1.2")) == "layers: 4 → 5 (×1.2)"


def test_change_is_immutable_and_comparable() -> None:
    c = Change("lr", 0.1, 0.08, "×0.8")
    assert c == Change("lr", 0.1, 0.08, "×0.8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.new = 1.0  # type: ignore[misc]


# --- Perturb -------------------------------------------------------------------------------


def test_perturb_single_factor_records_the_change() -> None:
    space = Space({"lr": LogUniform(1e-3, 1.0)})
    h, changes = Perturb((0.8,))({"lr": 0.1}, space, rng(0))
    assert h["lr"] == pytest.approx(0.08)
    assert changes == (Change("lr", 0.1, h["lr"], "×0.8"),)
    assert str(changes[0]) == "lr: 0.1 → 0.08 (×0.8)"


def test_perturb_moves_every_tunable_and_never_fixed() -> None:
    space = make_space()
    for seed in range(50):
        h, changes = Perturb()(H0, space, rng(seed))
        assert [c.name for c in changes] == ["lr", "dropout", "layers", "batch", "opt"]
        assert h["schedule"] == "cosine"
        for c in changes:
            assert c.old == H0[c.name]
            assert c.new == h[c.name]
            assert c.how in ("×0.8", "×1.2")
            factor = float(c.how[1:])
            # The new value is exactly the distribution's own move by the recorded factor.
            assert space[c.name].perturb(c.old, factor, rng(0)) == c.new or c.name == "opt"
        assert h["lr"] == pytest.approx(0.01 * float(changes[0].how[1:]))
        assert h["dropout"] == pytest.approx(0.2 * float(changes[1].how[1:]))
        assert h["layers"] in (3, 5)
        assert h["batch"] in (32, 128)
        assert h["opt"] in ("sgd", "rmsprop")


def test_perturb_uses_every_factor_about_equally() -> None:
    space = Space({"x": Uniform(0.0, 1.0)})
    factors = (0.5, 0.8, 1.25, 2.0)
    g = rng(1)
    hows = [Perturb(factors)({"x": 0.5}, space, g)[1][0].how for _ in range(2000)]
    counts = {how: hows.count(how) for how in set(hows)}
    assert set(counts) == {"×0.5", "×0.8", "×1.25", "×2"}
    assert all(400 < n < 600 for n in counts.values())


def test_perturb_does_not_mutate_its_input_and_keeps_unknown_keys() -> None:
    space = Space({"lr": LogUniform(1e-3, 1.0)})
    h = {"lr": 0.1, "note": "kept"}
    before = dict(h)
    new, _ = Perturb()(h, space, rng(0))
    assert h == before
    assert new is not h
    assert new["note"] == "kept"


def test_perturb_respects_hard_bounds_over_many_steps() -> None:
    space = make_space()
    h = dict(H0)
    for factor, lr_end, dropout_end, layers_end, batch_end in [
        (2.0, 1.0, 0.9, 16, 256),
        (0.5, 1e-6, None, 1, 32),
    ]:
        for _ in range(200):
            h, _ = Perturb((factor,))(h, space, rng(0))
            assert space.validate(h) == h
        assert h["lr"] == lr_end
        assert h["layers"] == layers_end
        assert h["batch"] == batch_end
        if dropout_end is not None:
            assert h["dropout"] == dropout_end
        else:
            assert 0.0 <= h["dropout"] < 1e-50


@pytest.mark.parametrize("factors", [(), (0.0,), (-0.8, 1.2), (0.8, math.nan), (math.inf,)])
def test_perturb_rejects_non_positive_factors(factors: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="Perturb.factors must be positive"):
        Perturb(factors)


# --- Resample ------------------------------------------------------------------------------


def test_resample_probability_one_resamples_every_tunable_from_the_prior() -> None:
    space = make_space()
    h, changes = Resample(1.0)(H0, space, rng(3))
    assert [c.name for c in changes] == ["lr", "dropout", "layers", "batch", "opt"]
    assert all(c.how == "resampled" and c.old == H0[c.name] and c.new == h[c.name] for c in changes)
    assert h["schedule"] == "cosine"
    assert 1e-4 <= h["lr"] <= 1e-1
    assert 0.0 <= h["dropout"] <= 0.5
    assert 1 <= h["layers"] <= 8
    assert space.validate(h) == h


def test_resample_probability_zero_changes_nothing() -> None:
    space = make_space()
    for seed in range(20):
        h, changes = Resample(0.0)(H0, space, rng(seed))
        assert h == H0
        assert changes == ()


def test_resample_rate_matches_probability() -> None:
    space = Space({"x": Uniform(0.0, 1.0), "c": 3})
    g = rng(123)
    hits = 0
    for _ in range(1000):
        h, changes = Resample(0.25)({"x": 2.0, "c": 3}, space, g)
        assert h["c"] == 3
        if changes:
            hits += 1
            assert changes[0].name == "x" and 0.0 <= h["x"] <= 1.0
        else:
            assert h["x"] == 2.0
    assert 0.20 <= hits / 1000 <= 0.30


@pytest.mark.parametrize("p", [-0.01, 1.01, math.nan])
def test_resample_rejects_probability_outside_unit_interval(p: float) -> None:
    with pytest.raises(ValueError, match=r"Resample.probability must lie in \[0, 1\]"):
        Resample(p)


# --- AddNoise ------------------------------------------------------------------------------


def test_add_noise_adds_gaussian_noise_and_records_it() -> None:
    space = Space({"x": Uniform(-10.0, 10.0)})
    g = rng(5)
    deltas = []
    for _ in range(2000):
        h, (c,) = AddNoise(0.5)({"x": 1.0}, space, g)
        assert c.name == "x" and c.old == 1.0 and c.new == h["x"]
        assert float(c.how) == pytest.approx(h["x"] - 1.0, abs=5e-3 * max(1.0, abs(h["x"] - 1.0)))
        assert c.how[0] in "+-"
        deltas.append(h["x"] - 1.0)
    assert abs(np.mean(deltas)) < 0.05
    assert 0.45 < np.std(deltas) < 0.55


def test_add_noise_clips_to_bounds() -> None:
    space = Space({"p": Uniform(0.0, 0.5, bounds=(0.0, 1.0))})
    g = rng(6)
    values = []
    for _ in range(300):
        h, _ = AddNoise(2.0)({"p": 0.5}, space, g)
        assert 0.0 <= h["p"] <= 1.0
        values.append(h["p"])
    assert 0.0 in values and 1.0 in values  # big noise hits both bounds and stops there


def test_add_noise_keeps_integers_integral_and_log_values_positive() -> None:
    space = Space(
        {
            "n": IntUniform(1, 8, bounds=(1, 10)),
            "lr": LogUniform(1e-3, 1.0),
            "opt": Choice(["a", "b"]),
            "k": Fixed(7),
        }
    )
    g = rng(7)
    h = {"n": 5, "lr": 1e-3, "opt": "a", "k": 7}
    for _ in range(200):
        h, changes = AddNoise(3.0)(h, space, g)
        assert [c.name for c in changes] == ["n", "lr"]  # choices and constants untouched
        assert type(h["n"]) is int and 1 <= h["n"] <= 10
        assert h["lr"] > 0 and math.isfinite(h["lr"])
        assert h["opt"] == "a" and h["k"] == 7
        assert space.validate(h) == h


def test_add_noise_zero_std_keeps_values() -> None:
    space = Space({"x": Uniform(0.0, 1.0)})
    h, (c,) = AddNoise(0.0)({"x": 0.3}, space, rng(0))
    assert h["x"] == 0.3 and c.old == c.new == 0.3


@pytest.mark.parametrize("std", [-0.1, math.nan, math.inf])
def test_add_noise_rejects_bad_std(std: float) -> None:
    with pytest.raises(ValueError, match="AddNoise.std"):
        AddNoise(std)


# --- NoExplore and chain -------------------------------------------------------------------


def test_no_explore_returns_an_equal_copy() -> None:
    h, changes = NoExplore()(H0, make_space(), rng(0))
    assert h == H0 and h is not H0
    assert changes == ()


def test_chain_applies_policies_in_order() -> None:
    space = Space({"p": Uniform(0.1, 0.9, bounds=(0.0, 1.0))})
    up_then_down, changes = chain(Perturb((2.0,)), Perturb((0.5,)))({"p": 0.8}, space, rng(0))
    down_then_up, _ = chain(Perturb((0.5,)), Perturb((2.0,)))({"p": 0.8}, space, rng(0))
    assert up_then_down["p"] == pytest.approx(0.5)  # 0.8 → 1.0 (clipped) → 0.5
    assert down_then_up["p"] == pytest.approx(0.8)  # 0.8 → 0.4 → 0.8
    assert [c.how for c in changes] == ["×2", "×0.5"]
    assert changes[0].old == 0.8 and changes[0].new == 1.0
    assert changes[1].old == changes[0].new and changes[1].new == up_then_down["p"]


def test_chain_concatenates_records_of_every_policy() -> None:
    space = Space({"lr": LogUniform(1e-4, 1e-1), "wd": Uniform(0.0, 0.1), "m": 0.9})
    h = {"lr": 0.01, "wd": 0.05, "m": 0.9}
    policy = chain(Perturb((1.2,)), Resample(1.0))
    assert isinstance(policy, Chain) and len(policy.policies) == 2
    new, changes = policy(h, space, rng(4))
    assert [(c.name, c.how) for c in changes] == [
        ("lr", "×1.2"),
        ("wd", "×1.2"),
        ("lr", "resampled"),
        ("wd", "resampled"),
    ]
    assert changes[2].old == pytest.approx(0.012) and changes[3].old == pytest.approx(0.06)
    assert new["lr"] == changes[2].new and new["wd"] == changes[3].new
    assert new["m"] == 0.9 and h == {"lr": 0.01, "wd": 0.05, "m": 0.9}


def test_empty_chain_is_identity() -> None:
    h, changes = chain()(H0, make_space(), rng(0))
    assert h == H0 and changes == ()


def test_explore_is_deterministic_given_the_seed() -> None:
    space = make_space()
    policy = chain(Perturb((0.5, 0.8, 1.25, 2.0)), Resample(0.25), AddNoise(0.01))
    runs = []
    for seed in (1, 1, 2):
        h, changes = dict(H0), ()
        g = rng(seed)
        log = []
        for _ in range(30):
            h, changes = policy(h, space, g)
            log.append((h, changes))
        runs.append(log)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_long_exploration_keeps_hyperparameters_valid() -> None:
    space = make_space()
    policy = chain(Perturb((0.5, 0.8, 1.25, 2.0)), Resample(0.25), AddNoise(0.05))
    g = rng(9)
    h = space.sample(g)
    for _ in range(500):
        h, _ = policy(h, space, g)
        assert space.validate(h) == h
        assert h["schedule"] == "cosine"


@pytest.mark.parametrize("strategy", ["pbt", "fire"])
def test_no_run_takes_a_hyperparameter_outside_its_hard_range(strategy: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import firepbt
    from firepbt.examples.toy import Toy
    from firepbt.store import Store

    space = {"h0": Uniform(0.5, 0.99), "h1": Uniform(0.0, 1.0, bounds=(0.0, 2.0))}
    options = {"subpopulations": 2} if strategy == "fire" else {}
    firepbt.run(
        Toy, space, total_steps=40, population=4, ready_every=2, executor="inprocess",
        run_dir=tmp_path / "run", strategy=strategy, explore=Perturb((2.0, 0.5)), **options,
    )  # fmt: skip
    store = Store.open(tmp_path / "run")
    values = [d.hyperparameters for d in store.decisions() if d.hyperparameters]
    store.close()
    assert len(values) > 10
    assert all(0.5 <= h["h0"] <= 0.99 and 0.0 <= h["h1"] <= 2.0 for h in values)
    assert any(h["h1"] > 1.0 for h in values)  # bounds widened h1's range, and it was used
