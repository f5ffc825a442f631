"""The digits port as a Lightning module (``_lightning_digits``), through
``firepbt.lightning.LightningTrainable``: two runs with the same seed on a 2-worker pool record
identical points, a replay reproduces the best member's final metrics, the optimizer ran with the
recorded lr (times the cosine's shape over the run's budget) and momentum, the glue is short,
and the best member leaves as a Lightning checkpoint."""

from __future__ import annotations

import inspect
import math
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("lightning")

import _lightning_digits
from _lightning_digits import Digits, DigitsModule
from _port_checks import finished_segments, recorded_points

import firepbt
from firepbt import LogUniform, Store, Uniform, replay

SPACE = {"lr": LogUniform(0.01, 0.3), "momentum": Uniform(0.5, 0.95)}
BUDGET = 150


def _run(run_dir: Path) -> firepbt.RunResult:
    return firepbt.run(
        Digits,
        SPACE,
        total_steps=BUDGET,
        population=4,
        ready_every=50,
        eval_every=25,
        metric="val_acc",
        mode="max",
        seed=5,
        workers=2,
        run_dir=run_dir,
        progress=False,
    )


def test_a_lightning_port_repeats_replays_and_uses_what_was_recorded(tmp_path: Path) -> None:
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("firepbt-*.ckpt"))
    first = _run(tmp_path / "a")
    second = _run(tmp_path / "b")
    points = recorded_points(first.run_dir)
    assert len(points) == 4 * BUDGET // 25
    assert points == recorded_points(second.run_dir)
    assert (first.best_member, first.schedule) == (second.best_member, second.schedule)
    assert first.warnings == ()

    (again,) = replay(first.run_dir, "best").runs
    assert again.final.metrics == first.metrics

    store = Store.open(first.run_dir)
    exploits = checked = 0
    for seg, exploit in finished_segments(store):
        exploits += exploit
        for p in store.segment_points(seg.id):
            shape = (1 + math.cos(math.pi * (p.step - 1) / BUDGET)) / 2  # the last step's
            lr = seg.hyperparameters["lr"] * shape
            assert p.metrics["lr_used"] == pytest.approx(lr, rel=1e-6)  # logged as float32
            assert p.metrics["momentum_used"] == pytest.approx(
                seg.hyperparameters["momentum"], rel=1e-6
            )
            checked += 1
    store.close()
    assert checked == len(points) and exploits > 0
    logs = "".join(f.read_text() for f in (first.run_dir / "logs").glob("pid-*.log"))
    assert "not resumable" not in logs  # mid-epoch segments resume cleanly

    best = first.load_best(Digits)
    best.save_lightning_checkpoint(tmp_path / "best.ckpt")
    module = DigitsModule.load_from_checkpoint(tmp_path / "best.ckpt")
    assert module.hparams.lr == first.hyperparameters["lr"]  # built with the best's own values
    best.close()
    assert set(scratch.glob("firepbt-*.ckpt")) <= before  # resume files removed once read


def test_the_glue_is_fifteen_lines_or_fewer() -> None:
    source = inspect.getsource(_lightning_digits.Digits)
    lines = [line for line in source.splitlines() if line.strip()]
    assert len(lines) <= 15, source


def test_a_member_goes_on_alike_kept_alive_or_rebuilt_after_a_change() -> None:
    from firepbt import random_state
    from firepbt.checkpoints import MemberState
    from firepbt.execution.worker import build

    before, after = {"lr": 0.05, "momentum": 0.9}, {"lr": 0.08, "momentum": 0.9}
    with random_state.kept():
        kept = build(Digits, dict(before), 7, None)
        kept.total_steps = 100
        kept.set_hyperparameters(dict(before))
        kept.train(20)
        state = MemberState(kept.save(), random_state.capture())
        kept.set_hyperparameters(dict(after))  # explored, weights kept (no exploit)
        kept.train(20)
        on_the_same_worker = kept.evaluate()
        rebuilt = build(Digits, dict(after), 7, state)  # the same segment on another worker
        rebuilt.total_steps = 100
        rebuilt.set_hyperparameters(dict(after))
        rebuilt.train(20)
        assert rebuilt.evaluate() == on_the_same_worker
        kept.close()
        rebuilt.close()


def test_options_firepbt_sets_are_refused_and_callbacks_are_kept() -> None:
    import lightning.pytorch as pl

    class Counting(pl.Callback):
        batches = 0

        def on_train_batch_end(self, *args: object) -> None:
            Counting.batches += 1

    class Own(Digits):
        trainer_options = {"max_epochs": 1}

    class WithCallback(Digits):
        trainer_options = {"callbacks": [Counting()]}

    own = Own({"lr": 0.05, "momentum": 0.9}, seed=0)
    with pytest.raises(ValueError, match="firepbt sets max_epochs itself"):
        own.train(5)
    own.close()
    member = WithCallback({"lr": 0.05, "momentum": 0.9}, seed=0)
    member.train(5)
    member.evaluate()
    assert Counting.batches == 5
    member.close()
