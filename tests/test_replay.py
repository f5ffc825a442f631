"""Replaying a found schedule from scratch reproduces the lineage's curve (deterministic
trainable, same seed and data order), through exploits and evaluator hand-overs."""

from __future__ import annotations

from pathlib import Path

import pytest
from _runs import nqm_run

from firepbt import Store, replay
from firepbt.errors import ConfigError
from firepbt.lineage import segment_chain


def _run(tmp_path: Path, **kw):
    options = dict(total_steps=400, population=6, ready_every=50, eval_every=10, seed=4)
    options.update(kw)
    return nqm_run(tmp_path / "run", dim=50, **options)


def _lineage_curve(run_dir: Path, member: int):
    store = Store.open(run_dir)
    chain = [s for s in segment_chain(store, member) if s.end_step > s.start_step]
    points = [p for s in chain for p in store.segment_points(s.id)]
    store.close()
    return chain, points


@pytest.mark.parametrize("strategy", ["pbt", "fire"])
def test_replay_reproduces_the_lineage_curve_exactly(tmp_path: Path, strategy: str) -> None:
    extra = {"subpopulations": 3, "evaluators": 2} if strategy == "fire" else {}
    result = _run(tmp_path, strategy=strategy, **extra)
    chain, original = _lineage_curve(result.run_dir, result.best_member)
    assert len({s.member for s in chain}) > 1, "the best lineage should cross members"
    replayed = replay(result.run_dir, "best", seeds=1)
    assert replayed.member == result.best_member
    (run,) = replayed.runs
    assert [p.step for p in run.points] == [p.step for p in original]
    assert [p.score for p in run.points] == [p.score for p in original]  # exact
    assert run.final.score == result.best_score
    store = Store.open(result.run_dir)
    (row,) = store.replays()
    assert row.status == "done" and row.member == result.best_member
    assert store.replay_points(row.id) == run.points
    store.close()


def test_other_seeds_differ_and_are_all_recorded(tmp_path: Path) -> None:
    result = _run(tmp_path, strategy="pbt", total_steps=200)
    replayed = replay(result.run_dir, result.best_member, seeds=3)
    finals = [r.final.score for r in replayed.runs]
    assert finals[0] == result.best_score
    assert len(set(finals)) == 3
    assert len({r.seed for r in replayed.runs}) == 3
    text = replayed.describe()  # one line per replay, its last point's metrics
    assert text.startswith(f"replayed the schedule of member {result.best_member} (")
    for run in replayed.runs:
        assert f"seed {run.seed}: step 200: loss={run.final.score:.6g}, expected_loss=" in text
    shown = repr(replayed)  # short: the curves' last points, not every point
    assert len(shown) < 1000 and f"{len(replayed.runs[0].points)} points" in shown
    store = Store.open(result.run_dir)
    assert [r.seed for r in store.replays()] == [r.seed for r in replayed.runs]
    store.close()


def test_split_needs_the_trainable_to_support_it(tmp_path: Path) -> None:
    result = _run(tmp_path, strategy="random", total_steps=100)
    with pytest.raises(ValueError, match="has no split 'trainval'"):
        replay(result.run_dir, "best", split="trainval")
    store = Store.open(result.run_dir)
    assert [r.status for r in store.replays()] == ["failed"]
    store.close()


def test_bad_requests(tmp_path: Path) -> None:
    result = _run(tmp_path, strategy="random", total_steps=100)
    with pytest.raises(ConfigError, match="seeds"):
        replay(result.run_dir, "best", seeds=0)
    with pytest.raises(ConfigError, match="member 99"):
        replay(result.run_dir, 99)


def test_replay_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from firepbt.cli import main

    result = _run(tmp_path, strategy="pbt", total_steps=100)
    assert main(["replay", str(result.run_dir), "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert f"member {result.best_member}" in out and out.count("seed ") == 2
    assert main(["replay", str(tmp_path / "nothing")]) == 2
    assert "holds no firepbt run" in capsys.readouterr().err
