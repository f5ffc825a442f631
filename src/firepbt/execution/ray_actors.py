"""Run segments on Ray actors, on this machine or on a Ray cluster (``pip install 'firepbt[ray]'``).

Each worker is a Ray actor with a process of its own (``num_cpus_per_worker`` CPUs, default 1,
and as many torch/OpenMP threads unless the node's environment sets them), so the trainables a
worker keeps alive between segments, and the checkpoints it holds in memory (see
``firepbt.segments``), stay alive in it. A segment goes to the idle actor holding its source
checkpoint, or else to the one that last ran its member, so the member continues without its
weights going through storage; a second thread of the actor writes a held checkpoint out when
another worker needs it.

Connection (made when the first segment is submitted): a Ray this process is already connected
to (``ray.init`` was called) is used as it is. Otherwise ``address=None`` starts a private local
Ray with ``workers × num_cpus_per_worker`` CPUs, and ``address="auto"`` or
``"ray://head:10001"`` (which needs ``pip install 'ray[client]'``) joins a running cluster;
either is closed again by ``shutdown``.

On a multi-node cluster, workers read and write checkpoints under the run directory themselves
and the controller reads and deletes them there too: the run directory must be on storage that
the controller's machine and every node see at the same path (NFS or the like), and firepbt and
the trainable's module must be importable on every node. Each actor proves the first before it
takes a segment (``storage_probe``): one that cannot stops the run, naming its node and the path.

Segments go only to actors that are up. An actor that cannot be placed (its node is gone, the
cluster is full) waits without work, and the run goes on with the others; it takes work once Ray
places it. A lost node's actors are replaced the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

from firepbt.errors import CheckpointError, ConfigError, FailureKind
from firepbt.execution.base import Executor
from firepbt.execution.bootstrap import init_worker
from firepbt.execution.devices import DEVICE_VARIABLE, check_gpus_per_worker
from firepbt.execution.pool import choose_worker
from firepbt.execution.processes import check_pool
from firepbt.execution.protocol import FLUSH_TIMEOUT, died, gone
from firepbt.execution.storage_probe import (
    answer_probe,
    check_reply,
    place_probe,
    refusal,
    remove_probe,
)
from firepbt.execution.worker import drop_held, flush_held, run_segment
from firepbt.segments import Segment, SegmentResult

INSTALL_HINT = "pip install 'firepbt[ray]'"
PLACEMENT_NOTE = 30.0  # seconds without any actor up before the run says it waits for resources
STARTUP_WAIT = 30.0  # seconds the first segments wait for every actor to come up


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(f"the ray executor needs Ray ({e}); {INSTALL_HINT}") from None
    return ray


class _Worker:
    """The body of a worker actor: segments run in the actor's own process, where
    ``run_segment``'s keep-alive cache holds this worker's trainables between segments."""

    def __init__(self, threads: int, environment: dict[str, str] | None = None) -> None:
        # Before the trainable's module (torch, say) is first imported. Ray sets the actor's
        # CUDA_VISIBLE_DEVICES to the GPUs it reserved for it.
        init_worker(threads, environment)
        import ray

        node = ray.get_runtime_context().get_node_id()[:8]
        self.name = f"{socket.gethostname()}/node-{node}/pid-{os.getpid()}"

    def ready(self, probe: tuple[str, str] | None) -> tuple[str, str]:
        """(the worker's name, "") once it is up and sees the run directory, or (its name, why
        not, naming its node)."""
        if probe is None:
            return self.name, ""
        why = answer_probe(*probe, self.name)
        return self.name, f"on its node, {why}" if why else ""

    def run(self, segment: Segment) -> SegmentResult:
        result = replace(run_segment(segment), worker=self.name)
        if result.checkpoint is not None and result.checkpoint.holder:
            result = replace(result, checkpoint=replace(result.checkpoint, holder=self.name))
        return result

    def flush(self, path: str) -> tuple[str, str]:
        """(sha256, "") of the held checkpoint written out, or ("", why it could not be)."""
        try:
            return flush_held(path), ""
        except CheckpointError as e:
            return "", str(e)

    def drop(self, path: str) -> None:
        drop_held(path)


@dataclass(slots=True)
class _Slot:
    actor: Any
    up: Any  # the reply to the actor's ready() while it has not come, then None
    name: str = ""  # the worker's name, once it is up


@dataclass(frozen=True, slots=True)
class _Running:
    slot: int
    segment: Segment
    submitted: float


class RayExecutor(Executor):
    """Runs segments on ``workers`` Ray actors, one segment per actor at a time.

    Segments go only to actors that are up, and ``capacity`` counts them. An actor that dies (its
    process crashed, its node went away) is recorded as a ``worker_died`` failure of its segment
    and replaced; the replacement takes work once Ray places it. A segment running longer than
    ``timeout`` seconds after it was submitted is stopped by killing its actor, recorded as a
    ``timeout`` failure, and the actor replaced; other segments are not touched.

    >>> executor = RayExecutor(workers=8, address="auto")  # doctest: +SKIP
    >>> firepbt.run(MyModel, space, total_steps=1000, executor=executor)  # doctest: +SKIP

    ``firepbt.run(..., executor="ray", address="auto")`` and ``[executor] kind = "ray"`` in a
    config build one.

    Args:
        workers: How many actors.
        address: The cluster to join (``"auto"``, ``"ray://host:10001"``); left out, a private
            Ray starts on this machine.
        num_cpus_per_worker: CPUs each actor reserves; its torch and OpenMP threads follow.
        num_gpus_per_worker: GPUs each actor reserves (Ray's ``num_gpus``).
        timeout: Seconds after which a running segment is stopped (default: none).

    Raises:
        ValueError: ``workers``, ``timeout`` or ``num_cpus_per_worker`` is not positive.
    """

    holds_state = True
    isolates_crashes = False  # an actor runs one segment: a death names its own segment

    def __init__(
        self,
        workers: int = 2,
        *,
        address: str | None = None,
        num_cpus_per_worker: float = 1.0,
        num_gpus_per_worker: float = 0,
        timeout: float | None = None,
    ) -> None:
        check_pool(workers, timeout)
        if not num_cpus_per_worker > 0:
            raise ValueError(f"num_cpus_per_worker: must be positive, got {num_cpus_per_worker}")
        self.num_gpus_per_worker = check_gpus_per_worker(num_gpus_per_worker)
        self._ray = import_ray()
        self.workers = workers
        self.address = address
        self.num_cpus_per_worker = num_cpus_per_worker
        self.timeout = timeout
        self._owns_ray = False  # whether this executor started (or connected) Ray
        self._actor_class: Any = None
        self._slots: list[_Slot] = []
        self._running: dict[Any, _Running] = {}  # object ref of a run() -> what it runs
        self._early: list[SegmentResult] = []  # failed at submit, handed back by the next wait
        self._home: dict[int, int] = {}  # member -> slot of the actor that last ran it
        self._probe: tuple[str, str] | None = None  # (folder, token) the actors must read

    @property
    def capacity(self) -> int:
        """The actors that are up (at most ``workers``): a segment goes only to one of them."""
        if not self._slots:  # first use, or shut down earlier (started again, like the pool)
            self._start()
        return sum(slot.up is None for slot in self._slots)

    # -- actors -----------------------------------------------------------------------------

    def _start(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            if self.address is None:
                cpus = math.ceil(self.workers * self.num_cpus_per_worker)
                ray.init(address="local", num_cpus=cpus, include_dashboard=False)
            else:
                try:
                    ray.init(address=self.address)
                except (ConnectionError, ValueError) as e:
                    raise ConfigError(_cannot_connect(self.address, e)) from None
            self._owns_ray = True
        need = self.workers * self.num_cpus_per_worker
        have = float(ray.cluster_resources().get("CPU", 0.0))
        if have < need:
            warnings.warn(
                f"the Ray cluster has {have:g} CPUs but {self.workers} workers × "
                f"{self.num_cpus_per_worker:g} CPUs need {need:g}; the workers that do not fit "
                "wait for CPUs (or for the autoscaler to add nodes), and so do their segments",
                stacklevel=3,
            )
        # Thread limits are set in the actor rather than by a runtime_env, which would cost
        # seconds more at every actor start. A second thread serves flush() beside run().
        gpus = self.num_gpus_per_worker
        if gpus:
            have_gpus = float(ray.cluster_resources().get("GPU", 0.0))
            if have_gpus < gpus:
                raise ConfigError(
                    f"gpus_per_worker: each worker asks Ray for {gpus:g} GPU(s), but the Ray "
                    f"cluster has {have_gpus:g}; start Ray with GPUs (ray start --num-gpus N) "
                    "or ask for fewer"
                )
        self._actor_class = ray.remote(_Worker).options(
            num_cpus=self.num_cpus_per_worker, num_gpus=gpus, max_restarts=0, max_concurrency=2
        )
        if self.checkpoint_root is not None and self.run_dir is not None:
            self._probe = place_probe(self.checkpoint_root)
        self._slots = [self._new_slot() for _ in range(self.workers)]
        # Give every actor a moment to come up, so that the first segments spread over all of
        # them; one that Ray cannot place yet takes work later.
        ups = [slot.up for slot in self._slots]
        ray.wait(ups, num_returns=len(ups), timeout=STARTUP_WAIT)
        self._note_up()

    def _new_slot(self) -> _Slot:
        device = {DEVICE_VARIABLE: "cuda" if self.num_gpus_per_worker else "cpu"}
        device.update(self.worker_variables)  # the storage's options
        actor = self._actor_class.remote(max(1, int(self.num_cpus_per_worker)), device)
        return _Slot(actor, actor.ready.remote(self._probe))

    def _replace(self, index: int) -> None:
        """Kill a slot's actor (if it still lives) and put a fresh one in its place."""
        with contextlib.suppress(self._ray.exceptions.RayError):
            self._ray.kill(self._slots[index].actor, no_restart=True)
        self._slots[index] = self._new_slot()
        self._home = {m: s for m, s in self._home.items() if s != index}

    def _choose(self, segment: Segment) -> int:
        busy = {r.slot for r in self._running.values()}
        idle = [i for i, s in enumerate(self._slots) if i not in busy and s.up is None]
        if not idle:
            raise RuntimeError(
                "RayExecutor: every worker that is up is busy; submit at most capacity "
                "segments at once"
            )
        holder = segment.source.holder if segment.source is not None else ""
        preferred = (self._slot_named(holder), self._home.get(segment.member))
        return choose_worker(idle, preferred, self._home)

    def _slot_named(self, worker: str) -> int | None:
        for i, slot in enumerate(self._slots):
            if worker and slot.name == worker:
                return i
        return None

    # -- the Executor contract --------------------------------------------------------------

    def submit(self, segment: Segment) -> None:
        if not self._slots:  # first use, or shut down earlier (started again, like the pool)
            self._start()
        index = self._choose(segment)
        try:
            ref = self._slots[index].actor.run.remote(segment)
        except Exception as e:  # e.g. the segment cannot be pickled
            cause = e.__cause__ or e  # Ray's own message repeats the whole segment
            message = f"it cannot be sent to a Ray worker ({type(cause).__name__}: {cause})"
            self._early.append(died(segment, message, kind=FailureKind.SUBMIT))
            return
        self._running[ref] = _Running(index, segment, time.monotonic())

    def wait(self) -> list[SegmentResult]:
        """Results of finished segments; ``[]`` when an actor came up, so that the runner can
        hand it work (or while none is up and nothing runs: the run waits for resources)."""
        results, self._early = self._early, []
        ray = self._ray
        while not results and (self._running or self._slots):
            deadline = self._deadline()
            limit = None if deadline is None else max(0.0, deadline - time.monotonic())
            starting = [s.up for s in self._slots if s.up is not None]
            if not self._running:
                if not starting:
                    break  # every actor is up and idle: nothing to wait for
                limit = PLACEMENT_NOTE
            done, _ = ray.wait(list(self._running) + starting, num_returns=1, timeout=limit)
            came_up = self._note_up()
            if not done:
                if self._running:
                    results += self._stop_hung()
                elif not any(s.up is None for s in self._slots):
                    _note_waiting(self._ray, self.num_cpus_per_worker)
                continue
            if self._running:
                running = list(self._running)
                finished, _ = ray.wait(running, num_returns=len(running), timeout=0)
                results += [self._collect(ref) for ref in finished]
            if came_up:
                break
        return results

    def pending(self) -> int:
        return len(self._running) + len(self._early)

    def idle(self, worker: str) -> bool:
        index = self._slot_named(worker)
        return index is not None and all(r.slot != index for r in self._running.values())

    def flush(self, worker: str, path: str) -> str:
        index = self._slot_named(worker)
        if index is None:
            raise CheckpointError(gone(worker, path))
        try:
            reply = self._slots[index].actor.flush.remote(path)
            sha, error = self._ray.get(reply, timeout=FLUSH_TIMEOUT)
        except Exception as e:  # the actor died, or the flush timed out
            message = f"worker {worker} could not write checkpoint {path} ({_first_line(e)})"
            raise CheckpointError(message) from None
        if error:
            raise CheckpointError(error)
        return str(sha)

    def drop(self, worker: str, path: str) -> None:
        index = self._slot_named(worker)
        if index is not None:
            with contextlib.suppress(Exception):
                self._slots[index].actor.drop.remote(path)

    def shutdown(self) -> None:
        if self._probe is not None:
            remove_probe(self._probe[0])
            self._probe = None
        for slot in self._slots:
            with contextlib.suppress(self._ray.exceptions.RayError):
                self._ray.kill(slot.actor, no_restart=True)
        self._slots = []
        self._running.clear()
        self._home.clear()
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False

    # -- results, deaths and timeouts -------------------------------------------------------

    def _collect(self, ref: Any) -> SegmentResult:
        exceptions = self._ray.exceptions
        run = self._running.pop(ref)
        segment = run.segment
        try:
            result: SegmentResult = self._ray.get(ref)
        except exceptions.RayActorError as e:
            self._replace(run.slot)
            return died(segment, f"its Ray worker died ({_first_line(e)}); it was replaced")
        except exceptions.RayTaskError as e:
            # run_segment never raises: the segment could not be unpickled on the worker.
            message = (
                f"a Ray worker could not run it ({_last_line(e)}); firepbt and the "
                "trainable's module must be importable on every node"
            )
            return died(segment, message, kind=FailureKind.SUBMIT)
        except exceptions.RayError as e:  # e.g. its result was lost with a node
            self._replace(run.slot)
            return died(segment, f"{type(e).__name__}: {_first_line(e)}")
        if result.failure is None:
            self._home[segment.member] = run.slot
        elif self._home.get(segment.member) == run.slot:
            del self._home[segment.member]  # the worker dropped its trainable
        return result

    def _deadline(self) -> float | None:
        if self.timeout is None or not self._running:
            return None
        return min(r.submitted for r in self._running.values()) + self.timeout

    def _note_up(self) -> bool:
        """Take the replies of actors that came up; whether any did. An actor that cannot use
        the run directory stops the run; one that died before it came up is replaced."""
        waiting = [s.up for s in self._slots if s.up is not None]
        if not waiting:
            return False
        ready, _ = self._ray.wait(waiting, num_returns=len(waiting), timeout=0)
        came_up = False
        for index, slot in enumerate(self._slots):
            if slot.up is None or slot.up not in ready:
                continue
            try:
                name, why = self._ray.get(slot.up)
            except self._ray.exceptions.RayError:
                self._replace(index)
                continue
            if not why and self._probe is not None:
                why = check_reply(*self._probe, name)
            if why:
                raise ConfigError(refusal(name, str(self.checkpoint_root), str(self.run_dir), why))
            slot.up, slot.name, came_up = None, name, True
        return came_up

    def _stop_hung(self) -> list[SegmentResult]:
        """Kill the actors of segments past the timeout; their slots get fresh actors."""
        assert self.timeout is not None
        now = time.monotonic()
        results = []
        for ref, run in list(self._running.items()):
            if now - run.submitted >= self.timeout:
                del self._running[ref]
                self._replace(run.slot)
                message = (
                    f"the segment ran past the {self.timeout:g} s segment_timeout; "
                    "its Ray worker was stopped"
                )
                results.append(died(run.segment, message, kind=FailureKind.TIMEOUT))
        return results


def _cannot_connect(address: str, e: Exception) -> str:
    message = f"executor.address: cannot connect to Ray at {address!r}: {_first_line(e)}"
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


def _note_waiting(ray: Any, cpus: float) -> None:
    free = ray.available_resources().get("CPU", 0.0)
    warnings.warn(
        f"no Ray worker is up after {PLACEMENT_NOTE:g} s: the cluster has {free:g} CPUs free "
        f"and each worker needs {cpus:g}; the run waits until Ray can place one (a node joins, "
        "or the autoscaler adds one)",
        stacklevel=3,
    )


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _last_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__
