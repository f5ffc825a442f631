"""End to end: MNIST-1D PBT on the process pool of ordinary trainables against vectorised workers.

Workload (the issue's): MNIST-1D, synchronous PBT, 16 members × 3000 steps, 2 worker processes;
``examples/mnist1d_pbt.toml``'s search space and policies (lr log-uniform in [0.003, 0.3],
momentum 0.9, truncation 25 %, perturb ×0.8/1.2 or resample with probability 0.25), ready every
200 steps, evaluated every 40. The ordinary way: ``ProcessPoolExecutor(2)``, one ``MNIST1D`` per
segment. The vectorised way: ``VectorisedPoolExecutor(MNIST1DVectorised, slots=8, workers=2)``.
A second column pair runs 64 members (vectorised: 32 slots per worker).

Each run is its own Python process (so that peak memory is its own), started with the "spawn"
method for both ways; the two ways alternate (even seeds ordinary first, odd seeds vectorised
first). Member-steps per second = members × steps / wall time, wall time being the whole
``firepbt.run`` (worker start-up, data generation, evaluation and checkpoints included). Peak
memory is the largest worker's maximum resident set (``getrusage(RUSAGE_CHILDREN)`` once the
workers are joined) and the controller's. Test accuracy is the best member's (selected on
validation accuracy) at the end.

    python benchmarks/vectorised.py [--seeds 5] [--seeds-64 1] [--steps 3000] [--quick]

``--quick``: the same shape with 400 steps (ready every 100, evaluated every 40) and one seed,
in about two minutes. The last line printed is the 16-member ratio of member-steps per second.
Writes ``benchmarks/results/vectorised.md`` (its title says when it is a quick run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
WORKERS = 2
WAYS = ("ordinary", "vectorised")


def one_run(
    way: str,
    members: int,
    slots: int,
    seed: int,
    steps: int,
    ready: int,
    every: int,
    workers: int = WORKERS,
    gpus: float = 0,
) -> None:
    """Run one PBT run in this process and print its measurements as JSON."""
    import firepbt
    from firepbt import LogUniform
    from firepbt.examples.mnist1d import MNIST1D
    from firepbt.examples.mnist1d_vectorised import MNIST1DVectorised
    from firepbt.execution.base import Executor
    from firepbt.execution.pool import ProcessPoolExecutor
    from firepbt.execution.vectorised_pool import VectorisedPoolExecutor

    executor: Executor
    if way == "ordinary":
        executor = ProcessPoolExecutor(workers, start_method="spawn", gpus_per_worker=gpus)
    else:
        executor = VectorisedPoolExecutor(
            MNIST1DVectorised, slots, workers, start_method="spawn", gpus_per_worker=gpus
        )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = firepbt.run(
            MNIST1D,
            {"lr": LogUniform(0.003, 0.3, bounds=(1e-5, 1.0)), "momentum": 0.9},
            total_steps=steps,
            population=members,
            ready_every=ready,
            eval_every=every,
            metric="val_accuracy",
            test_metric="test_accuracy",
            seed=seed,
            synchrony="sync",
            exploit={"name": "truncation", "fraction": 0.25},
            explore=[
                {"name": "perturb", "factors": [0.8, 1.2]},
                {"name": "resample", "probability": 0.25},
            ],
            executor=executor,
            run_dir=Path(tmp) / "run",
        )
        wall = time.perf_counter() - start
        store = firepbt.Store.open(Path(tmp) / "run")
        (first, last) = store._conn.execute(
            "SELECT MIN(started), MAX(finished) FROM segments WHERE status = 'done'"
        ).fetchone()
        store.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB -> MB
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "wall": wall,
                "training": last - first,  # first segment's start to the last one's end
                "member_steps_per_s": members * steps / wall,
                "worker_mb": children,
                "controller_mb": own,
                "test_accuracy": result.metrics["test_accuracy"],
            }
        )
    )


def measure(
    way: str, members: int, seed: int, args: argparse.Namespace, workers: int = WORKERS
) -> dict[str, float]:
    slots = max(1, members // workers)
    command = [sys.executable, __file__, "--one", way, str(members), str(slots), str(seed)]
    command += [str(args.steps), str(args.ready), str(args.every), str(workers), str(args.gpu)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=3600)
    row: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"{members:>3} members, seed {seed}, {way:<10}: {row['wall']:7.1f} s, "
        f"{row['member_steps_per_s']:6.0f} member-steps/s, worker peak "
        f"{row['worker_mb']:.0f} MB, test accuracy {row['test_accuracy']:.3f}",
        flush=True,
    )
    return row


def summary(values: list[float], digits: int = 3) -> str:
    mean = statistics.fmean(values)
    spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
    return f"{mean:.{digits}f}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the 16-member runs")
    parser.add_argument("--seeds-64", type=int, default=1, help="seeds of the 64-member runs")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="400 steps, one seed")
    parser.add_argument(
        "--gpu", type=float, default=0, help="GPUs per worker: 1 runs the GPU comparison"
    )
    parser.add_argument("--one", nargs=9, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        way, members, slots, seed, steps, ready, every, workers, gpus = args.one
        one_run(
            way, int(members), int(slots), int(seed), int(steps), int(ready), int(every),
            int(workers), float(gpus),
        )  # fmt: skip
        return
    if args.gpu:
        args.ready, args.every = (100, 40) if args.steps < 1000 else (200, 40)
        gpu_main(args)
        return
    if args.quick:
        args.seeds, args.seeds_64, args.steps = 1, 1, 400
    args.ready, args.every = (100, 40) if args.steps < 1000 else (200, 40)

    load_before = os.getloadavg()[0]
    rows: dict[tuple[int, str], list[dict[str, float]]] = {}
    for members, seeds in ((16, args.seeds), (64, args.seeds_64)):
        for seed in range(seeds):
            order = WAYS if seed % 2 == 0 else WAYS[::-1]
            for way in order:
                rows.setdefault((members, way), []).append(measure(way, members, seed, args))
    load_after = os.getloadavg()[0]

    def column(members: int, way: str, key: str) -> list[float]:
        return [r[key] for r in rows[(members, way)]]

    def throughput(members: int, way: str) -> float:
        return members * args.steps * len(rows[(members, way)]) / sum(column(members, way, "wall"))

    heads = [
        ("16, ordinary", 16, "ordinary"),
        ("16, vectorised (8 slots × 2)", 16, "vectorised"),
        ("64, ordinary", 64, "ordinary"),
        ("64, vectorised (32 slots × 2)", 64, "vectorised"),
    ]
    table: list[tuple[str, Any]] = [
        ("seeds", lambda m, w: str(len(rows[(m, w)]))),
        ("member-steps/s", lambda m, w: f"{throughput(m, w):.0f}"),
        ("wall time (s)", lambda m, w: summary(column(m, w, "wall"), 1)),
        ("peak worker RSS (MB)", lambda m, w: f"{max(column(m, w, 'worker_mb')):.0f}"),
        ("peak controller RSS (MB)", lambda m, w: f"{max(column(m, w, 'controller_mb')):.0f}"),
        ("test accuracy, mean ± std", lambda m, w: summary(column(m, w, "test_accuracy"))),
        (
            "test accuracy, median",
            lambda m, w: f"{statistics.median(column(m, w, 'test_accuracy')):.3f}",
        ),
        (
            "test accuracy per seed",
            lambda m, w: ", ".join(f"{a:.3f}" for a in column(m, w, "test_accuracy")),
        ),
    ]
    ratio16 = throughput(16, "vectorised") / throughput(16, "ordinary")
    ratio64 = throughput(64, "vectorised") / throughput(64, "ordinary")
    command = "python benchmarks/vectorised.py" + (
        " --quick" if args.quick else f" --seeds {args.seeds} --seeds-64 {args.seeds_64}"
    )
    lines = [
        "# Vectorised workers against the process pool (MNIST-1D PBT, end to end)"
        + (" — quick" if args.quick else ""),
        "",
        f"Synchronous PBT on MNIST-1D, {args.steps} steps per member, ready every "
        f"{args.ready}, evaluated every {args.every}, {WORKERS} worker processes (spawn). "
        "Ordinary: the process pool, one `MNIST1D` per segment. Vectorised: "
        "`VectorisedPoolExecutor(MNIST1DVectorised, slots, 2)`. Each run in its own process; "
        "the ways alternate. Member-steps/s = members × steps × runs / their summed wall "
        "times (start-up, evaluation and checkpoints included). Peak RSS: the largest "
        "worker's and the controller's maximum resident set.",
        "",
        "| | " + " | ".join(h for h, _, _ in heads) + " |",
        "|---|" + "---|" * len(heads),
    ]
    for name, cell in table:
        lines.append(f"| {name} | " + " | ".join(cell(m, w) for _, m, w in heads) + " |")
    lines += [
        "",
        f"Vectorised / ordinary member-steps per second: {ratio16:.2f}× (16 members), "
        f"{ratio64:.2f}× (64 members). Per seed (16 members), ordinary wall time / vectorised "
        "wall time: "
        + ", ".join(
            f"{o / v:.2f}"
            for o, v in zip(
                column(16, "ordinary", "wall"), column(16, "vectorised", "wall"), strict=True
            )
        )
        + ".",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared; load average "
        f"{load_before:.2f} before, {load_after:.2f} after), Python "
        f"{platform.python_version()}, CPU (the GPU comparison: `--gpu 1`, written to "
        "`results/vectorised_gpu.md`).",
        "",
        f"Command: `{command}`.",
    ]
    target = RESULTS / "vectorised.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    print(f"wrote {target}")
    print(f"vectorised / ordinary member-steps per second: {ratio16:.2f}x")


def gpu_main(args: argparse.Namespace) -> None:
    """One worker process with a whole GPU: one member alone, then 16 and 64 members, each as
    ordinary trainables one after another and as one vectorised population (every member a
    slot). Target: 16 members in at most 2× the wall time of one. Writes
    ``results/vectorised_gpu.md``."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--gpu: torch sees no CUDA device here")
    rows = {(1, "ordinary"): measure("ordinary", 1, 0, args, workers=1)}
    for members in (16, 64):
        for way in WAYS[::-1]:  # vectorised first: the longest run (64 ordinary) comes last
            rows[(members, way)] = measure(way, members, 0, args, workers=1)
            sixteen = gpu_table(rows, args, torch)  # written after each run
    print(f"16 members / one member, wall time: {sixteen:.2f}x")


