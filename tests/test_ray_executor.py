"""RayExecutor: the same run as in-process, affinity that keeps trainables alive, a dying worker
and a hung segment recorded as failures. One local Ray (2 CPUs) serves the whole module."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from _trainables import Quad

import firepbt
from firepbt import ConfigError, RunConfig, Store
from firepbt.execution.ray_actors import RayExecutor
from firepbt.segments import Segment
from firepbt.store import MemberStatus

ray = pytest.importorskip("ray")

TESTS = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    from ray.job_config import JobConfig

    # Workers import the test trainables from tests/, which is not on their path by default.
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        job_config=JobConfig(code_search_path=[str(TESTS)]),
    )
    yield
    ray.shutdown()


def _schedule(result: firepbt.RunResult) -> list[tuple[int, int, int, tuple]]:
    return [
        (e.member, e.from_step, e.to_step, tuple(sorted(e.hyperparameters.items())))
        for e in result.schedule
    ]


def test_sync_pbt_on_ray_matches_in_process(tmp_path: Path, quad_space) -> None:
    options = dict(total_steps=24, population=4, ready_every=4, seed=3, workers=2)
    local = firepbt.run(Quad, quad_space, executor="inprocess", run_dir=tmp_path / "a", **options)
    remote = firepbt.run(Quad, quad_space, executor="ray", run_dir=tmp_path / "b", **options)
    assert remote.best_member == local.best_member
    assert remote.best_score == local.best_score
    assert _schedule(remote) == _schedule(local)
    # Most segments that continue their own member's weights found the trainable alive.
    store = Store.open(remote.run_dir)
    rows = store._conn.execute(
        "SELECT s.reused FROM segments s JOIN segments source ON s.source_segment = source.id "
        "WHERE s.member = source.member AND s.status = 'done'"
    ).fetchall()
    store.close()
    assert len(rows) >= 8
    assert sum(reused for (reused,) in rows) > len(rows) / 2


def test_held_checkpoints_on_ray_match_in_process(tmp_path: Path, quad_space) -> None:
    """Members continue from the memory of the actor that holds their weights; donors are
    written out for the actor that copies them; the run is the in-process run."""

    class Counting(RayExecutor):
        held = 0

        def wait(self):  # type: ignore[no-untyped-def]
            results = super().wait()
            Counting.held += sum(bool(r.checkpoint and r.checkpoint.holder) for r in results)
            return results

    options = dict(total_steps=24, population=4, ready_every=4, seed=3, checkpoint_every=12)
    local = firepbt.run(Quad, quad_space, executor="inprocess", run_dir=tmp_path / "a", **options)
    remote = firepbt.run(Quad, quad_space, executor=Counting(2), run_dir=tmp_path / "b", **options)
    assert (remote.best_member, remote.best_score) == (local.best_member, local.best_score)
    assert _schedule(remote) == _schedule(local)
    assert Counting.held == 16  # steps 4, 8, 16 and 20 of 4 members; 12 and 24 are due
    store = Store.open(remote.run_dir)
    assert store.held_checkpoints() == []
    assert any(d.kind == "exploit" and d.donor != d.member for d in store.decisions())
    assert store.failures() == []  # every donor was written out: none had to be trained again
    store.close()


def test_affinity_sends_a_member_back_to_its_worker(tmp_path: Path) -> None:
    h = {"h0": 0.5, "h1": 0.5}

    def segment(seg_id: int, member: int, start: int, source=None) -> Segment:
        path = str(tmp_path / f"{seg_id}.ckpt")
        return Segment(seg_id, member, 0, start, start + 2, 2, h, source, path, Quad)

    executor = RayExecutor(workers=2)
    try:
        executor.submit(segment(1, 0, 0))
        executor.submit(segment(2, 1, 0))
        first = {}
        while executor.pending():
            first.update({r.segment.member: r for r in executor.wait()})
        assert first[0].worker != first[1].worker
        # Submitted in the other order, each member still goes to the worker that holds it.
        executor.submit(segment(3, 1, 2, first[1].checkpoint))
        executor.submit(segment(4, 0, 2, first[0].checkpoint))
        second = {}
        while executor.pending():
            second.update({r.segment.member: r for r in executor.wait()})
    finally:
        executor.shutdown()
    for member in (0, 1):
        assert second[member].failure is None
        assert second[member].worker == first[member].worker
        assert second[member].reused_trainable


def test_a_segment_no_worker_can_take_is_a_recorded_failure(tmp_path: Path, monkeypatch) -> None:
    # A trainable whose module exists only in this process cannot be unpickled by a worker.
    ghost = types.ModuleType("firepbt_ghost_module")
    exec("from _trainables import Quad\n\nclass Ghost(Quad):\n    pass\n", ghost.__dict__)
    monkeypatch.setitem(sys.modules, ghost.__name__, ghost)
    h = {"h0": 0.5, "h1": 0.5}

    def segment(seg_id: int, trainable: type, **extra: object) -> Segment:
        path = str(tmp_path / f"{seg_id}.ckpt")
        return Segment(seg_id, 0, 0, 0, 2, 2, {**h, **extra}, None, path, trainable)

    executor = RayExecutor(workers=1)
    try:
        results = []
        for seg in (
            segment(1, ghost.Ghost),
            segment(2, Quad, lock=threading.Lock()),
            segment(3, Quad),
        ):
            executor.submit(seg)
            results += executor.wait()
    finally:
        executor.shutdown()
    ghost_failure, lock_failure, fine = (r.failure for r in results)
    assert ghost_failure is not None and ghost_failure.kind == "submit"
    assert "firepbt_ghost_module" in ghost_failure.message
    assert "importable on every node" in ghost_failure.message
    assert lock_failure is not None and lock_failure.kind == "submit"
    assert "cannot pickle '_thread.lock'" in lock_failure.message
    assert fine is None, "the worker still runs segments after both"


def _quad_run(tmp_path: Path, quad_space, fault: str, **options) -> Store:
    space = {**quad_space, fault: firepbt.Choice([5, 10**9])}
    initial = [{"h0": 0.5, "h1": 0.5, fault: 5}] + [
        {"h0": 0.5, "h1": 0.5, fault: 10**9} for _ in range(2)
    ]
    result = firepbt.run(
        Quad,
        space,
        total_steps=12,
        population=3,
        ready_every=4,
        executor="ray",
        workers=2,
        run_dir=tmp_path / "r",
        strategy="random",
        initial_hyperparameters=initial,
        **options,
    )
    store = Store.open(result.run_dir)
    statuses = {m.id: m.status for m in store.members()}
    assert statuses[0] is MemberStatus.FAILED
    assert statuses[1] is MemberStatus.FINISHED and statuses[2] is MemberStatus.FINISHED
    assert store.worker_steps() >= 2 * 12
    return store


def test_a_dying_worker_is_recorded_and_the_run_completes(tmp_path: Path, quad_space) -> None:
    store = _quad_run(tmp_path, quad_space, "die_at", max_retries=0)
    kinds = [(m, kind) for m, _, kind, _ in store.failures()]
    assert (0, "worker_died") in kinds
    assert all("its Ray worker died" in message for *_, message in store.failures())
    assert {m for m, _ in kinds} == {0}, "a crash stops only its own actor"
    store.close()


def test_a_hung_segment_is_stopped_at_the_timeout(tmp_path: Path, quad_space) -> None:
    # far above a healthy segment on a loaded machine, far below the hour it hangs
    store = _quad_run(tmp_path, quad_space, "hang_at", max_retries=0, segment_timeout=20.0)
    failures = store.failures()
    assert [(m, kind) for m, _, kind, _ in failures] == [(0, "timeout")]
    assert "20 s segment_timeout" in failures[0][3]
    store.close()


def test_ray_options_are_checked_by_the_config() -> None:
    base = dict(trainable="firepbt.examples.toy:Toy", space={"h0": 0.5}, total_steps=4)
    with pytest.raises(ConfigError, match="executor.address: only the ray executor"):
        RunConfig(**base, address="auto")
    with pytest.raises(ConfigError, match="executor.num_cpus_per_worker: expected a positive"):
        RunConfig(**base, executor="ray", num_cpus_per_worker=0)
    config = RunConfig.from_mapping(
        {
            **{k: v for k, v in base.items() if k != "total_steps"},
            "budget": {"steps": 4},
            "executor": {"kind": "ray", "address": "auto", "num_cpus_per_worker": 2},
        }
    )
    assert (config.executor, config.address, config.num_cpus_per_worker) == ("ray", "auto", 2)


def test_gpus_per_worker_asks_ray_for_gpus_it_must_have(tmp_path: Path, quad_space) -> None:
    # This module's Ray has no GPUs: a run asking for one per worker is refused with the reason.
    with pytest.raises(ConfigError, match=r"asks Ray for 1 GPU\(s\), but the Ray cluster has 0"):
        firepbt.run(
            Quad,
            quad_space,
            total_steps=8,
            population=2,
            ready_every=4,
            executor="ray",
            gpus_per_worker=1,
            run_dir=tmp_path / "r",
        )
    executor = RayExecutor(2, num_gpus_per_worker=0.5)
    assert executor.num_gpus_per_worker == 0.5
    with pytest.raises(ConfigError, match="1/k of a device"):
        RayExecutor(2, num_gpus_per_worker=0.3)


WAITING = """
import sys, ray, firepbt
from firepbt.execution.ray_actors import RayExecutor
ray.init(address="local", num_cpus=1, include_dashboard=False)
executor = RayExecutor(workers=1, num_cpus_per_worker=2)  # more CPUs than this Ray has
executor.placement_note = 0.5
space = {"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)}
firepbt.run("firepbt.examples.toy:Toy", space, total_steps=10, executor=executor,
            run_dir=sys.argv[1], progress=False)
"""


def test_status_shows_a_run_that_waits_for_workers_and_why(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    run_dir = tmp_path / "waits"
    proc = subprocess.Popen(
        [sys.executable, "-c", WAITING, str(run_dir)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    status = ""
    try:
        deadline = time.monotonic() + 180
        while "waiting for workers" not in status:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
            if (run_dir / "firepbt.sqlite").exists():
                status = subprocess.run(
                    [sys.executable, "-m", "firepbt.cli", "status", str(run_dir)],
                    capture_output=True,
                    text=True,
                    timeout=120,
                ).stdout
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    line = " ".join(status.split())  # the table may wrap it
    assert "status: running, waiting for workers: no Ray worker is up after 0.5 s" in line
    assert "the cluster has 1 CPUs free and each worker needs 2" in line


def test_a_runtime_env_reaches_every_worker(tmp_path: Path) -> None:
    from _trainables import EnvScore

    space = {"x": firepbt.Uniform(0.0, 1.0)}
    env = {"env_vars": {"FIREPBT_TEST_SCORE": "7.5"}}
    result = firepbt.run(
        EnvScore, space, total_steps=8, population=2, ready_every=4, executor="ray",
        workers=2, runtime_env=env, run_dir=tmp_path / "env", progress=False,
    )  # fmt: skip
    store = Store.open(result.run_dir)
    try:
        scores = [p.score for _, p in store.points()]
        assert scores and all(s == 7.5 for s in scores), scores
        assert store.failures() == []
    finally:
        store.close()
    with pytest.raises(ConfigError, match="executor.runtime_env: only the ray executor takes it"):
        firepbt.run(EnvScore, space, total_steps=8, runtime_env=env, executor="process")
