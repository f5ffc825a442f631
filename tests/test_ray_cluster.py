"""A Ray cluster of two nodes on this machine, with token authentication: a head and node B, a
second raylet started by ``ray start`` (each with 1 CPU, so that each holds one of two workers).
Node C, started in its own mount namespace with a private tmpfs over the runs' folder, stands for
a machine with a disk of its own. The controller runs in a fresh process that joins the cluster, as
``firepbt run`` on the head would.

- On the head and B (which share this machine's disk), a synchronous PBT run records the same
  decisions as in process, with segments on both nodes.
- A worker on C cannot see the run directory: the run stops before training, in one line naming
  the worker, its node and the path. With its checkpoints in S3 (``tests/_s3.py``), the same run
  trains on all three nodes, records the same decisions as in process, and its best model loads
  from the bucket; a FIRE PBT run, its controller killed with ``kill -9``, resumes from a fresh
  process to the decisions made in process.
- A controller without ``RAY_AUTH_MODE=token`` is told so in one line, and the run directory is
  left to run again.
- Node B lost mid-run, with no replacement: the run finishes on the head's worker, every member
  at its last step and none failed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _s3 import BUCKET, S3, start_s3

import firepbt
from firepbt import Store, Uniform

pytest.importorskip("ray")
if sys.platform != "linux" or os.geteuid() != 0:
    pytest.skip("node C needs a mount namespace (unshare -m, as root)", allow_module_level=True)

ENV = {
    **os.environ,
    # token authentication, as `ray start` sets up by default where a token exists
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(16),
    "RAY_USAGE_STATS_ENABLED": "0",
    # a lost node is noticed in seconds rather than half a minute
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "1000",
}
RAY = str(Path(sys.executable).with_name("ray"))
TRAINABLE = "firepbt.examples.sleep:Sleep"  # each step sleeps: segments of 0.5 s
SPACE = {"x": Uniform(0.0, 1.0), "seconds": 0.05}
OPTIONS: dict[str, Any] = {"total_steps": 60, "population": 4, "ready_every": 10, "seed": 5}
FIRE: dict[str, Any] = {
    "strategy": "fire", "subpopulations": 2, "evaluators": 1, "eval_every": 5,
    "max_eval_steps": 40, "synchrony": "sync",
}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _stop(node: subprocess.Popen[bytes]) -> None:
    """Every process of the node (raylet, workers): its whole process group."""
    if node.poll() is None:
        os.killpg(node.pid, signal.SIGKILL)
    node.wait(timeout=60)


def _nodes_alive(address: str) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120
    )
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0


def _wait_for_nodes(address: str, count: int) -> None:
    deadline = time.monotonic() + 120
    while _nodes_alive(address) < count:
        assert time.monotonic() < deadline, f"the cluster did not reach {count} nodes"
        time.sleep(1)


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs = root / "runs"
        self.runs.mkdir()
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        self.head = _node(
            [RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--block"]
            + ["--include-dashboard=false", "--node-ip-address=127.0.0.1"]
        )
        self.b = self.join()
        _wait_for_nodes(self.address, 2)

    def join(self, private_runs: bool = False) -> subprocess.Popen[bytes]:
        start = [RAY, "start", f"--address={self.address}", "--num-cpus=1", "--block"]
        start += ["--node-ip-address=127.0.0.1"]
        if not private_runs:
            return _node(start)
        # its own disk at the runs' path: an empty tmpfs seen by this node alone
        script = f"mount -t tmpfs tmpfs {self.runs} && exec {' '.join(start)}"
        return _node(["unshare", "-m", "sh", "-c", script])

    def run(
        self,
        name: str,
        *,
        kill_b_after: int | None = None,
        kill_controller_after: int | None = None,
        env: dict[str, str] | None = None,
        **extra: Any,
    ) -> Any:
        """``firepbt.run`` of the toy problem in a fresh process joined to the cluster; with
        ``kill_b_after``, node B is killed once that many points are recorded."""
        run_dir = self.runs / name
        options = {**OPTIONS, "executor": "ray", "address": self.address, "workers": 2, **extra}
        code = (
            "import json, sys, firepbt\n"
            "from firepbt import Uniform\n"
            "options = json.loads(sys.argv[1])\n"
            f"space = {{'x': Uniform(0.0, 1.0), 'seconds': {SPACE['seconds']}}}\n"
            f"firepbt.run({TRAINABLE!r}, space, run_dir=sys.argv[2], progress=False, **options)\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(options), str(run_dir)],
            env=ENV if env is None else env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if kill_b_after is not None:
            _kill_b_after(self, run_dir, kill_b_after, proc)
        if kill_controller_after is not None:
            _after_points(run_dir, kill_controller_after, proc, lambda: proc.send_signal(9))
        out, err = proc.communicate(timeout=300)
        return proc.returncode, err, run_dir

    def close(self) -> None:
        for node in (self.b, self.head):
            _stop(node)
        # `ray start` named this cluster as the machine's current one, which a later
        # ray.init() without an address would try to join
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and self.address.split(":")[1] in current.read_text():
            current.unlink()


def _kill_b_after(cluster: Cluster, run_dir: Path, points: int, proc: Any) -> None:
    _after_points(run_dir, points, proc, lambda: _stop(cluster.b))


def _after_points(run_dir: Path, points: int, proc: Any, act: Any) -> None:
    """Call ``act`` once the run in ``run_dir`` has recorded ``points`` points."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            store = Store.open(run_dir)
        except Exception:  # not made yet
            time.sleep(0.2)
            continue
        try:
            if len(store.points()) >= points:
                act()
                return
        finally:
            store.close()
        time.sleep(0.2)
    raise AssertionError(f"the run never reached {points} points")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    server = start_s3(tmp_path_factory.mktemp("s3") / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3: S3) -> Iterator[Cluster]:
    ENV.update(s3.env)  # every node and controller has the S3 server's credentials and endpoint
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        c.close()


