"""GPUs per worker, checked without a GPU: which devices each worker is given, fractional sharing,
refusals, the config keys, and ``Trainable.device``. A test that needs real CUDA is skipped here."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
from _trainables import DeviceProbe, Quad

import firepbt
from firepbt import ConfigError, RunConfig, Store
from firepbt.execution.devices import assign_devices, check_gpus_per_worker, visible_gpus
from firepbt.execution.pool import ProcessPoolExecutor


@pytest.mark.parametrize(
    ("workers", "share", "devices", "plan"),
    [
        (2, 1, ["0", "1"], ["0", "1"]),
        (2, 2, ["0", "1", "2", "3"], ["0,1", "2,3"]),
        (4, 0.5, ["0", "1"], ["0", "0", "1", "1"]),
        (3, 0.5, ["0", "1"], ["0", "0", "1"]),
        (4, 0.25, ["5"], ["5", "5", "5", "5"]),
        (2, 1, ["GPU-aa", "GPU-bb"], ["GPU-aa", "GPU-bb"]),  # UUIDs pass through
        (3, 0, [], [None, None, None]),  # no GPUs: the workers' environment is left alone
    ],
)
def test_devices_are_handed_out_in_order(
    workers: int, share: float, devices: list[str], plan: list[str | None]
) -> None:
    assert assign_devices(workers, share, devices) == plan


@pytest.mark.parametrize(
    ("workers", "share", "devices"),
    [(3, 1, ["0", "1"]), (5, 0.5, ["0", "1"]), (1, 1, []), (2, 2, ["0", "1", "2"])],
)
def test_more_gpus_than_exist_is_refused(workers: int, share: float, devices: list[str]) -> None:
    with pytest.raises(ConfigError, match="gpus_per_worker: .* need"):
        assign_devices(workers, share, devices)


@pytest.mark.parametrize("value", [-1, 1.5, 0.3, float("nan"), "1", True])
def test_bad_gpus_per_worker_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="gpus_per_worker"):
        check_gpus_per_worker(value)


def test_visible_gpus_read_cuda_visible_devices() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": " 2, 3 "}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,-1,2"}) == ["0"]  # CUDA stops at -1


def _where_members_ran(run_dir: Path) -> dict[float, set[float]]:
    """Each worker process id -> the CUDA_VISIBLE_DEVICES values it reported."""
    store = Store.open(run_dir)
    seen: dict[float, set[float]] = defaultdict(set)
    cuda = set()
    for _, point in store.points():
        seen[point.metrics["pid"]].add(point.metrics["visible"])
        cuda.add(point.metrics["cuda"])
    store.close()
    assert cuda == {1.0}, "Trainable.device is 'cuda' in a worker given a GPU"
    return seen


def test_each_worker_sees_its_own_gpu(tmp_path: Path, quad_space, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")  # the GPUs the controller sees
    firepbt.run(
        DeviceProbe,
        quad_space,
        metric="q",
        total_steps=12,
        population=4,
        ready_every=4,
        workers=2,
        gpus_per_worker=1,
        run_dir=tmp_path / "r",
    )
    seen = _where_members_ran(tmp_path / "r")
    assert len(seen) == 2 and all(len(v) == 1 for v in seen.values())
    assert sorted(v for values in seen.values() for v in values) == [4.0, 7.0]


def test_fractional_gpus_put_two_workers_on_each_device(tmp_path: Path, quad_space) -> None:
    firepbt.run(
        DeviceProbe,
        quad_space,
        metric="q",
        total_steps=12,
        population=8,
        ready_every=4,
        workers=4,
        gpus_per_worker=0.5,
        devices=["3", "5"],
        run_dir=tmp_path / "r",
    )
    seen = _where_members_ran(tmp_path / "r")
    assert all(len(v) == 1 for v in seen.values())
    per_device = defaultdict(int)
    for values in seen.values():
        per_device[next(iter(values))] += 1
    # Every worker that ran a segment reports one device, and no device has more than two.
    assert set(per_device) <= {3.0, 5.0} and max(per_device.values()) <= 2
    assert len(seen) >= 3  # four workers, eight members: at least three ran segments


def test_without_gpus_workers_train_on_the_cpu(tmp_path: Path, quad_space, monkeypatch) -> None:
    monkeypatch.delenv("FIREPBT_DEVICE", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")
    firepbt.run(
        DeviceProbe,
        quad_space,
        metric="q",
        total_steps=8,
        population=2,
        ready_every=4,
        workers=2,
        run_dir=tmp_path / "r",
    )
    store = Store.open(tmp_path / "r")
    assert {p.metrics["cuda"] for _, p in store.points()} == {0.0}
    store.close()
    assert Quad({"h0": 0.5, "h1": 0.5}, seed=0).device == "cpu"  # outside any worker


def test_too_few_gpus_fails_before_anything_is_written(
    tmp_path: Path, quad_space, monkeypatch
) -> None:
    with pytest.raises(ConfigError, match=r"3 workers × 1 GPUs need 3 GPU\(s\).*2 \(0, 1\)"):
        firepbt.run(
            Quad,
            quad_space,
            total_steps=8,
            workers=3,
            gpus_per_worker=1,
            devices=["0", "1"],
            run_dir=tmp_path / "r",
        )
    assert not (tmp_path / "r").exists()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError, match="GPUs visible here are none"):
        ProcessPoolExecutor(2, gpus_per_worker=1)


def _config(executor: dict[str, object]) -> dict[str, object]:
    return {
        "trainable": "firepbt.examples.toy:Toy",
        "space": {"h0": 0.5, "h1": 0.5},
        "budget": {"steps": 8},
        "executor": executor,
    }


def test_config_takes_gpus_per_worker_and_devices() -> None:
    config = RunConfig.from_mapping(
        _config({"kind": "process", "gpus_per_worker": 0.5, "devices": [0, 1]})
    )
    assert config.gpus_per_worker == 0.5 and config.devices == [0, 1]
    assert RunConfig(**config.to_dict()) == config


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        ({"kind": "inprocess", "gpus_per_worker": 1}, "in-process executor trains in this"),
        ({"kind": "process", "gpus_per_worker": 0.3}, "1/k of a device"),
        ({"kind": "process", "gpus_per_worker": "1"}, "expected a number"),
        ({"kind": "process", "gpus_per_worker": 1, "devices": "0,1"}, "non-empty list of GPU"),
        ({"kind": "inprocess", "devices": [0]}, "only the process executor"),
    ],
)
def test_config_refuses_bad_gpu_settings(executor: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_mapping(_config(executor))


def test_top_level_gpus_per_worker_says_where_it_belongs() -> None:
    data = _config({"kind": "process"})
    data["gpus_per_worker"] = 1
    with pytest.raises(ConfigError, match=r"gpus_per_worker belongs under \[executor\]"):
        RunConfig.from_mapping(data)


def test_a_trainables_device_is_fixed_when_first_read(monkeypatch) -> None:
    # A GPU machine found it: a member built for the GPU, asked to evaluate after the variable
    # changed, sent its inputs to the CPU while its weights were on the GPU.
    monkeypatch.setenv("FIREPBT_DEVICE", "cuda")
    first = Quad({"h0": 0.5, "h1": 0.5}, seed=0)
    assert first.device == "cuda"
    monkeypatch.setenv("FIREPBT_DEVICE", "cpu")
    assert first.device == "cuda"
    assert Quad({"h0": 0.5, "h1": 0.5}, seed=0).device == "cpu"


def test_torch_checkpoint_made_on_a_gpu_loads_on_the_cpu(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (benchmarks/gpu_mnist1d.py checks it on a GPU machine)")
    from firepbt.examples.mnist1d import MNIST1D

    h = {"lr": 0.05, "momentum": 0.9}
    monkeypatch.setenv("FIREPBT_DEVICE", "cuda")
    on_gpu = MNIST1D(h, seed=0)
    on_gpu.train(5)
    assert next(on_gpu.model.parameters()).is_cuda
    state = on_gpu.save()
    assert all(t.device.type == "cpu" for t in state["model"].values())
    monkeypatch.setenv("FIREPBT_DEVICE", "cpu")
    on_cpu = MNIST1D(h, seed=0)
    on_cpu.load(state)
    assert on_cpu.evaluate() == pytest.approx(on_gpu.evaluate(), rel=1e-4)


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ("0,1", "expected a non-empty list"),
        ([], "expected a non-empty list"),
        ([0, None], "None is not a GPU id"),
        ([True, 1], "True is not a GPU id"),
        ([0.5, 1], "0.5 is not a GPU id"),
        ([" 0 ", "1"], "' 0 ' is not a GPU id"),
        (["", "1"], "'' is not a GPU id"),
        ([-1], "-1 is not a GPU id"),
        ([0, 0, 1, 1], "GPU 0, 1 listed more than once"),
    ],
)
def test_bad_devices_are_refused_before_anything_is_written(
    tmp_path: Path, quad_space, devices: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        firepbt.run(
            Quad, quad_space, total_steps=8, workers=2, gpus_per_worker=1, devices=devices,
            run_dir=tmp_path / "r",
        )  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_an_empty_devices_list_is_not_all_visible_gpus(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    with pytest.raises(ConfigError, match="non-empty list"):
        ProcessPoolExecutor(2, gpus_per_worker=1, devices=[])


def test_devices_without_gpus_per_worker_is_refused() -> None:
    with pytest.raises(ConfigError, match="no worker asks for one"):
        RunConfig.from_mapping(_config({"kind": "process", "devices": [0, 1]}))


def test_gpu_settings_beside_an_executor_instance_are_refused(tmp_path: Path, quad_space) -> None:
    with pytest.raises(ConfigError, match="an Executor instance carries its own settings"):
        firepbt.run(
            Quad, quad_space, total_steps=8, executor=ProcessPoolExecutor(2), gpus_per_worker=1,
            run_dir=tmp_path / "r",
        )  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_a_fraction_that_is_not_one_over_k_names_the_nearest() -> None:
    with pytest.raises(ConfigError, match=r"write 1/3 = 0\.3333333333"):
        check_gpus_per_worker(0.333)
