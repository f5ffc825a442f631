"""Runtime overhead: how close a run comes to the ideal wall time, and how busy workers are.

Workload (the one Ray Tune's PBT was measured on): 4 members × 40 iterations, each iteration a
0.2 s sleep, ready every 4 iterations, 2 workers: ideal wall time 4 × 40 × 0.2 / 2 = 16 s. The
same with 0 s iterations measures pure overhead. Busy fraction = time workers spent inside
segments / (workers × wall time). Also the controller's decision latency for PBT at population
10, 100 and 1,000 (median per decision, strategy only).

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


def one_run(seconds: float, synchrony: str, root: Path) -> tuple[float, float]:
    """(wall seconds, worker busy fraction) of one run."""
    run_dir = root / f"{synchrony}-{seconds}-{time.monotonic_ns()}"
    space = {"x": Uniform(0.0, 1.0), "seconds": seconds}
    started = time.perf_counter()
    firepbt.run(
        Sleep,
        space,
        total_steps=ITERATIONS,
        population=MEMBERS,
        ready_every=READY,
        executor="process",
        workers=WORKERS,
        run_dir=run_dir,
        synchrony=synchrony,
    )
    wall = time.perf_counter() - started
    store = Store.open(run_dir)
    rows = store._conn.execute(
        "SELECT SUM(finished - started) FROM segments WHERE status = 'done'"
    ).fetchone()
    store.close()
    return wall, float(rows[0]) / (WORKERS * wall)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ideal = MEMBERS * ITERATIONS * 0.2 / WORKERS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in (0.2, 0.0):
            for synchrony in ("sync", "async"):
                runs = [one_run(seconds, synchrony, Path(tmp)) for _ in range(args.repeats)]
                wall = statistics.median(r[0] for r in runs)
                busy = statistics.median(r[1] for r in runs)
                ratio = f"{wall / ideal:.3f}×" if seconds else "–"
                rows.append(
                    f"| {seconds} s | PBT {synchrony} | process pool | {wall:.2f} s | "
                    f"{ratio} | {busy:.1%} |"
                )
    latency = {n: decision_latency(n) for n in (10, 100, 1000)}
    lines = [
        "# Runtime overhead",
        "",
        f"{MEMBERS} members × {ITERATIONS} iterations, ready every {READY}, {WORKERS} workers "
        f"(ideal {ideal:.0f} s at 0.2 s per iteration); median of {args.repeats} runs.",
        "",
        "| iteration | strategy | executor | wall time | wall / ideal | worker busy |",
        "|---|---|---|---|---|---|",
        *rows,
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
