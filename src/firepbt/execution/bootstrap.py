"""How a worker process starts: its threads, its heap, the start method and what a forked worker
closes. Nothing here runs segments."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from firepbt.execution.logs import redirect_output


def init_worker(threads: int = 1, environment: Mapping[str, str] | None = None) -> None:
    """One thread per worker process (per CPU it was given): two workers on two cores must not
    fight over threads. torch, numpy's BLAS and OpenMP read these variables when first imported,
    and CUDA reads the worker's devices (``environment``) when first used. Libraries loaded
    before the worker started (by the controller it was forked from, or by the fork server) are
    limited where they were loaded: ``limit_threads_here``, ``fork_server_threads``."""
    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, str(threads))
    os.environ.update(environment or {})
    redirect_output()  # to RUN_DIR/logs, when the environment names it
    steady_heap()


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# glibc's mallopt parameters, and the values a worker sets (the largest M_MMAP_THRESHOLD
# glibc accepts on 64-bit systems is 32 MiB)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 128 * 2**20
HEAP_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def steady_heap() -> bool:
    """Keep this process's freed memory for reuse (glibc only): blocks up to 32 MiB come from
    the heap, not from a fresh ``mmap`` each, and up to 128 MiB of free memory at the top of
    each of its heaps (glibc keeps one per thread that allocates, up to 8 per core) stays
    mapped. With glibc's defaults a worker that allocates tensors of a few MiB per step
    (activations, evaluation batches) can return them to the system and fault them back in on
    the next step, over and over: one of two MNIST-1D vectorised workers took 400 000 page
    faults in 3 s and ran 35 % slower than the other; with these values neither faults after its
    first segment (``benchmarks/results/vectorised.md``). Setting only one of the two makes it
    worse: glibc then stops adapting the other.

    Returns whether the values were set. A user who tunes glibc's allocator (``MALLOC_*_``
    variables, ``glibc.malloc.*`` in ``GLIBC_TUNABLES``) keeps their settings; under another
    allocator (jemalloc or tcmalloc preloaded) glibc's settings are set but unused."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(var in os.environ for var in HEAP_VARIABLES) or "glibc.malloc." in tunables:
        return False
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or no such name
        glibc = None
    if not glibc:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


@contextlib.contextmanager
def fork_server_threads() -> Iterator[None]:
    """Start a fork server (if it is not running: the first worker started from one) that loads
    native thread pools at one thread (or the count the user set): its children inherit the
    pools it loaded before they could set ``THREAD_VARIABLES`` themselves."""
    unset = [var for var in THREAD_VARIABLES if var not in os.environ]
    os.environ.update(dict.fromkeys(unset, "1"))
    try:
        yield
    finally:
        for var in unset:
            os.environ.pop(var, None)


def limit_threads_here() -> Any:
    """Limit this process's native thread pools (numpy's BLAS: one thread per core) to one
    thread (or the count the user set), and return what restores them. A forked worker inherits
    them so; limiting them in the worker instead leaves a pool's threads spinning there. The
    controller keeps the limit while it has workers: it shares their cores."""
    from threadpoolctl import threadpool_limits

    chosen = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    threads = int(chosen) if chosen and chosen.isdigit() and int(chosen) > 0 else 1
    return threadpool_limits(limits=threads)


@contextlib.contextmanager
def main_file_hidden() -> Iterator[None]:
    """Start processes without asking them to run ``__main__`` again from a file that does not
    exist (``python - < script.py`` names it ``<stdin>``): multiprocessing would try, and every
    new process would die. Its classes travel by value instead (``ships_by_value``)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not isinstance(path, str) or os.path.isfile(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


# File descriptors a forked worker closes first (``closed_in_workers``).
_CLOSED_IN_WORKERS: set[int] = set()


@contextlib.contextmanager
def closed_in_workers(fd: int) -> Iterator[None]:
    """While in this block, a worker forked from this process closes ``fd`` as it starts: e.g.
    the run's lock, which must go with the controller even while a worker outlives it."""
    _CLOSED_IN_WORKERS.add(fd)
    try:
        yield
    finally:
        _CLOSED_IN_WORKERS.discard(fd)


def close_inherited(inherited: Sequence[int]) -> None:
    """In a new worker process: close the file descriptors it inherited and must not keep (a
    forked one: ``inherited``, the controller's pipe ends, and those ``closed_in_workers``
    names, such as the run's lock)."""
    for fd in (*_CLOSED_IN_WORKERS, *inherited):
        with contextlib.suppress(OSError):
            os.close(fd)
    _CLOSED_IN_WORKERS.clear()


# Modules whose threads or device state a forked child cannot safely inherit once imported.
FORK_UNSAFE_MODULES = ("torch", "jax", "tensorflow", "cupy")


def start_method_now() -> str:
    """How to start a worker process now: ``fork`` while this process is safe to fork (POSIX,
    one Python thread, none of ``FORK_UNSAFE_MODULES`` imported), since a forked worker starts in
    milliseconds with this process's modules already imported; otherwise ``forkserver`` (a
    clean process forked from a server started once, ~0.15 s here), or ``spawn`` where neither
    exists. A forked worker closes the run's lock file (``fork_closes``) and changes nothing
    else it inherited."""
    methods = multiprocessing.get_all_start_methods()
    if (
        "fork" in methods
        and threading.active_count() == 1
        and not any(name in sys.modules for name in FORK_UNSAFE_MODULES)
    ):
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"
