"""Runtime overhead: how close a run comes to the ideal wall time, and how busy workers are.

Workload (the one Ray Tune's PBT was measured on): 4 members × 40 iterations, each iteration a
0.2 s sleep, ready every 4 iterations, 2 workers: ideal wall time 4 × 40 × 0.2 / 2 = 16 s. The
same with 0 s iterations measures pure overhead. Busy fraction = time workers spent inside
segments / (workers × wall time). Each workload runs on the process pool and, when Ray is
installed, on the Ray executor (2 actors); Ray is started once (``ray.init``) outside the timed
runs and its start time is reported apart, while each run's time includes starting its actors.
Also the controller's decision latency for PBT at population 10, 100 and 1,000 (median per
decision, strategy only), and the NQM examples (``examples/nqm_pbt.toml``, ``nqm_fire.toml``:
cheap trainables, segments of 50–100 steps) in-process against the process pool with 2 workers,
side by side: each run a fresh Python process, as ``firepbt run`` is, timed from the call that
starts the run.

    python benchmarks/overhead.py [--repeats 3] [--only-nqm]

Writes ``benchmarks/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pool_floor

import firepbt
from firepbt import Store, Uniform
from firepbt.config import tomllib as toml
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


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NQM_CONFIGS = ("nqm_pbt.toml", "nqm_fire.toml")
NQM_EXECUTORS = {"inprocess": "in-process", "process": "process pool, 2 workers"}


def one_config_run(config: str, executor: str, run_dir: str) -> None:
    """Run an example config on ``executor`` and print what it took, as JSON (in a subprocess)."""
    from firepbt.api import run_config
    from firepbt.config import RunConfig
    from firepbt.config import tomllib as toml

    data = toml.loads((EXAMPLES / config).read_text())
    data["executor"] = {**data.get("executor", {}), "kind": executor}
    data["run_dir"] = run_dir
    called = time.time()
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    # in-process: each segment's CPU time too, for the leanest pool's replay (pool_floor.py)
    timed = pool_floor.segments_timed(Path(run_dir)) if executor == "inprocess" else nullcontext()
    started = time.perf_counter()
    with timed:
        run_config(RunConfig.from_mapping(data))
    wall = time.perf_counter() - started
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the joined workers
    store = Store.open(Path(run_dir))
    busy, first, segments = store._conn.execute(
        "SELECT SUM(finished - started), MIN(started), COUNT(*) FROM segments WHERE status = 'done'"
    ).fetchone()
    store.close()
    print(
        json.dumps(
            {
                "wall": wall,
                "busy": busy,
                "first": first - called,
                "segments": segments,
                "cpu_controller": cpu_seconds(own_after) - cpu_seconds(own),
                "cpu_workers": cpu_seconds(children_after) - cpu_seconds(children),
            }
        )
    )


def cpu_seconds(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


# Where the controller's time goes: (label, file name ends with, function name); cumulative
# seconds under cProfile, so the parts overlap (a completion includes its store writes).
PARTS = (
    ("waiting for a worker's result", "multiprocessing/connection.py", "wait"),
    ("starting the worker processes", "pool.py", "_spawn"),
    ("sending segments (pickle, pipe)", "pool.py", "submit"),
    ("receiving results (pipe, unpickle)", "pool.py", "_collect"),
    ("training in this process (in-process only)", "worker.py", "run_segment"),
    ("recording results (store)", "_store.py", "segment_done"),
    ("recording decisions (store)", "_store.py", "record_decision"),
    ("the strategy deciding", "", "ready"),
    ("releasing checkpoints (files, worker memory)", "cleanup.py", "delete_released"),
    ("importing modules", "", "_find_and_load"),
)


def one_config_profile(config: str, executor: str, run_dir: str) -> None:
    """``one_config_run`` under cProfile: print each of ``PARTS``'s seconds, as JSON."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.runcall(one_config_run, config, executor, run_dir)
    stats: Any = pstats.Stats(profile).stats
    parts = {"wall (profiled)": time.perf_counter() - started}
    for label, file, function in PARTS:
        parts[label] = sum(
            v[3] for (f, _, fn), v in stats.items() if f.endswith(file) and fn == function
        )
    print(json.dumps(parts))


