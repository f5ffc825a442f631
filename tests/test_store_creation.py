"""Making a run's store: it appears whole or not at all, a half-made or early-failed one does
not block the retry, and a damaged one is one clear error."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from _trainables import BadMetric, Quad

import firepbt
from firepbt.cli import main
from firepbt.errors import RunFailed, StoreError
from firepbt.store import Store
from firepbt.store._rows import STORE_FILE

RUN = dict(total_steps=8, population=2, ready_every=4, executor="inprocess", seed=0)


def test_the_store_appears_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_link = os.link
    seen: list[str] = []

    def link(src: str | Path, dst: str | Path) -> None:
        assert not Path(dst).exists()
        conn = sqlite3.connect(f"file:{src}?mode=ro", uri=True)  # what is about to appear
        seen.append(conn.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()[0])
        conn.close()
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    Store.create(tmp_path / "r", {"strategy": "pbt"}).close()
    assert seen == ["running"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [STORE_FILE]  # no leftovers


def test_a_kill_before_the_store_is_in_place_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(src: str | Path, dst: str | Path) -> None:
        raise KeyboardInterrupt  # stands for the kill, between filling and linking

    monkeypatch.setattr(os, "link", killed)
    with pytest.raises(KeyboardInterrupt):
        Store.create(tmp_path / "r", {})
    monkeypatch.undo()
    assert not list((tmp_path / "r").iterdir())
    firepbt.run(Quad, _space(), run_dir=tmp_path / "r", **RUN)  # the run can start there


def _space() -> dict[str, firepbt.Uniform]:
    return {"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)}


def _half_made(run_dir: Path) -> None:
    """What an older firepbt left when killed as it made the store: a file with no tables."""
    run_dir.mkdir(parents=True)
    sqlite3.connect(run_dir / STORE_FILE).execute("PRAGMA journal_mode=WAL").close()


def test_a_half_made_store_is_one_clear_error_and_does_not_block_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _half_made(tmp_path / "r")
    for command in ("status", "resume", "export"):
        assert main([command, str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a complete firepbt store" in err, command
    result = firepbt.run(Quad, _space(), run_dir=tmp_path / "r", **RUN)
    assert result.best_step == 8


def test_a_file_that_is_no_database_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / STORE_FILE).write_bytes(b"not a database at all" * 100)
    assert main(["status", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable firepbt store" in err
    with pytest.raises(StoreError, match="remove it"):
        firepbt.run(Quad, _space(), run_dir=tmp_path / "r", **RUN)


def test_a_run_that_failed_before_any_segment_finished_can_be_run_again(tmp_path: Path) -> None:
    with pytest.raises(RunFailed):
        firepbt.run(BadMetric, _space(), run_dir=tmp_path / "r", **RUN)
    result = firepbt.run(Quad, _space(), run_dir=tmp_path / "r", **RUN)  # the fixed trainable
    store = Store.open(result.run_dir)
    assert store.meta("status") == "finished" and not store.failures()
    store.close()


def test_a_run_with_finished_segments_is_kept(tmp_path: Path) -> None:
    firepbt.run(Quad, _space(), run_dir=tmp_path / "r", **RUN)
    with pytest.raises(StoreError, match="already holds a run.*firepbt resume"):
        firepbt.run(Quad, _space(), run_dir=tmp_path / "r", **RUN)


def test_a_dead_creators_leftovers_are_cleared(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    dead = 2**22 + 12345  # above Linux's default pid_max: no process has it
    leftovers = [run_dir / f".{STORE_FILE}.{dead}.7.creating{s}" for s in ("", "-wal", "-shm")]
    for p in leftovers:
        p.write_bytes(b"half")
    mine = run_dir / f".{STORE_FILE}.{os.getpid()}.7.creating"  # a live creator's: kept
    mine.write_bytes(b"busy")
    Store.create(run_dir, {}).close()
    assert not any(p.exists() for p in leftovers) and mine.exists()
