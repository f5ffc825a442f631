"""A store written by firepbt at 7219946 (store version 1, before the compact store) is upgraded
in place when opened: every reader answers as that firepbt did, the exports are the same files,
and the interrupted run resumes to the result that firepbt's resume gave. ``fixtures/store_v1``
holds the store, its checkpoints, and what the old firepbt read, exported and resumed
(``fixtures/make_store_v1.py`` made them). An upgrade that cannot be done, or that a run of
another process would race, is refused in one line and leaves the store as it was."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import firepbt
from firepbt.errors import StoreError
from firepbt.export import export_run
from firepbt.store import LOCK_FILE, SCHEMA_VERSION, STORE_FILE, Store

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "store_v1"


def _maker() -> Any:
    path = FIXTURE.parent / "make_store_v1.py"
    spec = importlib.util.spec_from_file_location("make_store_v1", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "killed"
    shutil.copytree(FIXTURE / "killed", run_dir)
    return run_dir


def _expected() -> dict[str, Any]:
    return dict(json.loads((FIXTURE / "expected.json").read_text()))


def _version_and_tables(run_dir: Path) -> tuple[str, set[str]]:
    with sqlite3.connect(run_dir / STORE_FILE) as c:
        version = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return str(version), tables


def _dump(run_dir: Path) -> list[str]:
    with sqlite3.connect(run_dir / STORE_FILE) as c:
        return list(c.iterdump())


def test_an_old_store_is_upgraded_in_place_and_reads_as_before(old_run: Path) -> None:
    version, tables = _version_and_tables(old_run)
    assert version == "1" and "held" in tables and "texts" not in tables
    got = _maker().readers(old_run)  # opens it: upgraded
    version, tables = _version_and_tables(old_run)
    assert version == str(SCHEMA_VERSION) and "texts" in tables and "held" not in tables
    assert json.loads(json.dumps(got)) == _expected()["readers"]
    assert _maker().readers(old_run) == got  # opened again: as it is


def test_an_upgraded_store_exports_the_same_files(old_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    written = export_run(old_run, "csv", out=out) + export_run(old_run, "json", out=out)
    assert sorted(p.name for p in written) == sorted(p.name for p in (FIXTURE / "export").iterdir())
    for path in written:
        assert path.read_bytes() == (FIXTURE / "export" / path.name).read_bytes(), path.name


def test_an_upgraded_store_resumes_as_the_old_firepbt_did(old_run: Path) -> None:
    result = firepbt.resume(old_run)
    expected = _expected()["resumed"]
    assert result.best_member == expected["best_member"]
    assert result.best_score.hex() == expected["best_score"]
    schedule = [[e.member, e.from_step, e.to_step, e.hyperparameters] for e in result.schedule]
    assert schedule == expected["schedule"]
    store = Store.open(old_run)
    try:
        assert store.meta("status") == "finished" and store.held_checkpoints() == []
    finally:
        store.close()


def test_an_upgrade_that_fails_is_refused_in_one_line_and_changes_nothing(old_run: Path) -> None:
    with sqlite3.connect(old_run / STORE_FILE) as c:  # two checkpoints of one segment
        c.execute(
            "INSERT INTO checkpoints SELECT 'elsewhere.ckpt', member, step, segment, sha256, "
            "bytes, created, deleted FROM checkpoints LIMIT 1"
        )
    before = _dump(old_run)
    with pytest.raises(StoreError) as e:
        Store.open(old_run)
    message = str(e.value)
    assert "\n" not in message and str(old_run / STORE_FILE) in message
    assert "could not be upgraded" in message and "left as it was" in message
    assert _dump(old_run) == before


def test_an_old_store_that_another_process_runs_is_left_to_it(old_run: Path) -> None:
    holder = subprocess.Popen(  # holds the run's lock as a run of the old firepbt would
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); "
            "print('locked', flush=True); time.sleep(60)",
            str(old_run / LOCK_FILE),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError) as e:
            Store.open(old_run)
        message = str(e.value)
        assert "\n" not in message and f"process {holder.pid} is running" in message
        assert _version_and_tables(old_run)[0] == "1"
    finally:
        holder.kill()
        holder.wait()
    Store.open(old_run).close()  # that run ended: upgraded
    assert _version_and_tables(old_run)[0] == str(SCHEMA_VERSION)
