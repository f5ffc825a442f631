"""Each worker process's stdout and stderr (file descriptors included) go to
``RUN_DIR/logs/pid-N.log``, not to the terminal; a failure's message ends with the last lines of
its worker's log."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import firepbt
from firepbt import Store, Uniform
from firepbt.errors import RunFailed
from firepbt.execution.logs import tail, with_tail

TESTS = Path(__file__).parent


def _run(run_dir: Path, space: dict[str, object], **kw: object) -> firepbt.RunResult:
    from _chatty import Chatty

    options: dict[str, object] = dict(
        total_steps=40, population=2, ready_every=20, eval_every=10, workers=2, progress=False
    )
    options.update(kw)
    return firepbt.run(Chatty, {"x": Uniform(0, 1), **space}, run_dir=run_dir, **options)  # type: ignore[arg-type]


def test_worker_output_goes_to_log_files_not_the_terminal(tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(TESTS)!r})
            import firepbt
            from firepbt import Uniform
            from _chatty import Chatty

            if __name__ == "__main__":
                firepbt.run(Chatty, {{"x": Uniform(0, 1)}}, total_steps=40, population=4,
                            ready_every=20, eval_every=10, workers=2, run_dir="run",
                            progress=False)
                print("CONTROLLER DONE")
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CONTROLLER DONE"
    for noise in ("TRAINING LINE", "STDERR LINE", "C-LEVEL BANNER"):
        assert noise not in done.stdout + done.stderr
    logs = sorted((tmp_path / "run" / "logs").glob("pid-*.log"))
    assert len(logs) == 2  # one per worker process
    text = "".join(log.read_text() for log in logs)
    assert text.count("C-LEVEL BANNER") >= 4  # every member's trainable was built at least once
    assert text.count("TRAINING LINE") == 4 * 4  # 4 members × 4 train calls
    assert text.count("STDERR LINE") == 4 * 4


def test_a_raised_failure_ends_with_its_worker_log(tmp_path: Path) -> None:
    with pytest.raises(RunFailed) as raised:
        _run(tmp_path / "run", {"raise_after": 15}, max_retries=0)
    message = str(raised.value)
    assert "RuntimeError: the data loader broke" in message
    assert "last lines of the worker's log" in message
    assert "loading shard 20 before the crash" in message
    store = Store.open(tmp_path / "run")
    failures = [m for _, _, kind, m in store.failures() if kind == "raised"]
    store.close()
    assert failures and all("loading shard 20 before the crash" in m for m in failures)


def test_a_dead_worker_failure_ends_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(RunFailed) as raised:
        _run(tmp_path / "run", {"die_after": 15}, max_retries=0)
    message = str(raised.value)
    assert "its worker process died (exit code 3)" in message
    assert "about to die in C code" in message.split("last lines of the worker's log")[1]


def test_the_in_process_executor_leaves_output_alone(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _run(tmp_path / "run", {}, executor="inprocess", workers=1)
    out, err = capfd.readouterr()
    assert "TRAINING LINE" in out and "C-LEVEL BANNER" in err
    assert not (tmp_path / "run" / "logs").exists()


def test_a_tail_is_the_last_non_blank_lines_cut_to_width(tmp_path: Path) -> None:
    log = tmp_path / "pid-1.log"
    log.write_text("".join(f"line {i}\n\n" for i in range(30)) + "x" * 500 + "\r\nprogress 50%\r")
    last = tail(log)
    assert last[:8] == [f"line {i}" for i in range(22, 30)]
    assert last[8].endswith("…") and len(last[8]) == 240
    assert last[9] == "progress 50%"
    assert with_tail("boom", tmp_path / "missing.log") == "boom"
    assert with_tail("boom", None) == "boom"
    assert os.linesep in with_tail("boom", log)


def test_a_failure_shows_only_its_own_segments_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firepbt.execution import logs

    log = tmp_path / "pid-1.log"
    log.write_text("another member's line\n\x1b[31mred\x1b[0m\n")
    monkeypatch.setattr(logs, "_own", log)
    logs.segment_started()
    assert logs.with_own_tail("boom") == "boom"  # nothing written since: no tail
    with log.open("a") as f:
        f.write("this segment's line \x1b[2J\n")
    shown = logs.with_own_tail("boom")
    assert "this segment's line \\x1b[2J" in shown and "another member" not in shown
    assert "\x1b" not in shown and "\\x1b[31mred" in logs.with_tail("boom", log)
