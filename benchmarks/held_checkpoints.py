"""What holding checkpoints in worker memory saves: checkpoints written to disk, megabytes
written, and wall time, against writing every segment's checkpoint (``checkpoint_every = 1``).

Workloads (process pool, 2 workers, PBT sync):
- the overhead workload's sleep-trainable (4 members × 40 iterations of 0.05 s, ready every 4)
  carrying 0, 16 or 64 MB of state, standing in for a model's weights and optimiser state;
- MNIST-1D (4 members × 1,000 steps, ready every 100; a 113 kB state).

Both policies run alternately, ``--repeats`` times each; the table gives medians. "From memory"
is the share of segments continuing their own member's weights that found them alive on their
worker (nothing read).

    python benchmarks/held_checkpoints.py [--repeats 3] [--quick]

Writes ``benchmarks/results/held_checkpoints.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import firepbt
from firepbt import Store, Uniform
from firepbt.examples.sleep import Sleep
from firepbt.execution.pool import ProcessPoolExecutor
from firepbt.segments import SegmentResult

RESULTS = Path(__file__).parent / "results" / "held_checkpoints.md"
# checkpoint_every of each policy, given the budget (None: the default, a fifth of it)
POLICIES = {
    "every segment": lambda total: 1,
    "default (budget / 5)": lambda total: None,
    "at the end only": lambda total: total,
}


class CountingPool(ProcessPoolExecutor):
    """The process pool, counting the checkpoint files it writes and their bytes."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.files = 0
        self.bytes = 0

    def wait(self) -> list[SegmentResult]:
        results = super().wait()
        for r in results:
            if r.checkpoint is not None and not r.checkpoint.holder:
                self.files += 1
                self.bytes += r.checkpoint_bytes
        return results

    def flush(self, worker: str, path: str) -> str:
        sha = super().flush(worker, path)
        self.files += 1
        self.bytes += os.path.getsize(path)
        return sha


@dataclass(frozen=True)
class Workload:
    name: str
    trainable: Any
    space: dict[str, Any]
    options: dict[str, Any]


def workloads(quick: bool) -> list[Workload]:
    sleep = dict(total_steps=40, population=4, ready_every=4)
    found = [
        Workload(
            f"sleep, {mb} MB state",
            Sleep,
            {"x": Uniform(0.0, 1.0), "seconds": 0.05, "state_mb": mb},
            sleep,
        )
        for mb in ((0, 16) if quick else (0, 16, 64))
    ]
    if not quick:
        from firepbt.examples.mnist1d import MNIST1D, mnist1d_space

        found.append(
            Workload(
                "MNIST-1D",
                MNIST1D,
                mnist1d_space(),
                dict(
                    total_steps=1000,
                    population=4,
                    ready_every=100,
                    eval_every=100,
                    metric="val_accuracy",
                ),
            )
        )
    return found


def one_run(work: Workload, policy: str, root: Path) -> dict[str, float]:
    run_dir = root / f"run-{time.monotonic_ns()}"
    pool = CountingPool(2)
    started = time.perf_counter()
    firepbt.run(
        work.trainable,
        work.space,
        executor=pool,
        run_dir=run_dir,
        seed=1,
        checkpoint_every=POLICIES[policy](work.options["total_steps"]),
        **work.options,
    )
    wall = time.perf_counter() - started
    store = Store.open(run_dir)
    rows = store._conn.execute(
        "SELECT s.reused FROM segments s JOIN segments source ON s.source_segment = source.id "
        "WHERE s.member = source.member AND s.status = 'done'"
    ).fetchall()
    store.close()
    reused = sum(r for (r,) in rows) / len(rows) if rows else float("nan")
    return {"wall": wall, "files": pool.files, "mb": pool.bytes / 2**20, "reused": reused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small states only, one repeat")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for work in workloads(args.quick):
            runs: dict[str, list[dict[str, float]]] = {p: [] for p in POLICIES}
            for _ in range(repeats):
                for policy in POLICIES:
                    runs[policy].append(one_run(work, policy, Path(tmp)))
            base = statistics.median(r["wall"] for r in runs["every segment"])
            for policy, found in runs.items():
                med = {k: statistics.median(r[k] for r in found) for k in found[0]}
                row = (
                    f"| {work.name} | {policy} | {med['files']:.0f} | {med['mb']:.1f} | "
                    f"{100 * med['reused']:.0f}% | {med['wall']:.2f} s | "
                    f"{med['wall'] / base:.3f}× |"
                )
                rows.append(row)
                print(row, flush=True)
    header = [
        "# Held checkpoints",
        "",
        "Process pool, 2 workers, PBT sync. Every policy writes a member's checkpoint at the "
        "end of its budget, and a held donor's when another worker copies it; the default also "
        "writes one whenever a member crosses a fifth of its budget (what a crash can make it "
        f"train again). Medians of {repeats} alternating runs per policy (how many donors must "
        "be written out depends on which worker holds them, so files vary between runs of a "
        "seed).",
        "",
        "| workload | checkpoints | files written | MB written | from memory | wall time "
        "| wall / every segment |",
        "|---|---|---|---|---|---|---|",
    ]
    command = "python benchmarks/held_checkpoints.py" + (
        " --quick" if args.quick else f" --repeats {repeats}"
    )
    RESULTS.write_text("\n".join([*header, *rows, "", f"Command: `{command}`.", ""]))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
