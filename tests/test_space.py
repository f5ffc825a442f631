"""Tests for firepbt.space: priors, moves, hard bounds, validation and (de)serialisation."""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import numpy as np
import pytest

import firepbt.space
from firepbt.errors import SpaceError
from firepbt.space import (
    Choice,
    Fixed,
    IntUniform,
    LogUniform,
    Space,
    Uniform,
    distribution_from_dict,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_doctests_pass() -> None:
    result = doctest.testmod(firepbt.space)
    assert result.attempted > 0
    assert result.failed == 0


# --- sampling ------------------------------------------------------------------------------


def test_uniform_samples_stay_in_prior_and_cover_it() -> None:
    d = Uniform(-2.0, 3.0)
    g = rng(1)
    xs = np.array([d.sample(g) for _ in range(2000)])
    assert xs.min() >= -2.0 and xs.max() <= 3.0
    assert all(isinstance(x, float) for x in xs.tolist())
    # Uniform: a quarter of the mass lies below -0.75.
    assert 0.21 < np.mean(xs < -0.75) < 0.29
    assert xs.min() < -1.9 and xs.max() > 2.9


def test_loguniform_samples_stay_in_prior_and_are_uniform_in_log_space() -> None:
    d = LogUniform(1e-4, 1e-1)
    g = rng(2)
    xs = np.array([d.sample(g) for _ in range(2000)])
    assert xs.min() >= 1e-4 and xs.max() <= 1e-1
    # Half the mass lies below the geometric mean 10**-2.5; a plain uniform would put ~3% there.
    assert 0.45 < np.mean(xs < 10**-2.5) < 0.55
    assert 0.28 < np.mean(xs < 1e-3) < 0.39  # one third of the decades


def test_loguniform_sample_never_leaves_prior_through_rounding() -> None:
    # exp(log(1e-5)) is one ulp below 1e-5; a draw at the very edge must still be in the prior.
    assert math.exp(math.log(1e-5)) < 1e-5

    class EdgeRng:
        def __init__(self, edge: str) -> None:
            self.edge = edge

        def uniform(self, a: float, b: float) -> float:
            return a if self.edge == "low" else b

    d = LogUniform(1e-5, 1.0, bounds=(1e-5, 1.0))
    low = d.sample(EdgeRng("low"))  # type: ignore[arg-type]
    high = d.sample(EdgeRng("high"))  # type: ignore[arg-type]
    assert 1e-5 <= low <= 1.0 and 1e-5 <= high <= 1.0
    assert d.validate(low) == low


def test_intuniform_samples_are_ints_covering_both_ends() -> None:
    d = IntUniform(3, 7)
    g = rng(3)
    xs = [d.sample(g) for _ in range(500)]
    assert all(type(x) is int for x in xs)
    assert set(xs) == {3, 4, 5, 6, 7}


def test_choice_samples_every_option() -> None:
    d = Choice(["adam", "sgd", "rmsprop"])
    g = rng(4)
    xs = [d.sample(g) for _ in range(300)]
    assert set(xs) == {"adam", "sgd", "rmsprop"}


def test_fixed_always_samples_its_value() -> None:
    d = Fixed(0.9)
    g = rng(5)
    assert {d.sample(g) for _ in range(20)} == {0.9}
    assert d.resample(g) == 0.9


def test_sampling_is_deterministic_given_the_seed() -> None:
    space = Space(
        {
            "lr": LogUniform(1e-4, 1e-1),
            "wd": Uniform(0.0, 0.1),
            "layers": IntUniform(1, 8),
            "opt": Choice(["adam", "sgd"]),
            "momentum": 0.9,
        }
    )
    a = [space.sample(rng(7)) for _ in range(3)]
    b = [space.sample(rng(7)) for _ in range(3)]
    assert a == b
    assert space.sample(rng(7)) != space.sample(rng(8))


def test_resample_draws_from_the_prior() -> None:
    d = Uniform(10.0, 11.0)
    g = rng(6)
    xs = [d.resample(g) for _ in range(200)]
    assert all(10.0 <= x <= 11.0 for x in xs)
    assert len(set(xs)) == 200


# --- perturbation --------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.2, 2.0])
def test_continuous_perturb_multiplies_by_the_factor(factor: float) -> None:
    g = rng(0)
    assert Uniform(0.0, 1.0).perturb(0.3, factor, g) == pytest.approx(0.3 * factor)
    assert LogUniform(1e-4, 1e-1).perturb(0.01, factor, g) == pytest.approx(0.01 * factor)


def test_without_bounds_the_prior_is_the_hard_range() -> None:
    g = rng(0)
    assert Uniform(0.0, 1.0).perturb(0.9, 2.0, g) == 1.0
    assert LogUniform(1e-3, 1e-1).perturb(1e-3, 0.5, g) == 1e-3
    assert IntUniform(1, 10).perturb(10, 2.0, g) == 10
    momentum, value = Uniform(0.5, 0.99), 0.9
    for _ in range(50):  # repeated x1.2 can never reach 1.19, nor repeated x0.8 leave 0.5
        value = momentum.perturb(value, 1.2, g)
        assert 0.5 <= value <= 0.99
    assert value == 0.99 and momentum.perturb(0.55, 0.8, g) == 0.5
    # bounds widen the hard range: a learning rate may then decay below its prior
    assert LogUniform(1e-3, 1e-1, bounds=(1e-5, 1e-1)).perturb(1e-3, 0.5, g) == pytest.approx(5e-4)


@pytest.mark.parametrize(
    "dist, start, lo, hi",
    [
        (Uniform(0.1, 0.9, bounds=(0.05, 1.0)), 0.5, 0.05, 1.0),
        (LogUniform(1e-4, 1e-1, bounds=(1e-6, 1.0)), 1e-2, 1e-6, 1.0),
        (IntUniform(2, 10, bounds=(1, 16)), 5, 1, 16),
    ],
    ids=["uniform", "loguniform", "intuniform"],
)
def test_many_perturbations_never_leave_the_bounds(dist, start, lo, hi) -> None:  # type: ignore[no-untyped-def]
    g = rng(0)
    for factor, end in [(2.0, hi), (0.5, lo)]:
        v = start
        for _ in range(200):
            v = dist.perturb(v, factor, g)
            assert lo <= v <= hi
        assert v == end  # clipping pins the value to the bound, not beyond it
        assert dist.validate(v) == v


def test_loguniform_stays_positive_and_finite_without_bounds() -> None:
    d = LogUniform(1e-4, 1e-1)
    g = rng(0)
    v = 1e-2
    for _ in range(2000):
        v = d.perturb(v, 0.5, g)
        assert v > 0
    v = 1e-2
    for _ in range(2000):
        v = d.perturb(v, 2.0, g)
        assert math.isfinite(v)


def test_uniform_stays_finite_without_bounds() -> None:
    d = Uniform(-1.0, 1.0)
    g = rng(0)
    up, down = 0.5, -0.5
    for _ in range(2000):
        up, down = d.perturb(up, 2.0, g), d.perturb(down, 2.0, g)
    assert math.isfinite(up) and up > 0
    assert math.isfinite(down) and down < 0


@pytest.mark.parametrize("factor", [1.01, 1.2, 0.99, 0.8, 0.5, 2.0])
def test_intuniform_perturb_moves_by_at_least_one(factor: float) -> None:
    d = IntUniform(0, 100, bounds=(0, 1000))  # wide bounds: nothing is clipped
    g = rng(0)
    for v in range(1, 60):
        moved = d.perturb(v, factor, g)
        assert type(moved) is int
        if factor > 1:
            assert moved >= v + 1
            assert moved == max(round(v * factor), v + 1)
        else:
            assert moved <= v - 1
            assert moved == min(round(v * factor), v - 1)


def test_intuniform_perturb_is_clipped_at_the_bounds_and_identity_for_factor_one() -> None:
    d = IntUniform(1, 10, bounds=(1, 10))
    g = rng(0)
    assert d.perturb(10, 1.2, g) == 10
    assert d.perturb(1, 0.8, g) == 1
    assert d.perturb(9, 1.01, g) == 10
    assert d.perturb(7, 1.0, g) == 7


def test_intuniform_with_fractional_bounds_stays_on_integers_inside() -> None:
    d = IntUniform(1, 10, bounds=(0.5, 12.5))
    g = rng(0)
    assert d.perturb(10, 2.0, g) == 12
    assert d.perturb(1, 0.1, g) == 1


def test_ordered_choice_steps_to_a_neighbour() -> None:
    d = Choice([16, 32, 64, 128], ordered=True)
    g = rng(0)
    assert d.perturb(32, 1.2, g) == 64
    assert d.perturb(32, 2.0, g) == 64  # one step, however large the factor
    assert d.perturb(32, 0.8, g) == 16
    assert d.perturb(128, 1.2, g) == 128  # clamped at the ends
    assert d.perturb(16, 0.5, g) == 16
    assert d.perturb(64, 1.0, g) == 64


def test_unordered_choice_perturbs_to_a_different_option() -> None:
    d = Choice(["a", "b", "c", "d"])
    seen = set()
    for seed in range(200):
        new = d.perturb("b", 1.2, rng(seed))
        assert new != "b"
        assert new in {"a", "c", "d"}
        seen.add(new)
    assert seen == {"a", "c", "d"}


def test_single_option_choice_cannot_move() -> None:
    assert Choice(["only"]).perturb("only", 2.0, rng(0)) == "only"
    assert Choice(["only"], ordered=True).perturb("only", 2.0, rng(0)) == "only"


def test_choice_perturb_of_unknown_value_names_the_field() -> None:
    space = Space({"opt": Choice(["adam", "sgd"])})
    with pytest.raises(SpaceError, match=r"^opt: 'lion' is not one of"):
        space["opt"].perturb("lion", 1.2, rng(0))


def test_fixed_never_moves() -> None:
    d = Fixed("cosine")
    g = rng(0)
    for factor in (0.5, 0.8, 1.2, 2.0):
        assert d.perturb("cosine", factor, g) == "cosine"


# --- construction errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Uniform(1.0, 1.0), r"Uniform: low must be below high, got low=1\.0, high=1\.0"),
        (lambda: Uniform(2.0, 1.0), r"Uniform: low must be below high"),
        (lambda: IntUniform(5, 5), r"IntUniform: low must be below high"),
        (lambda: LogUniform(0.0, 1.0), r"LogUniform: a log-scale range needs low > 0, got low=0"),
        (lambda: LogUniform(-1.0, 1.0), r"LogUniform: a log-scale range needs low > 0"),
        (lambda: Uniform(0.0, math.inf), r"Uniform: low and high must be finite"),
        (lambda: Uniform(math.nan, 1.0), r"Uniform: low and high must be finite"),
        (lambda: Uniform("a", 1.0), r"Uniform: low must be a number, got 'a'"),
        (lambda: Uniform(0.0, None), r"Uniform: high must be a number, got None"),
        (lambda: Uniform(0.0, 1.0, bounds=(1.0, 0.0)), r"Uniform: bounds must be \(lower, upper\)"),
        (lambda: Uniform(0.0, 1.0, bounds=(0.0, math.nan)), r"Uniform: bounds must be \(lower"),
        (lambda: Uniform(0.0, 1.0, bounds=(0.0,)), r"Uniform: bounds must be a pair"),
        (lambda: Uniform(0.0, 1.0, bounds=(0.0, 1.0, 2.0)), r"Uniform: bounds must be a pair"),
        (lambda: Uniform(0.0, 1.0, bounds=(0.5, 2.0)), r"Uniform: the prior \[0\.0, 1\.0\]"),
        (lambda: LogUniform(0.1, 1.0, bounds=(-1.0, 2.0)), r"LogUniform: bounds of a log-scale"),
        (lambda: IntUniform(1.5, 4), r"IntUniform: low and high must be integers"),
        (lambda: Choice([]), r"Choice: a Choice needs at least one option"),
        (lambda: Choice([1, 2, 1]), r"Choice: Choice options must be distinct"),
        (lambda: Choice([1, 1.0]), r"Choice: Choice options must be distinct"),
        (lambda: Choice("abc"), r"Choice: options must be a list"),
    ],
)
def test_bad_distributions_fail_at_construction(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpaceError, match=match):
        make()


