"""Runtime overhead: how close a run comes to the ideal wall time, and how busy workers are.

Workload (the one Ray Tune's PBT was measured on): 4 members × 40 iterations, each iteration a
0.2 s sleep, ready every 4 iterations, 2 workers: ideal wall time 4 × 40 × 0.2 / 2 = 16 s. The
same with 0 s iterations measures pure overhead. Busy fraction = time workers spent inside
segments / (workers × wall time). Each workload runs on the process pool and, when Ray is
installed, on the Ray executor (2 actors); Ray is started once (``ray.init``) outside the timed
runs and its start time is reported apart, while each run's time includes starting its actors.
Also the controller's decision latency for PBT at population 10, 100 and 1,000 (median per
decision, strategy only).

    python benchmarks/overhead.py [--repeats 3]

Writes ``benchmarks/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import firepbt
from firepbt import Store, Uniform
from firepbt.examples.sleep import Sleep
from firepbt.strategies import PBT

MEMBERS, ITERATIONS, READY, WORKERS = 4, 40, 4, 2


EXECUTORS = {"process": "process pool", "ray": "Ray"}


def one_run(
    seconds: float, synchrony: str, executor: str, root: Path
) -> tuple[float, float, float, int]:
    """(wall seconds, worker busy fraction, seconds until the first segment started, worker-steps
    trained) of one run."""
    run_dir = root / f"{executor}-{synchrony}-{seconds}-{time.monotonic_ns()}"
    space = {"x": Uniform(0.0, 1.0), "seconds": seconds}
    called = time.time()
    started = time.perf_counter()
    firepbt.run(
        Sleep,
        space,
        total_steps=ITERATIONS,
        population=MEMBERS,
        ready_every=READY,
        executor=executor,
        workers=WORKERS,
        run_dir=run_dir,
        synchrony=synchrony,
    )
    wall = time.perf_counter() - started
    store = Store.open(run_dir)
    busy, first = store._conn.execute(
        "SELECT SUM(finished - started), MIN(started) FROM segments WHERE status = 'done'"
    ).fetchone()
    steps = store.worker_steps()
    store.close()
    return wall, float(busy) / (WORKERS * wall), float(first) - called, steps


def decision_latency(population: int, rounds: int = 20) -> float:
    """Median seconds per PBT decision (synchronous rounds, truncation, perturb + resample)."""
    space = firepbt.Space({"lr": firepbt.LogUniform(1e-4, 1.0)})
    pbt = PBT(space, population, total_steps=10**9, ready_every=1, rng=np.random.default_rng(0))
    pbt.start()
    rng = np.random.default_rng(1)
    per_round = []
    steps = {m: 0 for m in range(population)}
    for _ in range(rounds):
        for m in range(population):
            pbt.report(m, steps[m] + 1, float(rng.random()))
        t0 = time.perf_counter()
        decisions = []
        for m in range(population):
            decisions += pbt.ready(m, steps[m] + 1)
        per_round.append((time.perf_counter() - t0) / population)
        for d in decisions:
            steps[d.member] = d.until - 1 if hasattr(d, "until") else steps[d.member]
    return statistics.median(per_round)


def start_ray() -> float | None:
    """Start a local Ray with one CPU per worker; its start time, or None without Ray."""
    try:
        import ray
    except ImportError:
        return None
    started = time.perf_counter()
    ray.init(num_cpus=WORKERS, include_dashboard=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ideal = MEMBERS * ITERATIONS * 0.2 / WORKERS
    workloads = [(seconds, synchrony) for seconds in (0.2, 0.0) for synchrony in ("sync", "async")]
    measured: dict[tuple[float, str, str], list[tuple[float, float, float, int]]] = {}
    ray_start = None
    with tempfile.TemporaryDirectory() as tmp:
        for executor in EXECUTORS:
            if executor == "ray":
                ray_start = start_ray()  # once, outside the timed runs; the runs join it
                if ray_start is None:
                    break
            for seconds, synchrony in workloads:
                measured[(seconds, synchrony, executor)] = [
                    one_run(seconds, synchrony, executor, Path(tmp)) for _ in range(args.repeats)
                ]
    if ray_start is not None:
        import ray

        ray.shutdown()
    rows = []
    for seconds, synchrony in workloads:  # each workload's executors side by side
        for executor, name in EXECUTORS.items():
            runs = measured.get((seconds, synchrony, executor))
            if runs is None:
                continue
            wall = statistics.median(r[0] for r in runs)
            busy = statistics.median(r[1] for r in runs)
            ratio = f"{wall / ideal:.3f}×" if seconds else "–"
            # async exploits may copy a donor that is ahead, so fewer steps are trained
            steps = statistics.median(r[3] for r in runs)
            trained = "–"
            if seconds:
                per_step = seconds / WORKERS
                trained = f"{statistics.median(r[0] / (r[3] * per_step) for r in runs):.3f}×"
            rows.append(
                f"| {seconds} s | PBT {synchrony} | {name} | {wall:.2f} s | {ratio} | {steps:.0f} "
                f"| {trained} | {busy:.1%} |"
            )
    startup = []  # how long until workers run anything: the 0 s rows are mostly this
    for executor, name in EXECUTORS.items():
        delays = [r[2] for (_, _, e), runs in measured.items() if e == executor for r in runs]
        if delays:
            startup.append(f"{name} {statistics.median(delays):.2f} s")
    ray_note = (
        f"Ray: started once with `ray.init(num_cpus={WORKERS})` before the Ray runs, in "
        f"{ray_start:.1f} s, which the table leaves out; each Ray run's wall time includes "
        f"starting its {WORKERS} worker actors."
        if ray_start is not None
        else "Ray is not installed (pip install 'firepbt[ray]'): no Ray rows."
    )
    ray_note += (
        " Median time from `firepbt.run` to the first segment starting (store, run directory, "
        f"workers started): {'; '.join(startup)}."
    )
    latency = {n: decision_latency(n) for n in (10, 100, 1000)}
    lines = [
        "# Runtime overhead",
        "",
        f"{MEMBERS} members × {ITERATIONS} iterations, ready every {READY}, {WORKERS} workers "
        f"(ideal {ideal:.0f} s at 0.2 s per iteration); median of {args.repeats} runs. An "
        "asynchronous exploit copies its donor's weights at the donor's step, which may be "
        "ahead: such a run trains fewer than 160 worker-steps, and its ideal is the steps it "
        "trained × 0.2 s / 2 workers.",
        "",
        "| iteration | strategy | executor | wall time | wall / ideal | worker-steps "
        "| wall / ideal of the steps trained | worker busy |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        ray_note,
        "",
        "Controller decision latency (PBT strategy alone, median per decision):",
        "",
        "| population | latency |",
        "|---|---|",
        *(f"| {n} | {t * 1e6:.1f} µs |" for n, t in latency.items()),
        "",
        f"Command: `python benchmarks/overhead.py --repeats {args.repeats}`.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / "overhead.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
