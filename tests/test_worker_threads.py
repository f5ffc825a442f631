"""A worker process uses one thread in its native thread pools (numpy's BLAS, OpenMP), however
it started: a forked worker inherits the pools the controller loaded, at the controller's
thread count, and a fork server's child those of the server."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
from _runs import point_metrics

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import numpy
from threadpoolctl import threadpool_info, threadpool_limits
threadpool_limits(2)  # the controller's pools at two threads, as on any machine of 2+ cores
import firepbt
from firepbt.execution.pool import ProcessPoolExecutor
from _trainables import ThreadProbe
firepbt.run(ThreadProbe, {{"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)}},
            total_steps=4, population=4, ready_every=2,
            executor=ProcessPoolExecutor(2, start_method={method!r}),
            metric="q", run_dir={run_dir!r}, progress=False)
print(json.dumps([p["num_threads"] for p in threadpool_info()]))
"""


@pytest.mark.parametrize(
    "method", [m for m in ("fork", "forkserver") if m in multiprocessing.get_all_start_methods()]
)
def test_workers_use_one_thread_and_the_controller_keeps_its_own(
    tmp_path: Path, method: str
) -> None:
    script = SCRIPT.format(
        tests=str(Path(__file__).parent), run_dir=str(tmp_path / "run"), method=method
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr
    threads = point_metrics(tmp_path / "run", "threads")
    assert len(threads) == 8
    assert set(threads) == {1.0}
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [2]  # the controller's, as it set