def test_space_error_is_a_value_error() -> None:
    assert issubclass(SpaceError, ValueError)


def test_empty_space_and_bad_names_are_rejected() -> None:
    with pytest.raises(SpaceError, match="declare at least one hyperparameter"):
        Space({})
    with pytest.raises(SpaceError, match="names must be non-empty strings, got ''"):
        Space({"": Uniform(0.0, 1.0)})
    with pytest.raises(SpaceError, match="names must be non-empty strings, got 3"):
        Space({3: Uniform(0.0, 1.0)})  # type: ignore[dict-item]


# --- Space ---------------------------------------------------------------------------------


def test_space_wraps_plain_values_as_fixed_and_lists_tunables() -> None:
    space = Space({"lr": LogUniform(1e-4, 1e-1), "momentum": 0.9, "opt": Choice(["a", "b"])})
    assert isinstance(space["momentum"], Fixed)
    assert space.tunable() == ["lr", "opt"]
    assert list(space) == ["lr", "momentum", "opt"]
    assert len(space) == 3
    h = space.sample(rng(0))
    assert h["momentum"] == 0.9
    assert 1e-4 <= h["lr"] <= 1e-1
    assert h["opt"] in ("a", "b")


def test_space_validate_accepts_and_canonicalises() -> None:
    space = Space(
        {
            "lr": LogUniform(1e-4, 1e-1, bounds=(1e-6, 1.0)),
            "layers": IntUniform(1, 8),
            "opt": Choice(["adam", "sgd"]),
            "momentum": 0.9,
        }
    )
    h = space.validate({"lr": 1, "layers": 3.0, "opt": "sgd", "momentum": 0.9})
    assert h == {"lr": 1.0, "layers": 3, "opt": "sgd", "momentum": 0.9}
    assert type(h["lr"]) is float and type(h["layers"]) is int
    sampled = space.sample(rng(3))
    assert space.validate(sampled) == sampled


