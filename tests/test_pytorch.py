"""TorchTrainable: hyperparameters written into param groups; states that never share tensors."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from firepbt.pytorch import TorchTrainable  # noqa: E402


class Regression(TorchTrainable):
    """Linear regression on random batches drawn from torch's global generator."""

    def build(self) -> tuple[Any, Any]:
        model = torch.nn.Linear(3, 1)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def train(self, steps: int) -> None:
        for _ in range(steps):
            x = torch.randn(8, 3)
            y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
            self.optimizer.zero_grad()
            torch.nn.functional.mse_loss(self.model(x), y).backward()
            self.optimizer.step()
            self.batches_seen += 1

    def evaluate(self) -> float:
        return -float(self.model.weight.detach().sub(torch.tensor([[1.0, -2.0, 0.5]])).norm())

    batches_seen = 0

    def extra_state(self) -> Any:
        return {"batches_seen": self.batches_seen}

    def load_extra_state(self, state: Any) -> None:
        self.batches_seen = state["batches_seen"]


class TwoGroups(Regression):
    def build(self) -> tuple[Any, Any]:
        model = torch.nn.Linear(3, 1)
        groups = [{"params": [model.weight], "lr": 0.1}, {"params": [model.bias], "lr": 0.01}]
        return model, torch.optim.Adam(groups, betas=(0.9, 0.999))


def _buffer(t: TorchTrainable) -> Any:
    return t.optimizer.state[t.model.weight]["momentum_buffer"]


def test_hyperparameters_go_into_the_param_groups_keeping_their_ratios() -> None:
    t = TwoGroups({"lr": 0.05, "dropout": 0.2}, seed=0)  # built at lr 0.1 and 0.01
    assert [g["lr"] for g in t.optimizer.param_groups] == pytest.approx([0.05, 0.005])
    t.set_hyperparameters({"lr": 0.3, "betas": [0.8, 0.99], "weight_decay": 1e-4, "dropout": 0.1})
    assert [g["lr"] for g in t.optimizer.param_groups] == pytest.approx([0.3, 0.03])
    for g in t.optimizer.param_groups:
        assert g["betas"] == (0.8, 0.99)  # a list from a config becomes the tuple torch expects
        assert g["weight_decay"] == 1e-4  # every group was built at 0: each takes the value
        assert "dropout" not in g  # not an optimizer key: left for the subclass
    assert t.hyperparameters["dropout"] == 0.1
    t.train(2)  # the optimizer still steps with the written values


class NoDecayGroup(Regression):
    """The usual AdamW layout: weights decay, biases (and norms) do not."""

    def build(self) -> tuple[Any, Any]:
        model = torch.nn.Linear(3, 1)
        groups = [
            {"params": [model.weight], "weight_decay": 0.01},
            {"params": [model.bias], "weight_decay": 0.0},
        ]
        return model, torch.optim.AdamW(groups, lr=0.01)


def test_a_group_built_without_weight_decay_keeps_none() -> None:
    t = NoDecayGroup({"lr": 0.02, "weight_decay": 0.05}, seed=0)
    assert [g["weight_decay"] for g in t.optimizer.param_groups] == [0.05, 0.0]
    t.set_hyperparameters({"lr": 0.02, "weight_decay": 0.2})
    assert [g["weight_decay"] for g in t.optimizer.param_groups] == [0.2, 0.0]
    t.train(3)
    # an exploit: the donor's optimizer state loads, and this member's values are written back
    donor = NoDecayGroup({"lr": 0.1, "weight_decay": 0.7}, seed=1)
    donor.train(3)
    t.load(donor.save())
    assert [g["weight_decay"] for g in t.optimizer.param_groups] == [0.2, 0.0]
    assert [g["lr"] for g in t.optimizer.param_groups] == [0.02, 0.02]


def test_per_group_ratios_survive_an_exploit_and_a_change() -> None:
    t = TwoGroups({"lr": 0.05}, seed=0)
    donor = TwoGroups({"lr": 0.4}, seed=1)
    donor.train(2)
    t.load(donor.save())  # the donor's groups are at 0.4 and 0.04
    assert [g["lr"] for g in t.optimizer.param_groups] == pytest.approx([0.05, 0.005])
    t.set_hyperparameters({"lr": 0.2})
    assert [g["lr"] for g in t.optimizer.param_groups] == pytest.approx([0.2, 0.02])


