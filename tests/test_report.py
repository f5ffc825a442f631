"""Reports: figures, Table 1 numbers and the self-contained HTML page, on finished, killed,
failing and empty runs."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest
from _runs import nqm_run
from _trainables import Quad

import firepbt
from firepbt import Choice, Uniform
from firepbt.errors import ConfigError
from firepbt.examples.toy import Toy, toy_space
from firepbt.report import (
    plot_best_score,
    plot_curves,
    plot_hyperparameters,
    plot_lineage,
    table_one,
    write_report,
)
from firepbt.store import STORE_FILE, Store

pytest.importorskip("matplotlib")

FIGURES = ("best_score", "hyperparameters", "lineage", "curves")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5_000, (path, len(data))
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert float(pixels[..., :3].var()) > 0.0, f"{path} is blank"


@pytest.fixture(scope="module")
def fire_run(tmp_path_factory: pytest.TempPathFactory) -> firepbt.RunResult:
    run_dir = tmp_path_factory.mktemp("fire") / "run"
    return nqm_run(
        run_dir,
        dim=200,
        total_steps=600,
        strategy="fire",
        population=4,
        subpopulations=2,
        evaluators=1,
        ready_every=25,
        eval_every=5,
        seed=14,
        success_test="levels",  # a hand-over to draw comes sooner under the paper's test
    )


@pytest.fixture(scope="module")
def pbt_run(tmp_path_factory: pytest.TempPathFactory) -> firepbt.RunResult:
    run_dir = tmp_path_factory.mktemp("pbt") / "run"
    return firepbt.run(
        Toy,
        toy_space(),
        total_steps=80,
        population=4,
        ready_every=10,
        executor="inprocess",
        run_dir=run_dir,
        seed=1,
    )


def test_fire_report_has_four_embedded_figures_and_the_best_schedule(
    fire_run: firepbt.RunResult, tmp_path: Path
) -> None:
    page = write_report(fire_run.run_dir, tmp_path / "out")
    assert page == tmp_path / "out" / "report.html"
    for name in FIGURES:
        _assert_png(tmp_path / "out" / f"{name}.png")
    text = page.read_text(encoding="utf-8")
    assert text.count('src="data:image/png;base64,') == 4
    assert "http://" not in text and "https://" not in text  # self-contained
    assert "FIRE PBT" in text and "firepbt.examples.nqm:NQM" in text
    assert f"member {fire_run.best_member} (P1)" in text
    for e in fire_run.schedule:  # every range and value of the schedule is in the table
        assert f'<td class="num">{e.from_step}</td>' in text or f">{e.from_step}<" in text
        assert f">{e.to_step}<" in text
        assert f">{e.hyperparameters['lr']:.4g}<" in text
    assert "figure failed" not in text
    # this seed's best lineage passes through the evaluator: assign and hand-over are listed
    assert "<td>assign</td>" in text and "<td>handover</td>" in text
    assert "evaluator 4" in text
    # what the evaluators did: endings per parent sub-population, hand-overs, fitness ranking
    assert "<h2>FIRE evaluations</h2>" in text and "<th>target lost</th>" in text
    assert "<th>weights of</th>" in text and "P2 fitness ranking on the latest evaluator" in text
    assert "no hand-over" not in text


def test_default_output_is_the_report_folder_of_the_run(pbt_run: firepbt.RunResult) -> None:
    page = write_report(pbt_run.run_dir)
    assert page == pbt_run.run_dir / "report" / "report.html"
    for name in FIGURES:
        _assert_png(pbt_run.run_dir / "report" / f"{name}.png")
    text = page.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 4
    assert "PBT" in text and "Toy" in text
    assert "FIRE evaluations" not in text


def test_each_figure_on_its_own_from_a_store_or_a_run_dir(
    fire_run: firepbt.RunResult, tmp_path: Path
) -> None:
    store = Store.open(fire_run.run_dir)
    try:
        _assert_png(plot_best_score(store, tmp_path / "a.png"))
        _assert_png(plot_hyperparameters(store, tmp_path / "b.png", name="lr"))
        _assert_png(plot_lineage(store, tmp_path / "c.png", member=0))
        _assert_png(plot_curves(store, tmp_path / "d.png"))
        with pytest.raises(ValueError, match="no hyperparameter 'momentum'"):
            plot_hyperparameters(store, tmp_path / "e.png", name="momentum")
    finally:
        store.close()
    _assert_png(plot_lineage(str(fire_run.run_dir), tmp_path / "f.png"))


def test_run_strings_are_escaped_in_the_page(tmp_path: Path) -> None:
    space = {
        "h0": Uniform(0, 1, bounds=(0, 2)),
        "h1": Uniform(0, 1, bounds=(0, 2)),
        "tag": Choice(["<b>x</b>", "<script>alert(1)</script>"]),
    }
    run_dir = tmp_path / "run <&> 'x'"
    firepbt.run(
        Toy,
        space,
        total_steps=40,
        population=4,
        ready_every=10,
        executor="inprocess",
        run_dir=run_dir,
        seed=0,
    )
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert "<script" not in text and "<b>x</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text or "&lt;b&gt;x&lt;/b&gt;" in text
    assert "run &lt;&amp;&gt; &#x27;x&#x27;" in text
    assert text.count("data:image/png;base64,") == 4


def _kill_half_way(run_dir: Path, at: int) -> None:
    """Make a finished run look like one killed at step ``at``: later work queued, not done."""
    conn = sqlite3.connect(run_dir / STORE_FILE)
    with conn:
        conn.execute("UPDATE meta SET value = 'running' WHERE key = 'status'")
        conn.execute(
            "UPDATE segments SET status = 'queued', finished = NULL WHERE end_step > ?", (at,)
        )
        conn.execute("DELETE FROM segments WHERE start_step > ?", (at,))
        conn.execute(
            "DELETE FROM points WHERE segment NOT IN "
            "(SELECT id FROM segments WHERE status = 'done')"
        )
        conn.execute("UPDATE members SET status = 'training', step = MIN(step, ?)", (at,))
        conn.execute("DELETE FROM decisions WHERE kind = 'finish'")
    conn.close()


def test_a_run_killed_half_way_still_gets_a_report(
    fire_run: firepbt.RunResult, tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    shutil.copytree(fire_run.run_dir, run_dir, ignore=shutil.ignore_patterns("report"))
    _kill_half_way(run_dir, 260)
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 4
    assert "running" in text and "figure failed" not in text
    for name in FIGURES:
        _assert_png(run_dir / "report" / f"{name}.png")
    t = table_one(run_dir)
    assert t["top_step"] is not None and t["top_step"] <= 260


class Flaky(Quad):
    """Raises past step 25 when its ``fail`` hyperparameter is 1."""

    def train(self, steps: int) -> None:
        if self.hyperparameters["fail"] == 1 and self.step + steps > 25:
            raise RuntimeError("<flaky> boom")
        super().train(steps)


def test_a_run_with_failing_members_still_gets_a_report(tmp_path: Path) -> None:
    space = {
        "h0": Uniform(0, 1, bounds=(0, 2)),
        "h1": Uniform(0, 1, bounds=(0, 2)),
        "fail": Choice([0, 1]),
    }
    # every member may fail (firepbt.run then raises): the report must work all the same
    with contextlib.suppress(ConfigError):
        firepbt.run(
            Flaky,
            space,
            total_steps=40,
            strategy="random",
            population=4,
            ready_every=10,
            executor="inprocess",
            run_dir=tmp_path / "run",
            max_retries=0,
        )
    text = write_report(tmp_path / "run").read_text(encoding="utf-8")
    assert "Failures and warnings" in text and "&lt;flaky&gt; boom" in text
    assert text.count("data:image/png;base64,") == 4


def test_a_run_without_any_score_says_so(tmp_path: Path) -> None:
    store = Store.create(tmp_path, {"strategy": "pbt", "trainable": "x:<Y>", "total_steps": 10})
    store.close()
    page = write_report(tmp_path)
    text = page.read_text(encoding="utf-8")
    assert "No member has recorded a score yet" in text
    assert "data:image/png" not in text and "x:&lt;Y&gt;" in text
    # the figures themselves draw a message instead of failing
    _assert_png(plot_best_score(tmp_path, tmp_path / "b.png"))
    _assert_png(plot_lineage(tmp_path, tmp_path / "l.png"))
    _assert_png(plot_hyperparameters(tmp_path, tmp_path / "h.png"))
    _assert_png(plot_curves(tmp_path, tmp_path / "c.png"))
    assert table_one(tmp_path)["top_validation"] is None


class Peak(Quad):
    """q = h0 − |step − 40|/10, highest at step 40; test_q = 10·h0 + step/1000."""

    def evaluate(self) -> dict[str, float]:  # type: ignore[override]
        h0 = float(self.hyperparameters["h0"])
        return {"q": h0 - abs(self.step - 40) / 10, "test_q": 10 * h0 + self.step / 1000}


def _run_with_test_metric(tmp_path: Path, **kwargs: Any) -> Path:
    run_dir = tmp_path / "run"
    args: dict[str, Any] = {
        "total_steps": 60,
        "strategy": "random",
        "population": 3,
        "ready_every": 20,
        "eval_every": 10,
        "metric": "q",
        "executor": "inprocess",
        "run_dir": run_dir,
        "seed": 5,
        **kwargs,
    }
    space = {"h0": Uniform(0, 1), "h1": 0.5}
    try:
        firepbt.run(Peak, space, test_metric="test_q", **args)
    except TypeError:  # an older firepbt.run without test_metric: write it into the config
        firepbt.run(Peak, space, **args)
        store = Store.open(run_dir)
        store.set_meta("config", json.dumps({**store.config(), "test_metric": "test_q"}))
        store.close()
    return run_dir


def test_table_one_by_hand(tmp_path: Path) -> None:
    run_dir = _run_with_test_metric(tmp_path)
    store = Store.open(run_dir)
    h0 = {m.id: m.hyperparameters["h0"] for m in store.members()}
    store.close()
    best = max(h0, key=lambda m: h0[m])
    t = table_one(run_dir)
    assert t["metric"] == "q" and t["test_metric"] == "test_q" and t["mode"] == "max"
    assert (t["top_member"], t["top_step"]) == (best, 40)
    assert t["top_validation"] == pytest.approx(h0[best])
    assert t["matching_test"] == pytest.approx(10 * h0[best] + 0.04)
    assert t["replay_test"] is None and t["replay_count"] == 0
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert f"{h0[best]:.6g}" in text and f"{10 * h0[best] + 0.04:.6g}" in text


def test_table_one_in_min_mode_takes_the_lowest_point(fire_run: firepbt.RunResult) -> None:
    store = Store.open(fire_run.run_dir)
    roles = {m.id: m.role.value for m in store.members()}
    points = [(m, p) for m, p in store.points() if roles[m] == "member"]
    store.close()
    m, p = min(points, key=lambda mp: mp[1].score)
    t = table_one(fire_run.run_dir)
    assert (t["top_validation"], t["top_member"], t["top_step"]) == (p.score, m, p.step)
    assert t["matching_test"] is None  # the run names no test_metric


def test_table_one_reads_finished_replays(tmp_path: Path) -> None:
    run_dir = _run_with_test_metric(tmp_path)
    conn = sqlite3.connect(run_dir / STORE_FILE)
    with conn:
        conn.executescript(
            "CREATE TABLE IF NOT EXISTS replays(id INTEGER PRIMARY KEY, member INTEGER NOT NULL,"
            " seed INTEGER NOT NULL, split TEXT, created REAL NOT NULL, status TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS replay_points(replay INTEGER NOT NULL,"
            " step INTEGER NOT NULL, score REAL, metrics TEXT NOT NULL);"
        )
        for rid, status, final in ((1, "done", 0.5), (2, "done", 0.7), (3, "failed", 9.0)):
            conn.execute(
                "INSERT INTO replays(id, member, seed, created, status) VALUES (?, 0, ?, 0, ?)",
                (rid, rid, status),
            )
            for step, value in ((30, 0.0), (60, final)):
                conn.execute(
                    "INSERT INTO replay_points VALUES (?, ?, ?, ?)",
                    (rid, step, 1.0, json.dumps({"q": 1.0, "test_q": value})),
                )
    conn.close()
    t = table_one(run_dir)
    assert t["replay_count"] == 2 and t["replay_members"] == [0]
    assert t["replay_test"] == pytest.approx(0.6)
    assert t["replay_test_std"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert "0.6 ± 0.141421" in write_report(run_dir).read_text(encoding="utf-8")


def test_a_clear_error_without_matplotlib(
    pbt_run: firepbt.RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"firepbt\[plot\]"):
        write_report(pbt_run.run_dir, tmp_path)
    with pytest.raises(ImportError, match=r"firepbt\[plot\]"):
        plot_curves(pbt_run.run_dir, tmp_path / "c.png")


def test_the_report_command_prints_table_one(
    fire_run: firepbt.RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from firepbt.cli import main

    run_dir = tmp_path / "copy"
    shutil.copytree(fire_run.run_dir, run_dir, ignore=shutil.ignore_patterns("report"))
    t = table_one(run_dir)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(tmp_path / "out" / "report.html")
    assert lines[1] == (
        f"top loss: {t['top_validation']:.4g} (member {t['top_member']}, step {t['top_step']})"
    )
    assert lines[-1].startswith("no replay yet")
    firepbt.replay(run_dir, seeds=2)  # exported at the top level, like run and resume
    main(["report", str(run_dir), "--out", str(tmp_path / "out")])
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("loss of the replayed schedule: ") and last.endswith("(2 replays)")
