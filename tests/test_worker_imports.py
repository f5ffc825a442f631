"""A trainable the worker processes cannot import fails the run at once with the real cause:
refused before anything runs where that can be seen from the controller, otherwise at the first
segment a worker cannot load, never by every member's worker dying in turn."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import firepbt
from firepbt import LogUniform, Space
from firepbt.registry import ConfigError
from firepbt.runner import RunFailed
from firepbt.store import Store

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


def test_a_trainable_defined_in_a_script_read_from_stdin_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    script = TRAINABLE + textwrap.dedent(
        f"""
        from firepbt import LogUniform, Space
        firepbt.run(Flat, Space({{"lr": LogUniform(1e-3, 1e-1)}}), total_steps=4,
                    population=2, ready_every=2, workers=2, run_dir={str(run_dir)!r})
        """
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    assert "ConfigError: trainable: the trainable Flat is defined in __main__" in done.stderr
    assert "executor='inprocess'" in done.stderr
    assert "worker process died" not in done.stderr and not run_dir.exists()


def test_a_class_defined_inside_a_function_is_refused_with_the_process_pool(
    tmp_path: Path,
) -> None:
    class Local(firepbt.Trainable):
        def train(self, steps: int) -> None:
            pass

        def evaluate(self) -> float:
            return 1.0

        def save(self) -> dict[str, float]:
            return {}

        def load(self, state: object) -> None:
            pass

    with pytest.raises(ConfigError, match="defined inside a function"):
        firepbt.run(
            Local, SPACE, total_steps=4, population=2, ready_every=2, run_dir=tmp_path / "r"
        )
    result = firepbt.run(  # in this process a local class is fine
        Local, SPACE, total_steps=4, population=2, ready_every=2, run_dir=tmp_path / "ok",
        executor="inprocess",
    )  # fmt: skip
    assert result.best_score == 1.0
