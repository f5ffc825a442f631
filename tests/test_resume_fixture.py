"""A run killed before the engine split resumes after it: ``fixtures/before_split`` holds the
stores and checkpoints of two NQM runs (PBT and FIRE PBT, synchronous, 2 worker processes)
killed part way by the code before the split, and what each run returned when it ran whole
(``fixtures/make_before_split.py`` says how they were made). Resumed by today's code, each ends
exactly as the uninterrupted run did then."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import firepbt
from firepbt import Store

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "before_split"


@pytest.mark.parametrize("name", ["pbt", "fire"])
def test_a_run_killed_before_the_split_resumes_as_if_never_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    expected = json.loads((FIXTURE / "expected.json").read_text())[name]
    shutil.copytree(FIXTURE / f"{name}-killed", tmp_path / f"{name}-killed")
    monkeypatch.chdir(tmp_path)  # the stored checkpoint paths are relative to it
    store = Store.open(Path(f"{name}-killed"))
    recorded = len(store.points())
    assert store.meta("status") == "running" and recorded > 0  # killed part way
    store.close()

    result = firepbt.resume(f"{name}-killed")  # on the 2 worker processes its config names

    assert result.best_member == expected["best_member"]
    assert result.best_score.hex() == expected["best_score"]
    schedule = [[e.member, e.from_step, e.to_step, e.hyperparameters] for e in result.schedule]
    assert schedule == expected["schedule"]
    store = Store.open(Path(f"{name}-killed"))
    assert store.meta("status") == "finished" and len(store.points()) > recorded
    store.close()
