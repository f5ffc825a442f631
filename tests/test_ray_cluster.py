"""A Ray cluster of two nodes on this machine, with token authentication: a head and node B, a
second raylet started by ``ray start`` (each with 1 CPU, so that each holds one of two workers).
Node C, started in its own mount namespace with a private tmpfs over the runs' folder, stands for
a machine with a disk of its own. The controller runs in a fresh process that joins the cluster, as
``firepbt run`` on the head would.

- On the head and B (which share this machine's disk), a synchronous PBT run submitted as a Ray
  job (``ray job submit -- firepbt run config.toml``) records the same decisions as in process,
  with segments on both nodes.
- A worker on C cannot see a run's storage path: the run stops before training, in one line
  naming the worker, its node and the path.
- With the checkpoints in S3 (``tests/_s3.py``), and with no storage at all (C relays its
  checkpoints through the controller), synchronous PBT and FIRE PBT train on all three nodes,
  with no failure and the decisions made in process; a run whose controller is killed with
  ``kill -9`` resumes to them from a fresh process; the best model loads and the schedule
  replays from a fresh process.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _s3 import BUCKET, S3

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
# the same run in process, without the sleeps (which change no decision; ``_decisions`` leaves
# the constant out)
IN_PROCESS = {"x": Uniform(0.0, 1.0), "seconds": 0.0}
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
        # the dashboard takes `ray job submit`
        self.dashboard = f"http://127.0.0.1:{_free_port()}"
        self.head = _node(
            [RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--block"]
            + ["--include-dashboard=true", "--dashboard-host=127.0.0.1"]
            + [f"--dashboard-port={self.dashboard.rsplit(':', 1)[1]}"]
            + ["--node-ip-address=127.0.0.1"]
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
        at_points: tuple[int, Callable[[], object]] | None = None,
        kill_controller_after: int | None = None,
        env: dict[str, str] | None = None,
        **extra: Any,
    ) -> Any:
        """``firepbt.run`` of the toy problem in a fresh process joined to the cluster; with
        ``at_points`` (n, act), ``act`` is called once n points are recorded."""
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
        if at_points is not None:
            _after_points(run_dir, *at_points, proc)
        if kill_controller_after is not None:
            _after_points(run_dir, kill_controller_after, lambda: proc.send_signal(9), proc)
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


def _after_points(run_dir: Path, points: int, act: Callable[[], object], proc: Any) -> None:
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
def cluster(tmp_path_factory: pytest.TempPathFactory, s3: S3) -> Iterator[Cluster]:
    ENV.update(s3.env)  # every node and controller has the S3 server's credentials and endpoint
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        c.close()


def _decisions(run_dir: Path) -> list[tuple[Any, ...]]:
    """Each decision: member, step, kind, donor and hyperparameters, the sleep left out."""
    store = Store.open(run_dir)
    try:
        return [
            (d.member, d.step, d.kind, d.donor, json.dumps(_tuned(d.hyperparameters)))
            for d in store.decisions()
        ]
    finally:
        store.close()


def _tuned(hyperparameters: dict[str, Any] | None) -> dict[str, Any] | None:
    if hyperparameters is None:
        return None
    assert hyperparameters["seconds"] in (0.0, SPACE["seconds"])
    return {k: v for k, v in sorted(hyperparameters.items()) if k != "seconds"}


def _nodes_used(run_dir: Path) -> set[str]:
    """The Ray nodes that ran a segment, from the workers' names (host/node-ID/pid-N)."""
    with sqlite3.connect(run_dir / "firepbt.sqlite") as c:
        rows = c.execute("SELECT t.text FROM segments s JOIN texts t ON t.id = s.worker")
        workers = [w for (w,) in rows if w]
    return {w.split("/")[1] for w in workers}


