"""Exporting a run: CSV tables that match the store row for row, and strict JSON with the best
member's schedule."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
from _runs import nqm_run

import firepbt
from firepbt import Store, Trainable, Uniform
from firepbt.errors import ConfigError, StoreError
from firepbt.export import export_run
from firepbt.store import Role

NAN_STEP = 20
TOTAL = 40


class Shrink(Trainable):
    """x shrinks by a factor (1 - rate / 10) per step; the score ``q`` is -x, except that it is
    NaN at step ``NAN_STEP`` (every member), which the runner records and carries on from."""

    def __init__(self, hyperparameters: dict[str, Any], seed: int) -> None:
        super().__init__(hyperparameters, seed)
        self.x, self.step = 1.0, 0

    def train(self, steps: int) -> None:
        for _ in range(steps):
            self.step += 1
            self.x *= 1.0 - float(self.hyperparameters["rate"]) / 10.0

    def evaluate(self) -> dict[str, float]:
        q = math.nan if self.step == NAN_STEP else -self.x
        return {"q": q, "x2": self.x**2}

    def save(self) -> dict[str, Any]:
        return {"x": self.x, "step": self.step}

    def load(self, state: dict[str, Any]) -> None:
        self.x, self.step = state["x"], state["step"]


class AllNan(Shrink):
    def evaluate(self) -> dict[str, float]:
        return {"q": math.nan, "x2": self.x**2}


SHRINK_SPACE = {"rate": Uniform(0.1, 1.0, bounds=(0.0, 2.0)), "tag": "a"}


@pytest.fixture(scope="module")
def pbt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("pbt") / "run"
    firepbt.run(
        Shrink,
        SHRINK_SPACE,
        total_steps=TOTAL,
        population=4,
        ready_every=10,
        metric="q",
        executor="inprocess",
        run_dir=run_dir,
        seed=1,
    )
    return run_dir


@pytest.fixture(scope="module")
def fire_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("fire") / "run"
    nqm_run(
        run_dir,
        dim=20,
        total_steps=60,
        population=4,
        ready_every=10,
        eval_every=10,
        strategy="fire",
        subpopulations=2,
        evaluators=1,
        seed=4,
    )
    return run_dir


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _strict(text: str) -> Any:
    """json.loads that refuses NaN / Infinity tokens."""

    def refuse(token: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def test_csv_tables_match_the_store(pbt_run: Path) -> None:
    paths = export_run(pbt_run, "csv")
    out = pbt_run / "export"
    assert paths == [
        out / f"{n}.csv" for n in ("members", "points", "decisions", "segments", "lineage")
    ]
    store = Store.open(pbt_run)
    try:
        header, members = _read(out / "members.csv")
        assert header == [
            "id",
            "role",
            "subpopulation",
            "status",
            "step",
            "seed",
            "h_rate",
            "h_tag",
        ]
        assert len(members) == len(store.members()) == 4
        for row, m in zip(members, store.members(), strict=True):
            assert (
                int(row["id"]) == m.id and row["role"] == "member" and row["status"] == "finished"
            )
            assert float(row["h_rate"]) == m.hyperparameters["rate"]  # full precision
            assert row["h_tag"] == "a"

        header, points = _read(out / "points.csv")
        assert header == ["member", "step", "score", "m_q", "m_x2"]
        assert len(points) == len(store.points()) == 4 * TOTAL // 10
        at_nan = [p for p in points if int(p["step"]) == NAN_STEP]
        assert at_nan and all(p["score"] == "nan" and p["m_q"] == "nan" for p in at_nan)
        assert all(math.isnan(float(p["score"])) for p in at_nan)
        finite = [p for p in points if int(p["step"]) != NAN_STEP]
        assert all(float(p["score"]) == float(p["m_q"]) < 0 for p in finite)

        header, decisions = _read(out / "decisions.csv")
        assert header == [
            "id",
            "member",
            "step",
            "kind",
            "donor",
            "source_step",
            "reason",
            "changes",
            "h_rate",
            "h_tag",
        ]
        assert len(decisions) == len(store.decisions())
        for row, d in zip(decisions, store.decisions(), strict=True):
            assert row["kind"] == d.kind and row["changes"] == "; ".join(d.changes)
            assert row["donor"] == ("" if d.donor is None else str(d.donor))
            assert row["h_rate"] == (
                "" if d.hyperparameters is None else repr(d.hyperparameters["rate"])
            )
        exploits = [row for row in decisions if row["kind"] == "exploit"]
        assert exploits and all(row["changes"] and row["h_rate"] for row in exploits)

        header, segments = _read(out / "segments.csv")
        assert header[:7] == [
            "id",
            "member",
            "start_step",
            "end_step",
            "source_segment",
            "status",
            "attempts",
        ]
        assert header[7:] == ["h_rate", "h_tag"]
        assert len(segments) == len(store.segments())
        assert {row["status"] for row in segments} == {"done"}

        header, lineage = _read(out / "lineage.csv")
        assert header == ["child", "child_step", "parent", "parent_step"]
        assert [tuple(int(row[k]) for k in header) for row in lineage] == store.lineage()
        assert lineage  # PBT with these settings copies weights
    finally:
        store.close()


def test_csv_roles_and_headers_without_rows(fire_run: Path, tmp_path: Path) -> None:
    export_run(fire_run, "csv", out=tmp_path / "fire-csv")
    _, members = _read(tmp_path / "fire-csv" / "members.csv")
    assert [(r["role"], r["subpopulation"]) for r in members] == [
        ("member", "0"),
        ("member", "0"),
        ("member", "1"),
        ("member", "1"),
        ("evaluator", "-1"),
    ]
    # a run that copies no weights still gets a lineage file with its header
    run_dir = tmp_path / "random"
    firepbt.run(
        Shrink,
        SHRINK_SPACE,
        total_steps=30,
        strategy="random",
        population=2,
        ready_every=10,
        metric="q",
        executor="inprocess",
        run_dir=run_dir,
    )
    paths = export_run(run_dir, "csv", out=str(tmp_path / "random-csv"))
    assert all(p.parent == tmp_path / "random-csv" for p in paths)
    text = (tmp_path / "random-csv" / "lineage.csv").read_text()
    assert text.splitlines() == ["child,child_step,parent,parent_step"]


def test_json_holds_every_table_and_the_best_schedule(fire_run: Path) -> None:
    (path,) = export_run(fire_run, "json")
    assert path == fire_run / "export" / "run.json"
    doc = _strict(path.read_text(encoding="utf-8"))
    store = Store.open(fire_run)
    try:
        assert doc["config"] == store.config() and doc["status"] == store.meta("status")
        assert len(doc["members"]) == len(store.members())
        assert len(doc["points"]) == len(store.points())
        assert len(doc["decisions"]) == len(store.decisions())
        assert len(doc["segments"]) == len(store.segments())
        assert len(doc["lineage"]) == len(store.lineage())
        evaluators = [m for m in store.members() if m.role is Role.EVALUATOR]
        assert [m["id"] for m in doc["members"] if m["role"] == "evaluator"] == [
            m.id for m in evaluators
        ]
        assert {"assign", "release"} <= {d["kind"] for d in doc["decisions"]}
    finally:
        store.close()
    best = doc["best"]
    members = {m["id"]: m for m in doc["members"]}
    assert members[best["member"]]["role"] == "member"
    assert math.isfinite(best["score"]) and best["step"] == 60
    sched = best["schedule"]
    assert set(sched[0]) == {"from_step", "to_step", "member", "hyperparameters"}
    assert sched[0]["from_step"] == 0 and sched[-1]["to_step"] == 60
    assert all(a["to_step"] == b["from_step"] for a, b in zip(sched, sched[1:], strict=False))
    assert sched[-1]["hyperparameters"] == best["hyperparameters"]


def test_json_writes_non_finite_scores_as_null(pbt_run: Path, tmp_path: Path) -> None:
    (path,) = export_run(pbt_run, "json", out=tmp_path)
    doc = _strict(path.read_text(encoding="utf-8"))
    at_nan = [p for p in doc["points"] if p["step"] == NAN_STEP]
    assert at_nan and all(p["score"] is None and p["metrics"]["q"] is None for p in at_nan)
    assert all(p["metrics"]["x2"] > 0 for p in at_nan)
    assert any(f["kind"] == "nan_metric" for f in doc["failures"])
    assert doc["best"]["schedule"][-1]["to_step"] == TOTAL


def test_json_best_is_null_without_a_finite_score(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no member has a finite score"):
        firepbt.run(
            AllNan,
            SHRINK_SPACE,
            total_steps=20,
            population=2,
            ready_every=10,
            metric="q",
            executor="inprocess",
            run_dir=tmp_path / "run",
        )
    (path,) = export_run(tmp_path / "run", "json")
    doc = _strict(path.read_text(encoding="utf-8"))
    assert doc["best"] is None and len(doc["points"]) == 4
    assert all(p["score"] is None for p in doc["points"])


def test_unknown_format_and_missing_store(pbt_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'parquet'.*csv, json"):
        export_run(pbt_run, "parquet")
    with pytest.raises(StoreError, match="holds no firepbt run"):
        export_run(tmp_path / "nothing", "csv")
    assert not (tmp_path / "nothing").exists()  # nothing written for a missing run


def test_csv_cells_that_would_be_formulas_are_made_inert(tmp_path: Path) -> None:
    """OWASP's rule: text from user-controlled names and values that starts with =, +, -, @, a
    tab or a carriage return gets a leading quote; numbers (negative ones too) stay numbers."""
    from _trainables import Quad

    from firepbt.space import Choice, Fixed, Uniform

    payloads = ["=1+1", "@SUM(A1)", "+cmd|' /C calc'!A0", "-2+3", "\t=1", "\r=1"]
    space = {
        "h0": Uniform(0.1, 1.0),
        "h1": Fixed(-0.5),
        "tag": Choice(payloads),
        "=name": Fixed('=HYPERLINK("x")'),
    }
    result = firepbt.run(
        Quad,
        space,
        total_steps=8,
        population=4,
        ready_every=4,
        executor="inprocess",
        run_dir=tmp_path / "r",
        seed=1,
    )
    export_run(result.run_dir, "csv")
    cells = []
    for path in (result.run_dir / "export").glob("*.csv"):
        with path.open(newline="", encoding="utf-8") as f:
            cells += [c for row in csv.reader(f) for c in row]
    text = [c for c in cells if c]
    assert not [c for c in text if c[0] in "=+@\t\r"], "a formula start got through"
    dashes = {c for c in text if c.startswith("-")}
    for c in dashes:
        float(c)  # only numbers may start with '-'
    assert "-0.5" in dashes  # the negative number was not quoted
    assert '\'=HYPERLINK("x")' in text and any(c in text for c in ("'=1+1", "'@SUM(A1)"))
