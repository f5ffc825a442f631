"""A tiny random BERT under Hugging Face's Trainer (``_tiny_bert``), through
``firepbt.huggingface.HFTrainable``: two runs with the same seed on a 2-worker pool record
identical points, a replay reproduces the best member's final metrics, the optimizer ran with the
recorded learning rate (times the warm-up-then-linear shape over the run's budget, not the
segment's) and weight decay (0 in the no-decay group), the glue is short, and the best member
leaves as a directory that ``from_pretrained`` loads."""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("transformers")

import _tiny_bert
from _port_checks import finished_segments, recorded_points
from _tiny_bert import TinyBert
from transformers import BertForSequenceClassification

import firepbt
from firepbt import LogUniform, Store, Uniform, replay

SPACE = {"learning_rate": LogUniform(1e-4, 3e-3), "weight_decay": Uniform(0.0, 0.1)}
BUDGET, WARMUP = 80, 5


class Probe(TinyBert):
    """The port, also reporting what its optimizer holds for the next step."""

    def evaluate(self):
        metrics = super().evaluate()
        decay, no_decay = self._run.trainer.optimizer.param_groups
        metrics.update(lr_next=decay["lr"], decay=decay["weight_decay"])
        metrics.update(no_decay=no_decay["weight_decay"], no_decay_lr=no_decay["lr"])
        return metrics


def shape(step: int) -> float:  # transformers' linear schedule with warm-up, over the budget
    if step < WARMUP:
        return step / WARMUP
    return max(0.0, (BUDGET - step) / (BUDGET - WARMUP))


def _run(run_dir: Path) -> firepbt.RunResult:
    return firepbt.run(
        Probe,
        SPACE,
        total_steps=BUDGET,
        population=4,
        ready_every=20,
        eval_every=10,
        metric="eval_accuracy",
        mode="max",
        seed=3,
        workers=2,
        run_dir=run_dir,
        progress=False,
    )


def test_a_tiny_bert_port_repeats_replays_and_uses_what_was_recorded(tmp_path: Path) -> None:
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("firepbt-hf-*"))
    first = _run(tmp_path / "a")
    second = _run(tmp_path / "b")
    points = recorded_points(first.run_dir)
    assert len(points) == 4 * BUDGET // 10
    assert points == recorded_points(second.run_dir)
    assert (first.best_member, first.schedule) == (second.best_member, second.schedule)
    assert first.warnings == ()

    (again,) = replay(first.run_dir, "best").runs
    assert again.final.metrics == first.metrics

    store = Store.open(first.run_dir)
    exploits = 0
    for seg, exploit in finished_segments(store):
        exploits += exploit
        h = seg.hyperparameters
        for p in store.segment_points(seg.id):
            lr = h["learning_rate"] * shape(p.step)
            assert p.metrics["lr_next"] == pytest.approx(lr, rel=1e-9, abs=1e-15)
            assert p.metrics["no_decay_lr"] == pytest.approx(lr, rel=1e-9, abs=1e-15)
            assert p.metrics["decay"] == h["weight_decay"] and p.metrics["no_decay"] == 0.0
    store.close()
    assert exploits > 0

    best = first.load_best(TinyBert)
    best.save_pretrained(tmp_path / "best")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "best")
    assert model.config.hidden_size == 32
    best.close()
    assert set(scratch.glob("firepbt-hf-*")) <= before  # workers removed their trainers' files


def test_the_glue_is_fifteen_lines_or_fewer() -> None:
    source = inspect.getsource(_tiny_bert.TinyBert)
    lines = [line for line in source.splitlines() if line.strip()]
    assert len(lines) <= 15, source


@pytest.mark.parametrize("name", ["per_device_train_batch_size", "seed", "max_steps"])
def test_names_that_cannot_be_tuned_are_refused(name: str) -> None:
    member = TinyBert({"learning_rate": 1e-3, name: 8}, seed=0)
    with pytest.raises(ValueError, match=rf"'{name}' cannot be tuned"):
        member.train(2)
    member.close()


def test_the_users_callbacks_are_kept() -> None:
    from transformers import TrainerCallback

    class Counting(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            Counting.steps += 1

    class WithCallback(TinyBert):
        def trainer_options(self):
            return {**super().trainer_options(), "callbacks": [Counting()]}

    member = WithCallback({"learning_rate": 1e-3}, seed=0)
    member.train(3)
    assert Counting.steps == 3
    member.close()