def test_a_ray_job_runs_a_config_on_two_nodes_as_in_process(
    cluster: Cluster, tmp_path: Path, in_process: dict[str, Path]
) -> None:
    """The controller as a Ray job (`ray job submit -- firepbt run config.toml`), the head and
    B sharing the run directory's disk: the decisions made in process, segments on both nodes,
    no failure."""
    run_dir = cluster.runs / "job"
    config = tmp_path / "job.toml"
    config.write_text(
        'trainable = "firepbt.examples.sleep:Sleep"\n'
        f'run_dir = "{run_dir}"\n'
        "[space]\n"
        'x = { dist = "uniform", low = 0.0, high = 1.0 }\n'
        f"seconds = {SPACE['seconds']}\n"
        "[strategy]\npopulation = 4\nready_every = 10\n"
        "[budget]\nsteps = 60\n"
        '[executor]\nkind = "ray"\naddress = "auto"\nworkers = 2\n'
    )
    entrypoint = [sys.executable, "-m", "firepbt.cli", "run", config.name, "--quiet", "--seed", "5"]
    done = subprocess.run(
        [RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", str(tmp_path)]
        + ["--", *entrypoint],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    store = Store.open(run_dir)
    try:
        assert store.meta("status") == "finished" and store.failures() == []
        assert all(m.step == 60 for m in store.members())
    finally:
        store.close()
    assert len(_nodes_used(run_dir)) == 2
    assert _decisions(run_dir) == _decisions(in_process["pbt"])


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


@pytest.fixture(scope="class")
def with_c(cluster: Cluster) -> Iterator[Cluster]:
    """Node C joined, with a disk of its own over the runs' folder (it sees none of the head's
    files); gone again afterwards."""
    c = cluster.join(private_runs=True)
    try:
        _wait_for_nodes(cluster.address, 3)
        yield cluster
    finally:
        _stop(c)
        _wait_for_nodes(cluster.address, 2)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test runs of PBT and FIRE PBT in process, to compare decisions with."""
    made = {}
    for name, extra in (("pbt", {}), ("fire", FIRE)):
        made[name] = tmp_path_factory.mktemp("in-process") / name
        options = {**OPTIONS, **extra}
        firepbt.run(
            TRAINABLE,
            IN_PROCESS,
            run_dir=made[name],
            executor="inprocess",
            progress=False,
            **options,
        )
    return made


def _kill_and_resume(cluster: Cluster, name: str, **options: Any) -> Path:
    """A run whose controller is killed with kill -9 mid-run, then resumed from a fresh
    process."""
    code, err, run_dir = cluster.run(name, kill_controller_after=10, **options)
    assert code == -9, err[-3000:]
    _run_fresh("import sys, firepbt\nfirepbt.resume(sys.argv[1], progress=False)\n", run_dir)
    return run_dir


def _check_run(run_dir: Path, reference: Path, killed: bool) -> list[str]:
    """The run finished on all three nodes with the decisions made in process; its live
    checkpoints."""
    assert _decisions(run_dir) == _decisions(reference)
    assert len(_nodes_used(run_dir)) == 3  # the head, B and C each ran segments
    store = Store.open(run_dir)
    try:
        assert store.meta("status") == "finished"
        # a killed run's checkpoints held in its actors' memory were trained again from the
        # last ones written: time lost, nothing else
        allowed = {"source_unreadable", "repaired"} if killed else set()
        assert {kind for _, _, kind, _ in store.failures()} <= allowed, store.failures()
        return sorted(p for p, *_ in store.live_checkpoints())
    finally:
        store.close()


def _load_and_replay(run_dir: Path) -> None:
    """From a fresh process: the best model loads, the schedule replays."""
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


class TestNodeWithADiskOfItsOwn:
    """Node C joined for these tests (``with_c``), gone again before the next."""

    def test_a_storage_path_a_node_cannot_see_is_refused_in_one_line(self, with_c: Cluster) -> None:
        storage = with_c.runs / "checkpoints"  # a path on the head's disk, not on C's
        code, err, run_dir = with_c.run("private", workers=3, storage=str(storage))
        assert code != 0
        last = err.strip().splitlines()[-1]
        assert "ConfigError: storage: Ray worker" in last, err[-3000:]
        assert f"cannot reach the run's storage {storage}/private-" in last
        assert "on its node, cannot read" in last and "/node-" in last
        assert f"Nothing was trained: firepbt resume {run_dir} starts it then" in last
        store = Store.open(run_dir)
        try:
            assert store.points() == [] and store.meta("status") == "failed"
        finally:
            store.close()

    def test_nodes_sharing_no_disk_train_with_checkpoints_in_s3(
        self, with_c: Cluster, s3: S3, in_process: dict[str, Path]
    ) -> None:
        storage = {"storage": f"s3://{BUCKET}/cluster", "workers": 3}
        code, err, pbt = with_c.run("s3", **storage)
        assert code == 0, err[-3000:]
        fire = _kill_and_resume(with_c, "s3-fire", **storage, **FIRE)
        assert {"assign", "exploit"} <= {d[2] for d in _decisions(fire)}
        for run_dir, reference, killed in ((pbt, "pbt", False), (fire, "fire", True)):
            live = _check_run(run_dir, in_process[reference], killed)
            root = Store.open(run_dir).meta("storage")
            assert root is not None and not (run_dir / "checkpoints").exists()
            objects = s3.objects(root.removeprefix("s3://") + "/checkpoints")
            assert ["s3://" + o for o in objects] == live  # the released ones were deleted
        _load_and_replay(pbt)

    def test_nodes_sharing_no_disk_and_no_storage_relay_checkpoints_through_the_controller(
        self, with_c: Cluster, in_process: dict[str, Path]
    ) -> None:
        code, err, fire = with_c.run("relay-fire", workers=3, **FIRE)
        assert code == 0, err[-3000:]
        pbt = _kill_and_resume(with_c, "relay", workers=3)
        for run_dir, reference, killed in ((fire, "fire", False), (pbt, "pbt", True)):
            live = _check_run(run_dir, in_process[reference], killed)
            # the durable copies are in the controller's run directory
            assert live and all(Path(p).is_relative_to(run_dir) and Path(p).is_file() for p in live)
        _load_and_replay(fire)


def test_a_node_lost_mid_run_costs_time_and_never_the_run(cluster: Cluster) -> None:
    # last: node B does not come back
    code, err, run_dir = cluster.run(
        "lost", at_points=(6, lambda: _stop(cluster.b)), total_steps=100
    )
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


def test_a_node_that_joins_mid_run_takes_the_worker_that_was_waiting(cluster: Cluster) -> None:
    # after the last: only the head is left, and the second worker waits for a CPU until node D
    # (a disk of its own: it relays) joins
    joined: list[subprocess.Popen[bytes]] = []
    try:
        code, err, run_dir = cluster.run(
            "grows",
            at_points=(6, lambda: joined.append(cluster.join(private_runs=True))),
            total_steps=100,
        )
        assert code == 0, err[-3000:]
    finally:
        for node in joined:
            _stop(node)
    assert joined
    store = Store.open(run_dir)
    try:
        assert all(m.status.value == "finished" and m.step == 100 for m in store.members())
        assert store.failures() == []  # nothing lost: the run only went faster
    finally:
        store.close()
    assert len(_nodes_used(run_dir)) == 2  # the head, then D too
