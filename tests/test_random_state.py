"""Each member's global random state is its own: seeded from its seed, kept with its checkpoint,
restored wherever its next segment runs. Ordinary code drawing from ``random``, numpy's and
torch's global generators repeats exactly and replays exactly."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from _global_noise import GlobalNoise

import firepbt
from firepbt import LogUniform, Store, replay
from firepbt import random_state as rs
from firepbt.checkpoints import MemberState, member_state, read_checkpoint
from firepbt.lineage import segment_chain

SPACE = {"lr": LogUniform(0.01, 0.3)}


def _run(run_dir: Path, **kw: object) -> firepbt.RunResult:
    options: dict[str, object] = dict(
        total_steps=120, population=6, ready_every=20, eval_every=10, seed=3, workers=2
    )
    options.update(kw)
    return firepbt.run(GlobalNoise, SPACE, run_dir=run_dir, progress=False, **options)  # type: ignore[arg-type]


def _points(run_dir: Path) -> list[tuple[int, int, float]]:
    store = Store.open(run_dir)
    try:
        return sorted((member, p.step, p.score) for member, p in store.points())
    finally:
        store.close()


def test_two_runs_on_two_workers_record_identical_points(tmp_path: Path) -> None:
    first = _run(tmp_path / "a")
    second = _run(tmp_path / "b")
    a, b = _points(first.run_dir), _points(second.run_dir)
    assert len(a) == 6 * 12 and a == b
    assert first.best_member == second.best_member
    assert first.schedule == second.schedule


@pytest.mark.parametrize("executor", ["inprocess", "process"])
def test_replay_reproduces_a_global_random_lineage_exactly(tmp_path: Path, executor: str) -> None:
    workers = 1 if executor == "inprocess" else 2
    result = _run(tmp_path / "run", executor=executor, workers=workers)
    store = Store.open(result.run_dir)
    chain = [s for s in segment_chain(store, result.best_member) if s.end_step > s.start_step]
    original = [p for s in chain for p in store.segment_points(s.id)]
    store.close()
    assert len({s.member for s in chain}) > 1, "the lineage should cross an exploit"
    (run,) = replay(result.run_dir, "best").runs
    assert [p.score for p in run.points] == [p.score for p in original]


def test_the_callers_generators_are_left_as_they_were(tmp_path: Path) -> None:
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    before = rs.capture()
    _run(tmp_path / "run", executor="inprocess", workers=1, total_steps=40)
    after = rs.capture()
    assert after["python"] == before["python"]
    assert np.array_equal(after["numpy"][1], before["numpy"][1])
    assert torch.equal(after["torch"], before["torch"])


def test_a_checkpoint_holds_the_member_random_state(tmp_path: Path) -> None:
    result = _run(tmp_path / "run", total_steps=40)
    assert result.checkpoint is not None
    held = read_checkpoint(*result.checkpoint)
    assert isinstance(held, MemberState) and held.state.keys() == {"x"}
    assert held.random is not None and {"python", "numpy", "torch"} <= held.random.keys()
    assert member_state({"x": 1.0}) == MemberState({"x": 1.0})  # an older checkpoint
    best = result.load_best(GlobalNoise)
    assert best.evaluate() == result.best_score


def test_seeding_and_restoring_cover_every_loaded_generator() -> None:
    with rs.kept():
        rs.seed_all(5)
        state = rs.capture()
        draws = (random.random(), np.random.rand(), torch.rand(()).item())
        rs.seed_all(6)
        assert (random.random(), np.random.rand(), torch.rand(()).item()) != draws
        rs.restore(state)
        assert (random.random(), np.random.rand(), torch.rand(()).item()) == draws
