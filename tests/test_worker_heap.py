"""A worker process keeps the memory it frees for reuse (glibc's ``mallopt``), so that a
trainable allocating blocks of a few MiB every step does not fault them back in each time; a
user's own ``MALLOC_*_`` settings win."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _runs import point_metrics
from _trainables import HeapProbe

import firepbt
from firepbt.execution.pool import ProcessPoolExecutor

TESTS = str(Path(__file__).parent)
glibc = pytest.mark.skipif(
    not hasattr(os, "confstr") or not os.confstr("CS_GNU_LIBC_VERSION"),
    reason="the heap settings are glibc's",
)


def faults_in_fresh_process(steady: bool, env: dict[str, str] | None = None) -> int:
    code = (
        f"import sys; sys.path.insert(0, {TESTS!r})\n"
        # no transparent huge pages in this process: with them glibc's defaults would fault
        # its returned memory back in 2 MiB at a time and take few faults either way
        "import ctypes; ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE\n"
        "from firepbt.execution.bootstrap import steady_heap\n"
        "from _trainables import reuse_faults\n"
        f"applied = steady_heap() if {steady} else None\n"
        "print(applied, reuse_faults())\n"
    )
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }
    environment.update(env or {})
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=environment
    )
    assert out.returncode == 0, out.stderr
    applied, faults = out.stdout.split()
    if steady:
        assert applied == str(not env)
    return int(faults)


@glibc
def test_a_steady_heap_reuses_freed_blocks_that_the_defaults_return_to_the_system() -> None:
    assert faults_in_fresh_process(steady=False) > 3000  # 3 × 12 MiB returned: ~6 800 faults
    assert faults_in_fresh_process(steady=True) < 1000


@glibc
@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_TOP_PAD_": str(128 * 1024)},
        {"GLIBC_TUNABLES": "glibc.malloc.top_pad=131072"},
    ],
)
def test_the_users_own_malloc_settings_are_left_alone(env: dict[str, str]) -> None:
    # steady_heap() declines; the user's setting (here: glibc's defaults made explicit) rules
    assert faults_in_fresh_process(steady=True, env=env) > 3000


@glibc
@pytest.mark.parametrize(
    "method", [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]
)
def test_worker_processes_keep_freed_memory(tmp_path: Path, method: str) -> None:
    firepbt.run(
        HeapProbe,
        {"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)},
        total_steps=4,
        population=2,
        ready_every=2,
        executor=ProcessPoolExecutor(2, start_method=method),
        metric="q",
        run_dir=tmp_path / "run",
        progress=False,
    )
    faults = point_metrics(tmp_path / "run", "faults")
    assert len(faults) == 4
    assert max(faults) < 1000
