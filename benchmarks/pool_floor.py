"""The floor of any process pool on a run: an in-process run's segments, replayed on the leanest
pool there can be.

A synchronous run is a sequence of rounds: the strategy decides at the barrier (the gap between
one round's last segment and the next round's first), then every member trains a segment, and
the controller records each result (the gaps between segments inside a round). The replay keeps
exactly that work, as the in-process run measured it, and nothing else:

- 2 worker processes, each burning the CPU time of the segments it is sent (the in-process
  segment's duration: the same work, without pickling, checkpoints or a store);
- the controller sends each worker up to 2 segments at a time (one running, one queued, as
  ``ProcessPoolExecutor`` does), and burns the in-process controller time per result (scaled by
  ``controller_work``) and each barrier's decision time.

Messages are a small tuple out and 200 bytes back through ``multiprocessing`` pipes. No real pool
can do less (the work is the run's own), so the replay's wall time, plus the in-process run's
time outside its segments (start and end), bounds what a process pool can reach on this machine.

    python benchmarks/pool_floor.py RUN_DIR READY_EVERY [--controller-work 1] [--longest-first]

``RUN_DIR`` is an in-process run's directory (``benchmarks/overhead.py`` replays its own runs).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

WORKERS, QUEUED = 2, 2
RESULT = b"r" * 200  # a small result, about what a segment's points and checkpoint reference take


@dataclass(frozen=True, slots=True)
class Round:
    barrier: float  # seconds the controller decided before the round (0 for the first)
    segments: tuple[float, ...]  # each segment's seconds
    per_result: float  # the controller's seconds per result inside the round


@dataclass(frozen=True, slots=True)
class Recorded:
    wall_outside: float  # the run's seconds before its first segment and after its last
    rounds: tuple[Round, ...]

    def seconds(self, controller_work: float = 1.0) -> float:
        """The in-process run's span from its first segment to its last, with the controller's
        work inside rounds scaled by ``controller_work``."""
        return sum(
            r.barrier + sum(r.segments) + controller_work * r.per_result * len(r.segments)
            for r in self.rounds
        )


def recorded(run_dir: Path, ready_every: int, wall: float) -> Recorded:
    """The rounds of an in-process run (segments grouped by ``start_step // ready_every``) whose
    whole run took ``wall`` seconds."""
    (db,) = run_dir.glob("*.sqlite")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT start_step, started, finished FROM segments WHERE status = 'done' "
            "ORDER BY started"
        ).fetchall()
    by_round: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for start_step, started, finished in rows:
        by_round[start_step // ready_every].append((started, finished))
    rounds, last_end = [], None
    for key in sorted(by_round):
        spans = by_round[key]
        first, end = min(s for s, _ in spans), max(f for _, f in spans)
        durations = tuple(f - s for s, f in spans)
        barrier = 0.0 if last_end is None else first - last_end
        per_result = max(0.0, (end - first) - sum(durations)) / len(durations)
        rounds.append(Round(barrier, durations, per_result))
        last_end = end
    span = max(f for _, _, f in rows) - min(s for _, s, _ in rows)
    return Recorded(max(0.0, wall - span), tuple(rounds))


def burn(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _worker(conn: Connection) -> None:
    while (seconds := conn.recv()) is not None:
        burn(seconds)
        conn.send_bytes(RESULT)


def _send(pipes: list[Connection], queue: deque[float], sent: list[int], worker: int) -> None:
    if queue:
        pipes[worker].send(queue.popleft())
        sent[worker] += 1


def replay(run: Recorded, controller_work: float = 1.0, longest_first: bool = False) -> float:
    """Seconds the leanest 2-worker pool takes over ``run``'s rounds (see the module docstring);
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
    started = time.perf_counter()
    for r in run.rounds:
        burn(r.barrier)
        queue = deque(sorted(r.segments, reverse=True) if longest_first else r.segments)
        sent = [0] * WORKERS
        for worker in range(WORKERS):
            for _ in range(QUEUED):
                _send(pipes, queue, sent, worker)
        while any(sent):
            for pipe in wait([p for p, n in zip(pipes, sent, strict=True) if n]):
                worker = pipes.index(pipe)  # type: ignore[arg-type]
                pipe.recv_bytes()  # type: ignore[union-attr]
                sent[worker] -= 1
                burn(controller_work * r.per_result)
                _send(pipes, queue, sent, worker)
    seconds = time.perf_counter() - started
    for pipe, process in zip(pipes, processes, strict=True):
        pipe.send(None)
        process.join()
    return seconds


def floor(run: Recorded, controller_work: float = 1.0, longest_first: bool = False) -> float:
    """The replay's wall time over the in-process run's, both with the time outside segments
    (start, end) that the in-process run took."""
    pool = run.wall_outside + replay(run, controller_work, longest_first)
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
