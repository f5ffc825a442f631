"""PPO on CartPole-v1: a run end to end, exact save → load, the lr schedule, the shipped configs."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gymnasium")

import firepbt  # noqa: E402
import firepbt.examples.cartpole as cartpole  # noqa: E402
from firepbt.config import RunConfig  # noqa: E402
from firepbt.examples.cartpole import (  # noqa: E402
    MAX_EPISODE_STEPS,
    CartPolePPO,
    cartpole_space,
    lr_multiplier,
)
from firepbt.space import Fixed  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMALL = {"envs": 2, "rollout": 32, "epochs": 2, "minibatch": 32}  # ≈ 10 ms an iteration


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny networks: several threads only add contention (these tests run in this process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(lr: float = 3e-3, **more: Any) -> dict[str, Any]:
    return {"lr": lr, "entropy_cost": 0.01, **SMALL, **more}


def test_pbt_run_in_process(tmp_path: Path) -> None:
    space = {**cartpole_space(), **{k: Fixed(v) for k, v in SMALL.items()}}
    result = firepbt.run(
        CartPolePPO,
        space,
        total_steps=3,
        population=2,
        ready_every=1,
        metric="return",
        executor="inprocess",
        run_dir=tmp_path / "run",
    )
    assert result.best_step == 3
    assert 0.0 < result.best_score <= MAX_EPISODE_STEPS
    assert result.metrics["env_steps"] == 3 * 2 * 32
    assert result.metrics["episodes"] >= 1


def _tensors(agent: CartPolePPO) -> list[Any]:
    state = agent.optimizer.state_dict()["state"]
    moments = [s[k] for s in state.values() for k in ("exp_avg", "exp_avg_sq")]
    return [p.detach().clone() for p in agent.model.parameters()] + [m.clone() for m in moments]


def test_save_load_reproduces_training_straight_through() -> None:
    straight = CartPolePPO(small(), seed=3)
    straight.train(5)
    first = CartPolePPO(small(), seed=3)
    first.train(3)
    state = first.save()
    first.train(1)  # moving on must not touch the saved state
    resumed = CartPolePPO(small(), seed=99)  # another seed: the state carries every generator
    resumed.load(state)
    resumed.train(2)
    for a, b in zip(_tensors(resumed), _tensors(straight), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.evaluate() == straight.evaluate()
    np.testing.assert_array_equal(resumed.obs, straight.obs)
    assert resumed.iterations == 5


def test_exploit_keeps_own_hyperparameters_and_shares_no_tensor() -> None:
    donor = CartPolePPO(small(lr=1e-2), seed=0)
    donor.train(2)
    child = CartPolePPO(small(lr=1e-4), seed=1)
    child.load(donor.save())
    assert child.optimizer.param_groups[0]["lr"] == 1e-4
    before = [t.clone() for t in _tensors(donor)]
    child.train(1)
    for a, b in zip(_tensors(donor), before, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_linear_schedule_shape_and_its_clock_is_saved() -> None:
    assert [lr_multiplier("linear", t / 4) for t in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert [lr_multiplier("constant", t / 4) for t in range(6)] == [1.0] * 6
    h = small(lr=0.02, lr_schedule="linear", total_steps=4)
    agent = CartPolePPO(h, seed=0)
    agent.train(2)  # iterations 0 and 1: the last used lr · 0.75
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(0.015)
    resumed = CartPolePPO(h, seed=0)
    resumed.load(agent.save())
    resumed.train(1)  # iteration 2
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("h", "field"),
    [
        (small(learning_rate=0.1), "learning_rate"),
        ({"entropy_cost": 0.01}, "lr"),
        (small(lr_schedule="cosine"), "lr_schedule"),
        (small(lr_schedule="linear"), "total_steps"),
        (small(minibatch=0), "minibatch"),
    ],
)
def test_bad_hyperparameters_are_named(h: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CartPolePPO(h, seed=0)


def test_load_refuses_another_number_of_environments() -> None:
    with pytest.raises(ValueError, match="envs"):
        CartPolePPO(small(envs=3), 0).load(CartPolePPO(small(), 0).save())


@pytest.mark.parametrize("name", ["cartpole_pbt.toml", "cartpole_fire.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = RunConfig.from_toml(EXAMPLES / name)
    assert config.trainable == "firepbt.examples.cartpole:CartPolePPO"
    assert config.metric == "return" and config.mode == "max"
    assert set(config.build_space().tunable()) == {"lr", "entropy_cost"}


def test_doctests_pass() -> None:
    result = doctest.testmod(cartpole)
    assert result.failed == 0 and result.attempted > 0


def test_greedy_test_return_is_repeatable_and_leaves_training_alone() -> None:
    h = {"lr": 3e-3, "entropy_cost": 0.01, "envs": 2, "rollout": 32}
    plain, tested = CartPolePPO(h, seed=3), CartPolePPO({**h, "test_episodes": 4}, seed=3)
    for agent in (plain, tested):
        agent.train(2)
    first, second = tested.evaluate()["test_return"], tested.evaluate()["test_return"]
    assert first == second and 8 <= first <= 500
    assert "test_return" not in plain.evaluate()
    for agent in (plain, tested):
        agent.train(1)
    assert plain.evaluate()["return"] == tested.evaluate()["return"]
    for a, b in zip(plain.model.parameters(), tested.model.parameters(), strict=True):
        assert torch.equal(a, b)
