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

On a multi-node cluster, workers read and write checkpoints themselves, in the run's storage
(``firepbt.storage``) or in the run directory, and firepbt and the trainable's module must be
importable on every node. Each actor proves before it takes a segment that it reaches them
(``storage_probe``). One that cannot reach the run's storage stops the run, naming its node and
the place. One whose node does not see the run directory (a run with no storage, on nodes that
share no disk) relays its checkpoints through the controller instead (``ray_worker``): sources go
to it through Ray's object store, and the checkpoints it makes come back to be written here.

Segments go only to actors that are up. An actor that cannot be placed (its node is gone, the
cluster is full) waits without work, and the run goes on with the others; it takes work once Ray
places it. A lost node's actors are replaced the same way.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, cast

from firepbt.checkpoints import read_verified, write_bytes
from firepbt.errors import CheckpointError, ConfigError, FailureKind
from firepbt.execution.base import Executor
from firepbt.execution.devices import DEVICE_VARIABLE, check_gpus_per_worker
from firepbt.execution.pool import choose_worker
from firepbt.execution.processes import check_pool
from firepbt.execution.protocol import FLUSH_TIMEOUT, died, gone
from firepbt.execution.ray_setup import (
    check_resources,
    first_line,
    join_ray,
    last_line,
    note_waiting,
)
from firepbt.execution.ray_worker import RayWorker
from firepbt.execution.storage_probe import check_reply, place_probe, refusal, remove_probe
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


@dataclass(slots=True)
class _Slot:
    actor: Any
    up: Any  # the reply to the actor's ready() while it has not come, then None
    name: str = ""  # the worker's name, once it is up
    relay: bool = False  # its node does not see the run directory: checkpoints go through here


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
        runtime_env: Ray's ``runtime_env`` for every worker actor (a ``working_dir``, modules,
            ``env_vars``, ``pip`` packages), as Ray takes it.

    Raises:
        ValueError: ``workers``, ``timeout`` or ``num_cpus_per_worker`` is not positive.
    """

    holds_state = True
    placement_note = PLACEMENT_NOTE  # seconds with no actor up before the run says it waits
    isolates_crashes = False  # an actor runs one segment: a death names its own segment

    def __init__(
        self,
        workers: int = 2,
        *,
        address: str | None = None,
        num_cpus_per_worker: float = 1.0,
        num_gpus_per_worker: float = 0,
        timeout: float | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        check_pool(workers, timeout)
        if not num_cpus_per_worker > 0:
            raise ValueError(f"num_cpus_per_worker: must be positive, got {num_cpus_per_worker}")
        self.num_gpus_per_worker = check_gpus_per_worker(num_gpus_per_worker)
        self._ray = import_ray()
        self.workers = workers
        self.address = address
        self.num_cpus_per_worker = num_cpus_per_worker
        self.timeout, self.runtime_env = timeout, runtime_env
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
        ray, gpus = self._ray, self.num_gpus_per_worker
        owns = join_ray(ray, self.address, self.workers, self.num_cpus_per_worker)
        self._owns_ray = self._owns_ray or owns
        fit = check_resources(ray, self.workers, self.num_cpus_per_worker, gpus)
        options = _actor_options(self.num_cpus_per_worker, gpus, self.runtime_env)
        self._actor_class = ray.remote(RayWorker).options(**options)
        if self.checkpoint_root is not None and self.run_dir is not None:
            self._probe = place_probe(self.checkpoint_root)
        self._slots = [self._new_slot() for _ in range(self.workers)]
        # Give the actors the cluster holds a moment to come up, so that the first segments
        # spread over all of them; one that Ray cannot place yet takes work later.
        ups = [slot.up for slot in self._slots]
        if fit:
            ray.wait(ups, num_returns=fit, timeout=STARTUP_WAIT)
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
        slot = self._slots[index]
        try:
            source = _relayed_source(self._ray, slot, segment)
        except CheckpointError as e:
            self._early.append(died(segment, str(e), kind=FailureKind.SOURCE_UNREADABLE))
            return
        try:
            ref = slot.actor.run.remote(segment, source, slot.relay)
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
                limit = self.placement_note
            done, _ = ray.wait(list(self._running) + starting, num_returns=1, timeout=limit)
            came_up = self._note_up()
            if not done:
                if self._running:
                    results += self._stop_hung()
                elif not any(s.up is None for s in self._slots):
                    cpus, after = self.num_cpus_per_worker, self.placement_note
                    self.waiting(note_waiting(self._ray, cpus, after))
                continue
            if self._running:
                running = list(self._running)
                finished, _ = ray.wait(running, num_returns=len(running), timeout=0)
                results += [self._collect(ref) for ref in finished]
            if came_up:
                self.waiting("")
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
        slot = self._slots[index]
        try:
            if slot.relay:  # its node cannot write the run directory: its bytes come here
                return write_bytes(path, _fetched(self._ray, slot.actor, worker, path))
            sha, error = self._ray.get(slot.actor.flush.remote(path), timeout=FLUSH_TIMEOUT)
        except CheckpointError:
            raise
        except Exception as e:  # the actor died, or the flush timed out
            message = f"worker {worker} could not write checkpoint {path} ({first_line(e)})"
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
            result, relayed = cast(tuple[SegmentResult, Any], self._ray.get(ref))
        except exceptions.RayActorError as e:
            self._replace(run.slot)
            return died(segment, f"its Ray worker died ({first_line(e)}); it was replaced")
        except exceptions.RayTaskError as e:
            # run_segment never raises: the segment could not be unpickled on the worker.
            message = (
                f"a Ray worker could not run it ({last_line(e)}); firepbt and the "
                "trainable's module must be importable on every node"
            )
            return died(segment, message, kind=FailureKind.SUBMIT)
        except exceptions.RayError as e:  # e.g. its result was lost with a node
            self._replace(run.slot)
            return died(segment, f"{type(e).__name__}: {first_line(e)}")
        if relayed is not None and result.checkpoint is not None:  # written here, for good
            try:
                write_bytes(result.checkpoint.path, relayed)
            except CheckpointError as e:
                return died(segment, str(e), kind=FailureKind.CHECKPOINT)
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
            # A node that does not see the run directory relays its checkpoints through the
            # controller; one that does not reach the run's storage is refused.
            slot.relay = bool(why) and self.checkpoint_root == self.run_dir
            if why and not slot.relay:
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


def _relayed_source(ray: Any, slot: _Slot, segment: Segment) -> Any:
    """The segment's source in Ray's object store, for a relaying worker that does not hold it
    (else None)."""
    source = segment.source
    if not slot.relay or source is None or source.holder == slot.name:
        return None
    return ray.put(read_verified(source.path, source.sha256))


def _fetched(ray: Any, actor: Any, worker: str, path: str) -> bytes:
    """The bytes of a checkpoint that a relaying worker holds."""
    data = ray.get(actor.fetch.remote(path), timeout=FLUSH_TIMEOUT)
    if data is None:
        raise CheckpointError(gone(worker, path))
    return cast(bytes, data)


def _actor_options(cpus: float, gpus: float, runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """Ray's options for a worker actor. Thread limits are set in the actor rather than by a
    runtime_env, which would cost seconds more at every actor start; the user's runtime_env
    (a working directory, modules) is passed as given. A second thread serves flush() and
    fetch() beside run()."""
    options = {"num_cpus": cpus, "num_gpus": gpus, "max_restarts": 0, "max_concurrency": 2}
    return {**options, "runtime_env": runtime_env} if runtime_env else options
