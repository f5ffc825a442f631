"""The Ray executor's start: joining Ray, checking the cluster's resources; and what it tells the
user, each in one line: a cluster it cannot join, a run that waits for resources, and the line of
a Ray error worth quoting."""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

from firepbt.errors import ConfigError


def join_ray(ray: Any, address: str | None, workers: int, cpus: float) -> bool:
    """Connect to Ray unless this process is already connected: a private local Ray (``address``
    None) or a running cluster. Whether this call connected (``shutdown`` then disconnects)."""
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(address="local", num_cpus=math.ceil(workers * cpus), include_dashboard=False)
        return True
    try:
        ray.init(address=address)
    except (ConnectionError, ValueError) as e:
        raise ConfigError(cannot_connect(address, e)) from None
    return True


def check_resources(ray: Any, workers: int, cpus: float, gpus: float) -> int:
    """Warn when the cluster has too few CPUs for every worker; refuse too few GPUs. How many
    workers its CPUs hold now."""
    need, resources = workers * cpus, ray.cluster_resources()
    have = float(resources.get("CPU", 0.0))
    if have < need:
        warnings.warn(
            f"the Ray cluster has {have:g} CPUs but {workers} workers × {cpus:g} CPUs need "
            f"{need:g}; the workers that do not fit wait for CPUs (or for the autoscaler to add "
            "nodes), and so do their segments",
            stacklevel=4,
        )
    have_gpus = float(resources.get("GPU", 0.0))
    if gpus and have_gpus < gpus:
        raise ConfigError(
            f"gpus_per_worker: each worker asks Ray for {gpus:g} GPU(s), but the Ray cluster "
            f"has {have_gpus:g}; start Ray with GPUs (ray start --num-gpus N) or ask for fewer"
        )
    return min(workers, int(have // cpus))


def cannot_connect(address: str, e: Exception) -> str:
    message = f"executor.address: cannot connect to Ray at {address!r}: {first_line(e)}"
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is None:  # Ray's clients send no token unless told to, even with one at hand
        message += (
            "; a cluster started by `ray start` may ask for a token (token authentication): "
            "then set RAY_AUTH_MODE=token in this process's environment (the token is read "
            "from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
        )
    elif mode.lower() == "token":
        message += "; RAY_AUTH_MODE=token is set: does the cluster ask for this token?"
    return message


def note_waiting(ray: Any, cpus: float, after: float) -> str:
    """Why no worker is up, said as a warning too."""
    free = ray.available_resources().get("CPU", 0.0)
    why = (
        f"no Ray worker is up after {after:g} s: the cluster has {free:g} CPUs free "
        f"and each worker needs {cpus:g}; the run waits until Ray can place one (a node joins, "
        "or the autoscaler adds one)"
    )
    warnings.warn(why, stacklevel=3)
    return why


def first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def last_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__
