"""A name of the space that the trainable never reads (a misspelt ``"wd"``) is tuned, recorded
and plotted, and changes nothing: the run says so, once, after the first segment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import firepbt
from firepbt import LogUniform
from firepbt.errors import WarningKind
from firepbt.pytorch import TorchTrainable
from firepbt.reads import ReadRecorder, unread
from firepbt.store import Store


class Line(TorchTrainable):
    def build(self) -> tuple[Any, Any]:
        model = torch.nn.Linear(1, 1)
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    def train(self, steps: int) -> None:
        for _ in range(steps):
            self.optimizer.zero_grad()
            x = torch.linspace(-1, 1, 8).unsqueeze(1)
            ((self.model(x) - 2 * x) ** 2).mean().backward()
            self.optimizer.step()

    def evaluate(self) -> float:
        return -abs(self.model.weight.item() - 2.0)


class ReadsInInit(firepbt.Trainable):
    """Reads ``scale`` once, in its constructor, and ``rate`` through ``**``."""

    def __init__(self, hyperparameters: Any, seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.scale = hyperparameters["scale"]
        self.x = 0.0

    def set_hyperparameters(self, hyperparameters: Any) -> None:
        super().set_hyperparameters(hyperparameters)
        self.step_size = _rate(**self.hyperparameters)

    def train(self, steps: int) -> None:
        self.x += steps * self.step_size * self.scale

    def evaluate(self) -> float:
        return self.x

    def save(self) -> Any:
        return self.x

    def load(self, state: Any) -> None:
        self.x = state


def _rate(rate: float, **_: Any) -> float:
    return rate


def _warnings(run_dir: Path) -> list[str]:
    store = Store.open(run_dir)
    try:
        return [m for _, _, kind, m in store.failures() if kind == WarningKind.UNUSED]
    finally:
        store.close()


def test_a_misspelt_optimizer_setting_is_named_once_after_the_first_segment(tmp_path: Path) -> None:
    space = {"lr": LogUniform(1e-3, 0.1), "wd": LogUniform(1e-5, 1e-3), "momentum": 0.9}
    result = firepbt.run(
        Line, space, total_steps=20, population=4, ready_every=5, workers=2, run_dir=tmp_path / "r"
    )
    found = _warnings(tmp_path / "r")
    assert len(found) == 1, found  # once in the run, not once per member
    assert "'wd'" in found[0] and "'momentum'" not in found[0] and "'lr'" not in found[0]
    assert any("'wd'" in w for w in result.warnings)
    assert "never read 'wd'" in result.describe()


def test_names_read_in_the_constructor_or_through_unpacking_count(tmp_path: Path) -> None:
    space = {"rate": LogUniform(1e-3, 0.1), "scale": 2.0}
    firepbt.run(
        ReadsInInit, space, total_steps=8, population=2, ready_every=4, executor="inprocess",
        run_dir=tmp_path / "r",
    )  # fmt: skip
    assert _warnings(tmp_path / "r") == []


def test_the_recorder_counts_single_reads_and_whole_dict_use_as_reading_all() -> None:
    h = ReadRecorder({"lr": 0.1, "wd": 1e-4, "momentum": 0.9})
    assert h["lr"] == 0.1 and h.get("momentum") == 0.9
    assert unread(h, h) == ["wd"]
    copied = ReadRecorder(h)  # a copy by the worker or the base class reads nothing
    assert copied.read == set() and h.read == {"lr", "momentum"}
    assert dict(copied.items()) == h and copied.read == {"lr", "wd", "momentum"}
    assert unread(["x"], h, {"x": 1}) == []  # a plain dict of the trainable's own: assume read


@pytest.mark.parametrize("executor", ["inprocess", "process"])
def test_a_trainable_that_reads_everything_gets_no_warning(tmp_path: Path, executor: str) -> None:
    from _trainables import Quad

    space = {"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)}
    firepbt.run(
        Quad, space, total_steps=10, population=2, ready_every=5,
        executor=executor, workers=2, run_dir=tmp_path / "r",
    )  # fmt: skip
    assert _warnings(tmp_path / "r") == []
