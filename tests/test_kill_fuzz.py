"""A kill/resume fuzz: the controller (alone, or with its workers) is SIGKILLed at random times,
including the first milliseconds of a run and during a resume, then resumed to the end. Every
run completes with a consistent store; a synchronous run ends exactly like the uninterrupted one
(an asynchronous one is not bit-exact after a resume: which member is ready first depends on
timing). ``FIREPBT_FUZZ_KILLS`` sets the kills per synchronous mode (default 24; set more for a
deeper search)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _runs import nqm_toml
from test_resume import _check_consistent

import firepbt
from firepbt import Store

KILLS = int(os.environ.get("FIREPBT_FUZZ_KILLS", "24"))
STEPS = 400


def _config(folder: Path, synchrony: str) -> Path:
    path = folder / "run.toml"
    path.write_text(
        nqm_toml(
            folder / "run",
            seed=5,
            eval_every=10,
            dim=30,
            strategy={"name": "pbt", "population": 4, "ready_every": 50, "synchrony": synchrony},
            steps=STEPS,
            executor={"kind": "process", "workers": 2},
        )
    )
    return path


def _popen(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "firepbt.cli", *args, "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen[bytes], whole_group: bool, db: Path, points: int = -1,
          after: float = 0.0) -> None:  # fmt: skip
    """SIGKILL the controller (and its workers, with ``whole_group``) once the store ``db``
    holds ``points`` points, or (``points < 0``) ``after`` seconds in, unless it ended first."""
    deadline = time.monotonic() + (after if points < 0 else 120.0)
    while proc.poll() is None and time.monotonic() < deadline:
        if points >= 0 and db.exists():
            try:
                if len(_points_of(db)) >= points:
                    break
            except sqlite3.Error:  # the store is being made
                pass
        time.sleep(0.002)
    if proc.poll() is None:
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    proc.wait(timeout=30)


def _points_of(db: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT member, step FROM points").fetchall()


def _result(run_dir: Path) -> tuple[int, float, list[tuple[int, int, float]]]:
    store = Store.open(run_dir)
    result = firepbt.results.result_from_store(store, run_dir)
    store.close()
    schedule = [(e.from_step, e.to_step, e.hyperparameters["lr"]) for e in result.schedule]
    return result.best_member, result.best_score, schedule


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, tuple]]:
    """Each mode's uninterrupted run: its number of points (kill points are drawn below it) and
    its result."""
    out = {}
    for synchrony in ("sync", "async"):
        folder = tmp_path_factory.mktemp(synchrony)
        assert _popen("run", str(_config(folder, synchrony))).wait(timeout=300) == 0
        total = len(_points_of(folder / "run" / "firepbt.sqlite"))
        out[synchrony] = (total, _result(folder / "run"))
    return out


@pytest.mark.parametrize("synchrony", ["sync", "async"])
def test_random_kills_then_resume(
    tmp_path: Path, references: dict[str, tuple[int, tuple]], synchrony: str
) -> None:
    total, reference = references[synchrony]
    rng = np.random.default_rng(11 if synchrony == "sync" else 12)
    kinds = ["controller and workers", "controller alone", "again during the resume"]
    for i in range(KILLS):
        kind = kinds[i % len(kinds)]
        folder = tmp_path / f"k{i}"
        folder.mkdir()
        config = _config(folder, synchrony)
        run_dir = folder / "run"
        db = run_dir / "firepbt.sqlite"
        whole = kind != "controller alone"
        # a quarter of the kills come in the first 0.4 s (the interpreter starting, the store
        # being made, the first segments submitted); the rest after a random number of points
        if i % 4 == 0:
            when = f"{rng.uniform(0.0, 0.4):.3f} s"
            _kill(_popen("run", str(config)), whole, db, after=float(when.split()[0]))
        else:
            when = f"{int(rng.integers(0, total))} points"
            _kill(_popen("run", str(config)), whole, db, points=int(when.split()[0]))
        held = len(_points_of(db)) if db.exists() else -1
        if os.environ.get("FIREPBT_FUZZ_VERBOSE"):
            print(f"{synchrony} kill {i} ({kind}) at {when}: {held} points held")
        if held < 0:  # killed before the store was in place: nothing to resume
            assert _popen("run", str(config)).wait(timeout=300) == 0
            assert not list(run_dir.glob(".*.creating*")), "a half-made store was left"
        else:
            if kind == "again during the resume":
                more = held + int(rng.integers(1, max(2, total - held)))
                _kill(_popen("resume", str(run_dir)), True, db, points=more)
            assert _popen("resume", str(run_dir)).wait(timeout=300) == 0, f"kill {i} ({kind})"
        _check_consistent(run_dir)
        if synchrony == "sync":
            assert _result(run_dir) == reference, f"kill {i} ({kind}) at {when}"
        else:
            assert _result(run_dir)[2][-1][1] == STEPS
