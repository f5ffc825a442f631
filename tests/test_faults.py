"""A bad config, a trainable that raises, a NaN metric, a dying worker: clear errors or recorded
member failures, never a lost record."""

from __future__ import annotations

from pathlib import Path

import pytest
from _runs import NEVER, every_member_fails, fault_run
from _trainables import BadMetric, Quad

import firepbt
from firepbt import ConfigError, Store
from firepbt.errors import RunFailed
from firepbt.execution import worker as segments
from firepbt.execution.in_process import InProcessExecutor
from firepbt.segments import SegmentResult
from firepbt.store import MemberStatus


def _one_of_four_raises(tmp_path: Path, quad_space, member: int, **options) -> firepbt.RunResult:
    """Four members trained in this process, of which ``member`` raises past step 6."""
    return fault_run(
        tmp_path / "r",
        quad_space,
        "fail_at",
        6,
        faulty=[member],
        population=4,
        ready_every=4,
        executor="inprocess",
        **options,
    )


def test_raising_trainable_is_recorded_and_the_run_goes_on(tmp_path: Path, quad_space) -> None:
    # Only member 2 raises, once it trains past step 6.
    result = _one_of_four_raises(
        tmp_path, quad_space, 2, total_steps=20, strategy="random", max_retries=1
    )
    store = Store.open(result.run_dir)
    statuses = {m.id: m.status for m in store.members()}
    assert statuses[2] is MemberStatus.FAILED
    assert [s for i, s in statuses.items() if i != 2] == [MemberStatus.FINISHED] * 3
    failures = [f for f in store.failures() if f[0] == 2]
    assert len(failures) == 2  # first attempt and one retry
    assert all(kind == "raised" and "boom at step 7" in msg for _, _, kind, msg in failures)
    # the points member 2 recorded before it failed are kept
    assert [p.step for m, p in store.points() if m == 2] == [4]
    assert result.best_member != 2
    store.close()


def test_nan_metric_ranks_worst_and_is_recorded(tmp_path: Path, quad_space) -> None:
    # member 0 (h0 = h1 = 0.9, the others 0.2) leads until its score becomes NaN at step 8
    result = fault_run(
        tmp_path / "r",
        quad_space,
        "nan_at",
        8,
        h=[0.9, 0.2, 0.2, 0.2],
        total_steps=16,
        population=4,
        ready_every=4,
        executor="inprocess",
        explore=firepbt.NoExplore(),
    )
    store = Store.open(result.run_dir)
    kinds = [(m, kind) for m, _, kind, _ in store.failures()]
    assert (0, "nan_metric") in kinds
    # member 0 led before its score became NaN; at step 8 it ranks worst and copies a donor
    exploits = [d for d in store.decisions() if d.kind == "exploit" and d.member == 0]
    assert exploits and exploits[0].step == 8
    import math

    assert math.isfinite(result.best_score)
    store.close()


def test_every_member_failing_is_a_clear_error(tmp_path: Path, quad_space) -> None:
    status, failures = every_member_fails(tmp_path / "r", quad_space, BadMetric)
    assert status == "failed"
    assert {kind for _, _, kind, _ in failures} == {"bad_metric"}
    assert "not a number" in failures[0][3]


def _first_of_three_on_workers(
    tmp_path: Path, quad_space, fault: str, **options
) -> firepbt.RunResult:
    """Three members on two worker processes, of which member 0 meets ``fault`` at step 5."""
    return fault_run(
        tmp_path / "r",
        quad_space,
        fault,
        5,
        total_steps=12,
        population=3,
        ready_every=4,
        executor="process",
        workers=2,
        strategy="random",
        **options,
    )


@pytest.mark.parametrize("fault", ["hang_at", "die_at"])
def test_a_segment_queued_behind_a_failing_one_runs_again_unharmed(
    tmp_path: Path, quad_space, fault: str
) -> None:
    # One worker process holds two segments: member 0's, which hangs or kills the process, and
    # member 1's, queued in its pipe. Member 1's is handed back unstarted and runs on the fresh
    # process; only member 0 records a failure.
    result = fault_run(
        tmp_path / "r", quad_space, fault, 5, total_steps=12, population=2, ready_every=4,
        executor="process", workers=1, strategy="random", max_retries=0,
        segment_timeout=20.0,
    )  # fmt: skip
    store = Store.open(result.run_dir)
    statuses = {m.id: m.status for m in store.members()}
    assert statuses == {0: MemberStatus.FAILED, 1: MemberStatus.FINISHED}
    kinds = [(m, kind) for m, _, kind, _ in store.failures()]
    assert all(m == 0 for m, _ in kinds) and kinds[-1][1] in ("timeout", "worker_died")
    steps = [p.step for m, p in store.points() if m == 1]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # every point once, to the end
    store.close()


