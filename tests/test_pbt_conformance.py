"""What users of another PBT (Ray Tune's, above all) expect of one, checked through firepbt's
public API: the values and types a perturbation gives, how many members exploit, burn-in, when
synchronous and asynchronous members decide, who is chosen as a donor, that a custom explore
step stays inside the space, and what a space may hold. Where firepbt differs by design, the test
says so and checks firepbt's behaviour (docs/guides/ray_tune.md gives each difference its
reason)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import firepbt
from firepbt import (
    Choice,
    Fixed,
    IntUniform,
    LogUniform,
    Perturb,
    Resample,
    Space,
    SpaceError,
    Truncation,
    Uniform,
    chain,
)
from firepbt.errors import ConfigError, ExploreError
from firepbt.examples.toy import Toy
from firepbt.exploit import ExploitRecord, select_donor
from firepbt.explore import Change
from firepbt.store import Store

RNG = np.random.default_rng


# --- perturbation: values and types --------------------------------------------------------


def test_a_perturbed_float_is_the_value_times_one_of_the_factors() -> None:
    space = Space({"lr": Uniform(0.0, 10.0), "decay": LogUniform(1e-4, 1.0)})
    seen: Counter[float] = Counter()
    for seed in range(200):
        new, _ = Perturb((0.8, 1.2))({"lr": 5.0, "decay": 0.01}, space, RNG(seed))
        assert type(new["lr"]) is float and type(new["decay"]) is float
        assert new["lr"] in (pytest.approx(4.0), pytest.approx(6.0))
        seen[round(new["lr"], 9)] += 1
    assert set(seen) == {4.0, 6.0}  # both factors are drawn


def test_a_perturbed_integer_stays_an_integer_and_moves() -> None:
    space = Space({"layers": IntUniform(1, 100)})
    values = {Perturb((0.8, 1.2))({"layers": 10}, space, RNG(s))[0]["layers"] for s in range(50)}
    assert values == {8, 12}
    assert all(type(v) is int for v in values)


def test_an_ordered_choice_steps_to_a_neighbour_and_an_unordered_one_anywhere() -> None:
    ordered = Space({"batch": Choice([16, 32, 64, 128], ordered=True)})
    up = Perturb((1.2,))({"batch": 32}, ordered, RNG(0))[0]["batch"]
    down = Perturb((0.8,))({"batch": 32}, ordered, RNG(0))[0]["batch"]
    assert (down, up) == (16, 64)
    assert Perturb((1.2,))({"batch": 128}, ordered, RNG(0))[0]["batch"] == 128  # at the end
    # differs by design from Ray's lists (a neighbour): an unordered Choice jumps to any other
    unordered = Space({"act": Choice(["relu", "tanh", "gelu", "silu"])})
    moved = {Perturb()({"act": "relu"}, unordered, RNG(s))[0]["act"] for s in range(60)}
    assert moved == {"tanh", "gelu", "silu"}


def test_values_stay_inside_their_hard_range_over_thousands_of_chained_steps() -> None:
    space = Space(
        {
            "lr": LogUniform(1e-3, 1e-1, bounds=(1e-5, 0.5)),
            "momentum": Uniform(0.5, 0.99),
            "layers": IntUniform(1, 8),
            "batch": Choice([16, 32, 64], ordered=True),
            "fixed": 3,
        }
    )
    policy = chain(Perturb((0.5, 2.0)), Resample(0.25))
    rng = RNG(0)
    h = space.sample(rng)
    for _ in range(3000):
        h, _ = policy(h, space, rng)
        assert space.validate(h) == h
    assert h["fixed"] == 3


# --- how many exploit, and whom they copy ---------------------------------------------------


def _bottom_size(n: int, fraction: float) -> int:
    """Members in truncation's bottom group: n * fraction rounded half up, at least 1 and at
    most n // 2 (Ray's ceil(n * q) differs by design: one member fewer at n = 5, 9, 13)."""
    return max(1, min(math.floor(n * fraction + 0.5), n // 2))


@pytest.mark.parametrize("n", range(2, 17))
@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_truncation_exploits_exactly_the_bottom_quantile(n: int, fraction: float) -> None:
    scores = {m: [float(m)] for m in range(n)}  # member n-1 is best
    policy = Truncation(fraction)
    k = _bottom_size(n, fraction)
    exploiting = []
    for m in range(n):
        record = policy.select(m, scores, RNG(m))
        if record is not None:
            assert record.donor >= n - k  # a donor is always a top member
            exploiting.append(m)
    assert exploiting == list(range(k))
    if n in (5, 9, 13) and fraction == 0.25:
        assert k == math.ceil(n * fraction) - 1


def test_the_donor_is_drawn_among_the_usable_top_members() -> None:
    scores = {m: [float(m)] for m in range(8)}  # top quarter: 6 and 7
    policy = Truncation(0.25)
    # member 7 is behind (it has just copied someone): every draw takes member 6
    donors = {m for m in range(8) if m != 7}
    picked = {select_donor(policy, 0, scores, RNG(s), donors).donor for s in range(40)}  # type: ignore[union-attr]
    assert picked == {6}
    # with no usable better member there is no exploit (and never a rewind)
    assert select_donor(policy, 0, scores, RNG(0), {0, 1, 2, 3}) is None


class OldStylePolicy:
    """An exploit policy written without ``donors``: always names member 1."""

    def select(
        self, member: int, scores: Mapping[int, Sequence[float]], rng: np.random.Generator
    ) -> ExploitRecord | None:
        return ExploitRecord(1, "always 1") if member != 1 else None


def test_a_policy_without_donors_still_works_and_never_rewinds() -> None:
    scores = {0: [0.0], 1: [1.0]}
    assert select_donor(OldStylePolicy(), 0, scores, RNG(0), {0, 1}).donor == 1  # type: ignore[union-attr]
    assert select_donor(OldStylePolicy(), 0, scores, RNG(0), {0}) is None


class CountingTruncation:
    """Truncation(0.25), counting the donors it names (not the member itself)."""

    def __init__(self) -> None:
        self.chosen = 0
        self.policy = Truncation(0.25)

    def select(
        self,
        member: int,
        scores: Mapping[int, Sequence[float]],
        rng: np.random.Generator,
        donors: Collection[int] | None = None,
    ) -> ExploitRecord | None:
        record = self.policy.select(member, scores, rng, donors)
        self.chosen += record is not None and record.donor != member
        return record


def _toy_run(run_dir: Path, **options: Any) -> Store:
    defaults: dict[str, Any] = {"executor": "inprocess", "progress": False, "population": 8}
    firepbt.run(
        "firepbt.examples.toy:Toy",
        {"h0": Uniform(0.0, 1.0), "h1": Uniform(0.0, 1.0)},
        total_steps=200,
        ready_every=10,
        run_dir=run_dir,
        **{**defaults, **options},
    )
    return Store.open(run_dir)


def _exploits(store: Store) -> list[tuple[int, int, int, int]]:
    return [edge for edge in store.lineage() if edge[0] != edge[2]]


def test_async_every_chosen_donor_becomes_an_exploit(tmp_path: Path) -> None:
    # before, a donor behind the member was drawn and then dropped: about half of the choices
    # (benchmarks/results/async_donors.md)
    policy = CountingTruncation()
    store = _toy_run(tmp_path / "run", synchrony="async", exploit=policy, seed=1)
    try:
        exploits = [d for d in store.decisions() if d.kind == "exploit" and d.donor != d.member]
        assert policy.chosen > 0
        assert len(exploits) == len(_exploits(store)) == policy.chosen
        # never a rewind: each copy takes weights at least as far on as the member's own
        assert all(d.source_step is not None and d.source_step >= d.step for d in exploits)
    finally:
        store.close()


# --- when members decide --------------------------------------------------------------------


def test_burn_in_no_exploit_before_its_step(tmp_path: Path) -> None:
    store = _toy_run(tmp_path / "run", burn_in=100, seed=3)
    try:
        exploits = _exploits(store)
        assert exploits and min(step for _, step, _, _ in exploits) >= 100
    finally:
        store.close()


def test_sync_exploits_happen_at_barriers_from_same_step_weights(tmp_path: Path) -> None:
    sync = _toy_run(tmp_path / "sync", seed=4)
    try:
        steps = Counter(step for _, step, _, _ in _exploits(sync))
        # every exploit happens at a barrier (a multiple of ready_every), never between them,
        # and a round's copies take weights of the same step
        assert steps and all(step % 10 == 0 for step in steps)
        assert all(child_step == parent_step for _, child_step, _, parent_step in _exploits(sync))
    finally:
        sync.close()


# --- a custom explore step stays inside the space -------------------------------------------


def too_far(h: Mapping[str, Any], space: Space, rng: np.random.Generator) -> Any:
    return {**h, "lr": 5.0}, (Change("lr", h["lr"], 5.0, "set"),)


def typo(h: Mapping[str, Any], space: Space, rng: np.random.Generator) -> Any:
    return {**h, "typo_key": 1}, ()


def test_a_custom_explore_output_out_of_range_is_refused_naming_the_policy() -> None:
    space = Space({"lr": LogUniform(1e-3, 0.5)})
    with pytest.raises(ExploreError, match=r"policy too_far returned .*\(lr: 5\.0 is outside"):
        chain(Perturb(), too_far)({"lr": 0.1}, space, RNG(0))
    with pytest.raises(ExploreError, match=r"explore policy typo returned .*unknown key.*typo_key"):
        chain(typo, Perturb())({"lr": 0.1}, space, RNG(0))


def test_a_run_with_a_bad_explore_step_stops_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ExploreError, match="explore policy too_far"):
        firepbt.run(
            "firepbt.examples.toy:Toy",
            {"h0": Uniform(0.0, 1.0), "h1": Uniform(0.0, 1.0), "lr": LogUniform(1e-3, 0.5)},
            total_steps=40,
            population=4,
            ready_every=10,
            explore=chain(Perturb(), too_far),
            executor="inprocess",
            progress=False,
            run_dir=tmp_path / "run",
        )
    store = Store.open(tmp_path / "run")
    try:  # nothing outside the space reached the record
        assert all(row.hyperparameters["lr"] <= 0.5 for row in store.members())
    finally:
        store.close()


# --- what a space holds ---------------------------------------------------------------------


NESTED = {"model": {"lr": LogUniform(1e-3, 0.1), "layers": 3}}


def test_a_nested_space_is_refused_everywhere_with_the_dotted_name_hint(tmp_path: Path) -> None:
    hint = r'space\.model: .*flat.*"model\.lr"'
    with pytest.raises(SpaceError, match=hint):
        Space(NESTED)
    with pytest.raises(ConfigError, match=hint):
        firepbt.run("firepbt.examples.toy:Toy", NESTED, total_steps=4, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    table = {"model": {"lr": {"dist": "loguniform", "low": 1e-3, "high": 0.1}}}
    with pytest.raises(SpaceError, match=r'space\.model: missing field .*"model\.lr" = '):
        Space.from_dict(table)
    # a dict kept as one constant is said with Fixed, and dotted names are plain names
    space = Space({"model": Fixed({"layers": 3}), "model.lr": LogUniform(1e-3, 0.1)})
    assert space.sample(RNG(0))["model"] == {"layers": 3}


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


CONSTANTS: dict[str, Any] = {
    "betas": Fixed((0.9, 0.999)),
    "scale": np.float32(0.5),
    "width": np.int64(64),
    "shape": Fixed({"kernel": (3, 3)}),
    "pair": Choice([(16, 16), (32, 32)]),
    "lr": LogUniform(1e-3, 0.1),
}


def test_constants_are_what_a_resumed_run_reads_back() -> None:
    space = Space(CONSTANTS)
    for seed in range(5):
        h = space.sample(RNG(seed))
        assert _same(h, json.loads(json.dumps(h))), h
        assert _same(space.validate(h), h)


@pytest.mark.parametrize("value", [object(), np.dtype("float32"), np.zeros(2), Fixed], ids=repr)
def test_a_value_that_is_not_data_is_refused(value: Any) -> None:
    with pytest.raises(SpaceError, match=r"space\.x: .*(not data|a function or a class)"):
        Space({"x": value})


@pytest.mark.parametrize("option", [object(), np.dtype("float32"), {1: "a"}, float], ids=repr)
def test_an_option_that_is_not_data_is_refused(option: Any) -> None:
    with pytest.raises(SpaceError, match=r"Choice: .*not data.*Choice\(\['relu', 'tanh'\]\)"):
        Choice(["a", option])


class SeesData(Toy):
    """Fails unless its hyperparameters are exactly what the run's record reads back."""

    def train(self, steps: int) -> None:
        h = dict(self.hyperparameters)
        if not _same(h, json.loads(json.dumps(h))):
            raise AssertionError(f"not as recorded: {h!r}")
        super().train(steps)


def test_a_run_hands_constants_over_as_its_record_keeps_them(tmp_path: Path) -> None:
    space = {**CONSTANTS, "h0": Uniform(0.0, 1.0), "h1": Uniform(0.0, 1.0)}
    result = firepbt.run(
        SeesData, space, total_steps=20, population=4, ready_every=5, executor="inprocess",
        progress=False, run_dir=tmp_path / "run",
    )  # fmt: skip
    assert result.hyperparameters["betas"] == [0.9, 0.999]
    store = Store.open(result.run_dir)
    try:
        assert store.failures() == []
    finally:
        store.close()