def gpu_table(
    rows: dict[tuple[int, str], dict[str, float]], args: argparse.Namespace, torch: Any
) -> float:
    """Write the GPU comparison's table so far; return 16 vectorised members' wall time / one
    member's (nan before that run)."""
    one = rows[(1, "ordinary")]["wall"]
    lines = [
        "# Vectorised population on one GPU (MNIST-1D PBT, end to end)",
        "",
        f"Synchronous PBT on MNIST-1D, {args.steps} steps per member, ready every {args.ready}, "
        f"evaluated every {args.every}, one worker process given the whole GPU (spawn), seed 0. "
        "Ordinary: the process pool's worker trains the members one after another. "
        "Vectorised: `VectorisedPoolExecutor(MNIST1DVectorised, slots=members, workers=1)`. "
        "Wall time: the whole `firepbt.run`, worker start, data generation, evaluation and "
        "checkpoints included.",
        "",
        "| members | way | wall time | × one member | first segment to last | × one member "
        "| member-steps/s | test accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    alone = rows[(1, "ordinary")]["training"]
    for (members, way), r in rows.items():
        lines.append(
            f"| {members} | {way} | {r['wall']:.1f} s | {r['wall'] / one:.2f}× | "
            f"{r['training']:.1f} s | {r['training'] / alone:.2f}× | "
            f"{r['member_steps_per_s']:.0f} | {r['test_accuracy']:.3f} |"
        )
    sixteen = rows[(16, "vectorised")]["wall"] / one if (16, "vectorised") in rows else math.nan
    trained = (
        rows[(16, "vectorised")]["training"] / alone if (16, "vectorised") in rows else math.nan
    )
    lines += [
        "",
        f"A population of 16 (vectorised) against one member: {sixteen:.2f}× the wall time "
        f"(target ≤ 2×); {trained:.2f}× from the first segment's start to the last one's end "
        "(without the worker's start; the worker generates the data, ~2–3 s, in its first "
        "segment).",
        "",
        f"Machine: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPU cores.",
        "",
        f"Command: `python benchmarks/vectorised.py --gpu 1 --steps {args.steps}`.",
    ]
    out = Path(os.environ.get("OUT", RESULTS))
    target = out / "vectorised_gpu.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return sixteen


if __name__ == "__main__":
    main()
