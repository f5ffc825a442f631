"""The floor of any process pool on a run: an in-process run's segments, replayed on the leanest
pool there can be.

A synchronous run is a sequence of rounds: the strategy decides at the barrier (the gap between
one round's last segment and the next round's first, which also records that last result), then
every member trains a segment, and the controller records each result (the gaps between
segments inside a round). The replay keeps exactly that work, as the in-process run measured it,
and nothing else:

- 2 worker processes, each spending a segment's in-process time the way the in-process run
  spent it: its thread's CPU time burnt, the rest (waiting for a checkpoint's write to reach the
  disk) asleep when it is 0.5 ms or more. A segment's time includes pickling its checkpoint and,
  when one is due, the write; with no CPU times recorded (``segments_timed``), all of it is
  burnt.
- The controller sends each worker up to 2 segments at a time (one running, one queued, as
  ``ProcessPoolExecutor`` does), and burns the in-process controller time after each result but
  a round's last (scaled by ``controller_work``) and each barrier's decision time.

Messages are a small tuple out and 200 bytes back through ``multiprocessing`` pipes. No real pool
can do less (the work is the run's own), so the replay's wall time, plus the in-process run's
time outside its segments (start and end), bounds what a process pool can reach on this machine.

    python benchmarks/pool_floor.py RUN_DIR READY_EVERY [--controller-work 1] [--longest-first]

``RUN_DIR`` is a synchronous in-process run's directory (``benchmarks/overhead.py`` records its
in-process runs with ``segments_timed`` and replays them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sqlite3
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

WORKERS, QUEUED = 2, 2
CPU_FILE = "segment_cpu.json"  # segment id -> its thread's CPU seconds, in the run directory
# A segment's wall time beyond its CPU time that is slept; less is left out (mostly the
# microseconds between the store's timestamps and the CPU clock's readings, which a sleep
# would overshoot by tens of microseconds each)
ASLEEP = 5e-4


@dataclass(frozen=True, slots=True)
class Round:
    barrier: float  # seconds the controller spent before the round (0 for the first)
    segments: tuple[tuple[float, float], ...]  # each segment's (CPU seconds, wall seconds)
    per_result: float  # the controller's seconds per result inside the round, but the last

    @property
    def wall(self) -> float:
        return sum(w for _, w in self.segments)


@dataclass(frozen=True, slots=True)
class Recorded:
    wall_outside: float  # the run's seconds before its first segment and after its last
    rounds: tuple[Round, ...]

    def seconds(self, controller_work: float = 1.0) -> float:
        """The in-process run's span from its first segment to its last, with the controller's
        work inside rounds scaled by ``controller_work``."""
        return sum(
            r.barrier + r.wall + controller_work * r.per_result * (len(r.segments) - 1)
            for r in self.rounds
        )


@contextlib.contextmanager
def segments_timed(run_dir: Path) -> Iterator[None]:
    """Within the block, record the thread CPU time of each segment the in-process executor
    runs, into ``run_dir / CPU_FILE`` when the block ends."""
    import firepbt.execution.in_process as executors
    from firepbt.segments import Segment, SegmentResult

    run_segment = executors.run_segment  # type: ignore[attr-defined]  # what it runs segments with
    cpu: dict[int, float] = {}

    def timed(segment: Segment) -> SegmentResult:
        started = time.thread_time()
        try:
            result: SegmentResult = run_segment(segment)
            return result
        finally:
            cpu[segment.id] = time.thread_time() - started

    setattr(executors, "run_segment", timed)  # noqa: B010 - not an export of the module
    try:
        yield
    finally:
        setattr(executors, "run_segment", run_segment)  # noqa: B010
        (run_dir / CPU_FILE).write_text(json.dumps(cpu))


def recorded(run_dir: Path, ready_every: int, wall: float) -> Recorded:
    """The rounds of a synchronous in-process run (segments grouped by ``start_step //
    ready_every``) whose whole run took ``wall`` seconds. Raises ValueError if a round starts
    before the one before it ended (not a synchronous run, or another ``ready_every``)."""
    (db,) = run_dir.glob("*.sqlite")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT id, start_step, started, finished FROM segments WHERE status = 'done' "
            "ORDER BY started"
        ).fetchall()
    cpu_file = run_dir / CPU_FILE
    cpu = (
        {int(k): v for k, v in json.loads(cpu_file.read_text()).items()}
        if cpu_file.exists()
        else {}
    )
    by_round: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    for id, start_step, started, finished in rows:
        by_round[start_step // ready_every].append(
            (started, finished, cpu.get(id, finished - started))
        )
    rounds, last_end = [], None
    for key in sorted(by_round):
        spans = by_round[key]
        first, end = min(s for s, _, _ in spans), max(f for _, f, _ in spans)
        if last_end is not None and first < last_end:
            raise ValueError(
                f"round {key} starts {last_end - first:.3f} s before the round before it ended: "
                f"not a synchronous in-process run with ready_every {ready_every}"
            )
        segments = tuple((min(c, f - s), f - s) for s, f, c in spans)
        inside = max(0.0, (end - first) - sum(f - s for s, f, _ in spans))
        per_result = inside / (len(spans) - 1) if len(spans) > 1 else 0.0
        rounds.append(Round(0.0 if last_end is None else first - last_end, segments, per_result))
        last_end = end
    span = max(f for _, _, _, f in rows) - min(s for _, _, s, _ in rows)
    return Recorded(max(0.0, wall - span), tuple(rounds))


def burn(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _worker(conn: Connection) -> None:
    pid = os.getpid().to_bytes(8, "little")
    while (segment := conn.recv()) is not None:
        cpu, wall = segment
        burn(cpu)
        if wall - cpu >= ASLEEP:
            time.sleep(wall - cpu)
        conn.send_bytes(pid * 25)  # 200 bytes


def _send(
    pipes: list[Connection], queue: deque[tuple[float, float]], sent: list[int], worker: int
) -> None:
    if queue:
        pipes[worker].send(queue.popleft())
        sent[worker] += 1


def replay(
    run: Recorded, controller_work: float = 1.0, longest_first: bool = False
) -> tuple[float, Counter[int]]:
    """Seconds the leanest 2-worker pool takes over ``run``'s rounds (see the module
    docstring), and how many segments each worker process (by pid) trained;
    ``longest_first`` sends each round's longest segments first (a scheduler that knew every
    segment's length in advance)."""
    context = multiprocessing.get_context("fork")
    pipes, processes = [], []
    for _ in range(WORKERS):
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker, args=(theirs,), daemon=True)
        process.start()
        pipes.append(ours)
        processes.append(process)
    trained: Counter[int] = Counter()
    started = time.perf_counter()
    for r in run.rounds:
        burn(r.barrier)
        order = sorted(r.segments, key=lambda s: -s[1]) if longest_first else r.segments
        queue = deque(order)
        sent = [0] * WORKERS
        for worker in range(WORKERS):
            for _ in range(QUEUED):
                _send(pipes, queue, sent, worker)
        while any(sent):
            for pipe in wait([p for p, n in zip(pipes, sent, strict=True) if n]):
                worker = pipes.index(pipe)  # type: ignore[arg-type]
                trained[int.from_bytes(pipe.recv_bytes()[:8], "little")] += 1  # type: ignore[union-attr]
                sent[worker] -= 1
                if queue or any(sent):  # a round's last result is recorded in its barrier
                    burn(controller_work * r.per_result)
                _send(pipes, queue, sent, worker)
    seconds = time.perf_counter() - started
    for pipe, process in zip(pipes, processes, strict=True):
        pipe.send(None)
        process.join()
    return seconds, trained


def floor(run: Recorded, controller_work: float = 1.0, longest_first: bool = False) -> float:
    """The replay's wall time over the in-process run's, both with the time outside segments
    (start, end) that the in-process run took."""
    pool = run.wall_outside + replay(run, controller_work, longest_first)[0]
    return pool / (run.wall_outside + run.seconds(controller_work))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("ready_every", type=int)
    parser.add_argument("--wall", type=float, help="the run's wall time (default: its span)")
    parser.add_argument("--controller-work", type=float, default=1.0)
    parser.add_argument("--longest-first", action="store_true")
    args = parser.parse_args()
    run = recorded(args.run_dir, args.ready_every, args.wall or 0.0)
    ratio = floor(run, args.controller_work, args.longest_first)
    print(f"{len(run.rounds)} rounds, {sum(len(r.segments) for r in run.rounds)} segments")
    print(f"in-process {run.wall_outside + run.seconds(args.controller_work):.3f} s")
    print(f"leanest pool / in-process: {ratio:.3f}")


if __name__ == "__main__":
    main()
