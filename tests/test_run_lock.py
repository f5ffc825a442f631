"""The run directory's lock: never held by two drivers at once, and free again when its holder
is gone."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from firepbt.control.lock import LOCK_FILE, run_lock
from firepbt.errors import StoreError

fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork"
)


def _contend(run_dir: Path, barrier: Any, holders: Any, most: Any, took: Any) -> None:
    barrier.wait()
    try:
        with run_lock(run_dir):
            with holders.get_lock():
                holders.value += 1
                most.value = max(most.value, holders.value)
            with took.get_lock():
                took.value += 1
            time.sleep(0.005)
            with holders.get_lock():
                holders.value -= 1
    except StoreError:
        pass


@fork
def test_drivers_released_together_never_hold_the_lock_together(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for _ in range(50):  # the race, 50 times (each a fresh start of 4 forked drivers)
        holders, most, took = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
        barrier = ctx.Barrier(4)
        procs = [
            ctx.Process(target=_contend, args=(tmp_path, barrier, holders, most, took))
            for _ in range(4)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        assert most.value == 1 and took.value >= 1


def _hold_forever(run_dir: Path, ready: Any) -> None:
    with run_lock(run_dir):
        ready.set()
        time.sleep(600)


@fork
def test_a_live_holder_is_named_and_a_killed_one_frees_the_lock(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_forever, args=(tmp_path, ready))
    holder.start()
    try:
        assert ready.wait(timeout=60)
        with (
            pytest.raises(StoreError, match=f"being run by process {holder.pid}"),
            run_lock(tmp_path),
        ):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=60)
    assert (tmp_path / LOCK_FILE).read_text() == str(holder.pid)  # a stale name is left…
    with run_lock(tmp_path):  # …but the lock went with the process
        assert (tmp_path / LOCK_FILE).read_text() == str(os.getpid())
