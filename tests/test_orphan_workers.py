"""Worker processes stop when their controller is killed, instead of training on for nobody."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import firepbt
from _trainables import Sleeper
from firepbt.executors import ProcessPoolExecutor
firepbt.run(Sleeper, {{"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)}},
            total_steps=8, population=2, ready_every=4,
            executor=ProcessPoolExecutor(2, start_method={method!r}),
            run_dir={run_dir!r}, progress=False)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent to reap it is gone too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("method", [None, "forkserver"])  # None: forked (safe here)
def test_workers_stop_when_the_controller_is_killed(tmp_path: Path, method: str | None) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    tests = str(Path(__file__).parent)
    script = SCRIPT.format(tests=tests, run_dir=str(tmp_path / "run"), method=method)
    env = {**os.environ, "FIREPBT_TEST_PIDS": str(pids)}
    with (tmp_path / "stderr").open("w") as err:
        controller = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=err)
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2, "the workers did not start"
        controller.send_signal(signal.SIGKILL)
        controller.wait(timeout=30)
        # Their segments would train for an hour; they must be gone long before.
        deadline = time.monotonic() + 60
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not [w for w in workers if _alive(w)]
    assert "Traceback" not in (tmp_path / "stderr").read_text()
