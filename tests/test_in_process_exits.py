"""A trainable that calls sys.exit() or raises KeyboardInterrupt in the controller's own process
(executor "inprocess") leaves a recorded, clear state instead of a silently dead run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from _runs import toy_toml
from _trainables import Quad

import firepbt
from firepbt.cli import main
from firepbt.errors import RunFailed
from firepbt.store import Store

RUN: dict[str, Any] = dict(
    total_steps=8, population=3, ready_every=4, executor="inprocess", seed=0, strategy="random"
)


def _space() -> dict[str, firepbt.Uniform]:
    return {"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)}


class ExitsOnce(Quad):
    """Member 1's trainable calls sys.exit(3) past step 5."""

    def train(self, steps: int) -> None:
        super().train(steps)
        if self.seed_member == 1 and self.step > 5:
            sys.exit(3)

    @property
    def seed_member(self) -> int:
        return int(self.hyperparameters.get("member", -1))


class Interrupted(Quad):
    def train(self, steps: int) -> None:
        super().train(steps)
        if self.step > 5:
            raise KeyboardInterrupt


def test_sys_exit_in_a_trainable_is_a_recorded_failure(tmp_path: Path) -> None:
    space = {**_space(), "member": firepbt.Choice([1])}
    with pytest.raises(RunFailed, match="SystemExit"):
        firepbt.run(ExitsOnce, space, run_dir=tmp_path / "r", **RUN)
    store = Store.open(tmp_path / "r")
    failures = store.failures()
    status = store.meta("status")
    store.close()
    assert status == "failed"
    assert failures and all(k == "raised" and "SystemExit(3)" in m for _, _, k, m in failures)


def test_keyboard_interrupt_leaves_an_interrupted_resumable_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(KeyboardInterrupt):
        firepbt.run(Interrupted, _space(), run_dir=tmp_path / "r", **RUN)
    store = Store.open(tmp_path / "r")
    assert store.meta("status") == "interrupted"
    store.close()
    result = firepbt.resume(tmp_path / "r", trainable=Quad)  # the cause removed, it goes on
    assert result.best_step == 8


def test_the_cli_says_so_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    config = tmp_path / "run.toml"
    config.write_text(
        toy_toml(
            tmp_path / "r",
            trainable="test_in_process_exits:Interrupted",
            strategy={"name": "random", "population": 2},
            steps=8,
        )
    )
    assert main(["run", str(config), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
