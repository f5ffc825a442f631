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
from firepbt.execution.pool import ProcessPoolExecutor
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


CONFIG = """
trainable = "firepbt.examples.nqm:NQM"
mode = "min"
metric = "loss"
run_dir = {run_dir!r}
[space]
lr = {{ dist = "loguniform", low = 0.001, high = 1.9 }}
[strategy]
name = "pbt"
population = 4
ready_every = 100
[budget]
steps = 100000000
[executor]
kind = "process"
workers = 2
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_the_run_and_its_workers_without_a_traceback(tmp_path: Path) -> None:
    from firepbt import Store

    run_dir = tmp_path / "run"
    config = tmp_path / "nqm.toml"
    config.write_text(CONFIG.format(run_dir=str(run_dir)))
    with (tmp_path / "stderr").open("w") as err:
        # As a terminal does: its own process group, Ctrl-C (SIGINT) to every process in it.
        controller = subprocess.Popen(
            [sys.executable, "-m", "firepbt.cli", "run", str(config)],
            stderr=err,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 120
        trained = 0
        while trained < 8 and time.monotonic() < deadline:  # the workers train
            time.sleep(0.2)
            if (run_dir / "firepbt.sqlite").exists():
                store = Store.open(run_dir)
                trained = len(store.points())
                store.close()
        assert trained >= 8, "the run did not start"
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        group = [p for p in pids if _in_group(p, controller.pid)]
        os.killpg(controller.pid, signal.SIGINT)
        assert controller.wait(timeout=60) == 130
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in group) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not [p for p in group if _alive(p)]
    stderr = (tmp_path / "stderr").read_text()
    assert "firepbt: interrupted" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    store = Store.open(run_dir)
    assert store.meta("status") == "interrupted"
    store.close()


def _in_group(pid: int, group: int) -> bool:
    try:
        return os.getpgid(pid) == group
    except OSError:
        return False
