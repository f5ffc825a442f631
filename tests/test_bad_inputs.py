"""Every bad input is one line: a non-zero exit, exactly one line on stderr naming the field or
the file, and no traceback (an exception escaping ``main`` would fail the test)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from _runs import toy_toml

from firepbt.cli import main

BASE = toy_toml("RUN", seed=0, mode="max")

FIRE = BASE.replace('name = "pbt"\npopulation = 2', 'name = "fire"\npopulation = 4')

# (config text changes: old line -> new line, or a line to add under a table; what the message
# must name)
CONFIG_CASES: list[tuple[str, str, str, str]] = [
    # (id, old, new, named)
    ("seed text", "seed = 0", 'seed = "abc"', "seed"),
    ("seed negative", "seed = 0", "seed = -1", "seed"),
    ("seed float", "seed = 0", "seed = 1.5", "seed"),
    ("seed bool", "seed = 0", "seed = true", "seed"),
    ("mode unknown", 'mode = "max"', 'mode = "up"', "mode"),
    ("mode number", 'mode = "max"', "mode = 1", "mode"),
    ("metric number", 'mode = "max"', 'mode = "max"\nmetric = 5', "metric"),
    ("test_metric list", 'mode = "max"', 'mode = "max"\ntest_metric = []', "test_metric"),
    ("unknown top key", 'mode = "max"', 'mode = "max"\ncolour = 1', "colour"),
    (
        "population at the top",
        'mode = "max"',
        'mode = "max"\npopulation = 4',
        "population belongs under [strategy]",
    ),
    (
        "total_steps at the top",
        'mode = "max"',
        'mode = "max"\ntotal_steps = 9',
        "total_steps belongs under [budget] as steps",
    ),
    (
        "workers at the top",
        'mode = "max"',
        'mode = "max"\nworkers = 2',
        "workers belongs under [executor]",
    ),
    (
        "an option at the top",
        'mode = "max"',
        'mode = "max"\nsubpopulations = 2',
        "subpopulations belongs under [strategy]",
    ),
    ("trainable no colon", "firepbt.examples.toy:Toy", "nocolon", "trainable"),
    ("trainable number", 'trainable = "firepbt.examples.toy:Toy"', "trainable = 5", "trainable"),
    ("trainable no module", "firepbt.examples.toy:Toy", "nomodule_xyz:Toy", "nomodule_xyz"),
    ("trainable no class", "firepbt.examples.toy:Toy", "firepbt.examples.toy:Nope", "Nope"),
    ("trainable not a Trainable", "firepbt.examples.toy:Toy", "firepbt.examples.toy:np", "np"),
    ("trainable raises on import", "firepbt.examples.toy:Toy", "raises_xyz:T", "raises_xyz"),
    ("trainable syntax error", "firepbt.examples.toy:Toy", "syntax_xyz:T", "syntax_xyz"),
    ("steps zero", "steps = 4", "steps = 0", "steps"),
    ("steps negative", "steps = 4", "steps = -1", "steps"),
    ("steps text", "steps = 4", 'steps = "4"', "steps"),
    ("steps float", "steps = 4", "steps = 4.5", "steps"),
    ("steps bool", "steps = 4", "steps = true", "steps"),
    ("budget unknown key", "steps = 4", "steps = 4\nhours = 2", "budget"),
    ("strategy unknown", 'name = "pbt"', 'name = "pbt2"', "strategy"),
    ("strategy name number", 'name = "pbt"', "name = 3", "strategy"),
    ("population zero", "population = 2", "population = 0", "population"),
    ("population text", "population = 2", 'population = "2"', "population"),
    ("population bool", "population = 2", "population = true", "population"),
    ("population float", "population = 2", "population = 2.5", "population"),
    ("ready_every zero", "ready_every = 2", "ready_every = 0", "ready_every"),
    ("ready_every text", "ready_every = 2", 'ready_every = "2"', "ready_every"),
    ("ready_every negative", "ready_every = 2", "ready_every = -2", "ready_every"),
    ("eval_every bool", 'mode = "max"', 'mode = "max"\neval_every = true', "eval_every"),
    ("eval_every zero", 'mode = "max"', 'mode = "max"\neval_every = 0', "eval_every"),
    ("eval_every text", 'mode = "max"', 'mode = "max"\neval_every = "1"', "eval_every"),
    ("max_retries text", 'mode = "max"', 'mode = "max"\nmax_retries = "2"', "max_retries"),
    ("max_retries float", 'mode = "max"', 'mode = "max"\nmax_retries = 1.5', "max_retries"),
    ("max_retries negative", 'mode = "max"', 'mode = "max"\nmax_retries = -1', "max_retries"),
    ("checkpoint_every zero", 'mode = "max"', 'mode = "max"\ncheckpoint_every = 0', "checkpoint"),
    (
        "checkpoint_every bool",
        'mode = "max"',
        'mode = "max"\ncheckpoint_every = true',
        "checkpoint",
    ),
    (
        "segment_timeout bool",
        'mode = "max"',
        'mode = "max"\nsegment_timeout = true',
        "segment_timeout",
    ),
    (
        "segment_timeout zero",
        'mode = "max"',
        'mode = "max"\nsegment_timeout = 0',
        "segment_timeout",
    ),
    (
        "segment_timeout text",
        'mode = "max"',
        'mode = "max"\nsegment_timeout = "5"',
        "segment_timeout",
    ),
    (
        "segment_timeout in-process",
        'mode = "max"',
        'mode = "max"\nsegment_timeout = 5',
        "segment_timeout",
    ),
    ("executor unknown", 'kind = "inprocess"', 'kind = "gpu"', "executor"),
    ("executor kind number", 'kind = "inprocess"', "kind = 5", "executor"),
    ("workers zero", 'kind = "inprocess"', 'kind = "process"\nworkers = 0', "workers"),
    ("workers text", 'kind = "inprocess"', 'kind = "process"\nworkers = "2"', "workers"),
    ("workers bool", 'kind = "inprocess"', 'kind = "process"\nworkers = true', "workers"),
    (
        "address without ray",
        'kind = "inprocess"',
        'kind = "inprocess"\naddress = "auto"',
        "address",
    ),
    (
        "cpus without ray",
        'kind = "inprocess"',
        'kind = "inprocess"\nnum_cpus_per_worker = 1',
        "num_cpus",
    ),
    ("executor unknown key", 'kind = "inprocess"', 'kind = "inprocess"\nthreads = 2', "threads"),
    ("space dist unknown", 'h0 = { dist = "uniform"', 'h0 = { dist = "gaussian"', "h0"),
    ("space low above high", "low = 0.0, high = 1.0 }\nh1", "low = 2.0, high = 1.0 }\nh1", "h0"),
    ("space high missing", "low = 0.0, high = 1.0 }\nh1", "low = 0.0 }\nh1", "h0"),
    ("space low text", "low = 0.0, high = 1.0 }\nh1", 'low = "0", high = 1.0 }\nh1', "h0"),
    ("space loguniform at zero", 'h0 = { dist = "uniform"', 'h0 = { dist = "loguniform"', "h0"),
    (
        "space choice empty",
        'h0 = { dist = "uniform", low = 0.0, high = 1.0 }',
        'h0 = { dist = "choice", values = [] }',
        "h0",
    ),
    ("space dist number", 'h0 = { dist = "uniform"', "h0 = { dist = 5", "h0"),
    (
        "space bounds inverted",
        "low = 0.0, high = 1.0 }\nh1",
        "low = 0.0, high = 1.0, bounds = [1.0, 0.0] }\nh1",
        "h0",
    ),
    (
        "space unknown option",
        "low = 0.0, high = 1.0 }\nh1",
        "low = 0.0, high = 1.0, step = 2 }\nh1",
        "h0",
    ),
    (
        "strategy unknown option",
        "ready_every = 2",
        "ready_every = 2\nsubpopulations = 2",
        "subpopulations",
    ),
    ("exploit unknown", "ready_every = 2", 'ready_every = 2\nexploit = "best"', "exploit"),
    ("exploit number", "ready_every = 2", "ready_every = 2\nexploit = 5", "exploit"),
    (
        "exploit fraction text",
        "ready_every = 2",
        'ready_every = 2\nexploit = { name = "truncation", fraction = "x" }',
        "fraction",
    ),
    (
        "exploit fraction too big",
        "ready_every = 2",
        'ready_every = 2\nexploit = { name = "truncation", fraction = 0.9 }',
        "exploit",
    ),
    (
        "exploit fraction bool",
        "ready_every = 2",
        'ready_every = 2\nexploit = { name = "truncation", fraction = true }',
        "fraction",
    ),
    (
        "exploit unknown option",
        "ready_every = 2",
        'ready_every = 2\nexploit = { name = "truncation", top = 1 }',
        "exploit",
    ),
    ("explore number", "ready_every = 2", "ready_every = 2\nexplore = 5", "explore"),
    ("explore list of number", "ready_every = 2", "ready_every = 2\nexplore = [5]", "explore"),
    ("explore unknown", "ready_every = 2", 'ready_every = 2\nexplore = "jitter"', "explore"),
    (
        "resample probability text",
        "ready_every = 2",
        'ready_every = 2\nexplore = { name = "resample", probability = "x" }',
        "probability",
    ),
    (
        "resample probability too big",
        "ready_every = 2",
        'ready_every = 2\nexplore = { name = "resample", probability = 2.0 }',
        "explore",
    ),
    ("synchrony unknown", "ready_every = 2", 'ready_every = 2\nsynchrony = "maybe"', "synchrony"),
    ("synchrony number", "ready_every = 2", "ready_every = 2\nsynchrony = 1", "synchrony"),
    ("burn_in negative", "ready_every = 2", "ready_every = 2\nburn_in = -1", "burn_in"),
    ("burn_in text", "ready_every = 2", 'ready_every = 2\nburn_in = "1"', "burn_in"),
    (
        "replace_failed text",
        "ready_every = 2",
        'ready_every = 2\nreplace_failed = "1"',
        "replace_failed",
    ),
    (
        "replace_failed negative",
        "ready_every = 2",
        "ready_every = 2\nreplace_failed = -1",
        "replace_failed",
    ),
    (
        "initial_hyperparameters text",
        "ready_every = 2",
        'ready_every = 2\ninitial_hyperparameters = "x"',
        "initial_hyperparameters",
    ),
]
FIRE_CASES: list[tuple[str, str, str, str]] = [
    (
        "fire subpopulations one",
        "ready_every = 2",
        "ready_every = 2\nsubpopulations = 1",
        "subpopulations",
    ),
    (
        "fire subpopulations text",
        "ready_every = 2",
        'ready_every = 2\nsubpopulations = "2"',
        "subpopulations",
    ),
    (
        "fire subpopulations uneven",
        "ready_every = 2",
        "ready_every = 2\nsubpopulations = 3",
        "population",
    ),
    ("fire evaluators zero", "ready_every = 2", "ready_every = 2\nevaluators = 0", "evaluators"),
    ("fire evaluators text", "ready_every = 2", 'ready_every = 2\nevaluators = "2"', "evaluators"),
    ("fire p_stat zero", "ready_every = 2", "ready_every = 2\np_stat = 0.0", "p_stat"),
    ("fire p_stat one", "ready_every = 2", "ready_every = 2\np_stat = 1.0", "p_stat"),
    ("fire p_stat text", "ready_every = 2", 'ready_every = 2\np_stat = "0.01"', "p_stat"),
    ("fire thin zero", "ready_every = 2", "ready_every = 2\nthin = 0", "thin"),
    ("fire thin bool", "ready_every = 2", "ready_every = 2\nthin = true", "thin"),
    (
        "fire success_test unknown",
        "ready_every = 2",
        'ready_every = 2\nsuccess_test = "slopes"',
        "success_test",
    ),
    (
        "fire success_test number",
        "ready_every = 2",
        "ready_every = 2\nsuccess_test = 1",
        "success_test",
    ),
    (
        "fire keep_curves text",
        "ready_every = 2",
        'ready_every = 2\nkeep_curves = "yes"',
        "keep_curves",
    ),
    ("fire retarget number", "ready_every = 2", "ready_every = 2\nretarget = 1", "retarget"),
    (
        "fire max_eval_steps zero",
        "ready_every = 2",
        "ready_every = 2\nmax_eval_steps = 0",
        "max_eval_steps",
    ),
    (
        "fire max_eval_steps text",
        "ready_every = 2",
        'ready_every = 2\nmax_eval_steps = "9"',
        "max_eval_steps",
    ),
    (
        "fire min_steps text",
        "ready_every = 2",
        'ready_every = 2\nmin_steps_before_eval = "9"',
        "min_steps_before_eval",
    ),
    (
        "fire min_steps wrong length",
        "ready_every = 2",
        "ready_every = 2\nmin_steps_before_eval = [0, 1, 2]",
        "min_steps_before_eval",
    ),
    (
        "fire min_steps item text",
        "ready_every = 2",
        'ready_every = 2\nmin_steps_before_eval = [0, "x"]',
        "min_steps_before_eval",
    ),
    (
        "fire min_steps negative",
        "ready_every = 2",
        "ready_every = 2\nmin_steps_before_eval = -5",
        "min_steps_before_eval",
    ),
    ("fire warmup negative", "ready_every = 2", "ready_every = 2\nwarmup = -1", "warmup"),
    ("fire warmup text", "ready_every = 2", 'ready_every = 2\nwarmup = "150"', "warmup"),
    ("fire warmup flag", "ready_every = 2", "ready_every = 2\nwarmup = true", "warmup"),
]


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("modules")
    (folder / "raises_xyz.py").write_text("raise RuntimeError('boom on import')\n")
    (folder / "syntax_xyz.py").write_text("def f(:\n")
    return folder


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str], named: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, f"exit {code} for {argv}"
    assert len(lines) == 1, err
    assert named in lines[0], lines[0]


@pytest.mark.parametrize(
    ("base", "old", "new", "named"),
    [pytest.param(BASE, *c[1:], id=c[0]) for c in CONFIG_CASES]
    + [pytest.param(FIRE, *c[1:], id=c[0]) for c in FIRE_CASES],
)
def test_a_bad_config_is_one_line_naming_the_field(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    modules: Path,
    base: str,
    old: str,
    new: str,
    named: str,
) -> None:
    monkeypatch.syspath_prepend(str(modules))
    assert old in base
    text = base.replace("RUN", str(tmp_path / "run")).replace(old, new, 1)
    config = tmp_path / "run.toml"
    config.write_text(text)
    _one_line(capsys, ["run", str(config), "--quiet"], named)


def _good_config(folder: Path) -> Path:
    config = folder / "good.toml"
    config.write_text(BASE.replace("RUN", str(folder / "run")))
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    assert main(["run", str(_good_config(folder)), "--quiet"]) == 0
    return folder / "run"


def _damaged(finished: Path, to: Path, how: str) -> Path:
    shutil.copytree(finished, to)
    store = to / "firepbt.sqlite"
    for side in ("-wal", "-shm"):
        store.with_name(store.name + side).unlink(missing_ok=True)
    if how == "corrupt":
        store.write_bytes(b"garbage" * 500)
    elif how == "truncated":
        store.write_bytes(store.read_bytes()[:3000])
    elif how == "header only":
        store.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84)
    elif how == "half made":
        store.unlink()
        sqlite3.connect(store).execute("PRAGMA journal_mode=WAL").close()
    elif how in ("bad json config", "config not an object"):
        db = sqlite3.connect(store)
        value = "{not json" if how == "bad json config" else "[1, 2]"
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (value,))
        db.commit()
        db.close()
    return to


STORE_DAMAGE = ["corrupt", "truncated", "header only", "half made", "bad json config",
                "config not an object"]  # fmt: skip


@pytest.mark.parametrize("command", ["status", "resume", "report", "export"])
@pytest.mark.parametrize("how", STORE_DAMAGE)
def test_a_damaged_store_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished: Path, how: str, command: str
) -> None:
    run_dir = _damaged(finished, tmp_path / "run", how)
    _one_line(capsys, [command, str(run_dir)], str(run_dir))


@pytest.mark.parametrize("command", ["status", "resume", "report", "export", "replay"])
def test_a_run_dir_without_a_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    _one_line(capsys, [command, str(tmp_path / "nothing")], str(tmp_path / "nothing"))


def test_config_file_problems_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.toml"
    _one_line(capsys, ["run", str(missing)], str(missing))
    _one_line(capsys, ["run", str(tmp_path)], str(tmp_path))  # a directory
    latin = tmp_path / "latin.toml"
    latin.write_bytes('trainable = "caf\xe9"'.encode("latin-1"))
    _one_line(capsys, ["run", str(latin)], str(latin))
    broken = tmp_path / "broken.toml"
    broken.write_text("trainable = [")
    _one_line(capsys, ["run", str(broken)], str(broken))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    config = tmp_path / "c.toml"
    config.write_text(BASE.replace('"RUN"', f'"{a_file}"'))
    _one_line(capsys, ["run", str(config)], str(a_file))  # run_dir is a file


def test_command_line_problems_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished: Path
) -> None:
    config = _good_config(tmp_path)
    cases = [
        (["run", str(config), "--seed", "-1"], "seed"),
        (["run", str(config), "--seed", "x"], "--seed"),
        (["run", str(config), "--workers", "0"], "workers"),
        (["replay", str(finished), "--member", "x"], "--member"),
        (["replay", str(finished), "--member", "99"], "member 99"),
        (["replay", str(finished), "--seeds", "0"], "seeds"),
        (["export", str(finished), "--format", "xml"], "--format"),
        (["frobnicate"], "frobnicate"),
        ([], "command"),
    ]
    exists = tmp_path / "exists.html"
    exists.write_text("x")
    cases += [
        (["report", str(finished), "--out", str(exists)], str(exists)),
        (["export", str(finished), "--out", str(exists)], str(exists)),
    ]
    for argv, named in cases:
        try:
            _one_line(capsys, argv, named)
        except SystemExit as e:  # argparse's usage errors exit through SystemExit
            assert e.code == 2
            err = capsys.readouterr().err
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and named in lines[0], err


def test_a_test_metric_never_returned_is_a_warning_in_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.toml"
    text = BASE.replace("RUN", str(tmp_path / "run"))
    config.write_text(text.replace('mode = "max"', 'mode = "max"\ntest_metric = "test_acc"'))
    assert main(["run", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "warning: test_metric 'test_acc' was never returned by evaluate()" in out