def _decisions(run_dir: Path) -> list[tuple[Any, ...]]:
    store = Store.open(run_dir)
    try:
        return [
            (d.member, d.step, d.kind, d.donor, json.dumps(d.hyperparameters, sort_keys=True))
            for d in store.decisions()
        ]
    finally:
        store.close()


def test_sync_pbt_on_two_nodes_matches_one_process(cluster: Cluster, tmp_path: Path) -> None:
    code, err, run_dir = cluster.run("shared")
    assert code == 0, err[-3000:]
    in_process = tmp_path / "in-process"
    firepbt.run(
        TRAINABLE, SPACE, run_dir=in_process, executor="inprocess", progress=False, **OPTIONS
    )
    assert _decisions(run_dir) == _decisions(in_process)
    assert len(_nodes_used(run_dir)) == 2  # segments ran on both nodes
    store = Store.open(run_dir)
    try:
        assert store.failures() == []
    finally:
        store.close()


def _nodes_used(run_dir: Path) -> set[str]:
    """The Ray nodes that ran a segment, from the workers' names (host/node-ID/pid-N)."""
    with sqlite3.connect(run_dir / "firepbt.sqlite") as c:
        workers = [w for (w,) in c.execute("SELECT worker FROM segments") if w]
    return {w.split("/")[1] for w in workers}


def test_a_controller_without_the_token_mode_is_told_in_one_line(cluster: Cluster) -> None:
    env = {k: v for k, v in ENV.items() if k != "RAY_AUTH_MODE"}  # the token alone is not sent
    code, err, run_dir = cluster.run("no-token", env=env)
    assert code != 0
    last = err.strip().splitlines()[-1]
    assert "ConfigError: executor.address: cannot connect to Ray at" in last, err[-3000:]
    assert "set RAY_AUTH_MODE=token in this process's environment" in last
    # nothing started: the same command can run again in that directory
    store = Store.open(run_dir)
    try:
        assert store.meta("status") == "failed" and store.points() == []
    finally:
        store.close()


def _run_fresh(code: str, run_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, str(run_dir)], env=ENV, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _refused_on_c(run_dir: Path, err: str) -> None:
    """The run stopped before training: a worker on C cannot see the run directory."""
    last = err.strip().splitlines()[-1]
    assert "ConfigError: run_dir: Ray worker" in last, err[-3000:]
    assert f"cannot use the run directory {run_dir}" in last
    assert "on its node, cannot read" in last and "/node-" in last
    store = Store.open(run_dir)
    try:
        assert store.points() == [] and store.meta("status") == "failed"  # nothing was trained
    finally:
        store.close()


