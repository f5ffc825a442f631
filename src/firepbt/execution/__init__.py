"""The worker side of the engine: where segments run.

- ``base``: the ``Executor`` contract the controller side drives;
- ``in_process``, ``pool``, ``vectorised_pool``, ``ray_actors``: the executors (in this process,
  local worker processes, worker processes that each train k members as one population, Ray
  actors);
- ``worker``: the worker runtime (running a segment, kept trainables, held checkpoints);
- ``slots``: a vectorised worker's runtime;
- ``protocol``: the wire between the controller and a worker process, and every worker's loop;
- ``bootstrap``: how a worker process starts (threads, heap, start method);
- ``devices``: which GPUs each worker sees.

Nothing here imports the controller side (``firepbt.control``), the store or the strategies:
a worker process loads only this side and the trainable's module. The executors are imported on
first use (PEP 562), so that importing one module of this package loads no other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firepbt.execution.base import Executor
    from firepbt.execution.in_process import InProcessExecutor
    from firepbt.execution.pool import ProcessPoolExecutor
    from firepbt.execution.ray_actors import RayExecutor
    from firepbt.execution.vectorised_pool import VectorisedPoolExecutor

_EXPORTS = {
    "Executor": "firepbt.execution.base",
    "InProcessExecutor": "firepbt.execution.in_process",
    "ProcessPoolExecutor": "firepbt.execution.pool",
    "RayExecutor": "firepbt.execution.ray_actors",
    "VectorisedPoolExecutor": "firepbt.execution.vectorised_pool",
}
__all__ = [
    "Executor",
    "InProcessExecutor",
    "ProcessPoolExecutor",
    "RayExecutor",
    "VectorisedPoolExecutor",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
