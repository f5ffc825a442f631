"""The executor a config names: in-process, the process pool, the vectorised pool or Ray."""

from __future__ import annotations

import importlib

from firepbt.config import RunConfig
from firepbt.errors import ConfigError
from firepbt.execution.base import Executor
from firepbt.execution.in_process import InProcessExecutor
from firepbt.execution.pool import ProcessPoolExecutor
from firepbt.trainable import import_trainable
from firepbt.vectorised import VectorisedTrainable


def make_executor(config: RunConfig) -> Executor:
    """The executor a config names (Ray is imported only when it is asked for); a vectorised
    trainable with ``slots``, or an ordinary one that names its ``vectorised`` version, gets
    the vectorised pool."""
    population = _vectorised_class(config.trainable)
    if population is None and config.slots is not None:
        twin = import_trainable(config.trainable).vectorised
        population = _vectorised_class(twin) if twin else None
    if population is not None or config.slots is not None:
        from firepbt.execution.vectorised_pool import VectorisedPoolExecutor, check_population

        if config.slots is None:
            member = population.member if population is not None else None
            raise ConfigError(
                f"trainable: {config.trainable} is a vectorised trainable: say how many members "
                "each worker trains at once with slots (firepbt.run(..., slots=8), or "
                "slots = 8 under [executor]), or run its ordinary trainable "
                f"{getattr(member, '__name__', '')} instead"
            )
        return VectorisedPoolExecutor(
            check_population(population or import_trainable(config.trainable), config.slots),
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
        )
    return ProcessPoolExecutor(
        config.workers,
        timeout=config.segment_timeout,
        gpus_per_worker=config.gpus_per_worker or 0,
        devices=config.devices,
    )


def _vectorised_class(path: str) -> type[VectorisedTrainable] | None:
    """The class at ``path`` if it is a vectorised trainable (``import_trainable`` has checked
    that the path imports)."""
    module, _, name = path.partition(":")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except Exception:
        return None
    is_vectorised = isinstance(found, type) and issubclass(found, VectorisedTrainable)
    return found if is_vectorised else None
