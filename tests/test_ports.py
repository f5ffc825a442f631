"""Ordinary PyTorch code, ported as people write it (``_digits``: dropout, a shuffling
DataLoader, SGD with momentum, with and without a cosine schedule), is exact: two runs with the
same seed on a 2-worker pool record identical points, a replay reproduces the best member's final
metrics, and the optimizer ran, in every segment, with the recorded lr (times the schedule's
shape) and momentum."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _digits import BUDGET, Digits, DigitsCosine
from _port_checks import finished_segments, recorded_points

import firepbt
from firepbt import LogUniform, Store, Uniform, replay

SPACE = {"lr": LogUniform(0.01, 0.3), "momentum": Uniform(0.5, 0.95)}


def _run(cls: type, run_dir: Path) -> firepbt.RunResult:
    return firepbt.run(
        cls,
        SPACE,
        total_steps=BUDGET,
        population=6,
        ready_every=50,
        eval_every=25,
        metric="accuracy",
        mode="max",
        seed=5,
        workers=2,
        run_dir=run_dir,
        progress=False,
    )


@pytest.mark.parametrize("cls", [Digits, DigitsCosine], ids=["plain", "cosine"])
def test_a_digits_port_repeats_replays_and_uses_what_was_recorded(
    tmp_path: Path, cls: type
) -> None:
    first = _run(cls, tmp_path / "a")
    second = _run(cls, tmp_path / "b")
    points = recorded_points(first.run_dir)
    assert len(points) == 6 * BUDGET // 25
    assert points == recorded_points(second.run_dir)  # the same seed: identical points
    assert (first.best_member, first.schedule) == (second.best_member, second.schedule)

    (again,) = replay(first.run_dir, "best").runs
    assert again.final.metrics == first.metrics  # exactly

    store = Store.open(first.run_dir)
    exploits = checked = 0
    for seg, exploit in finished_segments(store):
        exploits += exploit
        for p in store.segment_points(seg.id):
            lr = seg.hyperparameters["lr"]
            if cls is DigitsCosine:
                epoch = int(p.metrics["epoch"])
                assert epoch == p.step - 1
                lr *= (1 + math.cos(math.pi * epoch / BUDGET)) / 2
            assert p.metrics["lr_used"] == pytest.approx(lr, rel=1e-9)
            assert p.metrics["momentum_used"] == seg.hyperparameters["momentum"]
            checked += 1
    store.close()
    assert checked == len(points) and exploits > 0
