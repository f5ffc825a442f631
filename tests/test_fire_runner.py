"""FIRE PBT end to end: evaluators run as workers, their curves, decisions and hand-overs are
stored like members', and the best member's schedule follows weights through evaluators."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _runs import nqm_run, nqm_toml

import firepbt
from firepbt import Store, Uniform
from firepbt.examples.nqm import expected_loss_of_schedule
from firepbt.store import MemberStatus, Role


def _fire(tmp_path: Path, executor: str, **kw):
    options = dict(
        total_steps=600,
        population=6,
        ready_every=50,
        eval_every=10,
        strategy="fire",
        executor=executor,
        workers=2,
        seed=2,
        subpopulations=3,
        evaluators=2,
        max_eval_steps=150,
        success_test="levels",  # hand-overs to check come sooner under the paper's test
    )
    options.update(kw)
    return nqm_run(tmp_path / executor, dim=100, **options)


def _check_store(result) -> Store:
    store = Store.open(result.run_dir)
    members = [m for m in store.members() if m.role is Role.MEMBER]
    evaluators = [m for m in store.members() if m.role is Role.EVALUATOR]
    assert len(members) == 6 and [m.subpopulation for m in members] == [0, 0, 1, 1, 2, 2]
    assert {m.status for m in members} == {MemberStatus.FINISHED}
    assert all(m.step == 600 for m in members)
    assert evaluators and {m.status for m in evaluators} == {MemberStatus.IDLE}
    assert [f for f in store.failures() if f[2] != "nan_metric"] == []
    kinds = {d.kind for d in store.decisions()}
    assert {"start", "assign", "release"} <= kinds
    # every assignment and hand-over is a lineage edge
    n_edges = sum(d.kind in ("assign", "handover") for d in store.decisions()) + sum(
        d.kind == "exploit" and d.donor != d.member for d in store.decisions()
    )
    assert len(store.lineage()) == n_edges
    # the best member is a population member, and its schedule covers the budget exactly
    assert result.best_member in {m.id for m in members}
    sched = result.schedule
    assert sched[0].from_step == 0 and sched[-1].to_step == 600
    assert all(a.to_step == b.from_step for a, b in zip(sched, sched[1:], strict=False))
    # the schedule scores exactly like the expected loss the trainable tracked along its lineage
    lrs = [(e.from_step, e.to_step, e.hyperparameters["lr"]) for e in sched]
    assert expected_loss_of_schedule(lrs, d=100) == pytest.approx(result.metrics["expected_loss"])
    return store


def test_fire_sync_in_process_hands_weights_over(tmp_path: Path) -> None:
    result = _fire(tmp_path, "inprocess", seed=7)
    store = _check_store(result)
    handovers = [d for d in store.decisions() if d.kind == "handover"]
    assert handovers, "with this seed evaluators succeed; a hand-over must be recorded"
    # the member that took an evaluator's weights trained on from the evaluator's checkpoint
    child, evaluator = handovers[0].member, handovers[0].donor
    by_id = {seg.id: seg for seg in store.segments()}
    resumed = [
        seg
        for seg in store.segments(child)
        if seg.source_segment is not None and by_id[seg.source_segment].member == evaluator
    ]
    assert resumed and resumed[0].start_step == handovers[0].source_step
    assert resumed[0].hyperparameters == handovers[0].hyperparameters
    store.close()


def test_fire_async_on_worker_processes(tmp_path: Path) -> None:
    result = _fire(tmp_path, "process", synchrony="async")
    _check_store(result).close()


def test_fire_config_from_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from firepbt.cli import main

    config = tmp_path / "fire.toml"
    config.write_text(
        nqm_toml(
            tmp_path / "run",
            eval_every=10,
            dim=50,
            strategy={
                "name": "fire",
                "population": 4,
                "ready_every": 50,
                "subpopulations": 2,
                "max_eval_steps": 150,
            },
            steps=300,
            executor={"kind": "inprocess"},
        )
    )
    assert main(["run", str(config), "--quiet"]) == 0
    assert "best member" in capsys.readouterr().out
    assert main(["status", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "evaluator" in out and "idle" in out


def test_async_fire_over_many_seeds_runs_no_zero_length_segment(tmp_path: Path) -> None:
    """Members that copy a finished donor finish with the copy: across 20 seeds of asynchronous
    FIRE PBT (where this happened in 10 segments of 20 runs, and once crashed the curve fit with
    a repeated step) every run finishes and no segment of zero steps is run."""
    import warnings

    from firepbt.store import Store

    copies_of_finished = 0
    for seed in range(20):
        run_dir = tmp_path / f"s{seed}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nqm_run(
                run_dir, dim=30, total_steps=300, population=6, ready_every=25, eval_every=5,
                strategy="fire", subpopulations=2, evaluators=2, synchrony="async",
                executor="inprocess", seed=seed, success_test="levels",
            )  # fmt: skip
        store = Store.open(run_dir)
        assert store.meta("status") == "finished"
        assert [s for s in store.segments() if s.end_step <= s.start_step] == []
        copies_of_finished += sum(
            d.kind == "exploit" and d.source_step == 300 for d in store.decisions()
        )
        store.close()
    assert copies_of_finished > 0  # the case this guards did come up


def test_the_progress_line_counts_population_members_only(tmp_path: Path) -> None:
    """FIRE's evaluators are workers, not members: the progress line's member count, mean step
    and top score leave them out (its top score came from an evaluator before)."""
    import warnings

    from firepbt.control.progress import RunProgress as Progress
    from firepbt.store import Role, Store

    seen: list[Progress] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nqm_run(
            tmp_path / "r", dim=30, total_steps=300, population=6, ready_every=25, eval_every=5,
            strategy="fire", subpopulations=2, evaluators=2, executor="inprocess", seed=1,
            success_test="levels", progress=seen.append,
        )  # fmt: skip
    store = Store.open(tmp_path / "r")
    members = {m.id for m in store.members() if m.role is Role.MEMBER}
    top = min(p.score for m, p in store.points() if m in members)  # the NQM's loss: lower wins
    evaluated = [p.score for m, p in store.points() if m not in members]
    store.close()
    assert seen and all(p.members == 6 for p in seen)
    assert seen[-1].best_score == top
    assert evaluated  # evaluators did report scores, which the line left out


def test_a_fire_run_whose_every_member_fails_names_a_member_not_an_evaluator(
    tmp_path: Path,
) -> None:
    from _trainables import Quad

    from firepbt.errors import RunFailed

    space = {"h0": Uniform(0.0, 1.0), "h1": Uniform(0.0, 1.0), "fail_at": 25}
    with pytest.raises(
        RunFailed, match=r"every member failed. The last failure: member (\d+)"
    ) as e:
        firepbt.run(
            Quad, space, strategy="fire", total_steps=40, population=4, subpopulations=2,
            evaluators=2, ready_every=5, warmup=0, executor="inprocess", run_dir=tmp_path / "r",
        )  # fmt: skip
    found = re.search(r"The last failure: member (\d+)", str(e.value))
    assert found is not None
    member = int(found.group(1))
    assert member < 4  # members are 0-3; 4 and 5 are evaluators
