"""Trainables and worker processes: a class no worker could import by name (defined in a
notebook, a script read from stdin, or a function) travels pickled by value and is stored in the
run directory for later commands; a module the workers cannot import fails the run at its first
segment with the real cause, never by every member's worker dying in turn."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import firepbt
from firepbt import LogUniform, Space
from firepbt.errors import RunFailed
from firepbt.store import Store
from firepbt.trainable import BY_VALUE_FILE, ships_by_value, stored_trainable

TRAINABLE = textwrap.dedent(
    """
    import firepbt

    class Flat(firepbt.Trainable):
        def train(self, steps):
            pass

        def evaluate(self):
            return 1.0

        def save(self):
            return {}

        def load(self, state):
            pass
    """
)
SPACE = Space({"lr": LogUniform(1e-3, 1e-1)})


def test_a_module_the_workers_cannot_import_fails_the_run_at_once(tmp_path: Path) -> None:
    # Imported from a file outside sys.path: pickled by reference here, not importable there.
    source = tmp_path / "elsewhere" / "vanishing_trainables.py"
    source.parent.mkdir()
    source.write_text(TRAINABLE)
    spec = importlib.util.spec_from_file_location("vanishing_trainables", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["vanishing_trainables"] = module
    try:
        spec.loader.exec_module(module)
        with pytest.raises(RunFailed, match="No module named 'vanishing_trainables'"):
            firepbt.run(
                module.Flat, SPACE, total_steps=4, population=4, ready_every=2, workers=2,
                run_dir=tmp_path / "run",
            )  # fmt: skip
    finally:
        del sys.modules["vanishing_trainables"]
    store = Store.open(tmp_path / "run")
    try:
        kinds = [kind for _, _, kind, _ in store.failures()]
        assert store.meta("status") == "failed"
        assert kinds == ["unloadable"]  # the first segment's failure ends the run
    finally:
        store.close()


def test_a_trainable_defined_in_a_script_read_from_stdin_trains_on_worker_processes(
    tmp_path: Path,
) -> None:
    # as in a notebook: the class lives in a __main__ that no worker could import it from
    run_dir = tmp_path / "run"
    script = TRAINABLE + textwrap.dedent(
        f"""
        from firepbt import LogUniform, Space
        if __name__ == "__main__":
            result = firepbt.run(Flat, Space({{"lr": LogUniform(1e-3, 1e-1)}}), total_steps=4,
                                 population=2, ready_every=2, workers=2, run_dir={str(run_dir)!r})
            print("best", result.best_score)
        """
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best 1.0" in done.stdout and "Traceback" not in done.stderr
    assert (run_dir / BY_VALUE_FILE).exists()  # the class, pickled by value, for later commands
    _replay_from_another_process(run_dir)


def _replay_from_another_process(run_dir: Path) -> None:
    replayed = subprocess.run(
        [sys.executable, "-m", "firepbt.cli", "replay", str(run_dir)],
        capture_output=True, text=True, timeout=300, cwd=run_dir.parent,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert "replayed the schedule of member" in replayed.stdout


def test_a_class_in_a_script_files_main_is_kept_for_replay_from_another_process(
    tmp_path: Path,
) -> None:
    # Workers import it by re-running the script; later commands run in another process,
    # whose __main__ is not the script: the run keeps the class by value for them.
    run_dir = tmp_path / "run"
    script = tmp_path / "launch.py"
    script.write_text(
        TRAINABLE
        + textwrap.dedent(
            f"""
            from firepbt import LogUniform, Space
            if __name__ == "__main__":
                result = firepbt.run(Flat, Space({{"lr": LogUniform(1e-3, 1e-1)}}),
                                     total_steps=4, population=2, ready_every=2, workers=2,
                                     run_dir={str(run_dir)!r})
                print("best", result.best_score)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best 1.0" in done.stdout and "Traceback" not in done.stderr
    assert (run_dir / BY_VALUE_FILE).exists()
    _replay_from_another_process(run_dir)


