"""The vectorised executor: worker processes that each train several members as one population.

On the NQM a vectorised member is bit for bit the ordinary one (``NQMVectorised``), so a run on
the vectorised executor must record exactly what the ordinary run records: every point, decision
and schedule. (MNIST-1D, whose batched convolutions round differently, is compared within a
tolerance in ``tests/examples/test_mnist1d_vectorised.py``.)
"""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _runs import drops_wait_for_an_idle_worker, kill_after
from _trainables import Quad
from _vectorised_trainables import FaultyNQMVectorised

import firepbt
from firepbt import LogUniform, Store
from firepbt.checkpoints import CheckpointRef
from firepbt.config import RunConfig, tomllib
from firepbt.control.executor_choice import make_executor
from firepbt.errors import ConfigError
from firepbt.examples.nqm import NQM
from firepbt.examples.nqm_vectorised import NQMVectorised
from firepbt.execution.slots import SlotWorker
from firepbt.execution.vectorised_pool import VectorisedPoolExecutor
from firepbt.execution.worker import run_segment
from firepbt.segments import Segment

EXAMPLES = Path(__file__).parent.parent / "examples"
SPACE = {"lr": LogUniform(1e-3, 1.9, bounds=(1e-5, 1.9)), "dim": 20}
RUN = {"mode": "min", "metric": "loss", "seed": 3, "total_steps": 60, "ready_every": 10}


def _run(run_dir: Path, trainable: Any, **options: Any) -> firepbt.RunResult:
    return firepbt.run(trainable, SPACE, run_dir=run_dir, **{**RUN, **options})


def _recorded(run_dir: Path) -> tuple[list[Any], list[Any]]:
    """Every point (member, step, score, metrics) and decision a run recorded (sorted: the
    order in which members finish their segments differs between executors)."""
    store = Store.open(run_dir)
    try:
        points = sorted((m, p.step, p.score, sorted(p.metrics.items())) for m, p in store.points())
        decisions = sorted(
            (
                (d.member, d.step, d.kind, d.donor, d.source_step, d.hyperparameters)
                for d in store.decisions()
            ),
            key=repr,
        )
        return points, decisions
    finally:
        store.close()


