"""What FIRE PBT's evaluators did, read back from the store: assignments and their endings,
hand-overs and the fitness ranking, as ``firepbt status``, the report, ``export`` and the final
summary show them; the no-hand-over warning and its likely cause."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import warnings
from pathlib import Path

import pytest
from _runs import nqm_run, nqm_toml

import firepbt
from firepbt.cli import main
from firepbt.decisions import Assign, Handover, Release, Start, Weights
from firepbt.export import EVALUATION_COLUMNS, export_run
from firepbt.fire.evaluation import Ending
from firepbt.fire.summary import ENDING_LABELS, RANKING_NOTE, fire_summary
from firepbt.store import STORE_FILE, Store

# -- a hand-built store: exact counts, independent of the strategy -------------------------------


def _store(tmp_path: Path) -> Store:
    """Members 0, 1 in P1 and 2, 3 in P2; evaluator 4."""
    store = Store.create(tmp_path / "run", {"strategy": "fire", "mode": "min", "ready_every": 10})
    for m in range(4):
        store.record_decision(Start(m, {"lr": 0.1}, m, 10, subpopulation=m // 2))
    return store


def _assign(store: Store, parent: int, target: int, step: int, reason: str = "") -> None:
    store.record_decision(
        Assign(
            4, parent, target, Weights(parent, step, {"lr": 0.1}), {"lr": 0.2}, 7, step + 10, reason
        )
    )


def test_counts_endings_handovers_and_older_reasons(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _assign(store, 2, 0, 10)
    store.record_decision(Release(4, 30, Ending.TARGET_LOST.reason("target 0 lost")))
    _assign(store, 3, 1, 30)
    weights = Weights(4, 60, {"lr": 0.2})
    store.record_decision(Handover(1, 60, 4, weights, {"lr": 0.3}, "success: p 0.001", 70))
    store.record_decision(Release(4, 60, Ending.SUCCESS.reason("member 1 took its weights")))
    _assign(store, 2, 0, 60)
    store.record_decision(Release(4, 70, "member 2 lost an evolution event"))  # an older reason
    _assign(store, 3, 0, 70)  # still running
    summary = fire_summary(store)
    assert summary is not None
    (p2,) = summary.subpopulations
    assert p2.name == "P2" and p2.assignments == 4 and p2.active == 1
    assert list(p2.endings) == list(ENDING_LABELS)
    assert p2.endings["target lost"] == p2.endings["success"] == p2.endings["other"] == 1
    assert p2.assignments == sum(p2.endings.values()) + p2.active
    ((h),) = p2.handovers
    assert (h.evaluator, h.parent, h.target, h.step) == (4, 3, 1, 60)
    assert [e.target for e in summary.evaluations] == [0, 1, 0, 0]
    assert [e.label for e in summary.evaluations] == ["target lost", "success", "other", "active"]
    assert summary.evaluations[1].handed_to == 1 and summary.evaluations[1].handover_step == 60
    assert p2.ranking == ()  # no evaluator curves recorded
    assert summary.warning() is None
    store.close()


def test_target_of_an_older_store_is_read_from_the_reason(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _assign(store, 2, 1, 10, reason="parent 2 (P2) is the least recently evaluated; target 1 (P1)")
    store.close()
    conn = sqlite3.connect(tmp_path / "run" / STORE_FILE)  # a store made before targets
    conn.execute("DROP INDEX decisions_fire")  # (and before the index that reads them)
    conn.execute("ALTER TABLE decisions DROP COLUMN target")
    conn.commit()
    conn.close()
    store = Store.open(tmp_path / "run")  # gains the column, empty
    summary = fire_summary(store)
    assert summary is not None and summary.evaluations[0].target == 1
    store.close()


def test_no_handover_warning_names_the_dominant_ending(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for i, ending in enumerate([Ending.PARENT_LOST, Ending.TARGET_LOST, Ending.TARGET_LOST]):
        _assign(store, 2 + i % 2, 0, 10 * i)
        store.record_decision(Release(4, 10 * i + 10, ending.reason("lost")))
    summary = fire_summary(store)
    assert summary is not None
    warning = summary.warning()
    assert warning is not None and warning.startswith("no hand-over")
    assert "3 of 3 evaluations ended by 'target lost' (2) or 'parent lost' (1)" in warning
    store.close()


def test_a_pbt_run_has_no_fire_summary(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "run", {"strategy": "pbt"})
    store.record_decision(Start(0, {"lr": 0.1}, 0, 10))
    assert fire_summary(store) is None
    store.close()


# -- real FIRE runs on the NQM ---------------------------------------------------------------


def _fire(run_dir: Path, **kw: object) -> firepbt.RunResult:
    options: dict[str, object] = dict(
        total_steps=600,
        population=6,
        ready_every=50,
        eval_every=10,
        strategy="fire",
        seed=7,
        subpopulations=3,
        evaluators=2,
        max_eval_steps=150,
        success_test="levels",  # hand-overs to summarise come sooner under the paper's test
    )
    options.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # settings warnings of the strategy are not tested here
        return nqm_run(run_dir, dim=100, **options)


@pytest.fixture(scope="module")
def handover_run(tmp_path_factory: pytest.TempPathFactory) -> firepbt.RunResult:
    return _fire(tmp_path_factory.mktemp("fire") / "run")


def test_counts_are_consistent_with_the_decisions(handover_run: firepbt.RunResult) -> None:
    store = Store.open(handover_run.run_dir)
    decisions = store.decisions()
    summary = fire_summary(store)
    assert summary is not None
    assert [s.name for s in summary.subpopulations] == ["P2", "P3"]
    assert sum(s.assignments for s in summary.subpopulations) == sum(
        d.kind == "assign" for d in decisions
    )
    for s in summary.subpopulations:
        assert s.assignments == sum(s.endings.values()) + s.active
        assert s.active == 0  # the run is over
    handovers = [(d.donor, d.member, d.source_step) for d in decisions if d.kind == "handover"]
    assert handovers, "with this seed an evaluator hands its weights over"
    assert [(h.evaluator, h.target, h.step) for h in summary.handovers] == handovers
    members = {m.id: m for m in store.members()}
    for s in summary.subpopulations:
        for h in s.handovers:  # weights flow from a parent of Pi to a member of P(i-1)
            assert h.parent is not None and members[h.parent].subpopulation == s.subpopulation
            assert members[h.target].subpopulation == s.subpopulation - 1
        if s.ranking:
            assert len(s.ranking) >= 2
            assert {r.member for r in s.ranking} <= {
                m for m, row in members.items() if row.subpopulation == s.subpopulation
            }
            fits = [r.fitness for r in s.ranking]
            assert fits == sorted(fits, reverse=True)
    assert summary.warning() is None
    assert handover_run.warnings == () and "warning" not in handover_run.describe()
    store.close()


def test_status_shows_the_evaluations(
    handover_run: firepbt.RunResult, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(handover_run.run_dir)]) == 0
    out = capsys.readouterr().out
    assert "FIRE evaluations" in out and "by parent sub-population" in out
    assert re.search(r"│ assignments +│ +\d+ │", out) and re.search(r"│ success +│ +\d+ │", out)
    assert "FIRE hand-overs" in out and f"P2 {RANKING_NOTE}" in out
    assert "no hand-over" not in out


def test_export_writes_the_evaluations_table(
    handover_run: firepbt.RunResult, tmp_path: Path
) -> None:
    store = Store.open(handover_run.run_dir)
    n_assign = sum(d.kind == "assign" for d in store.decisions())
    store.close()
    paths = export_run(handover_run.run_dir, "csv", out=tmp_path / "csv")
    assert tmp_path / "csv" / "evaluations.csv" in paths
    with (tmp_path / "csv" / "evaluations.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_assign and tuple(rows[0]) == EVALUATION_COLUMNS
    assert {r["ending"] for r in rows} <= {*ENDING_LABELS, "active"}
    assert any(r["handed_to"] for r in rows)
    (path,) = export_run(handover_run.run_dir, "json", out=tmp_path / "json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert len(doc["evaluations"]) == n_assign
    assert doc["evaluations"][0]["evaluator"] == int(rows[0]["evaluator"])


def test_a_run_that_cannot_hand_over_says_why(tmp_path: Path) -> None:
    # two evaluation points at most: a success at p_stat 0.01 is impossible
    result = _fire(tmp_path / "run", max_eval_steps=10)
    store = Store.open(result.run_dir)
    assert not [d for d in store.decisions() if d.kind == "handover"]
    store.close()
    (warning,) = result.warnings
    assert warning.startswith("no hand-over") and "max_eval_steps 10 is too short" in warning
    assert f"warning: {warning}" in result.describe()


def test_firepbt_run_prints_the_no_handover_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # evaluators start at step 50 of a 100-step budget: the run is over before any can succeed
    config = tmp_path / "fire.toml"
    config.write_text(
        nqm_toml(
            tmp_path / "run",
            eval_every=10,
            dim=50,
            strategy={"name": "fire", "population": 4, "ready_every": 50, "subpopulations": 2},
            steps=100,
            executor={"kind": "inprocess"},
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "warning: no hand-over" in out and "likely cause" in out


def test_the_no_handover_warning_says_the_test_of_gains_rarely_passes() -> None:
    from firepbt.fire.evaluation import Ending
    from firepbt.fire.summary import Evaluation, FireSummary

    stopped = tuple(
        Evaluation(10, 4, 0, 1, 100 * i, 100 * i + 200, Ending.BINOMIAL_STOP) for i in range(4)
    )

    def summary(test: str) -> FireSummary:
        return FireSummary(stopped, (), eval_every=10, p_stat=0.01, thin=1, max_eval_steps=None,
                           success_test=test)  # fmt: skip

    gains, levels = summary("increments").warning(), summary("levels").warning()
    assert gains is not None and levels is not None
    assert "4 of 4 evaluations ended by 'binomial stop'" in gains
    assert "default test of gains, which rarely passes" in gains
    assert "test of gains" not in levels
