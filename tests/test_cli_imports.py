"""`firepbt run CONFIG` finds a trainable module next to the config or in the current
directory, in the controller and in every worker process, as ``python -m`` would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MODULE = """
from firepbt.examples.toy import Toy


class Mine(Toy):
    pass
"""

CONFIG = """trainable = "my_trainable_xyz:Mine"
run_dir = "RUN"
[space]
h0 = {{ dist = "uniform", low = 0.0, high = 1.0 }}
h1 = {{ dist = "uniform", low = 0.0, high = 1.0 }}
[strategy]
name = "pbt"
population = 2
ready_every = 2
[budget]
steps = 4
[executor]
kind = "{kind}"
"""


@pytest.mark.parametrize(
    ("where", "kind"), [("cwd", "process"), ("config folder", "process"), ("cwd", "inprocess")]
)
def test_a_module_beside_the_config_or_in_the_cwd_is_found(
    tmp_path: Path, where: str, kind: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_trainable_xyz.py").write_text(MODULE)
    config = project / "run.toml"
    config.write_text(CONFIG.format(kind=kind).replace("RUN", str(tmp_path / "run")))
    cwd = project if where == "cwd" else tmp_path  # "config folder": run from elsewhere
    done = subprocess.run(
        [str(Path(sys.executable).parent / "firepbt"), "run", str(config), "--quiet"],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "best member" in done.stdout
