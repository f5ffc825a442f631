"""GPUs per worker: which devices each worker process sees, and which device a trainable uses.

A process-pool worker is started with its own ``CUDA_VISIBLE_DEVICES``, so that eight workers on
an eight-GPU machine do not all pile onto GPU 0. ``gpus_per_worker`` is a whole number (each
worker gets that many devices of its own) or a fraction ``1/k`` of one (``0.5``: two workers
share each device). Devices are handed out in order over the GPUs the controller sees (its own
``CUDA_VISIBLE_DEVICES``, else every GPU torch finds) or over an explicit ``devices`` list.

Inside a worker, :func:`worker_device` (``Trainable.device``) is ``"cuda"`` when the worker was
given a GPU and ``"cpu"`` otherwise; it reads ``FIREPBT_DEVICE``, which the executors set, so
code run outside a worker (``replay``, ``load_best``, a notebook) uses the CPU unless that
variable says otherwise.

>>> assign_devices(4, 0.5, ["0", "1"])
['0', '0', '1', '1']
>>> assign_devices(2, 2, ["0", "1", "2", "3"])
['0,1', '2,3']
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from firepbt.errors import ConfigError

DEVICE_VARIABLE = "FIREPBT_DEVICE"  # "cuda" or "cpu": the device a worker's trainable uses


def check_gpus_per_worker(value: object, name: str = "gpus_per_worker") -> float:
    """``value`` as a number of GPUs per worker: 0, a whole number, or 1/k of one device."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}: expected a number such as 1 or 0.5, got {value!r}")
    if value < 0:
        raise ConfigError(f"{name}: must be 0 or more, got {value!r}")
    if value >= 1 and value != int(value):
        raise ConfigError(
            f"{name}: {value!r} cannot be split over devices; use a whole number of "
            "GPUs, or a fraction of one (0.5, 0.25, ...)"
        )
    if 0 < value < 1 and abs(1 / value - round(1 / value)) > 1e-6:
        k = max(1, round(1 / value))
        raise ConfigError(
            f"{name}: a fraction must be 1/k of a device (0.5, 0.25, ...) so that k "
            f"workers share each device exactly; got {value!r} (for {k} workers per device "
            f"write 1/{k} = {1 / k:.10g})"
        )
    return float(value)


def check_devices(devices: object, name: str = "devices") -> list[str]:
    """``devices`` as a list of distinct GPU ids: non-negative integers, or names such as
    ``"GPU-8f…"`` (UUIDs) or ``"MIG-…"``, as ``CUDA_VISIBLE_DEVICES`` takes them."""
    if not isinstance(devices, (list, tuple)) or not devices:
        raise ConfigError(
            f"{name}: expected a non-empty list of GPU ids such as [0, 1], got {devices!r}"
        )
    ids = []
    for d in devices:
        good_int = isinstance(d, int) and not isinstance(d, bool) and d >= 0
        good_str = isinstance(d, str) and d == d.strip() and d != "" and "," not in d
        if not (good_int or good_str) or (isinstance(d, str) and d.startswith("-")):
            raise ConfigError(
                f"{name}: {d!r} is not a GPU id; give device numbers (0, 1, ...) or names "
                "such as 'GPU-<uuid>'"
            )
        ids.append(str(d))
    repeated = sorted({d for d in ids if ids.count(d) > 1})
    if repeated:
        raise ConfigError(f"{name}: GPU {', '.join(repeated)} listed more than once")
    return ids


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process may hand out: its ``CUDA_VISIBLE_DEVICES`` when set (ids or UUIDs;
    empty or ``-1``: none), else every device torch finds (none without torch or CUDA)."""
    env = os.environ if environ is None else environ
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [d.strip() for d in listed.split(",") if d.strip()]
        # CUDA stops reading the list at the first invalid entry, such as -1.
        valid: list[str] = []
        for d in ids:
            if d.startswith("-"):
                break
            if d not in valid:  # a repeated entry is the same device
                valid.append(d)
        return valid
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def assign_devices(
    workers: int, gpus_per_worker: float, devices: Sequence[str]
) -> list[str | None]:
    """Each worker's ``CUDA_VISIBLE_DEVICES`` (``None``: leave it as it is, for 0 GPUs).

    Whole numbers give each worker its own devices, in order; a fraction ``1/k`` puts ``k``
    consecutive workers on each device. Asking for more than ``devices`` holds is refused."""
    share = check_gpus_per_worker(gpus_per_worker)
    if share == 0:
        return [None] * workers
    per = int(share) if share >= 1 else 1
    sharing = 1 if share >= 1 else round(1 / share)  # workers on each device
    need = math.ceil(workers * per / sharing)
    if need > len(devices):
        seen = f"{len(devices)} ({', '.join(devices)})" if devices else "none"
        raise ConfigError(
            f"gpus_per_worker: {workers} workers × {share:g} GPUs need {need} GPU(s), but the "
            f"GPUs visible here are {seen}; use fewer workers, a smaller share "
            "(gpus_per_worker = 0.5 puts two workers on each GPU), or list devices explicitly "
            "(a resumed run keeps its config: firepbt.resume(run_dir, executor="
            "ProcessPoolExecutor(workers, gpus_per_worker=...)) resumes it on other devices)"
        )
    first = [(i // sharing) * per for i in range(workers)]
    return [",".join(devices[f : f + per]) for f in first]


def worker_environment(visible: str | None) -> dict[str, str]:
    """The variables a worker sets before anything imports CUDA: its devices, and which device
    its trainable uses."""
    if visible is None:
        return {DEVICE_VARIABLE: os.environ.get(DEVICE_VARIABLE, "cpu")}
    return {"CUDA_VISIBLE_DEVICES": visible, DEVICE_VARIABLE: "cuda"}


def worker_device() -> str:
    """The device a trainable in this process uses: ``"cuda"`` in a worker given a GPU (the
    first of its visible devices), else ``"cpu"`` (or what ``FIREPBT_DEVICE`` says)."""
    return os.environ.get(DEVICE_VARIABLE) or "cpu"