def test_space_validate_reports_unknown_and_missing_keys() -> None:
    space = Space({"lr": Uniform(0.0, 1.0), "wd": Uniform(0.0, 1.0)})
    with pytest.raises(SpaceError, match=r"unknown key\(s\) \['bogus'\]; the space declares"):
        space.validate({"lr": 0.1, "wd": 0.1, "bogus": 1})
    with pytest.raises(SpaceError, match=r"missing key\(s\) \['wd'\]"):
        space.validate({"lr": 0.1})


@pytest.mark.parametrize(
    "h, match",
    [
        ({"lr": 2.0}, r"^lr: 2\.0 is outside the allowed range \[1e-06, 1\.0\]"),
        ({"lr": 0.0}, r"^lr: 0\.0 is outside the allowed range"),
        ({"lr": math.nan}, r"^lr: nan is outside"),
        ({"lr": "fast"}, r"^lr: expected a number, got 'fast'"),
        ({"n": 2.5}, r"^n: expected an integer, got 2\.5"),
        ({"n": math.inf}, r"^n: inf is outside"),
        ({"opt": "lion"}, r"^opt: 'lion' is not one of \['adam', 'sgd'\]"),
        ({"m": 0.5}, r"^m: fixed at 0\.9, got 0\.5"),
    ],
)
def test_space_validate_names_the_bad_field(h: dict, match: str) -> None:  # type: ignore[type-arg]
    space = Space(
        {
            "lr": LogUniform(1e-4, 1e-1, bounds=(1e-6, 1.0)),
            "n": IntUniform(1, 8),
            "opt": Choice(["adam", "sgd"]),
            "m": 0.9,
        }
    )
    full = {"lr": 1e-3, "n": 2, "opt": "adam", "m": 0.9}
    full.update(h)
    with pytest.raises(SpaceError, match=match):
        space.validate(full)