def test_dying_worker_is_recorded_and_retried(tmp_path: Path, quad_space) -> None:
    result = _first_of_three_on_workers(tmp_path, quad_space, "die_at", max_retries=1)
    store = Store.open(result.run_dir)
    statuses = {m.id: m.status for m in store.members()}
    assert statuses[0] is MemberStatus.FAILED
    assert statuses[1] is MemberStatus.FINISHED and statuses[2] is MemberStatus.FINISHED
    assert any(kind == "worker_died" for m, _, kind, _ in store.failures() if m == 0)
    assert store.worker_steps() >= 2 * 12
    store.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"population": 0}, "population"),
        ({"ready_every": -1}, "ready_every"),
        ({"strategy": "bayes"}, "strategy.name: unknown strategy 'bayes'"),
        ({"mode": "maximise"}, "mode: expected 'max' or 'min'"),
        ({"synchrony": "sometimes"}, "synchrony"),
        ({"exploit": {"name": "truncation", "fraction": 0.9}}, "fraction"),
        ({"exploit": "roulette"}, "unknown exploit policy 'roulette'"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, quad_space, kwargs, match) -> None:
    options = dict(total_steps=8, population=2, ready_every=4, executor="inprocess")
    options.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        firepbt.run(Quad, quad_space, run_dir=tmp_path / "r", **options)
    assert not (tmp_path / "r").exists(), "a bad config must fail before anything is written"


def test_bad_space_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"space\.lr"):
        firepbt.run(
            Quad,
            {"lr": {"dist": "loguniform", "low": 0.0, "high": 1.0}},
            total_steps=4,
            run_dir=tmp_path / "r",
        )


class _LocalTrainable(firepbt.Trainable):  # importable, but its instances hold a lambda
    def __init__(self, hyperparameters, seed):
        super().__init__(hyperparameters, seed)
        self.fn = lambda x: x

    def train(self, steps):
        pass

    def evaluate(self):
        return 0.0

    def save(self):
        return {"fn": self.fn}

    def load(self, state):
        self.fn = state["fn"]


def test_unpicklable_state_is_a_clear_failure(tmp_path: Path, quad_space) -> None:
    with pytest.raises(RunFailed, match=r"\[checkpoint\].*cannot be pickled"):
        firepbt.run(
            _LocalTrainable,
            quad_space,
            total_steps=4,
            population=2,
            ready_every=4,
            executor="inprocess",
            run_dir=tmp_path / "r",
            max_retries=0,
        )


def test_a_hanging_segment_is_stopped_and_recorded(tmp_path: Path, quad_space) -> None:
    # The timeout is far above what a healthy segment takes even on a heavily loaded machine
    # (a 3 s timeout also stopped healthy segments there), and far below the hour it hangs.
    result = _first_of_three_on_workers(
        tmp_path, quad_space, "hang_at", max_retries=0, segment_timeout=20.0
    )
    store = Store.open(result.run_dir)
    statuses = {m.id: m.status for m in store.members()}
    assert statuses[0] is MemberStatus.FAILED
    assert statuses[1] is MemberStatus.FINISHED and statuses[2] is MemberStatus.FINISHED
    kinds = [(m, kind) for m, _, kind, _ in store.failures()]
    # only the hung segment's worker process was stopped: no other segment was interrupted
    assert kinds == [(0, "timeout")]
    store.close()


def test_a_corrupted_checkpoint_is_caught_and_recorded(tmp_path: Path, quad_space) -> None:
    """A checkpoint changed on disk after it was written is refused by its checksum."""
    from firepbt.checkpoints import CheckpointRef
    from firepbt.execution.worker import run_segment
    from firepbt.segments import Segment

    first = run_segment(
        Segment(1, 0, 0, 0, 4, 4, {"h0": 0.5, "h1": 0.5}, None, str(tmp_path / "a.ckpt"), Quad)
    )
    assert first.checkpoint is not None
    data = bytearray(Path(first.checkpoint.path).read_bytes())
    data[-2] ^= 0xFF
    Path(first.checkpoint.path).write_bytes(bytes(data))
    source = CheckpointRef(first.checkpoint.path, first.checkpoint.sha256, 0, 4, 1)
    second = run_segment(
        Segment(2, 1, 0, 4, 8, 4, {"h0": 0.5, "h1": 0.5}, source, str(tmp_path / "b.ckpt"), Quad)
    )
    assert second.failure is not None and second.failure.kind == "source_unreadable"
    assert "corrupted" in second.failure.message


