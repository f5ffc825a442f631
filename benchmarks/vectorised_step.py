"""Micro-benchmark of one training step: MNIST-1D CNN members trained vectorised (one
``MNIST1DVectorised`` of k slots, a ``vmap`` step for all of them) against the same k members as
ordinary ``MNIST1D`` trainables whose ``train`` is called one after the other, in one process on
one torch thread.

The first table times ``train`` calls only (batch drawing, forward, backward, optimizer step):
no executor, no evaluation, no checkpoints; ``benchmarks/vectorised.py`` is the end-to-end
benchmark. The second adds one evaluation per member to ``--steps`` steps, a worker's round in
that benchmark, and bounds what a faster vectorised step could make of it (see below).

For each population size the two ways alternate, ``--repeats`` timings each, after a warm-up;
the table gives the median member-steps per second (k × steps / seconds).

A third column bounds what any batching of the k members could gain: one ordinary member whose
minibatch is k times larger (``batch_size`` 64·k) does the same arithmetic as k member-steps with
one set of weights, in the largest dense operations torch can run, with nothing per member; its
steps per second × k is the "ceiling". The floating-point operations of one member-step (counted
by ``torch.utils.flop_counter``) over the measured times give each path's GFLOP/s, beside a
single-thread matrix product's (a large ``sgemm``, near what one core can do).

    python benchmarks/vectorised_step.py [--repeats 3] [--steps 40] [--quick]

Writes ``benchmarks/results/vectorised_step.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from firepbt.examples.mnist1d import MNIST1D, mnist1d_data
from firepbt.examples.mnist1d_vectorised import MNIST1DVectorised
from firepbt.execution.bootstrap import steady_heap

RESULTS = Path(__file__).parent / "results" / "vectorised_step.md"
SIZES = (8, 16, 32, 64)
# slots per worker in benchmarks/vectorised.py (16 and 64 members on 2 workers): the sizes of the
# second table
ROUND_SIZES = (8, 32)
LR = 0.05


def hyperparameters(member: int) -> dict[str, float]:
    return {"lr": LR * (1 + member % 4) / 2, "momentum": 0.9}


def time_vectorised(population: MNIST1DVectorised, steps: int) -> float:
    start = time.perf_counter()
    population.train(steps)
    return time.perf_counter() - start


def time_sequential(members: list[MNIST1D], steps: int) -> float:
    start = time.perf_counter()
    for m in members:
        m.train(steps)
    return time.perf_counter() - start


def time_batched(member: MNIST1D, steps: int) -> float:
    start = time.perf_counter()
    member.train(steps)
    return time.perf_counter() - start


def time_evaluations(population: MNIST1DVectorised, members: list[MNIST1D]) -> tuple[float, float]:
    """Seconds to evaluate every slot of ``population``, then every one of ``members``."""
    start = time.perf_counter()
    population.evaluate()
    middle = time.perf_counter()
    for m in members:
        m.evaluate()
    return middle - start, time.perf_counter() - middle


def step_flops() -> int:
    """Floating-point operations of one member-step (forward, backward; batch 64)."""
    from torch.utils.flop_counter import FlopCounterMode

    member = MNIST1D(hyperparameters(0), seed=0)
    member.train(1)
    counter = FlopCounterMode(display=False)
    with counter:
        member.train(1)
    return int(counter.get_total_flops())


def sgemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of an n×n float32 matrix product on this thread (median of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def measure(k: int, steps: int, repeats: int) -> dict[str, float]:
    population = MNIST1DVectorised(slots=k)
    members = []
    for i in range(k):
        population.assign(i, hyperparameters(i), seed=i)
        members.append(MNIST1D(hyperparameters(i), seed=i))
    big = MNIST1D({**hyperparameters(0), "batch_size": 64 * k}, seed=0)
    time_vectorised(population, 2)  # warm-up: first-call costs of vmap and the optimizer
    time_sequential(members, 2)
    time_batched(big, 2)
    time_evaluations(population, members)
    vectorised, sequential, batched, v_eval, s_eval = [], [], [], [], []
    for _ in range(repeats):
        vectorised.append(time_vectorised(population, steps))
        sequential.append(time_sequential(members, steps))
        batched.append(time_batched(big, steps))
        v_e, s_e = time_evaluations(population, members)
        v_eval.append(v_e)
        s_eval.append(s_e)
    v, s = statistics.median(vectorised), statistics.median(sequential)
    b = statistics.median(batched)
    return {
        "vectorised": k * steps / v,
        "sequential": k * steps / s,
        "ceiling": k * steps / b,
        "v_s": v,
        "s_s": s,
        "b_s": b,
        "v_eval": statistics.median(v_eval),
        "s_eval": statistics.median(s_eval),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="steps per member per timing")
    parser.add_argument("--quick", action="store_true", help="10 steps, 1 timing each")
    args = parser.parse_args()
    steps, repeats = (10, 1) if args.quick else (args.steps, args.repeats)

    torch.set_num_threads(1)
    steady_heap()  # as in a worker process
    mnist1d_data()  # generate the data before anything is timed
    load_before = os.getloadavg()[0]
    flops = step_flops()
    peak = sgemm_gflops()
    print(f"one member-step: {flops / 1e6:.1f} MFLOP; sgemm on one thread: {peak:.1f} GFLOP/s")
    rows = []
    for k in SIZES:
        r = measure(k, steps, repeats)
        rows.append((k, r))
        print(
            f"{k:>3} members: vectorised {r['vectorised']:7.0f} member-steps/s, "
            f"sequential {r['sequential']:7.0f} member-steps/s, "
            f"ratio {r['vectorised'] / r['sequential']:.2f}×, ceiling "
            f"{r['ceiling']:7.0f} member-steps/s ({r['ceiling'] / r['sequential']:.2f}×)",
            flush=True,
        )
    load_after = os.getloadavg()[0]

    lines = [
        "# Vectorised step (micro-benchmark)",
        "",
        "MNIST-1D CNN (32 channels, batch 64, SGD with momentum), `train` calls only: one "
        "`MNIST1DVectorised` of k slots (`vmap` over stacked weights) against k ordinary "
        "`MNIST1D` members trained one after the other, in one process, "
        "`torch.set_num_threads(1)`. Not the end-to-end executor benchmark (no executor, "
        f"evaluation or checkpoints). {steps} steps per member per timing, median of "
        f"{repeats} alternating timings each.",
        "",
        "| members | vectorised member-steps/s | sequential member-steps/s | ratio | ceiling: "
        "one member, batch 64·k (member-steps/s) | ceiling / sequential |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in rows:
        ratio = r["vectorised"] / r["sequential"]
        lines.append(
            f"| {k} | {r['vectorised']:.0f} | {r['sequential']:.0f} | {ratio:.2f}× | "
            f"{r['ceiling']:.0f} | {r['ceiling'] / r['sequential']:.2f}× |"
        )
    gflops = {
        name: value * flops / 1e9
        for name, value in (
            ("sequential", rows[0][1]["sequential"]),
            ("vectorised", rows[0][1]["vectorised"]),
            ("ceiling", rows[0][1]["ceiling"]),
        )
    }
    lines += [
        "",
        f"One member-step is {flops / 1e6:.1f} MFLOP (`torch.utils.flop_counter`, forward and "
        f"backward). At {rows[0][0]} members that is {gflops['sequential']:.1f} GFLOP/s "
        f"sequential, {gflops['vectorised']:.1f} vectorised and {gflops['ceiling']:.1f} for the "
        f"ceiling, against {peak:.1f} GFLOP/s for a 1024×1024 float32 matrix product on the "
        "same thread.",
    ]
    lines += [
        "",
        "## A worker's round: what the end-to-end target asks of the step",
        "",
        f"{steps} steps and one evaluation of k members, as one worker of "
        "`benchmarks/vectorised.py` does between two evaluations (k = 8 slots there for 16 "
        "members, 32 for 64): the ordinary members one after the other, the vectorised "
        "population, and a bound: the ceiling's training time plus the faster of the two "
        "evaluations (validation and test sets, 2,000 examples per member, already one batch "
        "each). A vectorised worker's round could beat the bound only by training k members "
        "faster than one model trains a k-times larger batch. The end-to-end run adds start-up "
        "(worker processes, data) and the executor's costs to both ways.",
        "",
        "| members per worker | ordinary: train + evaluate (s) | vectorised: train + evaluate "
        "(s) | ordinary / vectorised | bound: ceiling train + evaluate (s) | ordinary / bound |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in rows:
        if k not in ROUND_SIZES:
            continue
        ordinary = r["s_s"] + r["s_eval"]
        vectorised = r["v_s"] + r["v_eval"]
        bound = r["b_s"] + min(r["s_eval"], r["v_eval"])
        lines.append(
            f"| {k} | {r['s_s']:.3f} + {r['s_eval']:.3f} | {r['v_s']:.3f} + {r['v_eval']:.3f} | "
            f"{ordinary / vectorised:.2f}× | {r['b_s']:.3f} + {min(r['s_eval'], r['v_eval']):.3f}"
            f" | {ordinary / bound:.2f}× |"
        )
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared; load average "
        f"{load_before:.2f} before, {load_after:.2f} after), torch {torch.__version__}, "
        "CPU.",
        "",
        "Command: `python benchmarks/vectorised_step.py"
        + (" --quick" if args.quick else f" --repeats {repeats} --steps {steps}")
        + "`.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
