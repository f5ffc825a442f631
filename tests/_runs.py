"""Set-ups shared by the tests' small runs: the noisy quadratic model (NQM) minimising its loss, as
a Python run or as the TOML config ``firepbt run`` reads, and Quad runs in which some members meet
a fault.

Only what all such runs share is filled in here. Each test names the sizes, seed and strategy
options its assertions depend on (some rely on a seed producing, say, an evaluator hand-over).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from _trainables import Quad

import firepbt
from firepbt import Choice, LogUniform
from firepbt.callbacks import Callback, MemberPoint
from firepbt.errors import RunFailed
from firepbt.examples.nqm import NQM
from firepbt.store import Store

NEVER = 10**9
"""The fault step of members without the fault: no test run gets that far."""


class StopAfter(Callback):
    """Interrupts the run (as Ctrl-C would) after ``points`` points."""

    def __init__(self, points: int) -> None:
        self.points = points

    def on_point(self, point: MemberPoint) -> None:
        self.points -= 1
        if self.points == 0:
            raise KeyboardInterrupt


_NQM_LR_TOML = 'lr = { dist = "loguniform", low = 0.001, high = 1.9, bounds = [0.00001, 1.9] }'


def nqm_space(dim: int) -> dict[str, Any]:
    """The learning rate, log-uniform in [1e-3, 1.9], of an NQM with ``dim`` dimensions."""
    return {"lr": LogUniform(1e-3, 1.9, bounds=(1e-5, 1.9)), "dim": dim}


def nqm_run(run_dir: Path, *, dim: int, **options: Any) -> firepbt.RunResult:
    """``firepbt.run`` of the NQM minimising ``loss``, in this process unless ``options`` name
    another executor; ``options`` are ``firepbt.run``'s."""
    defaults: dict[str, Any] = {"mode": "min", "metric": "loss", "executor": "inprocess"}
    return firepbt.run(NQM, nqm_space(dim), run_dir=run_dir, **{**defaults, **options})


def _toml_lines(values: Mapping[str, Any]) -> list[str]:
    return [f"{key} = {json.dumps(value)}" for key, value in values.items()]


def nqm_toml(
    run_dir: Path,
    *,
    strategy: Mapping[str, Any],
    steps: int,
    executor: Mapping[str, Any],
    dim: int | None = None,
    **top: Any,
) -> str:
    """The TOML config of an NQM run minimising ``loss``, with the same learning-rate space as
    :func:`nqm_space`: ``strategy`` and ``executor`` fill their tables, ``top`` adds top-level keys
    (``seed``, ``eval_every``); without ``dim`` the NQM keeps its own."""
    lines = [
        'trainable = "firepbt.examples.nqm:NQM"',
        *_toml_lines({"mode": "min", "metric": "loss", "run_dir": str(run_dir), **top}),
        "[space]",
        _NQM_LR_TOML,
        *_toml_lines({} if dim is None else {"dim": dim}),
        "[strategy]",
        *_toml_lines(strategy),
        "[budget]",
        f"steps = {steps}",
        "[executor]",
        *_toml_lines(executor),
    ]
    return "\n".join(lines) + "\n"


def toy_toml(
    run_dir: Path | str,
    *,
    trainable: str = "firepbt.examples.toy:Toy",
    strategy: Mapping[str, Any] | None = None,
    steps: int = 4,
    executor: Mapping[str, Any] | None = None,
    **top: Any,
) -> str:
    """The TOML config of a tiny run of ``trainable`` (a Toy by default) over ``h0``, ``h1`` in
    [0, 1]: two PBT members ready every 2 steps, in this process, unless ``strategy`` or
    ``executor`` say otherwise; ``top`` adds top-level keys."""
    lines = [
        f"trainable = {json.dumps(trainable)}",
        *_toml_lines({"run_dir": str(run_dir), **top}),
        "[space]",
        'h0 = { dist = "uniform", low = 0.0, high = 1.0 }',
        'h1 = { dist = "uniform", low = 0.0, high = 1.0 }',
        "[strategy]",
        *_toml_lines(strategy or {"name": "pbt", "population": 2, "ready_every": 2}),
        "[budget]",
        f"steps = {steps}",
        "[executor]",
        *_toml_lines(executor or {"kind": "inprocess"}),
    ]
    return "\n".join(lines) + "\n"


def every_member_fails(
    run_dir: Path, space: Mapping[str, Any], trainable: type[firepbt.Trainable]
) -> tuple[str | None, list[tuple[int, int | None, str, str]]]:
    """Run two members of ``trainable`` in this process, expecting every one to fail; the run's
    recorded status and its failures (member, step, kind, message)."""
    with pytest.raises(RunFailed, match="every member failed"):
        firepbt.run(
            trainable, dict(space), total_steps=8, population=2, ready_every=4,
            executor="inprocess", run_dir=run_dir,
        )  # fmt: skip
    store = Store.open(run_dir)
    try:
        return store.meta("status"), store.failures()
    finally:
        store.close()


