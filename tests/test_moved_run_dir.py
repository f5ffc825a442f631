"""A run directory moved after the run (or seen at another path) still loads its best model,
replays and resumes: checkpoint paths are stored relative to it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from _runs import StopAfter

import firepbt
from firepbt import Uniform
from firepbt.examples.toy import Toy

SPACE = {"h0": Uniform(0.0, 1.0), "h1": Uniform(0.0, 1.0)}
OPTIONS = {"total_steps": 40, "population": 4, "ready_every": 10, "seed": 3, "progress": False}


def _run(run_dir: Path, **extra: object) -> firepbt.RunResult:
    return firepbt.run(Toy, SPACE, run_dir=run_dir, executor="inprocess", **OPTIONS, **extra)


def test_paths_are_stored_relative_to_the_run_directory(tmp_path: Path) -> None:
    _run(tmp_path / "run")
    with sqlite3.connect(tmp_path / "run" / "firepbt.sqlite") as c:
        paths = [p for (p,) in c.execute("SELECT path FROM checkpoints")]
    # the runner's names relative to the run directory, which a row keeps as NULL
    assert paths and all(p is None for p in paths), paths[:3]


def test_a_moved_run_directory_loads_replays_and_resumes(tmp_path: Path) -> None:
    reference = _run(tmp_path / "reference")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "run", callbacks=[StopAfter(9)])
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(tmp_path / "run", moved)
    resumed = firepbt.resume(moved, progress=False)
    assert resumed.run_dir == moved
    assert (resumed.best_member, resumed.best_score) == (
        reference.best_member,
        reference.best_score,
    )
    assert resumed.checkpoint is not None and Path(resumed.checkpoint[0]).is_relative_to(moved)
    shutil.move(moved, tmp_path / "again")
    result = firepbt.resume(tmp_path / "again", progress=False)  # finished: read back
    best = result.load_best(Toy)
    assert best.evaluate() == pytest.approx(result.best_score)
    replayed = firepbt.replay(tmp_path / "again", seeds=1)
    assert replayed.member == result.best_member and len(replayed.runs) == 1


def test_status_counts_only_the_checkpoints_really_on_disk(tmp_path: Path) -> None:
    import subprocess
    import sys

    _run(tmp_path / "run")
    files = sorted((tmp_path / "run" / "checkpoints").rglob("*.ckpt"))
    files[0].unlink()
    done = subprocess.run(
        [sys.executable, "-m", "firepbt.cli", "status", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    expected = f"checkpoints: {len(files) - 1} on disk (1 recorded ones missing from"
    assert expected in done.stdout, done.stdout[-500:]