def test_a_failing_member_is_replaced_by_an_exploit(tmp_path: Path, quad_space) -> None:
    result = _one_of_four_raises(
        tmp_path,
        quad_space,
        2,
        total_steps=20,
        max_retries=0,
        replace_failed=1,
        explore=firepbt.NoExplore(),
        exploit=firepbt.NoExploit(),
    )
    store = Store.open(result.run_dir)
    statuses = {m.id: m.status for m in store.members()}
    assert statuses == {i: MemberStatus.FINISHED for i in range(4)}
    (replaced,) = [d for d in store.decisions() if d.kind == "exploit"]
    assert replaced.member == 2 and "replaces failed member 2" in replaced.reason
    assert replaced.hyperparameters["fail_at"] == NEVER  # it took the donor's settings
    assert [kind for m, _, kind, _ in store.failures()] == ["raised"]
    store.close()


class _Corrupting(InProcessExecutor):
    """Flips a byte of the checkpoints named by (member, step) once they are written (with
    ``siblings``, of every other checkpoint of that member too), and forgets the trainables kept
    alive, as if the member continued on another worker."""

    def __init__(self, targets: set[tuple[int, int]], siblings: bool = False) -> None:
        super().__init__()
        self.targets = targets
        self.siblings = siblings

    def wait(self) -> list[SegmentResult]:
        results = super().wait()
        for r in results:
            ck = r.checkpoint
            if ck is None or r.segment.repair or (ck.member, ck.step) not in self.targets:
                continue
            self.targets.discard((ck.member, ck.step))
            files = list(Path(ck.path).parent.glob("*.ckpt")) if self.siblings else [ck.path]
            for file in files:
                data = bytearray(Path(file).read_bytes())
                data[-2] ^= 0xFF
                Path(file).write_bytes(bytes(data))
            segments._ALIVE.clear()
        return results


def _corrupt_run(
    path: Path, quad_space, targets: set[tuple[int, int]], siblings: bool = False, **kw
) -> firepbt.RunResult:
    options: dict = dict(total_steps=20, population=4, ready_every=4, run_dir=path, seed=2)
    options.update(kw)
    return firepbt.run(Quad, quad_space, executor=_Corrupting(targets, siblings), **options)


def test_a_corrupted_checkpoint_is_trained_again_from_its_parent(tmp_path: Path, quad_space):
    clean = _corrupt_run(tmp_path / "clean", quad_space, set())
    result = _corrupt_run(tmp_path / "bad", quad_space, {(1, 8)})
    # Quad is deterministic: the repaired run is the clean run, point for point.
    assert result.best_member == clean.best_member and result.best_score == clean.best_score
    assert result.schedule == clean.schedule
    store, clean_store = Store.open(result.run_dir), Store.open(clean.run_dir)
    assert store.points() == clean_store.points()
    kinds = [kind for _, _, kind, _ in store.failures()]
    assert kinds == ["source_unreadable", "repaired"]
    assert {m.status for m in store.members()} == {MemberStatus.FINISHED}
    # the store's checksum of the rewritten file is the one on disk
    assert all(Path(p).exists() for p, *_ in store.live_checkpoints())
    clean_store.close()
    store.close()


def test_a_checkpoint_and_its_parent_both_corrupted_fail_the_member(tmp_path: Path, quad_space):
    result = _corrupt_run(tmp_path / "r", quad_space, {(1, 8)}, True, exploit=firepbt.NoExploit())
    store = Store.open(result.run_dir)
    statuses = {m.id: m.status.value for m in store.members()}
    assert statuses == {0: "finished", 1: "failed", 2: "finished", 3: "finished"}
    failures = [(member, kind, message) for member, _, kind, message in store.failures()]
    assert [kind for _, kind, _ in failures] == ["source_unreadable", "source_unreadable"]
    assert all(member == 1 for member, _, _ in failures)
    assert "could not be trained again" in failures[-1][2]
    store.close()


@pytest.mark.parametrize("synchrony", ["sync", "async"])
def test_fire_replaces_a_failing_member_from_its_own_subpopulation(
    tmp_path: Path, quad_space, synchrony: str
) -> None:
    result = _one_of_four_raises(
        tmp_path,
        quad_space,
        3,  # member 3 is in P2 (members 2 and 3)
        strategy="fire",
        total_steps=24,
        subpopulations=2,
        evaluators=1,
        synchrony=synchrony,
        max_retries=0,
        replace_failed=1,
        explore=firepbt.NoExplore(),
    )
    store = Store.open(result.run_dir)
    statuses = {m.id: m.status for m in store.members() if m.id < 4}
    assert statuses == {i: MemberStatus.FINISHED for i in range(4)}
    (replaced,) = [d for d in store.decisions() if "replaces failed" in (d.reason or "")]
    assert replaced.member == 3 and replaced.donor == 2  # the other member of P2
    assert replaced.hyperparameters["fail_at"] == NEVER
    assert [kind for m, _, kind, _ in store.failures()] == ["raised"]
    store.close()
