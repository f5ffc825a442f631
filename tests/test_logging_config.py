"""``[logging]`` in a config: parsed, checked (an unknown writer or key, a wrong type: one line
naming it), kept in the run's config and round-tripped through ``RunConfig.to_dict()``; a writer
whose package is missing names the extra to install before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _runs import toy_toml

import firepbt
from firepbt import MLflowWriter, TensorBoardWriter, WandbWriter
from firepbt.config import RunConfig
from firepbt.errors import ConfigError
from firepbt.loggers import build_writers
from firepbt.store import Store

BASE: dict[str, Any] = dict(trainable="firepbt.examples.toy:Toy", space={"h0": 0.5}, total_steps=4)
LOGGING = {
    "tensorboard": "tb",
    "mlflow": {"where": "sqlite:///ml.db", "experiment": "toy"},
    "wandb": {"project": "toy", "entity": "me", "mode": "offline", "group": "g", "dir": "wb"},
}


def _toml(tmp_path: Path, logging: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(toy_toml(tmp_path / "run") + "[logging]\n" + logging)
    return path


def test_logging_is_parsed_and_round_trips_through_to_dict(tmp_path: Path) -> None:
    lines = [
        'tensorboard = "tb"',
        'mlflow = { where = "sqlite:///ml.db", experiment = "toy" }',
        'wandb = { project = "toy", entity = "me", mode = "offline", group = "g", dir = "wb" }',
    ]
    config = RunConfig.from_toml(_toml(tmp_path, "\n".join(lines) + "\n"))
    assert config.logging == LOGGING
    stored = json.loads(json.dumps(config.to_dict()))  # as the store keeps it
    assert stored["logging"] == LOGGING
    assert RunConfig(**stored) == config
    assert RunConfig.from_toml(_toml(tmp_path, "")).logging == {}


def test_writers_are_built_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for package in ("tensorboard", "mlflow", "wandb"):
        pytest.importorskip(package)
    monkeypatch.chdir(tmp_path)
    tb, ml, wb = build_writers(LOGGING)
    assert isinstance(tb, TensorBoardWriter) and tb.directory == tmp_path / "tb"
    assert isinstance(ml, MLflowWriter) and (ml.uri, ml.experiment) == ("sqlite:///ml.db", "toy")
    assert isinstance(wb, WandbWriter) and (wb.project, wb.mode) == ("toy", "offline")
    assert wb.dir == tmp_path / "wb"
    (ml_dir,) = build_writers({"mlflow": "mlruns"})
    assert isinstance(ml_dir, MLflowWriter)
    assert ml_dir.uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"  # a local store


@pytest.mark.parametrize(
    ("logging", "message"),
    [
        ('neptune = "x"', r"logging: unknown writer\(s\) \['neptune'\]; choose among tensorboard"),
        ("tensorboard = 3", "logging.tensorboard: expected a directory .a string. or a table"),
        ('tensorboard = ""', "logging.tensorboard.directory: expected a non-empty string"),
        ("wandb = { entity = 'me' }", "logging.wandb: missing project"),
        (
            "wandb = { project = 'p', colour = 'red' }",
            r"logging.wandb: unknown key\(s\) \['colour'\]",
        ),
        ("wandb = { project = 1 }", "logging.wandb.project: expected a non-empty string, got 1"),
        ("wandb = { project = 'p', mode = 'sometimes' }", "logging.wandb.mode: expected one of"),
        ("mlflow = ['a']", r"logging.mlflow: expected a where .a string. or a table"),
        ("mlflow = { experiment = true }", "logging.mlflow.experiment: expected a non-empty"),
    ],
)
def test_a_bad_logging_table_is_one_line_naming_the_key(
    tmp_path: Path, logging: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_toml(_toml(tmp_path, logging + "\n"))


def test_logging_must_be_a_table(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('logging = "tb"\n' + toy_toml(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"\[logging\] must be a table"):
        RunConfig.from_toml(path)
    with pytest.raises(ConfigError, match="logging: expected a table of writers, got 'tb'"):
        RunConfig(**BASE, logging="tb")  # type: ignore[arg-type]


def test_a_writer_written_at_the_top_level_is_told_where_it_belongs(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('tensorboard = "tb"\n' + toy_toml(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"tensorboard belongs under \[logging\]"):
        RunConfig.from_toml(path)


def test_a_missing_package_names_the_extra_before_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name)
    )
    import firepbt

    with pytest.raises(ConfigError, match=r"logging.mlflow: .* pip install 'firepbt\[mlflow\]'"):
        firepbt.run(
            "firepbt.examples.toy:Toy", {"h0": 0.5}, total_steps=4, population=2,
            ready_every=2, executor="inprocess", run_dir=tmp_path / "run",
            logging={"mlflow": "ml"},
        )  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_the_run_keyword_is_kept_in_the_runs_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    import firepbt

    monkeypatch.chdir(tmp_path)
    firepbt.run(
        "firepbt.examples.toy:Toy", {"h0": 0.5, "h1": 0.5}, total_steps=4, population=2,
        ready_every=2, executor="inprocess", run_dir=tmp_path / "run",
        logging={"tensorboard": "tb"},
    )  # fmt: skip
    store = Store.open(tmp_path / "run")
    try:
        assert store.config()["logging"] == {"tensorboard": "tb"}
    finally:
        store.close()
    assert sorted(p.name for p in (tmp_path / "tb" / "run").iterdir()) == [
        "member-0000",
        "member-0001",
    ]


def test_firepbt_run_writes_the_configs_logs_and_refuses_an_unknown_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorboard")
    from firepbt.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", str(_toml(tmp_path, 'tensorboard = "tb"\n')), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "tb" / "run").iterdir()) == [
        "member-0000",
        "member-0001",
    ]
    assert main(["run", str(_toml(tmp_path, 'tensorbord = "tb"\n'))]) == 2
    err = capsys.readouterr().err
    assert "logging: unknown writer(s) ['tensorbord']; choose among tensorboard, mlflow" in err
    assert "Traceback" not in err


def test_a_tensorboard_directory_that_is_a_file_is_refused_before_the_run(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    (tmp_path / "tb").write_text("not a directory")
    with pytest.raises(ConfigError, match=r"logging.tensorboard: .*tb is a file"):
        firepbt.run(
            "firepbt.examples.toy:Toy", {"h0": 0.5, "h1": 0.5}, total_steps=4, population=2,
            ready_every=2, executor="inprocess", run_dir=tmp_path / "r",
            logging={"tensorboard": str(tmp_path / "tb" / "logs")},
        )  # fmt: skip
    assert not (tmp_path / "r").exists()
