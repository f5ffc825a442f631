"""``firepbt status`` tables: the best member is marked, FIRE roles are shown, and the best
member's schedule lists who trained each range of steps."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _runs import nqm_run
from rich.console import Console

import firepbt
from firepbt import Store, Trainable, Uniform
from firepbt.display import BEST_MARK, schedule_table, status_table
from firepbt.errors import ConfigError
from firepbt.examples.toy import Toy
from firepbt.lineage import schedule
from firepbt.store import Role

TOY_SPACE = {"h0": Uniform(0.0, 1.0, bounds=(0.0, 2.0)), "h1": Uniform(0.0, 1.0, bounds=(0.0, 2.0))}


class NeverFinite(Trainable):
    def train(self, steps: int) -> None:
        pass

    def evaluate(self) -> float:
        return math.nan

    def save(self) -> dict[str, Any]:
        return {}

    def load(self, state: dict[str, Any]) -> None:
        pass


def _render(*renderables: Any) -> str:
    console = Console(record=True, width=140)
    for r in renderables:
        console.print(r)
    return console.export_text()


def _row(text: str, first_cell: str) -> str:
    """The rendered table line whose first cell is ``first_cell``."""
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells and cells[0] == first_cell:
            return line
    raise AssertionError(f"no row {first_cell!r} in\n{text}")


@pytest.fixture(scope="module")
def pbt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[firepbt.RunResult, Store]]:
    run_dir = tmp_path_factory.mktemp("pbt") / "run"
    result = firepbt.run(
        Toy,
        TOY_SPACE,
        total_steps=40,
        population=4,
        ready_every=10,
        executor="inprocess",
        run_dir=run_dir,
        seed=3,
    )
    store = Store.open(run_dir)
    yield result, store
    store.close()


@pytest.fixture(scope="module")
def fire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[firepbt.RunResult, Store]]:
    run_dir = tmp_path_factory.mktemp("fire") / "run"
    result = nqm_run(
        run_dir,
        dim=20,
        total_steps=60,
        population=6,
        ready_every=10,
        eval_every=2,
        p_stat=0.1,
        success_test="levels",  # a hand-over to show comes sooner under the paper's test
        strategy="fire",
        subpopulations=2,
        evaluators=1,
        seed=6,
    )
    store = Store.open(run_dir)
    yield result, store
    store.close()


def test_status_marks_the_best_member_and_shows_no_roles_for_plain_pbt(
    pbt: tuple[firepbt.RunResult, Store],
) -> None:
    result, store = pbt
    text = _render(status_table(store))
    assert text.count(BEST_MARK) == 1
    assert f"{BEST_MARK} {result.best_member}" in _row(text, f"{BEST_MARK} {result.best_member}")
    for m in store.members():
        if m.id != result.best_member:
            assert "finished" in _row(text, str(m.id))
    assert "role" not in text and "P1" not in text
    assert "40/40" in text


def test_schedule_table_lists_the_best_members_schedule(
    pbt: tuple[firepbt.RunResult, Store],
) -> None:
    result, store = pbt
    table = schedule_table(store)
    assert table is not None
    text = _render(table)
    assert f"schedule of the best member (member {result.best_member})" in text
    entries = schedule(store, result.best_member)
    assert entries[0].from_step == 0 and entries[-1].to_step == 40
    for e in entries:
        line = _row(text, str(e.from_step))
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        assert cells[1] == str(e.to_step) and cells[2] == str(e.member)
        assert f"h0={e.hyperparameters['h0']:.4g}" in cells[3]
    assert "evaluator" not in text
    # the same ranges of hyperparameters as the run's result, split at least as finely
    assert {e.to_step for e in result.schedule} <= {e.to_step for e in entries}


def test_fire_status_shows_roles_and_schedule_marks_evaluators(
    fire: tuple[firepbt.RunResult, Store],
) -> None:
    result, store = fire
    text = _render(status_table(store))
    assert "role" in text
    for m in store.members():
        first = f"{BEST_MARK} {m.id}" if m.id == result.best_member else str(m.id)
        role = "evaluator" if m.role is Role.EVALUATOR else f"P{m.subpopulation + 1}"
        assert role in _row(text, first)
    assert {"P1", "P2", "evaluator"} <= set(text.split())
    assert text.count(BEST_MARK) == 1

    table = schedule_table(store)
    assert table is not None
    sched_text = _render(table)
    roles = {m.id: m.role for m in store.members()}
    entries = schedule(store, result.best_member)
    assert entries[0].from_step == 0 and entries[-1].to_step == 60
    assert all(a.to_step == b.from_step for a, b in zip(entries, entries[1:], strict=False))
    by_evaluator = [e for e in entries if roles[e.member] is Role.EVALUATOR]
    assert by_evaluator, "with this seed an evaluator's weights reach the best member"
    for e in entries:
        line = _row(sched_text, str(e.from_step))
        marked = f"{e.member} (evaluator)" in line
        assert marked == (roles[e.member] is Role.EVALUATOR)


def test_no_finite_score_means_no_schedule_and_no_mark(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        firepbt.run(
            NeverFinite,
            {"x": Uniform(0.0, 1.0)},
            total_steps=10,
            population=2,
            ready_every=5,
            executor="inprocess",
            run_dir=tmp_path / "run",
        )
    store = Store.open(tmp_path / "run")
    try:
        assert schedule_table(store) is None
        text = _render(status_table(store))
        assert BEST_MARK not in text and "10/10" in text
    finally:
        store.close()


def test_the_progress_line_says_what_happens_before_the_first_segment_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from firepbt import display

    shown: list[str] = []
    real = display.LiveProgress.__init__

    def recording(self: display.LiveProgress, *args: Any, **kwargs: Any) -> None:
        console = Console(file=io.StringIO(), width=200, force_terminal=False)
        real(self, *args, console=console, **kwargs)
        shown.append(kwargs.get("starting", ""))
        with console.capture() as captured:
            console.print(self._bar)  # the line as it reads before any update
        shown.append(captured.get())

    monkeypatch.setattr(display.LiveProgress, "__init__", recording)
    firepbt.run(
        Toy, TOY_SPACE, total_steps=4, population=2, ready_every=2, executor="inprocess",
        run_dir=tmp_path / "run", progress=True,
    )  # fmt: skip
    starting, line = shown
    assert starting == "training the first segments in this process: the bar moves each 2 steps"
    assert starting in line


def test_status_shows_members_waiting_for_a_worker_as_queued(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def snapshot(_: object) -> None:  # called as segments end, while the run runs
        store = Store.open(tmp_path / "run")
        try:
            text = _render(status_table(store))
        finally:
            store.close()
        rows = [line for line in text.splitlines() if re.match(r"^│ +(★ )?\d+ +│", line)]
        seen.append([status for status in ("queued", "training") for row in rows if status in row])

    firepbt.run(
        Toy, TOY_SPACE, total_steps=8, population=4, ready_every=2, executor="inprocess",
        run_dir=tmp_path / "run", progress=snapshot,
    )  # fmt: skip
    # in this process one segment runs at a time: the other training members wait for it
    assert seen and all(s.count("training") <= 1 for s in seen)
    assert any(s.count("queued") >= 2 for s in seen)
    store = Store.open(tmp_path / "run")
    try:
        assert "queued" not in _render(status_table(store))  # the run is over
    finally:
        store.close()


def test_status_of_a_run_whose_process_is_gone_says_stopped(tmp_path: Path) -> None:
    import subprocess
    import sys

    from firepbt.control.lock import LOCK_FILE

    firepbt.run(
        Toy, TOY_SPACE, total_steps=4, population=2, ready_every=2, executor="inprocess",
        run_dir=tmp_path / "run",
    )  # fmt: skip
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (tmp_path / "run" / LOCK_FILE).write_text(gone.stdout.strip())  # its holder has exited
    store = Store.open(tmp_path / "run")
    try:
        store.set_meta("status", "running")  # as a killed run leaves it
        store.set_meta("running", "0")
        text = _render(status_table(store))
    finally:
        store.close()
    assert "status: stopped (no process is running it" in text and "queued" not in text


def test_progress_names_the_phases_workers_starting_first_segments_running(
    tmp_path: Path,
) -> None:
    phases: list[str] = []
    firepbt.run(
        Toy, TOY_SPACE, total_steps=6, population=4, ready_every=2, workers=2,
        run_dir=tmp_path / "run", progress=lambda p: phases.append(p.phase),
    )  # fmt: skip
    # Each phase is reported in order, once it begins, and never comes back.
    order = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert order == ["starting workers", "first segments", "running"]
    in_process: list[str] = []
    firepbt.run(
        Toy, TOY_SPACE, total_steps=4, population=2, ready_every=2, executor="inprocess",
        run_dir=tmp_path / "inprocess", progress=lambda p: in_process.append(p.phase),
    )  # fmt: skip
    assert in_process[0] == "first segments" and in_process[-1] == "running"


def test_the_progress_line_shows_each_phase(tmp_path: Path, monkeypatch) -> None:
    from firepbt import display

    shown: list[str] = []
    real = display.LiveProgress.update

    def recording(self: display.LiveProgress, p: Any) -> None:
        real(self, p)
        shown.append(self._bar.tasks[0].fields["info"])

    monkeypatch.setattr(display.LiveProgress, "update", recording)
    firepbt.run(
        Toy, TOY_SPACE, total_steps=6, population=4, ready_every=2, workers=2,
        run_dir=tmp_path / "run", progress=True,
    )  # fmt: skip
    assert shown[0] == "starting 2 worker processes"
    assert "training the first segments on 2 workers: the bar moves each 2 steps" in shown
    assert shown[-1].startswith("top score so far")


PROGRESS_SCRIPT = """
import firepbt
from firepbt.examples.toy import Toy

if __name__ == "__main__":
    space = {"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)}
    firepbt.run(Toy, space, total_steps=40, population=2, ready_every=4, executor="inprocess")
    print("done")
"""


def _run_script(tmp_path: Path, stderr_terminal: bool) -> str:
    """Run ``PROGRESS_SCRIPT`` with its stderr on a pseudo-terminal or on a pipe; what it wrote
    to stderr."""
    import os
    import pty
    import subprocess
    import sys

    (tmp_path / "progress.py").write_text(PROGRESS_SCRIPT)
    if not stderr_terminal:
        done = subprocess.run(
            [sys.executable, "progress.py"], cwd=tmp_path, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "progress.py"], cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=follower, env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the script has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=300) == 0
    return b"".join(chunks).decode(errors="replace")


def test_firepbt_run_shows_progress_by_default_on_a_terminal_and_not_in_a_pipe(
    tmp_path: Path,
) -> None:
    on_terminal = _run_script(tmp_path, stderr_terminal=True)
    assert "training" in on_terminal and "top score so far" in on_terminal, on_terminal[-2000:]
    in_pipe = _run_script(tmp_path, stderr_terminal=False)
    assert "top score so far" not in in_pipe and "training" not in in_pipe, in_pipe[-2000:]
