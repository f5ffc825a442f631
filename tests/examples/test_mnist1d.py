"""MNIST-1D with a 1-D CNN: fixed splits, reproducible training, the schedule shape, tiny runs."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mnist1d")

import firepbt  # noqa: E402
from firepbt import replay  # noqa: E402
from firepbt.config import RunConfig  # noqa: E402
from firepbt.examples.mnist1d import (  # noqa: E402
    DEFAULT_STEPS,
    MNIST1D,
    N_TRAIN,
    N_VAL,
    lr_multiplier,
    mnist1d_data,
    mnist1d_space,
)
from firepbt.trainable import import_trainable  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _rows(x: Any) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_splits_are_fixed_disjoint_and_standardised() -> None:
    d = mnist1d_data()
    assert mnist1d_data() is d  # generated once per process
    assert d.x_train.shape == (N_TRAIN, 1, 40) and d.x_val.shape == (N_VAL, 1, 40)
    assert d.x_test.shape == (1000, 1, 40) and d.y_test.shape == (1000,)
    train, val, test = _rows(d.x_train), _rows(d.x_val), _rows(d.x_test)
    assert len(train) == N_TRAIN and len(val) == N_VAL
    assert not train & val and not train & test and not val & test
    assert float(d.x_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(d.x_train.std()) == pytest.approx(1.0, abs=1e-3)
    assert set(d.y_train.tolist()) == set(range(10))
    # the split depends on nothing a member owns: every member sees the same data
    a, b = MNIST1D({"lr": 0.1}, seed=1), MNIST1D({"lr": 0.1}, seed=2)
    assert a.x is b.x is d.x_train


def test_generation_leaves_global_generators_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_dataset seeds `random` and numpy's global generator; generation undoes that."""
    import mnist1d.data

    from firepbt.examples import mnist1d as module

    def fake_make_dataset(args: object) -> dict[str, np.ndarray]:
        random.seed(42)
        np.random.seed(42)
        n = N_TRAIN + N_VAL
        return {"x": np.random.randn(n, 40), "y": np.arange(n) % 10,
                "x_test": np.random.randn(1000, 40), "y_test": np.arange(1000) % 10}  # fmt: skip

    monkeypatch.setattr(mnist1d.data, "make_dataset", fake_make_dataset)
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.random())
    random.seed(5)
    np.random.seed(5)
    data = module._generate()
    assert (random.random(), np.random.random()) == expected
    assert data.x_train.shape == (N_TRAIN, 1, 40)


def test_save_load_train_reproduces_training_straight_through() -> None:
    h = {"lr": 0.05, "lr_schedule": "cosine", "total_steps": 40}
    straight = MNIST1D(h, seed=3)
    straight.train(40)
    first = MNIST1D(h, seed=3)
    first.train(15)
    state = first.save()
    first.train(5)  # moving on must not touch the saved state
    resumed = MNIST1D(h, seed=99)  # another seed: the state carries the batch generator
    resumed.load(state)
    assert resumed.global_step == 15
    resumed.train(25)
    assert resumed.evaluate() == straight.evaluate()
    for p, q in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_seed_sets_weights_and_batches() -> None:
    a, b, c = (MNIST1D({"lr": 0.05}, seed=s) for s in (0, 0, 1))
    for m in (a, b, c):
        m.train(5)
    assert a.evaluate() == b.evaluate()
    assert a.evaluate() != c.evaluate()


def test_use_split_trains_on_train_and_validation() -> None:
    m = MNIST1D({"lr": 0.05}, seed=0)
    m.use_split("train+val")
    assert len(m.y) == N_TRAIN + N_VAL
    assert _rows(m.x) == _rows(mnist1d_data().x_train) | _rows(mnist1d_data().x_val)
    plain = MNIST1D({"lr": 0.05}, seed=0)
    m.train(5)
    plain.train(5)
    assert m.evaluate() != plain.evaluate()  # same seed, same weights at start: other batches
    m.use_split("train")
    assert len(m.y) == N_TRAIN
    with pytest.raises(ValueError, match="no split 'test'"):
        m.use_split("test")


def test_schedule_shapes() -> None:
    assert lr_multiplier("constant", 0.7) == 1.0
    assert [lr_multiplier("cosine", p) for p in (0.0, 0.25, 0.5, 1.0, 1.5)] == pytest.approx(
        [1.0, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5, 0.0, 0.0]
    )
    assert [lr_multiplier("step", p) for p in (0.0, 0.49, 0.5, 0.75, 1.0)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.01, 0.01]
    )
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_multiplier("linear", 0.5)