def _query(run_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(run_dir / "firepbt.sqlite") as c:
        return c.execute(sql).fetchall()


@pytest.mark.parametrize(
    ("strategy", "options", "trainable"),
    [
        ("pbt", {"population": 8, "synchrony": "sync"}, NQM),  # NQM names NQMVectorised
        ("random", {"population": 6}, NQMVectorised),
        (
            "fire",
            {"population": 8, "subpopulations": 2, "evaluators": 3, "synchrony": "sync"},
            NQMVectorised,
        ),
    ],
)
def test_a_run_records_exactly_what_the_ordinary_run_records(
    tmp_path: Path, strategy: str, options: dict[str, Any], trainable: Any
) -> None:
    ordinary = _run(tmp_path / "o", NQM, strategy=strategy, executor="inprocess", **options)
    vectorised = _run(tmp_path / "v", trainable, strategy=strategy, slots=4, **options)
    assert _recorded(tmp_path / "v") == _recorded(tmp_path / "o")
    assert (vectorised.best_member, vectorised.best_score) == (
        ordinary.best_member,
        ordinary.best_score,
    )
    assert vectorised.schedule == ordinary.schedule
    if strategy != "random":  # members took other members' weights
        kinds = {d[2] for d in _recorded(tmp_path / "v")[1]}
        assert kinds & {"exploit", "assign", "handover"}


def test_exploits_on_one_worker_copy_slot_to_slot(tmp_path: Path) -> None:
    """One worker holds the whole population: an exploit copies the donor's slot. No checkpoint
    is written out for it (no 'written' event, nothing held written) and none is read (every
    segment after the first took its member's state from a slot: ``reused``)."""
    run_dir = tmp_path / "run"
    _run(
        run_dir,
        NQMVectorised,
        population=8,
        synchrony="sync",
        slots=8,
        workers=1,
        checkpoint_every=1000,
    )
    exploits = _query(run_dir, "SELECT COUNT(*) FROM decisions WHERE kind = 'exploit'")
    copied = _query(
        run_dir,
        "SELECT COUNT(*) FROM segments s JOIN decisions d ON d.member = s.member AND "
        "d.step = s.start_step AND d.kind = 'exploit' AND d.donor != d.member",
    )
    assert exploits[0][0] > 0 and copied[0][0] > 0
    assert _query(run_dir, "SELECT COUNT(*) FROM events WHERE kind = 'written'") == [(0,)]
    held_written = "SELECT COUNT(*) FROM checkpoints WHERE holder IS NOT NULL AND written = 1"
    assert _query(run_dir, held_written) == [(0,)]
    later = _query(run_dir, "SELECT reused FROM segments WHERE start_step > 0")
    assert later and all(r == (1,) for r in later)
    files = list((run_dir / "checkpoints").rglob("*.ckpt"))
    assert all(f.name.startswith("step-00000060") for f in files)  # only the budget's end


def _segment(member: int, source: CheckpointRef | None, start: int, path: Path) -> Segment:
    return Segment(
        id=member * 100 + start,
        member=member,
        seed=member,
        start_step=start,
        end_step=start + 10,
        eval_every=5,
        hyperparameters={"lr": 0.1 * (member + 1), "dim": 8},
        source=source,
        checkpoint_path=str(path / f"m{member}-{start}.ckpt"),
        trainable=NQM,
        metric="loss",
        persist=False,
    )


def test_a_slot_worker_copies_exploits_and_reads_no_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker side, in this process: member 2 exploits member 0 (copy), members 0 and 1
    continue in place, and member 3 takes member 1's weights while member 1 goes on too; every
    result equals the ordinary path's."""
    import firepbt.execution.slots as batch

    reads: list[str] = []
    monkeypatch.setattr(batch, "read_source", lambda source: reads.append(source.path))
    worker = SlotWorker()
    first = [_segment(m, None, 0, tmp_path) for m in range(4)]
    done = worker.run(NQMVectorised, 4, first)
    refs = {r.segment.member: r.checkpoint for r in done}
    second = [
        _segment(0, refs[0], 10, tmp_path),
        _segment(1, refs[1], 10, tmp_path),
        _segment(2, refs[0], 10, tmp_path),  # exploit: 2 takes 0's weights
        _segment(3, refs[1], 10, tmp_path),  # 3 takes 1's
    ]
    results = worker.run(NQMVectorised, 4, second)
    assert reads == []
    assert worker.counts == {"continued": 2, "copied": 2, "loaded": 0, "fresh": 4}
    assert all(r.failure is None and r.reused_trainable for r in results)
    monkeypatch.undo()
    for segment, result in zip([*first, *second], [*done, *results], strict=True):
        assert result.points == run_segment(segment).points


def _final_status(run_dir: Path) -> dict[int, tuple[float, str]]:
    """Each member's first learning rate and status."""
    store = Store.open(run_dir)
    try:
        firsts = {s.member: s.hyperparameters["lr"] for s in reversed(store.segments())}
        return {m.id: (firsts[m.id], m.status.value) for m in store.members()}
    finally:
        store.close()


@pytest.mark.parametrize("fault", ["fail_at", "die_at", "hang_at"])
def test_a_member_that_raises_kills_or_hangs_its_worker_fails_alone(
    tmp_path: Path, fault: str
) -> None:
    """Random search, 4 members on one worker; those with lr above 0.3 meet the fault at step
    25. A batch that raises is run again member by member; a worker that dies, or a batch past
    the segment timeout, is replaced and its segments run again alone: only the faulty members
    fail, each with its own failure."""
    run_dir = tmp_path / "run"
    firepbt.run(
        FaultyNQMVectorised,
        {**SPACE, "fault_lr": 0.3, fault: 25},
        run_dir=run_dir,
        strategy="random",
        slots=4,
        workers=1,
        population=4,
        max_retries=0 if fault == "hang_at" else 1,
        segment_timeout=3 if fault == "hang_at" else None,
        **{**RUN, "total_steps": 40},
    )
    status = _final_status(run_dir)
    faulty = {m for m, (lr, _) in status.items() if lr > 0.3}
    assert faulty and faulty != set(status)  # the seed gives both kinds
    assert {m for m, (_, s) in status.items() if s == "failed"} == faulty
    failures = _query(run_dir, "SELECT member, kind, message FROM failures ORDER BY id")
    last = {m: (k, message) for m, k, message in failures}  # each member's last failure
    kind = {"fail_at": "raised", "die_at": "worker_died", "hang_at": "timeout"}[fault]
    assert {m: k for m, (k, _) in last.items() if m in faulty} == dict.fromkeys(faulty, kind)
    if fault == "fail_at":
        assert all("boom in slot" in last[m][1] for m in faulty)
        assert set(last) == faulty  # the others never failed
    else:  # the others failed only as bystanders of the dead or stopped worker
        assert {k for m, k, _ in failures if m not in faulty} <= {"worker_died"}


@pytest.mark.parametrize(
    ("trainable", "options", "message"),
    [
        (Quad, {"slots": 4}, "only a vectorised trainable"),
        (NQMVectorised, {}, "is a vectorised trainable: say how many members"),
        (NQMVectorised, {"slots": 0}, "executor.slots: expected a positive integer"),
        (NQMVectorised, {"slots": 2, "executor": "inprocess"}, "only the process executor"),
        (
            NQMVectorised,
            {"slots": 2, "executor": VectorisedPoolExecutor(NQMVectorised, 2)},
            "an Executor instance carries its own settings",
        ),
    ],
)
def test_mismatched_slots_are_refused_before_anything_runs(
    tmp_path: Path, trainable: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _run(tmp_path / "run", trainable, population=4, **options)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "population"),
    [("nqm_pbt.toml", NQMVectorised), ("nqm_fire.toml", NQMVectorised)]
    + [
        pytest.param(
            name,
            "MNIST1DVectorised",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("torch") is None, reason="needs torch"
            ),
        )
        for name in ("mnist1d_pbt.toml", "mnist1d_fire.toml")
    ],
)
def test_one_switch_vectorises_an_example_config(name: str, population: Any) -> None:
    """``slots = 8`` under ``[executor]`` (commented out in each example) is the whole switch."""
    text = (EXAMPLES / name).read_text()
    assert "# slots = 8" in text
    config = RunConfig.from_mapping(tomllib.loads(text.replace("# slots = 8", "slots = 8")))
    executor = make_executor(config)
    assert isinstance(executor, VectorisedPoolExecutor)
    assert executor.population.__name__ == getattr(population, "__name__", population)
    assert executor.capacity == 8 * config.workers
    assert not isinstance(
        make_executor(RunConfig.from_toml(EXAMPLES / name)), VectorisedPoolExecutor
    )


