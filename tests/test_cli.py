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


def test_fire_settings_that_cannot_hand_over_warn_once_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from _runs import nqm_toml

    config = tmp_path / "fire.toml"
    strategy = {"name": "fire", "population": 4, "ready_every": 50, "max_eval_steps": 50}
    config.write_text(
        nqm_toml(
            tmp_path / "run",
            eval_every=10,
            dim=20,
            strategy={**strategy, "subpopulations": 2, "evaluators": 3},
            steps=100,
            executor={"kind": "inprocess"},
        )
    )
    assert main(["run", str(config), "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if line.startswith("firepbt: warning:")]
    assert len(warned) == 2  # each problem once, though the config is validated, then built
    assert "max_eval_steps: 50 steps give an evaluator at most 6" in warned[0]
    assert "evaluators: 3 evaluators for 2 parent members" in warned[1]
    assert not any("FireSettingsWarning" in line or ".py:" in line for line in err)
