"""How worker processes start: forked from the controller while that is safe (milliseconds,
nothing imported again), from a fork server otherwise; a forked worker keeps nothing of the
controller's that would outlive it (the run's lock, the controller's ends of the pipes: see also
``test_orphan_workers``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from firepbt import Store

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _method(prelude: str) -> str:
    code = (
        f"{prelude}\nfrom firepbt.execution.bootstrap import start_method_now\n"
        "print(start_method_now())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@linux
def test_workers_are_forked_only_while_the_controller_is_safe_to_fork() -> None:
    assert _method("") == "fork"
    # a second thread may hold a lock the child would inherit locked; torch's threads and
    # device state do not survive a fork
    running = "import threading, time\nthreading.Thread(target=time.sleep, args=(2,)).start()"
    assert _method(running) == "forkserver"
    assert _method("import sys\nsys.modules['torch'] = sys") == "forkserver"


def test_a_start_method_this_platform_lacks_is_refused() -> None:
    from firepbt.execution.pool import ProcessPoolExecutor

    with pytest.raises(ValueError, match="start_method: 'teleport' is not available here"):
        ProcessPoolExecutor(2, start_method="teleport")


SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
os.environ["FIREPBT_TEST_CONTROLLER"] = str(os.getpid())
import firepbt
from _trainables import ForkProbe
firepbt.run(ForkProbe, {{"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)}},
            total_steps=4, population=4, ready_every=2, executor="process", workers=2,
            metric="q", run_dir={run_dir!r}, progress=False)
"""


@linux
def test_a_forked_worker_does_not_hold_the_run_lock(tmp_path: Path) -> None:
    script = SCRIPT.format(tests=str(Path(__file__).parent), run_dir=str(tmp_path / "run"))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    store = Store.open(tmp_path / "run")
    try:
        points = [p for _, p in store.points()]
    finally:
        store.close()
    assert len(points) == 8
    assert all(p.metrics["forked"] == 1.0 for p in points)  # the workers were forked
    assert all(p.metrics["locks"] == 0.0 for p in points)  # and closed the lock they inherited
