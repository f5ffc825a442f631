"""A resume checks what it replays: a stored config edited after the start, or a replayed
decision that differs from the recorded one in any part, is a ResumeError naming it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from _trainables import Quad

import firepbt
from firepbt.errors import ResumeError
from firepbt.store import STORE_FILE


def _stopped_run(tmp_path: Path) -> Path:
    """A finished PBT run marked as still running, as a kill would leave it: a resume replays
    every recorded decision."""
    space = {"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)}
    result = firepbt.run(
        Quad, space, total_steps=16, population=4, ready_every=4, executor="inprocess",
        run_dir=tmp_path / "r", seed=3, strategy="pbt",
    )  # fmt: skip
    db = sqlite3.connect(result.run_dir / STORE_FILE)
    db.execute("UPDATE meta SET value = 'running' WHERE key = 'status'")
    db.commit()
    db.close()
    return result.run_dir


def _sql(run_dir: Path, query: str, *args: object) -> None:
    db = sqlite3.connect(run_dir / STORE_FILE)
    db.execute(query, args)
    db.commit()
    db.close()


def test_an_unchanged_run_replays(tmp_path: Path) -> None:
    run_dir = _stopped_run(tmp_path)
    assert firepbt.resume(run_dir).best_step == 16


def test_an_edited_config_is_refused(tmp_path: Path) -> None:
    run_dir = _stopped_run(tmp_path)
    db = sqlite3.connect(run_dir / STORE_FILE)
    config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    db.close()
    config["seed"] = 4
    _sql(run_dir, "UPDATE meta SET value = ? WHERE key = 'config'", json.dumps(config))
    with pytest.raises(ResumeError, match="stored config was changed"):
        firepbt.resume(run_dir)


@pytest.mark.parametrize(
    ("column", "value", "named"),
    [
        ("hyperparameters", json.dumps({"h0": 0.123, "h1": 0.5}), "hyperparameters"),
        ("donor", 99, r"donor \d+ \(recorded 99\)"),
        ("source_step", 1, "source step"),
        ("step", 2, "step"),
    ],
)
def test_a_recorded_decision_that_differs_is_named(
    tmp_path: Path, column: str, value: object, named: str
) -> None:
    run_dir = _stopped_run(tmp_path)
    _sql(
        run_dir,
        f"UPDATE decisions SET {column} = ? WHERE id = "
        "(SELECT MIN(id) FROM decisions WHERE kind = 'exploit' AND donor != member)",
        value,
    )
    with pytest.raises(ResumeError, match=f"exploit of member .*{named}"):
        firepbt.resume(run_dir)