def test_values_outside_the_hard_range_are_refused() -> None:
    space = Space({"x": Uniform(0.0, 1.0), "lr": LogUniform(1e-3, 1.0)})
    with pytest.raises(SpaceError, match=r"^x: inf is outside"):
        space.validate({"x": math.inf, "lr": 0.1})
    with pytest.raises(SpaceError, match=r"^lr: -0\.1 is outside"):
        space.validate({"x": 0.5, "lr": -0.1})
    with pytest.raises(SpaceError, match=r"^x: 5\.0 is outside the allowed range \[0\.0, 1\.0\]"):
        space.validate({"x": 5.0, "lr": 0.1})
    wide = Space({"x": Uniform(0.0, 1.0, bounds=(0.0, 10.0)), "lr": LogUniform(1e-3, 1.0)})
    assert wide.validate({"x": 5.0, "lr": 1.0}) == {"x": 5.0, "lr": 1.0}


# --- distribution_from_dict / round trip ---------------------------------------------------


def test_distribution_from_dict_builds_each_kind() -> None:
    lr = distribution_from_dict("lr", {"dist": "loguniform", "low": 1e-4, "high": 0.1})
    assert isinstance(lr, LogUniform) and (lr.low, lr.high) == (1e-4, 0.1)
    lr2 = distribution_from_dict("lr", {"dist": "log_uniform", "low": 1e-4, "high": 0.1})
    assert isinstance(lr2, LogUniform)
    wd = distribution_from_dict("wd", {"dist": "Uniform", "low": 0, "high": 1, "bounds": [0, 2]})
    assert isinstance(wd, Uniform) and wd.bounds == (0.0, 2.0)
    n = distribution_from_dict("n", {"dist": "intuniform", "low": 1, "high": 4})
    assert isinstance(n, IntUniform)
    c = distribution_from_dict("c", {"dist": "choice", "options": [1, 2, 4], "ordered": True})
    assert isinstance(c, Choice) and c.options == [1, 2, 4] and c.ordered
    f = distribution_from_dict("f", {"dist": "fixed", "value": "cosine"})
    assert isinstance(f, Fixed) and f.value == "cosine"
    plain = distribution_from_dict("m", 0.9)  # type: ignore[arg-type]
    assert isinstance(plain, Fixed) and plain.value == 0.9


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"dist": "gaussian", "mu": 0}, r"^space\.lr: unknown dist 'gaussian'; use one of choice"),
        ({"low": 0, "high": 1}, r"^space\.lr: missing field 'dist'"),
        ({"dist": "uniform", "low": 0}, r"^space\.lr: missing field 'high' for dist 'uniform'"),
        ({"dist": "choice"}, r"^space\.lr: missing field 'options' for dist 'choice'"),
        ({"dist": "fixed"}, r"^space\.lr: missing field 'value' for dist 'fixed'"),
        (
            {"dist": "uniform", "low": 0, "high": 1, "hgih": 2},
            r"^space\.lr: unknown field\(s\) \['hgih'\] for dist 'uniform'",
        ),
        (
            {"dist": "choice", "options": [1, 2], "orderd": True},
            r"^space\.lr: unknown field\(s\) \['orderd'\] for dist 'choice'",
        ),
        (
            {"dist": "fixed", "value": 1, "low": 0},
            r"^space\.lr: unknown field\(s\) \['low'\] for dist 'fixed'",
        ),
        ({"dist": "loguniform", "low": 0, "high": 1}, r"^space\.lr: LogUniform: .*low > 0"),
        ({"dist": "uniform", "low": 1, "high": 1}, r"^space\.lr: .*low must be below high"),
        ({"dist": "uniform", "low": "x", "high": 1}, r"^space\.lr: .*low must be a number"),
        (
            {"dist": "uniform", "low": 0, "high": 1, "bounds": [0]},
            r"^space\.lr: .*bounds must be a pair",
        ),
        ({"dist": "choice", "options": []}, r"^space\.lr: .*at least one option"),
        ({"dist": "choice", "options": ["a", "a"]}, r"^space\.lr: .*must be distinct"),
        (
            {"dist": "choice", "options": [1, 2], "ordered": "yes"},
            r"^space\.lr: ordered must be true or false",
        ),
    ],
)
def test_distribution_from_dict_errors_name_the_field(spec: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpaceError, match=match):
        distribution_from_dict("lr", spec)


