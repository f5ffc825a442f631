"""A run whose controller is killed with SIGKILL half-way still gets a report."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _runs import nqm_toml


def test_report_of_a_run_killed_half_way(tmp_path: Path) -> None:
    """SIGKILL the controller mid-run, then report: the page renders from what was recorded."""
    import signal
    import sqlite3
    import sys
    import time

    from firepbt.report import write_report

    config = tmp_path / "run.toml"
    config.write_text(
        nqm_toml(
            tmp_path / "run",
            eval_every=10,
            strategy={"name": "pbt", "population": 6, "ready_every": 50},
            steps=100000,
            executor={"kind": "process", "workers": 2},
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "firepbt.cli", "run", str(config), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    db = tmp_path / "run" / "firepbt.sqlite"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if db.exists():
                with sqlite3.connect(db) as c:
                    if c.execute("SELECT COUNT(*) FROM points").fetchone()[0] >= 60:
                        break
            time.sleep(0.2)
        else:
            pytest.fail("the run recorded too few points in 60 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    html = write_report(tmp_path / "run")
    text = html.read_text()
    assert "running" in text  # the store still says so: it was killed, not finished
    assert text.count("data:image/png;base64,") == 4
