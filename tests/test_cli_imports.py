"""`firepbt run CONFIG` finds a trainable module next to the config or in the current
directory, in the controller and in every worker process, as ``python -m`` would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _runs import toy_toml

MODULE = """
from firepbt.examples.toy import Toy


class Mine(Toy):
    pass
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
    config.write_text(
        toy_toml(tmp_path / "run", trainable="my_trainable_xyz:Mine", executor={"kind": kind})
    )
    cwd = project if where == "cwd" else tmp_path  # "config folder": run from elsewhere
    done = subprocess.run(
        [str(Path(sys.executable).parent / "firepbt"), "run", str(config), "--quiet"],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "best member" in done.stdout