def test_space_from_dict_reports_the_failing_entry() -> None:
    with pytest.raises(SpaceError, match=r"^space\.batch: unknown dist 'choise'"):
        Space.from_dict(
            {
                "lr": {"dist": "loguniform", "low": 1e-4, "high": 1e-1},
                "batch": {"dist": "choise", "options": [1, 2]},
            }
        )


SPEC = {
    "lr": {"dist": "loguniform", "low": 1e-4, "high": 0.1, "bounds": [1e-6, 1.0]},
    "wd": {"dist": "uniform", "low": 0.0, "high": 0.01},
    "layers": {"dist": "intuniform", "low": 1, "high": 8, "bounds": [1, 16]},
    "batch": {"dist": "choice", "options": [32, 64, 128], "ordered": True},
    "opt": {"dist": "choice", "options": ["adam", "sgd"], "ordered": False},
    "schedule": {"dist": "fixed", "value": "cosine"},
}


def test_space_to_dict_from_dict_round_trip() -> None:
    space = Space.from_dict(SPEC)
    assert space.to_dict() == SPEC
    again = Space.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again.to_dict() == SPEC
    assert [type(d) for d in again.values()] == [type(d) for d in space.values()]
    assert again["lr"].bounds == space["lr"].bounds  # type: ignore[attr-defined]
    # Same description, same behaviour: same draws from the same seed.
    assert again.sample(rng(11)) == space.sample(rng(11))