def faulty_initial(
    fault: str,
    at: int,
    members: int,
    faulty: Sequence[int] = (0,),
    h: float | Sequence[float] = 0.5,
) -> tuple[dict[str, Choice], list[dict[str, Any]]]:
    """The space entry and initial hyperparameters of a Quad run in which the ``faulty`` members
    set ``fault`` (``fail_at``, ``die_at``, ``hang_at``, ``nan_at``) to step ``at`` and the others
    to :data:`NEVER`; ``h`` is each member's h0 and h1, one value for all or one per member."""
    hs = [h] * members if isinstance(h, (int, float)) else list(h)
    assert len(hs) == members, f"h names {len(hs)} members, not {members}"
    initial = [{"h0": x, "h1": x, fault: at if i in faulty else NEVER} for i, x in enumerate(hs)]
    return {fault: Choice([at, NEVER])}, initial


def fault_run(
    run_dir: Path,
    quad_space: Mapping[str, Any],
    fault: str,
    at: int,
    *,
    population: int,
    faulty: Sequence[int] = (0,),
    h: float | Sequence[float] = 0.5,
    **options: Any,
) -> firepbt.RunResult:
    """``firepbt.run`` of Quad over ``quad_space`` in which the ``faulty`` members of the
    population meet ``fault`` at step ``at`` (see :func:`faulty_initial`); ``options`` are
    ``firepbt.run``'s."""
    entry, initial = faulty_initial(fault, at, population, faulty, h)
    return firepbt.run(
        Quad,
        {**quad_space, **entry},
        run_dir=run_dir,
        population=population,
        initial_hyperparameters=initial,
        **options,
    )


def point_metrics(run_dir: Path, name: str) -> list[float]:
    """The metric ``name`` of every point the run in ``run_dir`` recorded."""
    from firepbt import Store

    store = Store.open(run_dir)
    try:
        return [p.metrics[name] for _, p in store.points()]
    finally:
        store.close()


def stored_points(db: Path) -> list[tuple[Any, ...]]:
    """(member, step, score, segment) of every point in the store file ``db``, in write order."""
    with sqlite3.connect(db) as c:
        return c.execute(
            "SELECT member, step, score, segment FROM points ORDER BY rowid"
        ).fetchall()


def kill_after(proc: subprocess.Popen[bytes], db: Path, n_points: int) -> list[tuple[Any, ...]]:
    """SIGKILL the controller (started with ``start_new_session=True``) and its workers once the
    store ``db`` holds ``n_points`` points; the points it holds then."""
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if db.exists() and len(stored_points(db)) >= n_points:
                    break
            except sqlite3.OperationalError:  # the store is still being created
                pass
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return stored_points(db)


def drops_wait_for_an_idle_worker(
    pool: Any, held: Callable[[int, int, Any], Any], sent: Callable[[], None] = lambda: None
) -> None:
    """Check a one-worker pool's drops: a drop made while the worker trains waits (the worker
    can still write the checkpoint out), reaches it at the next ``wait`` once it trains
    nothing, and then the worker no longer holds it. ``held(id, member, source)`` builds a
    segment whose checkpoint stays held; ``sent()`` makes the pool send what was submitted."""
    from firepbt.errors import CheckpointError

    try:
        pool.submit(held(0, 0, None))
        (first,) = pool.wait()
        pool.submit(held(1, 1, None))
        (second,) = pool.wait()
        old, kept = first.checkpoint, second.checkpoint
        assert old is not None and old.holder and kept is not None  # held in the worker's memory
        pool.submit(held(2, 1, kept))
        sent()
        pool.drop(old.holder, old.path)  # while the worker has a segment
        (third,) = pool.wait()
        assert third.failure is None and third.checkpoint is not None
        assert pool.flush(old.holder, old.path)  # not yet forgotten: nothing was sent since
        assert pool._procs[0].dropped == [old.path]
        pool.wait()  # nothing to wait for, but the worker trains nothing: it is told now
        assert pool._procs[0].dropped == []
        pool.submit(held(3, 1, third.checkpoint))  # read after the drop, on the same pipe
        (fourth,) = pool.wait()
        assert fourth.failure is None
        with pytest.raises(CheckpointError, match="not held"):
            pool.flush(old.holder, old.path)
        assert pool.flush(old.holder, third.checkpoint.path)  # the others are still held
    finally:
        pool.shutdown()
