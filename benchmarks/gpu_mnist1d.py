"""MNIST-1D PBT with a GPU share per worker, against the same run on CPU workers.

Needs a CUDA GPU (run it on a GPU machine); it exits with status 2 where torch sees none. Each
worker is given ``--gpus-per-worker`` of a device (0.5: two workers per GPU). It checks that

* every member trained on the GPU: each evaluation reports the worker's
  ``torch.cuda.max_memory_allocated``, which must be > 0;
* the best member's checkpoint, written on a GPU, loads in this (CPU) process and scores what
  the run recorded for it;

and records both runs' wall time and the machine it ran on.

    python benchmarks/gpu_mnist1d.py [--steps 3000] [--workers 2] [--gpus-per-worker 0.5]

Writes ``benchmarks/results/gpu_mnist1d.md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import firepbt
from firepbt import Store
from firepbt.examples.mnist1d import MNIST1D, mnist1d_space


class MNIST1DMemory(MNIST1D):
    """MNIST1D that also reports the CUDA memory its worker has allocated at most."""

    def evaluate(self) -> dict[str, float]:
        metrics = dict(super().evaluate())
        on_gpu = self.device.startswith("cuda") and torch.cuda.is_available()
        metrics["cuda_max_bytes"] = float(torch.cuda.max_memory_allocated()) if on_gpu else 0.0
        return metrics


def one_run(gpus: float, args: argparse.Namespace, root: Path) -> tuple[firepbt.RunResult, float]:
    started = time.perf_counter()
    result = firepbt.run(
        MNIST1DMemory,
        mnist1d_space(),
        metric="val_accuracy",
        total_steps=args.steps,
        population=args.population,
        ready_every=args.steps // 20,
        workers=args.workers,
        gpus_per_worker=gpus,
        run_dir=root / f"gpus-{gpus:g}",
        seed=args.seed,
    )
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpus-per-worker", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu_mnist1d.md"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to torch: run this on a GPU machine")
    os.environ.pop("FIREPBT_DEVICE", None)  # this process (the controller) stays on the CPU
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for gpus in (args.gpus_per_worker, 0.0):
            result, wall = one_run(gpus, args, Path(tmp))
            store = Store.open(result.run_dir)
            memory = [p.metrics["cuda_max_bytes"] for _, p in store.points()]
            store.close()
            best = result.load_best(MNIST1DMemory)  # a checkpoint from a GPU, loaded on the CPU
            reloaded = best.evaluate()["val_accuracy"]
            rows.append(
                {
                    "where": f"{gpus:g} GPU per worker" if gpus else "CPU workers",
                    "wall": wall,
                    "points": len(memory),
                    "on_gpu": sum(m > 0 for m in memory),
                    "max_mib": max(memory) / 2**20,
                    "best": result.best_score,
                    "reloaded": reloaded,
                    "test": result.metrics.get("test_accuracy", float("nan")),
                }
            )
    gpu, cpu = rows
    assert gpu["on_gpu"] == gpu["points"], "an evaluation ran without CUDA memory allocated"
    assert abs(gpu["reloaded"] - gpu["best"]) < 1e-3, "the GPU checkpoint scores differently"
    machine = (
        f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible), "
        f"{os.cpu_count()} CPU cores, {platform.platform()}, torch {torch.__version__}"
    )
    lines = [
        "# MNIST-1D PBT with GPUs per worker against CPU workers",
        "",
        f"Machine: {machine}. {args.population} members × {args.steps} steps, "
        f"{args.workers} workers, seed {args.seed}.",
        "",
        "| workers | wall time | evaluations on the GPU | max CUDA memory per worker | "
        "best val accuracy | same checkpoint loaded on CPU | test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['where']} | {r['wall']:.1f} s | {r['on_gpu']}/{r['points']} | "
            f"{r['max_mib']:.1f} MiB | {r['best']:.4f} | {r['reloaded']:.4f} | {r['test']:.4f} |"
        )
    lines += ["", f"GPU / CPU wall time: {gpu['wall'] / cpu['wall']:.2f}×", ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