def test_plain_values_round_trip_as_fixed() -> None:
    space = Space.from_dict({"momentum": 0.9, "lr": {"dist": "uniform", "low": 0, "high": 1}})
    assert space.to_dict()["momentum"] == {"dist": "fixed", "value": 0.9}
    assert Space.from_dict(space.to_dict()).to_dict() == space.to_dict()
    assert space.tunable() == ["lr"]


def test_intuniform_to_dict_keeps_integers() -> None:
    d = IntUniform(1, 8).to_dict()
    assert d == {"dist": "intuniform", "low": 1, "high": 8}
    assert type(d["low"]) is int and type(d["high"]) is int


def test_a_plain_tuple_or_list_is_refused_with_what_to_write_instead(tmp_path: Path) -> None:
    import firepbt
    from firepbt.examples.toy import Toy

    with pytest.raises(SpaceError, match=r"LogUniform\(0\.001, 0\.1\) or Uniform\(0\.001, 0\.1\)"):
        Space({"lr": (1e-3, 0.1)})
    with pytest.raises(SpaceError, match=r"Choice\(\[16, 32, 64\]\)"):
        Space({"batch": [16, 32, 64]})
    # the same from firepbt.run, before anything is made (every member failed on it before)
    with pytest.raises(firepbt.ConfigError, match=r"space\.h0: .*Uniform\(0\.0, 1\.0\)"):
        firepbt.run(
            Toy, {"h0": (0.0, 1.0), "h1": 0.5}, total_steps=4, executor="inprocess",
            run_dir=tmp_path / "run",
        )  # fmt: skip
    assert not (tmp_path / "run").exists()
    # and from a config file's [space]
    from firepbt.config import RunConfig

    data = {"trainable": "firepbt.examples.toy:Toy", "budget": {"steps": 4}}
    with pytest.raises(firepbt.ConfigError, match=r"space\.h0: \[0\.0, 1\.0\]"):
        RunConfig.from_mapping({**data, "space": {"h0": [0.0, 1.0]}}).build_space()


def test_a_sequence_constant_is_said_with_fixed() -> None:
    from firepbt.config import RunConfig

    space = Space({"betas": Fixed((0.9, 0.999)), "momentum": 0.9})
    # kept as the record keeps it (a list), so a resumed run sees what the first run saw
    assert space.sample(np.random.default_rng(0))["betas"] == [0.9, 0.999]
    config = RunConfig.from_mapping(
        {
            "trainable": "firepbt.examples.toy:Toy",
            "budget": {"steps": 4},
            "space": {"betas": {"dist": "fixed", "value": [0.9, 0.999]}, "h0": 0.5},
        }
    )
    assert config.build_space().sample(np.random.default_rng(0))["betas"] == [0.9, 0.999]
