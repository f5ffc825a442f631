"""The executor a config names: in-process, the process pool, the vectorised pool or Ray."""

from __future__ import annotations

from firepbt.config import RunConfig
from firepbt.errors import ConfigError
from firepbt.execution.base import Executor
from firepbt.execution.in_process import InProcessExecutor
from firepbt.execution.pool import ProcessPoolExecutor
from firepbt.trainable import ResolvedTrainable, resolve_trainable


def make_executor(config: RunConfig, trainable: ResolvedTrainable | None = None) -> Executor:
    """The executor a config names (Ray is imported only when it is asked for); a vectorised
    trainable with ``slots``, or an ordinary one that names its ``vectorised`` version, gets
    the vectorised pool. ``trainable`` is the run's, resolved already (else its path is)."""
    resolved = trainable or resolve_trainable(config.trainable, config.slots)
    population = resolved.population
    if population is not None or config.slots is not None:
        from firepbt.execution.vectorised_pool import VectorisedPoolExecutor, check_population

        if config.slots is None:
            raise ConfigError(
                f"trainable: {config.trainable} is a vectorised trainable: say how many members "
                "each worker trains at once with slots (firepbt.run(..., slots=8), or "
                "slots = 8 under [executor]), or run its ordinary trainable "
                f"{resolved.member.__name__} instead"
            )
        return VectorisedPoolExecutor(
            check_population(population or resolved.member, config.slots),
            config.slots,
            config.workers,
            timeout=config.segment_timeout,
            gpus_per_worker=config.gpus_per_worker or 0,
            devices=config.devices,
        )
    if config.executor == "inprocess":
        return InProcessExecutor()
    if config.executor == "ray":
        from firepbt.execution.ray_actors import RayExecutor

        return RayExecutor(
            config.workers,
            address=config.address,
            num_cpus_per_worker=config.num_cpus_per_worker or 1.0,
            num_gpus_per_worker=config.gpus_per_worker or 0,
            timeout=config.segment_timeout,
            runtime_env=config.runtime_env,
        )
    return ProcessPoolExecutor(
        config.workers,
        timeout=config.segment_timeout,
        gpus_per_worker=config.gpus_per_worker or 0,
        devices=config.devices,
    )