def test_trainable_follows_its_schedule_across_a_save() -> None:
    m = MNIST1D({"lr": 0.2, "lr_schedule": "cosine", "total_steps": 100}, seed=0)
    assert m.current_lr() == pytest.approx(0.2)
    m.train(50)
    assert m.current_lr() == pytest.approx(0.1)
    assert m.optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * lr_multiplier("cosine", 0.49))
    child = MNIST1D({"lr": 0.4, "lr_schedule": "step", "total_steps": 100}, seed=1)
    child.load(m.save())  # the global step comes with the state; the shape is the child's own
    assert child.current_lr() == pytest.approx(0.04)
    child.set_hyperparameters({"lr": 0.4, "lr_schedule": "step", "total_steps": 60})
    assert child.current_lr() == pytest.approx(0.004)
    constant = MNIST1D({"lr": 0.03}, seed=0)
    constant.train(3)
    assert constant.current_lr() == constant.optimizer.param_groups[0]["lr"] == 0.03


def test_bad_schedule_names_the_field() -> None:
    with pytest.raises(ValueError, match="total_steps"):
        MNIST1D({"lr": 0.1, "lr_schedule": "cosine"}, seed=0)
    with pytest.raises(ValueError, match="lr_schedule"):
        MNIST1D({"lr": 0.1}, seed=0).set_hyperparameters({"lr": 0.1, "lr_schedule": "linear"})


def test_runs_on_one_thread_and_restores_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    m = MNIST1D({"lr": 0.05}, seed=0)
    step = m.optimizer.step
    monkeypatch.setattr(m.optimizer, "step", lambda: (seen.append(torch.get_num_threads()), step()))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        m.train(2)
        m.evaluate()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert seen == [1, 1]


def test_momentum_and_weight_decay_reach_the_optimizer() -> None:
    m = MNIST1D({"lr": 0.1, "momentum": 0.5, "weight_decay": 1e-4}, seed=0)
    group = m.optimizer.param_groups[0]
    assert (group["momentum"], group["weight_decay"]) == (0.5, 1e-4)
    assert MNIST1D({"lr": 0.1}, seed=0).optimizer.param_groups[0]["momentum"] == 0.9


def test_learns_something_in_a_few_hundred_steps() -> None:
    m = MNIST1D({"lr": 0.1}, seed=0)
    before = m.evaluate()
    m.train(150)
    after = m.evaluate()
    assert after["val_accuracy"] > 0.35 > 0.2 > before["val_accuracy"]  # chance: 0.1
    assert after["val_loss"] < before["val_loss"]


def test_space_and_configs() -> None:
    space = mnist1d_space()
    assert space.tunable() == ["lr"]
    h = space.sample(np.random.default_rng(0))
    assert h["momentum"] == 0.9 and 3e-3 <= h["lr"] <= 0.3
    assert import_trainable("firepbt.examples.mnist1d:MNIST1D") is MNIST1D
    fire = RunConfig.from_toml(EXAMPLES / "mnist1d_fire.toml")
    assert (fire.strategy, fire.strategy_options["subpopulations"]) == ("fire", 2)
    assert (fire.metric, fire.test_metric, fire.mode) == ("val_accuracy", "test_accuracy", "max")
    pbt = RunConfig.from_toml(EXAMPLES / "mnist1d_pbt.toml")
    assert pbt.strategy == "pbt" and pbt.trainable == fire.trainable
    assert fire.total_steps == pbt.total_steps == DEFAULT_STEPS


@pytest.mark.parametrize("strategy", ["pbt", "fire"])
def test_tiny_run_and_replay_on_train_plus_val(tmp_path: Path, strategy: str) -> None:
    options = {"subpopulations": 2, "evaluators": 1} if strategy == "fire" else {}
    result = firepbt.run(
        MNIST1D,
        {"lr": firepbt.LogUniform(0.01, 0.2), "momentum": 0.9},
        total_steps=20,
        population=4,
        ready_every=10,
        eval_every=5,
        metric="val_accuracy",
        test_metric="test_accuracy",
        strategy=strategy,
        executor="inprocess",
        run_dir=tmp_path / strategy,
        **options,
    )
    assert result.best_step == 20
    assert set(result.metrics) == {"val_accuracy", "test_accuracy", "val_loss"}
    assert 0.0 <= result.best_score == result.metrics["val_accuracy"] <= 1.0
    assert result.schedule[-1].to_step == 20
    replayed = replay(result.run_dir, split="train+val")
    assert replayed.runs[0].points[-1].step == 20


def test_doctests_pass() -> None:
    import doctest

    from firepbt.examples import mnist1d as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
