"""The TensorBoard, MLflow and W&B writers, read back with each tool's own reader: one curve per
member equal to what the store recorded, and each hyperparameter's curve taking an exploit's new
values from the exploit's step on. Each test is skipped when its package is not installed
(``pip install 'firepbt[logging]'`` installs all three)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _runs import nqm_run

import firepbt
from firepbt.store import Store

NQM = dict(dim=10, total_steps=120, population=4, ready_every=20, eval_every=10, seed=3)
REL = 1e-6  # TensorBoard keeps scalars as float32


def _recorded(run_dir: Path) -> tuple[dict[int, list[tuple[int, float]]], list[Any], set[int]]:
    """Each member's (step, loss) curve and the exploits (member, from step, new lr) the store
    recorded, and the members."""
    store = Store.open(run_dir)
    try:
        curves: dict[int, list[tuple[int, float]]] = {}
        for member, point in store.points():
            curves.setdefault(member, []).append((point.step, point.metrics["loss"]))
        exploits = [
            (d.member, d.source_step, d.hyperparameters["lr"])
            for d in store.decisions()
            if d.kind == "exploit"
        ]
        members = {m.id for m in store.members()}
    finally:
        store.close()
    assert exploits, "the run should exploit: pick another seed"
    return curves, exploits, members


def _after(curve: list[tuple[int, float]], step: int) -> float:
    """The value a curve logged at the first step after ``step``."""
    return next(v for s, v in curve if s > step)


def test_tensorboard_and_mlflow_hold_each_members_curve_and_its_exploits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    from firepbt.loggers._mlflow import MEMBER_TAG, PARENT_TAG, tracking_uri

    monkeypatch.chdir(tmp_path)
    logging = {"tensorboard": "tb", "mlflow": {"where": "ml", "experiment": "nqm"}}
    nqm_run(tmp_path / "run", logging=logging, **NQM)
    curves, exploits, members = _recorded(tmp_path / "run")

    # TensorBoard: a run (directory) per member, read with its own event reader
    tb: dict[int, dict[str, list[tuple[int, float]]]] = {}
    texts: dict[int, list[tuple[int, str]]] = {}
    assert sorted(p.name for p in (tmp_path / "tb" / "run").iterdir()) == [
        f"member-{m:04d}" for m in sorted(members)
    ]
    for m in members:
        acc = ea.EventAccumulator(
            str(tmp_path / "tb" / "run" / f"member-{m:04d}"),
            size_guidance={ea.SCALARS: 0, ea.TENSORS: 0},
        ).Reload()
        tb[m] = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
        texts[m] = [
            (e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode())
            for e in acc.Tensors("decisions")
        ]
    for m, curve in curves.items():
        assert [s for s, _ in tb[m]["metrics/loss"]] == [s for s, _ in curve]
        assert [v for _, v in tb[m]["metrics/loss"]] == pytest.approx(
            [v for _, v in curve], rel=REL
        )
    for member, step, lr in exploits:
        assert _after(tb[member]["hyperparameters/lr"], step) == pytest.approx(lr, rel=REL)
        assert any(s == step and t.startswith("exploit: ") for s, t in texts[member])

    # MLflow: a run per member nested under the run's parent, read with its tracking API
    client = MlflowClient(tracking_uri(tmp_path / "ml")[0])
    experiment = client.get_experiment_by_name("nqm")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    assert [p.info.run_name for p in parents] == ["run"]
    assert parents[0].info.status == "FINISHED"
    children = {
        int(r.data.tags[MEMBER_TAG]): r
        for r in runs
        if r.data.tags.get(PARENT_TAG) == parents[0].info.run_id
    }
    assert set(children) == members
    ml: dict[int, dict[str, list[tuple[int, float]]]] = {}
    for m, run in children.items():
        ml[m] = {
            key: sorted((x.step, x.value) for x in client.get_metric_history(run.info.run_id, key))
            for key in ("metrics/loss", "hyperparameters/lr")
        }
        assert run.info.status == "FINISHED"
        assert float(run.data.params["lr"]) == ml[m]["hyperparameters/lr"][0][1]
    for m, curve in curves.items():
        assert ml[m]["metrics/loss"] == curve
    for member, step, lr in exploits:
        assert _after(ml[member]["hyperparameters/lr"], step) == lr
        tag = children[member].data.tags[f"decision.{step:08d}.exploit"]
        assert tag.startswith("exploit: ") and "lr: " in tag


def _wandb_records(path: Path) -> Iterator[bytes]:
    """The records of a ``.wandb`` file: a 7-byte header, then LevelDB-log blocks of 32 KiB
    whose chunks (checksum, length, type: full, first, middle, last) make up each record."""
    data, block, position, record = path.read_bytes(), 32768, 7, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # the block's tail is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            position += left
            continue
        record += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # full or last
            yield record
            record = b""


def test_wandb_offline_holds_each_members_curve_and_its_exploits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    wandb_internal_pb2 = pytest.importorskip("wandb.proto.wandb_internal_pb2")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logging = {"wandb": {"project": "nqm", "mode": "offline", "dir": str(tmp_path / "wb")}}
    nqm_run(tmp_path / "run", logging=logging, **NQM)
    store = Store.open(tmp_path / "run")
    try:
        refused = [f[3] for f in store.failures() if f[2] == "callback"]
    finally:
        store.close()
    if refused:
        pytest.skip(f"wandb cannot run offline here: {refused[0]}")
    curves, exploits, members = _recorded(tmp_path / "run")

    logged: dict[int, list[dict[str, Any]]] = {}
    for path in (tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb"):
        member = int(path.stem.rsplit("-", 1)[1])
        for data in _wandb_records(path):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            if record.WhichOneof("record_type") == "history":
                items = record.history.item
                row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
                logged.setdefault(member, []).append(row)
    assert set(logged) == members
    for m, curve in curves.items():
        got = [(r["step"], r["metrics/loss"]) for r in logged[m] if "metrics/loss" in r]
        assert got == curve
    for member, step, lr in exploits:
        lrs = [(r["step"], r["hyperparameters/lr"]) for r in logged[member] if "metrics/loss" in r]
        assert _after(lrs, step) == lr
        lines = [r for r in logged[member] if "decisions" in r]
        assert any(r["step"] == step and r["decisions"].startswith("exploit: ") for r in lines)


def test_a_resumed_run_rebuilds_its_writers_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing import event_accumulator as ea

    from firepbt.loggers._mlflow import MEMBER_TAG, PARENT_TAG, tracking_uri

    class StopAfter(firepbt.Callback):
        def __init__(self) -> None:
            self.decisions = 0

        def on_decision(self, decision: Any) -> None:
            self.decisions += 1
            if self.decisions == 12:
                raise KeyboardInterrupt  # a Ctrl-C, after the writers heard each decision

    monkeypatch.chdir(tmp_path)
    logging = {"tensorboard": "tb", "mlflow": "ml"}
    with pytest.raises(KeyboardInterrupt):
        nqm_run(tmp_path / "run", logging=logging, callbacks=[StopAfter()], **NQM)
    firepbt.resume(tmp_path / "run")
    curves, _, members = _recorded(tmp_path / "run")
    for m in members:
        directory = tmp_path / "tb" / "run" / f"member-{m:04d}"
        assert len(list(directory.glob("events.out.tfevents.*"))) == 2  # one per process run
        acc = ea.EventAccumulator(str(directory), size_guidance={ea.SCALARS: 0}).Reload()
        logged = [(e.step, e.value) for e in acc.Scalars("metrics/loss")]
        assert [s for s, _ in logged] == [s for s, _ in curves[m]]  # each point once
        assert [v for _, v in logged] == pytest.approx([v for _, v in curves[m]], rel=REL)
    # MLflow: the resume logs on to the runs the first part made
    client = MlflowClient(tracking_uri(tmp_path / "ml")[0])
    experiment = client.get_experiment_by_name("firepbt")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 + len(members)
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        if PARENT_TAG in run.data.tags:
            m = int(run.data.tags[MEMBER_TAG])
            history = client.get_metric_history(run.info.run_id, "metrics/loss")
            assert sorted((x.step, x.value) for x in history) == curves[m]


def test_fire_pbt_logs_its_evaluators_and_hand_overs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    monkeypatch.chdir(tmp_path)
    nqm_run(
        tmp_path / "run", dim=100, total_steps=600, population=6, ready_every=50, eval_every=10,
        strategy="fire", subpopulations=3, evaluators=2, max_eval_steps=150,
        success_test="levels", seed=7, executor="process", workers=2,
        logging={"tensorboard": "tb", "mlflow": "ml"},
    )  # fmt: skip
    store = Store.open(tmp_path / "run")
    try:
        assert [f for f in store.failures() if f[2] == "callback"] == []
        decisions = store.decisions()
        curves = {m: [p.step for _, p in store.points(m)] for m in range(8)}
    finally:
        store.close()
    handovers = [d for d in decisions if d.kind == "handover"]
    assert handovers, "with this seed an evaluator hands its weights over"
    names = sorted(p.name for p in (tmp_path / "tb" / "run").iterdir())
    assert names == ["evaluator-0006", "evaluator-0007"] + [f"member-{m:04d}" for m in range(6)]

    def texts(name: str) -> list[tuple[int, str]]:
        path = tmp_path / "tb" / "run" / name
        acc = ea.EventAccumulator(str(path), size_guidance={ea.TENSORS: 0}).Reload()
        return [
            (e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode())
            for e in acc.Tensors("decisions")
        ]

    h = handovers[0]
    assert (h.step, f"handover: took the weights of evaluator {h.donor}") in [
        (s, t.split(" at step")[0]) for s, t in texts(f"member-{h.member:04d}")
    ]
    assert any(t.startswith("assign: ") for _, t in texts(f"evaluator-{h.donor:04d}"))
    acc = ea.EventAccumulator(str(tmp_path / "tb" / "run" / "evaluator-0006"), {ea.SCALARS: 0})
    steps = [e.step for e in acc.Reload().Scalars("metrics/loss")]
    assert steps == curves[6]
