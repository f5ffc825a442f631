"""The vectorised trainable: the contract's checks, and per-member SGD / Adam / AdamW that follow
``torch.optim`` step for step (a small MLP, different hyperparameters in every slot)."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from firepbt import pytorch_vectorised, vectorised  # noqa: E402
from firepbt.pytorch_vectorised import TorchVectorised  # noqa: E402

# Linear layers under vmap become batched matrix products that may add in another order than
# one model's matrix product: a few float32 ulps per step, so a tight absolute tolerance.
TOL = 1e-6
BATCH = 8


def _mlp(h: Any = None) -> Any:
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _data() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(123)
    return torch.randn(64, 4, generator=g), torch.randint(3, (64,), generator=g)


class MLPs(TorchVectorised):
    def evaluate_slots(self, slots: tuple[int, ...]) -> dict[int, Any]:
        x, y = self.inputs, self.targets
        out = self.forward(x, slots)
        return {s: float(torch.nn.functional.cross_entropy(out[i], y)) for i, s in enumerate(slots)}


def _population(optimizer: str, slots: int = 4) -> MLPs:
    x, y = _data()
    return MLPs(
        slots, _mlp, torch.nn.functional.cross_entropy, x, y, optimizer=optimizer, batch_size=BATCH
    )


class Ordinary:
    """One member the ordinary way: an nn.Module, a torch optimizer, its own generator."""

    def __init__(self, optimizer: str, h: dict[str, Any], seed: int) -> None:
        torch.manual_seed(seed)
        self.model = _mlp()
        params = self.model.parameters()
        build = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
        self.optimizer = build[optimizer](params, lr=h["lr"])
        self.set(h)
        self.generator = torch.Generator().manual_seed(seed)
        self.x, self.y = _data()

    def set(self, h: dict[str, Any]) -> None:
        for group in self.optimizer.param_groups:
            for k, v in h.items():
                if k in group:
                    group[k] = tuple(v) if k == "betas" else v

    def train(self, steps: int) -> None:
        for _ in range(steps):
            index = torch.randint(len(self.y), (BATCH,), generator=self.generator)
            self.optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(self.model(self.x[index]), self.y[index])
            loss.backward()
            self.optimizer.step()


MEMBERS = {
    "sgd": [
        {"lr": 0.1, "momentum": 0.9},
        {"lr": 0.3, "momentum": 0.0, "weight_decay": 0.01},
        {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1},
    ],
    "adam": [
        {"lr": 0.01},
        {"lr": 0.003, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01},
        {"lr": 0.02, "betas": [0.5, 0.9], "weight_decay": 0.0},
    ],
    "adamw": [
        {"lr": 0.01, "weight_decay": 0.1},
        {"lr": 0.003, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.0},
        {"lr": 0.02, "betas": (0.5, 0.9)},
    ],
}
# mid-run changes: momentum switched on (its buffer starts as the gradient), betas, decay
CHANGES = {
    "sgd": {"lr": 0.2, "momentum": 0.8, "weight_decay": 0.0},
    "adam": {"lr": 0.005, "betas": (0.7, 0.95), "weight_decay": 0.05},
    "adamw": {"lr": 0.005, "betas": (0.7, 0.95), "weight_decay": 0.2},
}


def _assert_close(a: Any, b: Any, what: str) -> None:
    assert a.shape == b.shape, what
    assert torch.allclose(a, b, rtol=TOL, atol=TOL), f"{what}: max diff {(a - b).abs().max()}"


def _assert_state_close(vec: dict[str, Any], ordinary: dict[str, Any]) -> None:
    assert vec["param_groups"] == ordinary["param_groups"]
    assert vec["state"].keys() == ordinary["state"].keys()
    for i, entry in ordinary["state"].items():
        assert vec["state"][i].keys() == entry.keys()
        for k, t in entry.items():
            _assert_close(vec["state"][i][k], t, f"state {i} {k}")


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_per_member_optimizers_follow_torch_optim(optimizer: str) -> None:
    population = _population(optimizer)
    slots = (0, 2, 3)  # slot 1 stays empty: the occupied slots are gathered and scattered
    ordinary = {}
    for slot, h in zip(slots, MEMBERS[optimizer], strict=True):
        population.assign(slot, h, seed=slot)
        ordinary[slot] = Ordinary(optimizer, h, seed=slot)
    for segment in range(3):
        if segment == 1:
            population.set_hyperparameters(2, CHANGES[optimizer])
            ordinary[2].set(CHANGES[optimizer])
        population.train(4)
        for o in ordinary.values():
            o.train(4)
        for slot, o in ordinary.items():
            state = population.save(slot)
            for name, t in o.model.state_dict().items():
                _assert_close(state["model"][name], t, f"slot {slot} {name}")
            _assert_state_close(state["optimizer"], o.optimizer.state_dict())
            assert state["extra"]["global_step"] == 4 * (segment + 1)
            assert torch.equal(state["extra"]["generator"], o.generator.get_state())


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_a_slot_state_loads_into_torch_optim_and_back(optimizer: str) -> None:
    population = _population(optimizer, slots=2)
    h = MEMBERS[optimizer][1]
    population.assign(0, h, seed=0)
    population.assign(1, MEMBERS[optimizer][0], seed=1)
    population.train(3)
    o = Ordinary(optimizer, h, seed=5)
    state = population.save(0)
    o.model.load_state_dict(state["model"])
    o.optimizer.load_state_dict(state["optimizer"])
    o.generator.set_state(state["extra"]["generator"])
    population.load(1, {**state, "optimizer": o.optimizer.state_dict()})
    population.set_hyperparameters(1, h)
    population.train(3)
    o.train(3)
    for name, t in o.model.state_dict().items():
        _assert_close(population.save(0)["model"][name], t, name)
        _assert_close(population.save(1)["model"][name], t, name)


def test_adam_takes_beta1_and_beta2_as_numbers() -> None:
    population = _population("adam", slots=1)
    population.assign(0, {"lr": 0.01, "beta1": 0.8, "beta2": 0.95}, seed=0)
    assert population.save(0)["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.95)
    population.set_hyperparameters(0, {"lr": 0.01, "beta2": 0.9})
    assert population.save(0)["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.9)


def test_release_empties_a_slot_and_assign_rebuilds_it() -> None:
    population = _population("sgd", slots=2)
    population.assign(0, {"lr": 0.1}, seed=0)
    population.assign(1, {"lr": 0.1}, seed=0)
    fresh = population.save(0)
    population.train(2)
    population.release(1)
    assert population.occupied == (0,)
    assert set(population.evaluate()) == {0}
    population.assign(1, {"lr": 0.1}, seed=0)
    rebuilt = population.save(1)
    assert rebuilt["optimizer"]["state"] == {} and rebuilt["extra"]["global_step"] == 0
    for name, t in fresh["model"].items():
        assert torch.equal(rebuilt["model"][name], t)


def test_docstring_examples_run() -> None:
    for module in (vectorised, pytorch_vectorised):
        assert doctest.testmod(module).failed == 0


# -- bad input --------------------------------------------------------------------------------


def test_unknown_optimizer_is_named() -> None:
    x, y = _data()
    with pytest.raises(
        ValueError, match="optimizer: expected 'sgd', 'adam' or 'adamw', got 'rmsprop'"
    ):
        MLPs(2, _mlp, torch.nn.functional.cross_entropy, x, y, optimizer="rmsprop")


def test_missing_lr_is_refused_on_assign_and_set() -> None:
    population = _population("sgd", slots=2)
    with pytest.raises(ValueError, match="lr: missing"):
        population.assign(0, {"momentum": 0.9}, seed=0)
    assert population.occupied == ()
    population.assign(0, {"lr": 0.1}, seed=0)
    with pytest.raises(ValueError, match="lr: missing"):
        population.set_hyperparameters(0, {"momentum": 0.5})
    assert population.hyperparameters_of(0) == {"lr": 0.1}


@pytest.mark.parametrize("slot", [-1, 2, True, "0"])
def test_a_slot_out_of_range_is_refused(slot: Any) -> None:
    population = _population("sgd", slots=2)
    population.assign(0, {"lr": 0.1}, seed=0)
    with pytest.raises(IndexError, match="out of range; this population has slots 0 to 1"):
        population.assign(slot, {"lr": 0.1}, seed=0)
    with pytest.raises(IndexError, match="out of range"):
        population.save(slot)
    with pytest.raises(IndexError, match="out of range"):
        population.copy(0, slot)


def test_an_empty_slot_is_refused() -> None:
    population = _population("sgd", slots=3)
    population.assign(0, {"lr": 0.1}, seed=0)
    state = population.save(0)
    for action, call in [
        ("evaluate", lambda: population.evaluate([1])),
        ("save", lambda: population.save(2)),
        ("load", lambda: population.load(1, state)),
        ("copy", lambda: population.copy(0, 1)),
        ("copy", lambda: population.copy(1, 0)),
        ("release", lambda: population.release(1)),
        ("set_hyperparameters", lambda: population.set_hyperparameters(1, {"lr": 0.1})),
    ]:
        with pytest.raises(ValueError, match=rf"MLPs.{action}: slot [12] is empty; assign"):
            call()


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="slots: expected a whole number of at least 1, got 0"):
        _population("sgd", slots=0)
    population = _population("sgd", slots=1)
    with pytest.raises(ValueError, match="steps must be a whole number"):
        population.train(-1)


def test_unsupported_optimizer_settings_are_refused() -> None:
    population = _population("sgd", slots=1)
    with pytest.raises(
        ValueError, match="nesterov: the vectorised SGD supports only nesterov=False"
    ):
        population.assign(0, {"lr": 0.1, "momentum": 0.9, "nesterov": True}, seed=0)
    adam = _population("adam", slots=1)
    with pytest.raises(ValueError, match="amsgrad"):
        adam.assign(0, {"lr": 0.1, "amsgrad": True}, seed=0)
    adam.assign(0, {"lr": 0.1}, seed=0)
    state = adam.save(0)
    state["optimizer"]["param_groups"][0]["amsgrad"] = True
    with pytest.raises(ValueError, match="the state has amsgrad=True"):
        adam.load(0, state)
    with pytest.raises(ValueError, match="expected a state returned by save"):
        adam.load(0, {"weights": 1})


def test_models_the_population_cannot_stack_are_refused() -> None:
    x, y = _data()
    loss = torch.nn.functional.cross_entropy

    def batchnorm(h: Any) -> Any:
        return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))

    with pytest.raises(ValueError, match="does not support modules with buffers"):
        MLPs(1, batchnorm, loss, x, y).assign(0, {"lr": 0.1}, seed=0)

    def widths(h: Any) -> Any:
        return torch.nn.Linear(4, int(h["width"]))

    population = MLPs(2, widths, loss, x, y)
    population.assign(0, {"lr": 0.1, "width": 3}, seed=0)
    with pytest.raises(ValueError, match="slot 1: its model's parameters differ"):
        population.assign(1, {"lr": 0.1, "width": 5}, seed=0)
    with pytest.raises(ValueError, match="batch_size: every slot of this population draws"):
        population.assign(1, {"lr": 0.1, "width": 3, "batch_size": 32}, seed=0)
    other = MLPs(1, lambda h: torch.nn.Linear(4, 5), loss, x, y)
    other.assign(0, {"lr": 0.1}, seed=0)
    with pytest.raises(ValueError, match="does not fit this population's architecture"):
        population.load(0, other.save(0))


def test_a_model_that_draws_random_numbers_is_refused_clearly() -> None:
    x, y = _data()

    def dropout(h: Any) -> Any:
        return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.5))

    population = MLPs(1, dropout, torch.nn.functional.cross_entropy, x, y)
    population.assign(0, {"lr": 0.1}, seed=0)
    with pytest.raises(ValueError, match="draws random numbers"):
        population.train(1)
    assert population.evaluate()[0] > 0  # evaluation mode: dropout is off