def test_seed_makes_build_deterministic() -> None:
    a, b = Regression({"lr": 0.1}, seed=3), Regression({"lr": 0.1}, seed=3)
    assert torch.equal(a.model.weight, b.model.weight)
    assert not torch.equal(a.model.weight, Regression({"lr": 0.1}, seed=4).model.weight)


def test_plain_torch_load_state_dict_shares_momentum_buffers() -> None:
    """The pitfall the helper exists for (control experiment, plain torch)."""
    a, b = Regression({"lr": 0.1}, seed=0), Regression({"lr": 0.1}, seed=1)
    a.train(3)
    b.optimizer.load_state_dict(a.optimizer.state_dict())
    assert _buffer(b) is _buffer(a)


def test_loaded_state_shares_no_tensor_with_the_donor() -> None:
    a, b = Regression({"lr": 0.1}, seed=0), Regression({"lr": 0.1}, seed=1)
    a.train(3)
    a_buffer, a_weight = _buffer(a).clone(), a.model.weight.detach().clone()
    b.load(a.save())
    assert torch.equal(_buffer(b), a_buffer)
    b.train(2)
    assert not torch.equal(_buffer(b), a_buffer)
    assert torch.equal(_buffer(a), a_buffer)  # the donor's momentum did not move
    assert torch.equal(a.model.weight, a_weight)


def test_two_members_loaded_from_one_state_stay_independent() -> None:
    a = Regression({"lr": 0.1}, seed=0)
    a.train(3)
    state = a.save()
    saved_buffer = state["optimizer"]["state"][0]["momentum_buffer"].clone()
    b, c = Regression({"lr": 0.1}, seed=1), Regression({"lr": 0.1}, seed=2)
    b.load(state)
    c.load(state)
    b.train(2)
    assert torch.equal(_buffer(c), saved_buffer)
    assert torch.equal(state["optimizer"]["state"][0]["momentum_buffer"], saved_buffer)


def test_save_is_a_snapshot() -> None:
    a = Regression({"lr": 0.1}, seed=0)
    a.train(2)
    state = a.save()
    weight = state["model"]["weight"].clone()
    a.train(2)
    assert torch.equal(state["model"]["weight"], weight)


def test_load_keeps_this_members_hyperparameters() -> None:
    donor = Regression({"lr": 0.1, "momentum": 0.9}, seed=0)
    donor.train(1)
    member = Regression({"lr": 0.5, "momentum": 0.5}, seed=1)
    member.load(donor.save())
    assert member.optimizer.param_groups[0]["lr"] == 0.5
    assert member.optimizer.param_groups[0]["momentum"] == 0.5
    member.set_hyperparameters({"lr": 0.02, "momentum": 0.9})  # the exploit's explore step
    assert member.optimizer.param_groups[0]["lr"] == 0.02
    assert donor.optimizer.param_groups[0]["lr"] == 0.1


def test_save_load_train_reproduces_training_straight_through() -> None:
    straight = Regression({"lr": 0.05}, seed=0)
    straight.train(10)
    first = Regression({"lr": 0.05}, seed=0)
    first.train(4)
    state = first.save()
    torch.randn(100)  # other work moves the global generator; load must restore it
    resumed = Regression({"lr": 0.05}, seed=9)
    resumed.load(state)
    resumed.train(6)
    assert torch.equal(resumed.model.weight, straight.model.weight)
    assert torch.equal(_buffer(resumed), _buffer(straight))
    assert resumed.batches_seen == 10  # extra_state round trip


def test_load_rejects_a_foreign_state() -> None:
    with pytest.raises(ValueError, match="TorchTrainable.save"):
        Regression({"lr": 0.1}, seed=0).load({"theta": [1.0]})


def test_package_import_does_not_import_torch() -> None:
    code = (
        "import sys, firepbt, firepbt.trainable, firepbt.examples.nqm, firepbt.examples.toy; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
