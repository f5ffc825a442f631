"""The command line: run a TOML config, show status, and fail clearly on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from firepbt.cli import main

CONFIG = """
trainable = "_trainables:Quad"
mode = "max"
seed = 1
run_dir = "{run_dir}"

[space]
h0 = {{ dist = "uniform", low = 0.0, high = 1.0, bounds = [0.0, 2.0] }}
h1 = {{ dist = "uniform", low = 0.0, high = 1.0, bounds = [0.0, 2.0] }}

[strategy]
name = "pbt"
population = 4
ready_every = 4
exploit = {{ name = "truncation", fraction = 0.25 }}
explore = [{{ name = "perturb", factors = [0.8, 1.2] }},
           {{ name = "resample", probability = 0.25 }}]

[budget]
steps = 20

[executor]
kind = "{executor}"
workers = 2
"""


def _write(tmp_path: Path, executor: str = "inprocess", **replace: str) -> Path:
    text = CONFIG.format(run_dir=tmp_path / "run", executor=executor)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_run_then_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(_write(tmp_path)), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "best member" in out and "schedule:" in out
    assert main(["status", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "20/20" in out
    assert out.count("finished") >= 4
    # a finished run keeps each member's final checkpoint on disk and holds none in memory
    assert "checkpoints: 4 on disk\n" in out


def test_unknown_key_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, **{"[budget]": "[budget]\nepochs = 3"})
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("firepbt: error:") and "[budget]" in err
    assert "Traceback" not in err


def test_bad_trainable_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, **{"_trainables:Quad": "no_such_module:Thing"})
    assert main(["run", str(config)]) == 2
    assert "cannot import module 'no_such_module'" in capsys.readouterr().err


def test_bad_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = {'h0 = { dist = "uniform", low = 0.0': 'h0 = { dist = "uniform", low = 1.5'}
    config = _write(tmp_path, **bad)
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "space.h0" in err and "low must be below high" in err


def test_status_of_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path / "nothing")]) == 2
    assert "holds no firepbt run" in capsys.readouterr().err


def test_console_script_with_process_pool(tmp_path: Path) -> None:
    """The installed entry point runs a config on worker processes."""
    config = _write(tmp_path, executor="process")
    env_path = str(Path(__file__).parent)
    proc = subprocess.run(
        [sys.executable, "-m", "firepbt.cli", "run", str(config), "--quiet"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "best member" in proc.stdout