def nqm_breakdown(root: Path) -> list[str]:
    """Table rows: where the controller spends its time, per config and executor."""
    measured = {}
    for config in NQM_CONFIGS:
        for executor in NQM_EXECUTORS:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--profile",
                    config,
                    executor,
                    str(root / f"profile-{config}-{executor}"),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            measured[(config, executor)] = json.loads(out.strip().splitlines()[-1])
    labels = ["wall (profiled)", *(label for label, _, _ in PARTS)]
    rows = []
    for label in labels:
        cells = [f"{measured[(c, e)][label]:.2f} s" for c in NQM_CONFIGS for e in NQM_EXECUTORS]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def nqm_side_by_side(repeats: int, root: Path) -> tuple[list[str], list[str]]:
    """Table rows: each NQM example in-process and on the process pool, alternating runs; and
    the leanest pool's floor on each in-process run (``pool_floor.py``)."""
    rows, floor_rows = [], []
    for config in NQM_CONFIGS:
        runs: dict[str, list[dict[str, float]]] = {e: [] for e in NQM_EXECUTORS}
        for i in range(repeats):
            for executor in NQM_EXECUTORS:
                run_dir = root / f"{config}-{executor}-{i}"
                out = subprocess.run(
                    [sys.executable, __file__, "--one", config, executor, str(run_dir)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                runs[executor].append(json.loads(out.strip().splitlines()[-1]))
        ratios = [
            p["wall"] / s["wall"] for s, p in zip(runs["inprocess"], runs["process"], strict=True)
        ]
        # no run of the pool's processes can take less than their CPU time shared by 2 cores
        floors = [
            (p["cpu_controller"] + p["cpu_workers"]) / 2 / s["wall"]
            for s, p in zip(runs["inprocess"], runs["process"], strict=True)
        ]
        for executor, name in NQM_EXECUTORS.items():
            r = runs[executor]
            wall = statistics.median(x["wall"] for x in r)
            busy = statistics.median(x["busy"] for x in r)
            first = statistics.median(x["first"] for x in r)
            ratio = f"{statistics.median(ratios):.2f}×" if executor == "process" else "1"
            controller = statistics.median(x["cpu_controller"] for x in r)
            workers = statistics.median(x["cpu_workers"] for x in r)
            floor = f"{statistics.median(floors):.2f}×" if executor == "process" else ""
            rows.append(
                f"| `{config}` | {name} | {wall:.2f} s | {ratio} | {first:.2f} s | {busy:.2f} s "
                f"| {wall - busy / (2 if executor == 'process' else 1):.2f} s "
                f"| {int(r[0]['segments'])} | {controller:.2f} s / {workers:.2f} s | {floor} |"
            )
        per_run = ", ".join(f"{x:.2f}" for x in ratios)
        per_floor = ", ".join(f"{x:.2f}" for x in floors)
        rows.append(f"| | ratio per repeat | {per_run} | | | | | | | {per_floor} |")
        ready_every = int(toml.loads((EXAMPLES / config).read_text())["strategy"]["ready_every"])
        recorded = [
            pool_floor.recorded(root / f"{config}-inprocess-{i}", ready_every, r["wall"])
            for i, r in enumerate(runs["inprocess"])
        ]
        for label, work, longest in FLOOR_VARIANTS:
            leanest = [pool_floor.floor(run, work, longest) for run in recorded]
            values = ", ".join(f"{x:.2f}" for x in leanest)
            floor_rows.append(
                f"| `{config}` | {label} | {statistics.median(leanest):.2f}× | {values} |"
            )
    return rows, floor_rows


# The leanest pool's variants: (label, controller work per result as a share of the in-process
# run's, longest segments first)
FLOOR_VARIANTS = (
    ("as the in-process run did it", 1.0, False),
    ("longest segments first", 1.0, True),
    ("longest first, and no controller work inside rounds", 0.0, True),
)


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
    parser.add_argument("--only-nqm", action="store_true", help="only the NQM examples' rows")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # config executor run_dir
    parser.add_argument("--profile", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_config_run(*args.one)
        return
    if args.profile:
        one_config_profile(*args.profile)
        return
    with tempfile.TemporaryDirectory() as tmp:
        nqm_rows, floor_rows = nqm_side_by_side(args.repeats, Path(tmp))
        breakdown = nqm_breakdown(Path(tmp))
    heads = [f"`{c}` {NQM_EXECUTORS[e]}" for c in NQM_CONFIGS for e in NQM_EXECUTORS]
    nqm_lines = [
        "## Cheap trainables: the NQM examples in-process and on the process pool",
        "",
        "Each run is a fresh Python process, timed from the call that starts the run (store, "
        "workers, every segment, the result); in-process and process-pool runs alternate. "
        "Target: the process pool with 2 workers at most 0.6× the in-process wall time.",
        "",
        "| config | executor | wall time (median) | process pool / in-process (median of "
        "the per-repeat ratios) | first segment starts | time in segments (sum over "
        "workers) | the rest (wall − time in segments / workers) | segments | CPU time: "
        "controller / workers | CPU floor: (controller + workers CPU) / 2 cores, over the "
        "in-process wall time |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *nqm_rows,
        "",
        "The leanest pool there can be (`benchmarks/pool_floor.py`): each in-process run's "
        "segments replayed on 2 worker processes that only spend each segment's in-process "
        "time (its CPU time burnt, a wait of 0.5 ms or more asleep), and a controller that "
        "only burns the "
        "in-process run's time per result and at each barrier, with 2 segments per worker in "
        "flight (no pickling of real segments, no checkpoints, no store); "
        "its wall time (plus the in-process run's start and end) over the in-process run's:",
        "",
        "| config | the leanest pool's order and work | leanest pool / in-process (median) "
        "| per repeat |",
        "|---|---|---|---|",
        *floor_rows,
        "",
        "Where the controller's time goes (one run each under cProfile, which slows it; "
        "cumulative seconds, so parts overlap):",
        "",
        "| part | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(heads),
        *breakdown,
        "",
    ]
    if args.only_nqm:
        print("\n".join(nqm_lines))
        return
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
        "",
        *nqm_lines,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / "overhead.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
