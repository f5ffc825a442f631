"""A scheduler returned by ``TorchTrainable.build()`` is firepbt's to manage: checkpointed with
the member, a tuned lr is its base and the schedule's shape multiplies it, through exploits; the
optimizer's param groups hold, at every step, what the run recorded. One attached but not
returned is a warning; one that keeps learning rates of its own is refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _port_checks import finished_segments
from _scheduled import TOTAL, Cosine, OneCycle, Unmanaged, WarmupCosine

import firepbt
from firepbt import LogUniform, Store, Uniform
from firepbt.errors import RunFailed

SPACE = {"lr": LogUniform(0.01, 0.3), "momentum": Uniform(0.5, 0.95)}


def _run(cls: type, run_dir: Path, **kw: object) -> firepbt.RunResult:
    options: dict[str, object] = dict(
        total_steps=TOTAL,
        population=4,
        ready_every=20,
        eval_every=10,
        seed=2,
        workers=2,
        metric="loss",
        mode="min",
        progress=False,
    )
    options.update(kw)
    return firepbt.run(cls, SPACE, run_dir=run_dir, **options)  # type: ignore[arg-type]


def cosine(epoch: int, horizon: int = TOTAL) -> float:
    return (1 + math.cos(math.pi * epoch / horizon)) / 2


def warmup_cosine(epoch: int) -> float:
    if epoch < 20:
        return 0.1 + 0.9 * epoch / 20
    return cosine(epoch - 20, TOTAL - 20)


@pytest.mark.parametrize(
    ("cls", "shape"), [(Cosine, cosine), (WarmupCosine, warmup_cosine)], ids=["cosine", "warmup"]
)
def test_the_optimizer_used_the_recorded_lr_times_the_shape_and_momentum(
    tmp_path: Path, cls: type, shape: object
) -> None:
    result = _run(cls, tmp_path / "run")
    store = Store.open(result.run_dir)
    checked = exploited = 0
    for seg, exploit in finished_segments(store):
        exploited += exploit
        for p in store.segment_points(seg.id):
            epoch = int(p.metrics["epoch"])
            assert epoch == p.step - 1  # the scheduler went on from the donor's step
            lr = seg.hyperparameters["lr"] * shape(epoch)  # type: ignore[operator]
            assert p.metrics["lr_used"] == pytest.approx(lr, rel=1e-9)
            assert p.metrics["bias_lr_used"] == pytest.approx(lr / 10, rel=1e-9)
            assert p.metrics["momentum_used"] == seg.hyperparameters["momentum"]
            assert p.metrics["decay_used"] == 0.0
            checked += 1
    store.close()
    assert checked == 4 * TOTAL // 10 and exploited > 0
    assert result.warnings == ()


def test_a_scheduler_is_saved_and_loaded_with_the_member() -> None:
    a = Cosine({"lr": 0.2, "momentum": 0.9}, seed=0)
    a.train(30)
    state = a.save()
    b = Cosine({"lr": 0.05, "momentum": 0.8}, seed=1)
    b.load(state)
    assert b.scheduler is not None and b.scheduler.last_epoch == 30
    weight, bias = b.optimizer.param_groups
    assert weight["lr"] == pytest.approx(0.05 * cosine(30), rel=1e-12)  # b's base, a's shape
    assert bias["lr"] == pytest.approx(0.005 * cosine(30), rel=1e-12)
    assert b.scheduler.get_last_lr()[0] == weight["lr"]
    b.train(1)
    assert b.scheduler.get_last_lr()[0] == pytest.approx(0.05 * cosine(31), rel=1e-9)


def test_an_unmanaged_scheduler_is_a_warning(tmp_path: Path) -> None:
    result = _run(Unmanaged, tmp_path / "run", total_steps=40)
    (warning,) = result.warnings
    assert warning.startswith("Unmanaged: a learning-rate scheduler is attached to the optimizer")
    assert "Return (model, optimizer, scheduler) from build()" in warning
    assert "Return (model, optimizer, scheduler)" in result.describe()


def test_a_scheduler_with_learning_rates_of_its_own_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="OneCycleLR, which keeps learning rates of its own"):
        OneCycle({"lr": 0.1, "momentum": 0.9}, seed=0)
    with pytest.raises(RunFailed, match="OneCycleLR, which keeps learning rates of its own"):
        _run(OneCycle, tmp_path / "run", total_steps=40)
