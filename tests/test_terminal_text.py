"""Names and values from a run reach the terminal with their control characters escaped: a
hyperparameter or metric named with an escape sequence cannot retitle or rewrite the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _trainables import Quad

import firepbt
from firepbt.cli import main
from firepbt.space import Fixed, Uniform
from firepbt.text import printable

EVIL = "\x1b]0;pwned\x07"


class EvilMetric(Quad):
    def evaluate(self) -> Any:
        return {f"q{EVIL}": super().evaluate()}


def _raw_controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]


def test_printable_escapes_controls_and_keeps_lines() -> None:
    assert printable(f"a{EVIL}\nb\tc\x9b") == "a\\x1b]0;pwned\\x07\nb\tc\\x9b"


def test_summary_and_status_escape_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = {"h0": Uniform(0.1, 1.0), "h1": Fixed(0.5), f"lr{EVIL}": Fixed(f"v{EVIL}")}
    result = firepbt.run(
        EvilMetric,
        space,
        total_steps=8,
        population=3,
        ready_every=4,
        executor="inprocess",
        run_dir=tmp_path / "r",
        metric=f"q{EVIL}",
        seed=1,
    )
    summary = result.describe()
    assert not _raw_controls(summary) and "lr\\x1b]0;pwned\\x07" in summary
    capsys.readouterr()
    assert main(["status", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "pwned" in out and not _raw_controls(out.replace("\x1b[", ""))
    assert "\x1b]" not in out and "\x07" not in out


def test_doctests_pass() -> None:
    import doctest

    import firepbt.text

    result = doctest.testmod(firepbt.text)
    assert result.attempted == 2 and result.failed == 0
