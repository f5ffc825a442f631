"""The vectorised executor: worker processes that each train k members as one population.

``VectorisedPoolExecutor(population, slots, workers)`` is a process pool whose every worker
hosts one :class:`~firepbt.vectorised.VectorisedTrainable` of ``slots`` slots. Its ``capacity``
is ``workers × slots``: the runner submits segments as to any executor, the executor groups
them per worker, and when results are asked for it sends each idle worker its group as one
batch, which the worker trains in lock-step (:mod:`firepbt.execution.slots`). A segment goes
to the worker holding its source in a slot when it has room, so that a member continues in
place and an exploit between two members of one worker is a slot-to-slot copy: no file, no
pickle. Results and checkpoints are those of the ordinary path, so replay, ``load_best``,
lineage, the report, export and resume work unchanged, with the ordinary trainable each slot
mirrors (``population.member``).

Selected with one switch, ``slots``: ``firepbt.run(MNIST1D, ..., slots=8)`` or, in a config,
``[executor] slots = 8``, for a trainable that names its vectorised version
(``MNIST1D.vectorised``); or give the vectorised trainable itself
(``firepbt.run(MNIST1DVectorised, ..., slots=8)``).

Synchronous PBT, synchronous FIRE PBT and random search batch well: their segments are
submitted together. Asynchronous modes run correctly but batch only the segments that happen
to be ready when a worker is free (often one). A segment submitted to a worker that is
training waits for that batch to end and goes out in the worker's next one. A worker that
dies, or a batch that runs past ``segment_timeout`` (which bounds the whole batch), fails
every segment of its batch as a worker death: the runner runs each again alone, where the
culprit fails as on the process pool (``worker_died``, ``timeout``) and the others go on.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

from firepbt.errors import FailureKind, SlotsError
from firepbt.execution.pool import ProcessPoolExecutor
from firepbt.execution.protocol import SENT, Unloadable, died, serve
from firepbt.execution.slots import SlotWorker
from firepbt.execution.worker import pin_torch_threads
from firepbt.segments import Segment, SegmentResult
from firepbt.trainable import Trainable, ships_by_value
from firepbt.vectorised import VectorisedTrainable


def check_population(population: object, slots: object) -> type[VectorisedTrainable]:
    """``population`` as a VectorisedTrainable class that names its ordinary ``member``, and
    ``slots`` a whole number of at least 1; otherwise a ``SlotsError`` saying what to change."""
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise SlotsError(f"slots: expected a whole number of at least 1, got {slots!r}")
    if not (isinstance(population, type) and issubclass(population, VectorisedTrainable)):
        raise SlotsError(
            f"slots: only a vectorised trainable (a firepbt.vectorised.VectorisedTrainable) "
            f"trains several members per worker; {population!r} is not one: leave slots out, "
            "or pass a vectorised trainable (e.g. MNIST1DVectorised)"
        )
    member = population.member
    if not (isinstance(member, type) and issubclass(member, Trainable)):
        raise SlotsError(
            f"{population.__name__}.member: expected the ordinary firepbt.Trainable each slot "
            f"mirrors (what replay and load_best rebuild), got {member!r}"
        )
    if ships_by_value(population):
        raise SlotsError(
            f"{population.__name__}: a vectorised trainable must be importable by module and "
            "name in the worker processes; define it in a module, not a notebook or a function"
        )
    return population


class VectorisedPoolExecutor(ProcessPoolExecutor):
    """``workers`` processes, each training up to ``slots`` members at once as one
    ``population`` (a VectorisedTrainable class). The other settings are the process pool's.

    Args:
        population: The :class:`~firepbt.vectorised.VectorisedTrainable` class each worker
            hosts.
        slots: Members each worker trains at once.
        workers: How many worker processes.
        start_method: As for :class:`~firepbt.execution.pool.ProcessPoolExecutor`.
        timeout: Seconds after which a worker's running batch is stopped (default: none).
        gpus_per_worker: GPUs per process: a whole number, or 1/k of one.
        devices: The GPUs to hand out (default: every GPU this process sees).

    >>> from firepbt.examples.nqm_vectorised import NQMVectorised
    >>> executor = VectorisedPoolExecutor(NQMVectorised, slots=8, workers=2)
    >>> executor.capacity
    16
    """

    def __init__(
        self,
        population: type[VectorisedTrainable],
        slots: int,
        workers: int = 2,
        start_method: str | None = None,
        timeout: float | None = None,
        *,
        gpus_per_worker: float = 0,
        devices: Sequence[str] | None = None,
    ) -> None:
        self.population = check_population(population, slots)
        self.slots = slots
        super().__init__(
            workers, start_method, timeout, gpus_per_worker=gpus_per_worker, devices=devices
        )
        self._forming: list[list[Segment]] = []  # per worker: submitted, not yet sent
        self._running: list[list[Segment]] = []  # per worker: the batch it trains
        self._where: dict[str, int] = {}  # checkpoint path -> worker whose slot holds it

    @property
    def capacity(self) -> int:
        return self.workers * self.slots

    def _worker(self) -> Callable[..., None]:
        return partial(serve, make_runner=BatchRunner)

    # -- the Executor contract --------------------------------------------------------------

    def submit(self, segment: Segment) -> None:
        self._ensure_workers()
        open_ = self._open()
        if not open_:
            raise RuntimeError(
                f"VectorisedPoolExecutor: all {self.capacity} slots are taken; submit at most "
                "capacity segments at once"
            )
        self._forming[self._choose(segment, open_)].append(segment)

    def _workers_spawned(self) -> None:
        self._forming = [[] for _ in range(self.workers)]
        self._running = [[] for _ in range(self.workers)]

    def _trains(self, index: int) -> bool:
        return bool(self._running[index])

    def pending(self) -> int:
        waiting = sum(map(len, self._forming)) + sum(map(len, self._running))
        return waiting + len(self._early)

    def idle(self, worker: str) -> bool:
        proc = self._named(worker)
        return proc is not None and self._procs.index(proc) in self._open()

    def running(self) -> set[int]:
        return {s.member for batch in self._running for s in batch}

    def shutdown(self) -> None:
        super().shutdown()
        self._forming, self._running = [], []
        self._where.clear()

    # -- placing and sending batches --------------------------------------------------------

    def _open(self) -> list[int]:
        """Workers with a free slot: their batch in training and their next one (sent when
        the first is done) hold fewer than ``slots`` segments together."""
        return [i for i in range(len(self._procs)) if self._load(i) < self.slots]

    def _load(self, index: int) -> int:
        return len(self._running[index]) + len(self._forming[index])

    def _choose(self, segment: Segment, open_: list[int]) -> int:
        """The worker holding the segment's source (in memory, or in a slot), then the member's
        last worker, then the one with the fewest segments waiting."""
        source = segment.source
        by_name = {p.name: i for i, p in enumerate(self._procs)}
        preferred = (
            by_name.get(source.holder) if source is not None and source.holder else None,
            self._where.get(source.path) if source is not None else None,
            self._home.get(segment.member),
        )
        for choice in preferred:
            if choice is not None and choice in open_:
                return choice
        homes = Counter(self._home.values())
        return min(open_, key=lambda i: (self._load(i), homes[i], i))

    def _dispatch(self) -> None:
        """Send each worker that is not training the batch formed for it."""
        for i, batch in enumerate(self._forming):
            if not batch or self._running[i]:
                continue
            proc = self._procs[i]
            self._forming[i] = []
            message = (self.population, self.slots, batch)
            try:
                self._send(proc, message, any(ships_by_value(s.trainable) for s in batch))
            except (OSError, ValueError):  # the process is gone: the next wait reports it
                pass
            except Exception as e:  # e.g. a segment could not be pickled
                self._early += [
                    died(s, f"{type(e).__name__}: {e}", kind=FailureKind.SUBMIT) for s in batch
                ]
                continue
            self._running[i] = batch
            proc.started = time.monotonic()

    # -- results, deaths and timeouts -------------------------------------------------------

    def _collect(self, index: int) -> list[SegmentResult]:
        proc, batch = self._procs[index], self._running[index]
        try:
            if not proc.tasks.poll():
                raise EOFError
            answer: list[SegmentResult] | Unloadable = proc.tasks.recv()
        except (EOFError, OSError):
            proc.process.join(5)
            code = proc.process.exitcode
            message = (
                f"its worker process died (exit code {code}) while it trained a batch of "
                f"{len(batch)} segments; if every segment fails this way, check that the script "
                "calling firepbt.run guards it with `if __name__ == '__main__':`"
            )
            message = self._with_log(message, index)
            self._replace(index)
            return [died(s, message) for s in batch]
        self._running[index] = []
        if isinstance(answer, Unloadable):
            message = f"a worker process could not load the batch: {answer.message}"
            return [died(s, message, kind=FailureKind.UNLOADABLE) for s in batch]
        results = [replace(r, segment=s) for r, s in zip(answer, batch, strict=True)]
        for r in results:
            member = r.segment.member
            if r.failure is None and r.checkpoint is not None:
                self._home[member] = index
                self._where[r.checkpoint.path] = index
            elif self._home.get(member) == index:
                del self._home[member]
        return results

    def _stop_hung(self) -> list[SegmentResult]:
        """Kill the processes of batches past the timeout; each gets a fresh process. A batch
        of one segment fails it as a ``timeout``; in a larger batch nobody knows which member
        hung, so each segment fails as a bystander of a dead worker (``worker_died``), which
        the runner runs again alone, free of charge, and only the one that hangs alone fails
        as a ``timeout``."""
        assert self.timeout is not None
        now = time.monotonic()
        results = []
        for index, proc in enumerate(self._procs):
            batch = self._running[index]
            if len(batch) == 1 and now - proc.started >= self.timeout:
                message = f"the segment ran past the {self.timeout:g} s segment_timeout"
                message = self._with_log(message, index)
                results.append(died(batch[0], message, kind=FailureKind.TIMEOUT))
                self._replace(index)
            elif batch and now - proc.started >= self.timeout:
                message = (
                    f"its batch of {len(batch)} segments ran past the {self.timeout:g} s "
                    "segment_timeout; each runs again alone"
                )
                results += [died(s, message) for s in batch]
                self._replace(index)
        return results

    def _replace(self, index: int) -> None:
        super()._replace(index)
        self._running[index] = []
        self._where = {p: i for p, i in self._where.items() if i != index}


class BatchRunner:
    """A vectorised worker's runner (``serve``): each task a batch of segments for its one
    population, trained in lock-step."""

    def __init__(self) -> None:
        self.worker = SlotWorker()

    def __call__(self, task: tuple[type[VectorisedTrainable], int, list[Segment]]) -> object:
        population, slots, batch = task
        pin_torch_threads()  # torch is imported by now, if the population uses it
        results = self.worker.run(population, slots, batch)
        # without the segments, which the controller has (see ``run_one``)
        return [replace(r, segment=SENT) for r in results]