def _toml(run_dir: Path, steps: int) -> str:
    return f"""
trainable = "firepbt.examples.nqm_vectorised:NQMVectorised"
mode = "min"
metric = "loss"
seed = 3
eval_every = 10
run_dir = "{run_dir}"
[space]
lr = {{ dist = "loguniform", low = 0.001, high = 1.9, bounds = [0.00001, 1.9] }}
dim = 50
[strategy]
name = "pbt"
population = 6
ready_every = 50
synchrony = "sync"
[budget]
steps = {steps}
[executor]
kind = "process"
workers = 2
slots = 3
"""


def test_a_killed_run_resumes_and_ends_as_if_never_killed(tmp_path: Path) -> None:
    """The controller of a config run (``[executor] slots = 3``) is killed with its workers;
    ``firepbt.resume`` ends it exactly as the same run left alone."""
    (tmp_path / "ref.toml").write_text(_toml(tmp_path / "ref", 1000))
    (tmp_path / "run.toml").write_text(_toml(tmp_path / "run", 1000))
    cli = [sys.executable, "-m", "firepbt.cli", "run"]
    subprocess.run([*cli, str(tmp_path / "ref.toml"), "--quiet"], check=True, timeout=120)
    proc = subprocess.Popen(
        [*cli, str(tmp_path / "run.toml"), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    kill_after(proc, tmp_path / "run" / "firepbt.sqlite", 150)
    killed_at = len(_query(tmp_path / "run", "SELECT 1 FROM points"))
    assert 0 < killed_at < len(_query(tmp_path / "ref", "SELECT 1 FROM points"))
    result = firepbt.resume(tmp_path / "run")
    assert _recorded(tmp_path / "run") == _recorded(tmp_path / "ref")
    reference = firepbt.resume(tmp_path / "ref")  # finished: its result
    assert (result.best_member, result.best_score) == (reference.best_member, reference.best_score)
    assert result.schedule == reference.schedule


def test_replay_with_the_ordinary_trainable_reproduces_the_best_score(tmp_path: Path) -> None:
    result = _run(tmp_path / "run", NQMVectorised, population=8, synchrony="sync", slots=4)
    replayed = firepbt.replay(tmp_path / "run", "best")
    assert replayed.runs[0].points[-1].score == result.best_score
    best = result.load_best(NQM)  # the run's checkpoint loads into the ordinary trainable
    assert best.evaluate()["loss"] == result.best_score


def test_asynchronous_pbt_runs_to_the_end(tmp_path: Path) -> None:
    """Asynchronous PBT is not refused: it batches whatever is ready when a worker is free."""
    result = _run(tmp_path / "run", NQMVectorised, population=6, synchrony="async", slots=3)
    assert result.schedule[-1].to_step == RUN["total_steps"]
    # every member finished (one exploited at its last step by a finished donor ends with the
    # donor's final weights, without training again)
    assert {status for _, status in _final_status(tmp_path / "run").values()} == {"finished"}
    assert _query(tmp_path / "run", "SELECT COUNT(*) FROM failures") == [(0,)]


def test_two_members_that_swap_weights_on_a_full_worker(tmp_path: Path) -> None:
    """Two slots, each member taking the other's weights: each destination is the other's
    source, so one copies slot to slot and the other loads the held bytes; both equal the
    ordinary path."""
    worker = SlotWorker()
    first = [_segment(m, None, 0, tmp_path) for m in range(2)]
    refs = {r.segment.member: r.checkpoint for r in worker.run(NQMVectorised, 2, first)}
    swap = [_segment(0, refs[1], 10, tmp_path), _segment(1, refs[0], 10, tmp_path)]
    results = worker.run(NQMVectorised, 2, swap)
    assert worker.counts == {"continued": 0, "copied": 1, "loaded": 1, "fresh": 2}
    for segment, result in zip(swap, results, strict=True):
        assert result.failure is None
        assert result.points == run_segment(segment).points


def test_a_vectorised_worker_forgets_a_dropped_checkpoint_once_it_trains_nothing(
    tmp_path: Path,
) -> None:
    """As on the process pool (tests/test_held_checkpoints.py): a drop reaches the worker with
    its next batch, or at the next wait once it trains nothing, and not while it trains."""

    def held(id: int, member: int, source: CheckpointRef | None) -> Segment:
        path, h = str(tmp_path / f"c{id}"), {"lr": 0.1}
        member_class = NQMVectorised.member
        return Segment(
            id, member, member, id * 10, id * 10 + 10, 10, h, source, path, member_class,
            metric="loss", persist=False,
        )  # fmt: skip

    pool = VectorisedPoolExecutor(NQMVectorised, slots=2, workers=1)
    drops_wait_for_an_idle_worker(pool, held, sent=pool._dispatch)  # batches go out on wait


def test_a_config_run_and_its_resume_import_the_trainable_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainable's path (and its vectorised twin's, with ``slots``) is imported once per
    run or resume, then handed down resolved: to the executor's choice and to the runner."""
    import firepbt.trainable as trainable_module

    imported: list[str] = []
    real = trainable_module._imported

    def counted(path: str) -> object:
        imported.append(path)
        return real(path)

    monkeypatch.setattr(trainable_module, "_imported", counted)
    text = (
        _toml(tmp_path / "run", 100)
        .replace("NQMVectorised", "NQM")
        .replace("firepbt.examples.nqm_vectorised", "firepbt.examples.nqm")
    )
    config = RunConfig.from_mapping(tomllib.loads(text))
    firepbt.run_config(config)
    twin = "firepbt.examples.nqm_vectorised:NQMVectorised"
    assert imported == ["firepbt.examples.nqm:NQM", twin]  # the twin: slots = 3
    imported.clear()
    store = Store.open(tmp_path / "run")
    store.set_meta("status", "running")  # as if killed at the end
    store.close()
    firepbt.resume(tmp_path / "run")
    assert imported == ["firepbt.examples.nqm:NQM", twin]