def test_a_node_with_a_disk_of_its_own_is_refused_and_runs_with_checkpoints_in_s3(
    cluster: Cluster, s3: S3, tmp_path: Path
) -> None:
    c = cluster.join(private_runs=True)  # C sees none of the head's files
    try:
        _wait_for_nodes(cluster.address, 3)
        code, err, private = cluster.run("private", workers=3)  # no storage: refused
        assert code != 0
        _refused_on_c(private, err)
        storage = {"storage": f"s3://{BUCKET}/cluster", "workers": 3}
        code, err, run_dir = cluster.run("s3", **storage)
        assert code == 0, err[-3000:]
        # FIRE PBT's controller killed with kill -9 mid-run, then resumed from a fresh process
        code, err, fire = cluster.run("s3-fire", kill_controller_after=10, **storage, **FIRE)
        assert code == -9, err[-3000:]
        _run_fresh("import sys, firepbt\nfirepbt.resume(sys.argv[1], progress=False)\n", fire)
    finally:
        _stop(c)
        _wait_for_nodes(cluster.address, 2)
    in_process = tmp_path / "in-process"
    firepbt.run(
        TRAINABLE, SPACE, run_dir=in_process, executor="inprocess", progress=False, **OPTIONS
    )
    assert _decisions(run_dir) == _decisions(in_process)
    fire_in_process = tmp_path / "fire-in-process"
    options = {**OPTIONS, **FIRE}
    firepbt.run(
        TRAINABLE, SPACE, run_dir=fire_in_process, executor="inprocess", progress=False, **options
    )
    assert _decisions(fire) == _decisions(fire_in_process)
    assert {"assign", "exploit"} <= {d[2] for d in _decisions(fire)}
    for each in (run_dir, fire):
        assert len(_nodes_used(each)) == 3  # the head, B and C each ran segments
        store = Store.open(each)
        try:
            assert store.meta("status") == "finished"
            # the killed run's checkpoints held in its actors' memory were trained again from
            # the last ones written: time lost, nothing else
            allowed = {"source_unreadable", "repaired"} if each == fire else set()
            assert {kind for _, _, kind, _ in store.failures()} <= allowed, store.failures()
            root = store.meta("storage")
            live = sorted(p for p, *_ in store.live_checkpoints())
        finally:
            store.close()
    assert root is not None and not (run_dir / "checkpoints").exists()
    assert ["s3://" + o for o in s3.objects(root.removeprefix("s3://") + "/checkpoints")] == live
    # from a fresh process: the best model loads from the bucket, the schedule replays
    out = _run_fresh(
        "import sys, json, firepbt\n"
        "from firepbt.examples.sleep import Sleep\n"
        "r = firepbt.resume(sys.argv[1], progress=False)\n"
        "best = r.load_best(Sleep)\n"
        "replayed = firepbt.replay(sys.argv[1], seeds=1)\n"
        "print(json.dumps([r.best_score, best.evaluate(), replayed.member == r.best_member]))\n",
        run_dir,
    )
    score, evaluated, same = json.loads(out.splitlines()[-1])
    assert evaluated == pytest.approx(score) and same


def test_a_node_lost_mid_run_costs_time_and_never_the_run(cluster: Cluster) -> None:
    # last: node B does not come back
    code, err, run_dir = cluster.run("lost", kill_b_after=6, total_steps=100)
    assert code == 0, err[-3000:]
    store = Store.open(run_dir)
    try:
        members = store.members()
        assert all(m.status.value == "finished" and m.step == 100 for m in members), members
        # B's segment in flight ran again elsewhere, and a checkpoint B held in memory was
        # trained again from the last one on disk: time lost, nothing else
        kinds = {kind for _, _, kind, _ in store.failures()}
        assert kinds <= {"worker_died", "source_unreadable", "repaired"}, store.failures()
    finally:
        store.close()
    assert len(_nodes_used(run_dir)) == 2  # B ran segments before it went
