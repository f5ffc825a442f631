"""A config's executor settings checked against its executor kind: Ray's address and CPUs, the
GPU settings, slots, a segment timeout. Whether the GPUs exist, or the trainable is vectorised,
is checked where the executor is built: a stored config is read again on other machines."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from firepbt.errors import ConfigError
from firepbt.execution.devices import check_devices, check_gpus_per_worker

if TYPE_CHECKING:
    from firepbt.config import RunConfig


def check_executor_options(config: RunConfig) -> None:
    """Refuse, in one line naming it, a setting the config's executor kind does not take."""
    _check_ray_options(config)
    _check_devices(config)
    _check_slots(config)
    if config.executor == "inprocess" and config.segment_timeout is not None:
        raise ConfigError(
            "segment_timeout: the in-process executor cannot stop a segment; use executor "
            "'process' or 'ray', or leave segment_timeout out"
        )


def _check_ray_options(config: RunConfig) -> None:
    if config.executor != "ray":
        for name in ("address", "num_cpus_per_worker", "runtime_env"):
            if getattr(config, name) is not None:
                raise ConfigError(
                    f"executor.{name}: only the ray executor takes it "
                    f"(executor.kind is {config.executor!r})"
                )
        return
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("executor.kind: 'ray' needs Ray; pip install 'firepbt[ray]'")
    env = config.runtime_env
    if env is not None and not (isinstance(env, dict) and all(isinstance(k, str) for k in env)):
        raise ConfigError(
            "executor.runtime_env: expected a table of Ray runtime_env settings, such as "
            f"{{ working_dir = '.', env_vars = {{ ... }} }}, got {env!r}"
        )
    if config.address is not None and not (isinstance(config.address, str) and config.address):
        raise ConfigError(
            "executor.address: expected a Ray address such as 'auto' or "
            f"'ray://head:10001', got {config.address!r}"
        )
    cpus = config.num_cpus_per_worker
    if cpus is not None and (
        not isinstance(cpus, (int, float)) or isinstance(cpus, bool) or not cpus > 0
    ):
        raise ConfigError(f"executor.num_cpus_per_worker: expected a positive number, got {cpus!r}")


def _check_devices(config: RunConfig) -> None:
    """The GPU settings' types and executor (whether the GPUs exist is checked where the
    workers start: a stored config is read again on machines without them)."""
    if config.gpus_per_worker is not None:
        check_gpus_per_worker(config.gpus_per_worker, "executor.gpus_per_worker")
        if config.executor == "inprocess" and config.gpus_per_worker:
            raise ConfigError(
                "executor.gpus_per_worker: the in-process executor trains in this process; "
                "use executor 'process' or 'ray' (or set FIREPBT_DEVICE=cuda to train "
                "in-process on the GPU)"
            )
    if config.devices is not None:
        if config.executor != "process":
            raise ConfigError(
                "executor.devices: only the process executor takes it (Ray places GPUs "
                f"itself; executor.kind is {config.executor!r})"
            )
        check_devices(config.devices, "executor.devices")
        if not config.gpus_per_worker:
            raise ConfigError(
                "executor.devices: lists the GPUs to hand out, but no worker asks for one; "
                "add gpus_per_worker (1, or 0.5 to share a GPU), or leave devices out"
            )


def _check_slots(config: RunConfig) -> None:
    """Slots' type and executor (whether the trainable is vectorised is checked where the
    executor is built, which imports it)."""
    if config.slots is None:
        return
    if not isinstance(config.slots, int) or isinstance(config.slots, bool) or config.slots < 1:
        raise ConfigError(f"executor.slots: expected a positive integer, got {config.slots!r}")
    if config.executor != "process":
        raise ConfigError(
            "executor.slots: only the process executor trains vectorised populations "
            f"(executor.kind is {config.executor!r}); use kind 'process' or leave slots out"
        )