def test_a_trainable_defined_in_a_notebook_trains_on_two_workers(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    run_dir = tmp_path / "run"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(TRAINABLE),
        nbformat.v4.new_code_cell(
            "from firepbt import LogUniform, Space\n"
            "result = firepbt.run(Flat, Space({'lr': LogUniform(1e-3, 1e-1)}), total_steps=4,\n"
            "                     population=2, ready_every=2, workers=2,\n"
            f"                     run_dir={str(run_dir)!r})\n"
            "print('best', result.best_score)"
        ),
    ]
    nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    printed = "".join(o.get("text", "") for o in notebook.cells[1].outputs)
    assert "best 1.0" in printed
    assert (run_dir / BY_VALUE_FILE).exists()
    _replay_from_another_process(run_dir)


def test_a_class_defined_inside_a_function_trains_on_worker_processes(tmp_path: Path) -> None:
    class Local(firepbt.Trainable):
        def train(self, steps: int) -> None:
            self.done = getattr(self, "done", 0) + steps

        def evaluate(self) -> float:
            return float(getattr(self, "done", 0))

        def save(self) -> dict[str, float]:
            return {"done": getattr(self, "done", 0)}

        def load(self, state: dict[str, float]) -> None:
            self.done = int(state["done"])

    result = firepbt.run(
        Local, SPACE, total_steps=6, population=2, ready_every=2, workers=2,
        run_dir=tmp_path / "run",
    )  # fmt: skip
    assert result.best_score == 6.0 and result.best_step == 6
    assert (tmp_path / "run" / BY_VALUE_FILE).exists()


SLOW = textwrap.dedent(
    """
    import time
    import firepbt
    from firepbt import LogUniform, Space

    class Slow(firepbt.Trainable):
        def train(self, steps):
            time.sleep(0.05 * steps)
            self.done = getattr(self, "done", 0) + steps

        def evaluate(self):
            return float(getattr(self, "done", 0))

        def save(self):
            return {"done": getattr(self, "done", 0)}

        def load(self, state):
            self.done = state["done"]

    if __name__ == "__main__":
        firepbt.run(Slow, Space({"lr": LogUniform(1e-3, 1e-1)}), total_steps=60, population=4,
                    ready_every=4, workers=2, run_dir=RUN_DIR)
    """
)


def test_a_killed_run_of_a_class_sent_by_value_resumes_from_the_command_line(
    tmp_path: Path,
) -> None:
    import os
    import signal
    import time

    run_dir = tmp_path / "run"
    driver = subprocess.Popen(
        [sys.executable, "-"], stdin=subprocess.PIPE, cwd=tmp_path, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert driver.stdin is not None
    driver.stdin.write(SLOW.replace("RUN_DIR", repr(str(run_dir))))
    driver.stdin.close()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until a few segments are done, then kill it all
        if (run_dir / "firepbt.sqlite").exists():
            store = Store.open(run_dir)
            try:
                done = len(store.points())
            finally:
                store.close()
            if done >= 4:
                break
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    # the class comes back from the run directory; its name leads nowhere here
    stored = stored_trainable(run_dir)
    assert stored is not None and ships_by_value(stored)
    resumed = subprocess.run(
        [sys.executable, "-m", "firepbt.cli", "resume", str(run_dir), "--quiet"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "best member" in resumed.stdout and "score 60" in resumed.stdout


def test_a_run_dir_reused_after_an_early_failure_forgets_the_earlier_class(tmp_path: Path) -> None:
    from firepbt.examples.toy import Toy

    class Local(firepbt.Trainable):
        def train(self, steps: int) -> None:
            pass

        def evaluate(self) -> dict[str, float]:
            return {"other": 1.0}

        def save(self) -> dict[str, float]:
            return {}

        def load(self, state: object) -> None:
            pass

    run_dir = tmp_path / "run"
    with pytest.raises(RunFailed, match="selects on 'accuracy'"):  # fails at its first segment
        firepbt.run(
            Local, SPACE, total_steps=4, population=2, ready_every=2, metric="accuracy",
            executor="inprocess", run_dir=run_dir,
        )  # fmt: skip
    assert (run_dir / BY_VALUE_FILE).exists()
    space = {"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)}
    firepbt.run(Toy, space, total_steps=4, population=2, ready_every=2, executor="inprocess",
                run_dir=run_dir)  # fmt: skip
    assert not (run_dir / BY_VALUE_FILE).exists() and stored_trainable(run_dir) is None
