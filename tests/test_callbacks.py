"""Callbacks hear of every point, decision and failure the runner records, in this process; one
that raises is recorded as a warning and not called again, and the run goes on; a resume calls
them with what it records from then on, never with the replayed events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _runs import fault_run, nqm_run

import firepbt
from firepbt import Callback, MemberFailure, MemberPoint, RunStart
from firepbt.decisions import Decision, record_of
from firepbt.errors import ConfigError
from firepbt.store import Store

NQM = dict(dim=10, total_steps=120, population=4, ready_every=20, eval_every=10, seed=3)


class Recorder(Callback):
    """Keeps what it hears of."""

    def __init__(self) -> None:
        self.starts: list[RunStart] = []
        self.points: list[MemberPoint] = []
        self.decisions: list[Decision] = []
        self.failures: list[MemberFailure] = []
        self.ends: list[str] = []

    def on_start(self, run: RunStart) -> None:
        self.starts.append(run)

    def on_point(self, point: MemberPoint) -> None:
        self.points.append(point)

    def on_decision(self, decision: Decision) -> None:
        self.decisions.append(decision)

    def on_failure(self, failure: MemberFailure) -> None:
        self.failures.append(failure)

    def on_end(self, status: str) -> None:
        self.ends.append(status)


def _read(run_dir: Path) -> tuple[list[Any], list[Any], list[Any]]:
    store = Store.open(run_dir)
    try:
        points = [(m, p.step, p.score, p.metrics) for m, p in store.points()]
        decisions = [
            (d.member, d.step, d.kind, d.donor, d.hyperparameters) for d in store.decisions()
        ]
        segments = {s.id: s.hyperparameters for s in store.segments()}
        return points, decisions, [segments, store.failures()]
    finally:
        store.close()


def _heard(recorder: Recorder) -> tuple[list[Any], list[Any]]:
    points = [(p.member, p.step, p.score, dict(p.metrics)) for p in recorder.points]
    records = [record_of(d) for d in recorder.decisions]
    decisions = [(r.member, r.step, r.kind, r.donor, r.hyperparameters) for r in records]
    return points, decisions


def test_a_callback_hears_every_recorded_point_and_decision(tmp_path: Path) -> None:
    recorder = Recorder()
    nqm_run(tmp_path / "run", callbacks=[recorder], **NQM)
    points, decisions, (segments, _) = _read(tmp_path / "run")
    heard_points, heard_decisions = _heard(recorder)
    assert heard_points == points
    assert heard_decisions == decisions
    assert any(kind == "exploit" for _, _, kind, _, _ in decisions)
    # each point carries the hyperparameters its segment trained with
    assert all(p.hyperparameters == segments[p.segment] for p in recorder.points)
    assert [s.resumed for s in recorder.starts] == [False]
    assert recorder.starts[0].run_dir == tmp_path / "run"
    assert recorder.ends == ["finished"]


def test_a_callback_hears_each_failure(tmp_path: Path, quad_space: dict[str, Any]) -> None:
    recorder = Recorder()
    fault_run(
        tmp_path / "run", quad_space, "fail_at", 2, population=2, total_steps=8,
        ready_every=4, executor="inprocess", max_retries=1, callbacks=[recorder],
    )  # fmt: skip
    _, _, (_, failures) = _read(tmp_path / "run")
    heard = [(f.member, f.step, f.kind, f.message) for f in recorder.failures]
    assert heard == [f for f in failures if f[2] == "raised"]
    assert [f.final for f in recorder.failures] == [False, True]
    assert recorder.ends == ["finished"]


class Raises(Callback):
    def __init__(self) -> None:
        self.calls = 0

    def on_point(self, point: MemberPoint) -> None:
        self.calls += 1
        if point.step >= 40:
            raise OSError("the log server went away")


def test_a_callback_that_raises_is_recorded_and_disabled_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    raising, recorder = Raises(), Recorder()
    with pytest.warns(RuntimeWarning, match="callback Raises raised OSError in on_point"):
        result = nqm_run(tmp_path / "run", callbacks=[raising, recorder], **NQM)
    assert result.best_step == NQM["total_steps"]
    store = Store.open(tmp_path / "run")
    try:
        warnings = [f for f in store.failures() if f[2] == "callback"]
        assert store.meta("status") == "finished"
        points = store.points()
    finally:
        store.close()
    assert len(warnings) == 1
    member, step, _, message = warnings[0]
    assert step == 40
    assert "the log server went away" in message and "not called again" in message
    first = next(p for p in recorder.points if p.step >= 40)
    assert member == first.member
    # called up to the point that raised, never after; the others hear everything
    assert raising.calls == recorder.points.index(first) + 1
    assert len(recorder.points) == len(points)


class StopAfter(Callback):
    """Stands for a Ctrl-C after ``n`` decisions (after the callbacks before it heard each)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_decision(self, decision: Decision) -> None:
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt


def test_a_resume_calls_callbacks_with_new_events_only(tmp_path: Path) -> None:
    first, second = Recorder(), Recorder()
    with pytest.raises(KeyboardInterrupt):
        nqm_run(tmp_path / "run", callbacks=[first, StopAfter(12)], **NQM)
    assert first.ends == ["interrupted"]
    firepbt.resume(tmp_path / "run", callbacks=[second])
    assert [s.resumed for s in second.starts] == [True] and second.ends == ["finished"]
    points, decisions, _ = _read(tmp_path / "run")
    heard_first, heard_second = _heard(first), _heard(second)
    assert heard_first[0] and heard_second[0]
    assert heard_first[0] + heard_second[0] == points
    assert heard_first[1] + heard_second[1] == decisions


def test_callbacks_must_be_callbacks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"callbacks\[1\]: expected a firepbt.Callback"):
        nqm_run(tmp_path / "run", callbacks=[Recorder(), print], **NQM)
    with pytest.raises(ConfigError, match="callbacks: expected a list of firepbt.Callback"):
        nqm_run(tmp_path / "run", callbacks=Recorder(), **NQM)
    with pytest.raises(ConfigError, match="logging: expected a table of writers, got 'tb'"):
        nqm_run(tmp_path / "run", logging="tb", **NQM)
    assert not (tmp_path / "run").exists()


def test_import_firepbt_leaves_the_logging_packages_out() -> None:
    code = (
        "import sys, firepbt, firepbt.loggers; "
        "print(','.join(m for m in ('tensorboard', 'mlflow', 'wandb') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


class InterruptedAtStart(Callback):
    def on_start(self, run: RunStart) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_while_a_callback_starts_still_ends_every_callback(tmp_path: Path) -> None:
    # Another callback may be connecting to a tracking server when Ctrl-C comes: every
    # callback is told the run ended, so none leaves a run open.
    heard = Recorder()
    with pytest.raises(KeyboardInterrupt):
        nqm_run(tmp_path / "r", **NQM, callbacks=[heard, InterruptedAtStart()])
    assert heard.ends == ["interrupted"]
    assert len(heard.starts) == 1
