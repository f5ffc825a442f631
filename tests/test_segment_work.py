"""A strategy's work after a segment, done where the segment ran: FIRE PBT's curve fits are made
by the worker that trained the segment (``Strategy.segment_work``), and the strategy takes a
fit only when it was made on exactly the curve it judges, so where the work is done changes no
decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _trainables import Quad

import firepbt
from firepbt import Store
from firepbt.examples.nqm import NQM
from firepbt.execution.worker import after_segment
from firepbt.fire import evaluation
from firepbt.fire.evaluation import CurveCache, CurveWork
from firepbt.segments import Point, Segment
from firepbt.strategies._fire_book import FireBook


class _Counted:
    """Counts, in this process, fits the strategy made itself and fits it took from workers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made = self.taken = 0
        fit, offer = CurveCache.fit, CurveCache.offer
        counter = self

        def counting_fit(cache: CurveCache, key: Any, points: Any) -> Any:
            before = cache.fitted
            curve = fit(cache, key, points)
            counter.made += cache.fitted - before
            return curve

        def counting_offer(cache: CurveCache, fitted: Any, current: Any) -> bool:
            taken = offer(cache, fitted, current)
            counter.taken += taken
            return taken

        monkeypatch.setattr(CurveCache, "fit", counting_fit)
        monkeypatch.setattr(CurveCache, "offer", counting_offer)


def _fire(run_dir: Path, executor: str) -> firepbt.RunResult:
    return firepbt.run(
        NQM,
        {"lr": firepbt.LogUniform(1e-3, 1.9, bounds=(1e-5, 1.9))},
        total_steps=600,
        population=8,
        ready_every=50,
        eval_every=10,
        strategy="fire",
        subpopulations=2,
        evaluators=3,
        mode="min",
        metric="loss",
        seed=3,
        executor=executor,
        workers=2,
        run_dir=run_dir,
        progress=False,
    )


def _record(run_dir: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    store = Store.open(run_dir)
    try:
        decisions = [
            (d.member, d.step, d.kind, d.donor, d.hyperparameters, d.reason)
            for d in store.decisions()
        ]
        points = sorted((m, p.step, p.score) for m, p in store.points())
    finally:
        store.close()
    return decisions, points


def test_workers_fit_the_curves_fire_judges_and_no_decision_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = _Counted(monkeypatch)
    _fire(tmp_path / "worker-fits", "inprocess")
    made_by_workers = counted.taken
    assert made_by_workers > 20  # the in-process executor runs the work as a worker would
    assert counted.made == 0  # every curve judged was fitted after its segment, none again

    counted.made = counted.taken = 0
    with monkeypatch.context() as m:
        m.setattr(FireBook, "segment_work", lambda self, member: None)
        _fire(tmp_path / "own-fits", "inprocess")
    assert counted.taken == 0 and counted.made == made_by_workers
    assert _record(tmp_path / "worker-fits") == _record(tmp_path / "own-fits")


def test_fits_made_in_worker_processes_give_the_in_process_run(tmp_path: Path) -> None:
    _fire(tmp_path / "pool", "process")
    _fire(tmp_path / "here", "inprocess")
    assert _record(tmp_path / "pool") == _record(tmp_path / "here")


def _segment(after: Any, negate: bool) -> Segment:
    return Segment(
        id=1,
        member=0,
        seed=0,
        start_step=0,
        end_step=20,
        eval_every=10,
        hyperparameters={},
        source=None,
        checkpoint_path="unused",
        trainable=Quad,
        after=after,
        negate=negate,
    )


def test_the_work_sees_the_points_oriented_as_the_strategy_does() -> None:
    seen: list[tuple[tuple[int, float], ...]] = []
    points = (Point(10, 0.5, {}), Point(20, 0.25, {}))
    after_segment(_segment(seen.append, negate=True), points)
    after_segment(_segment(seen.append, negate=False), points)
    assert seen == [((10, -0.5), (20, -0.25)), ((10, 0.5), (20, 0.25))]


def test_work_that_fails_is_left_to_the_strategy() -> None:
    def broken(points: object) -> object:
        raise RuntimeError("no")

    assert after_segment(_segment(broken, negate=False), (Point(10, 0.5, {}),)) is None
    assert after_segment(_segment(None, negate=False), (Point(10, 0.5, {}),)) is None


def test_a_fit_is_taken_only_for_exactly_the_curve_it_was_made_on() -> None:
    before = ((0, -3.0), (10, -2.0))
    work = CurveWork((1, 5), before)
    fitted = work(((20, -1.5), (30, -1.2)))
    assert fitted is not None and fitted.points == (*before, (20, -1.5), (30, -1.2))
    cache = CurveCache()
    assert not cache.offer(fitted, [*before, (20, -1.5), (30, -1.25)])  # another last point
    assert not cache.offer(fitted, before)  # the curve before the segment
    assert cache.offer(fitted, list(fitted.points))
    curve = cache.fit((1, 5), list(fitted.points))
    assert cache.fitted == 0  # taken, not fitted again
    np.testing.assert_array_equal(curve.smoothed, fitted.smoothed)
    own = evaluation.CurveCache().fit((1, 5), list(fitted.points))
    np.testing.assert_array_equal(own.smoothed, curve.smoothed)  # as the strategy would have
    assert not curve.smoothed.flags.writeable  # rebuilt read-only, as its own fits are


def test_a_repeated_step_replaces_the_last_point_as_the_strategy_does() -> None:
    fitted = CurveWork((0, 2), ((0, 1.0), (10, 2.0)))(((10, 2.5), (20, 3.0)))
    assert fitted is not None and fitted.points == ((0, 1.0), (10, 2.5), (20, 3.0))
    assert CurveWork((0, 2), ())(((10, 2.5),)) is None  # one point: nothing to fit


def test_a_very_long_curve_is_fitted_by_the_strategy_not_sent(monkeypatch) -> None:
    from firepbt.strategies import _fire_book

    fire = firepbt.strategies.FirePBT(
        firepbt.Space({"lr": firepbt.LogUniform(1e-3, 1.0)}),
        population=4,
        total_steps=10**6,
        ready_every=10,
        rng=np.random.default_rng(0),
        evaluators=1,
    )
    fire.start()
    monkeypatch.setattr(fire, "_judged", lambda member: ((0, member), [(i, 0.0) for i in range(5)]))
    assert isinstance(fire.segment_work(0), CurveWork)
    monkeypatch.setattr(_fire_book, "MAX_WORK_POINTS", 4)
    assert fire.segment_work(0) is None
