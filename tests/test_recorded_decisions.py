"""Decisions stay identical to those recorded before the controller's decisions were made
incremental (``_recorded_decisions.py`` says how the fixture was made): every built-in exploit
policy, synchronous and asynchronous, PBT, FIRE PBT and random search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _recorded_decisions import decisions_digest, scenarios

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "recorded_decisions.json").read_text())


def test_every_scenario_is_recorded() -> None:
    assert sorted(RECORDED) == sorted(scenarios())


@pytest.mark.parametrize("name", sorted(scenarios()))
def test_decisions_match_the_recorded_run(name: str, tmp_path: Path) -> None:
    assert decisions_digest(name, scenarios()[name], tmp_path) == RECORDED[name]
