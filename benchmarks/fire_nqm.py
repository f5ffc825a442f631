"""FIRE PBT against PBT, random search and hand-tuned schedules on the noisy quadratic model.

Each method gets the same compute: ``--workers`` workers × ``STEPS`` steps. PBT and random search
run one population of ``--workers`` members; FIRE PBT with n sub-populations of ``--size`` members
gives the remaining workers to evaluators (the paper's sizes: 22 workers = 2 × 8 + 6, 36 = 3 × 8 +
12). Every found schedule (the best member's lineage) is scored by the exact expected loss, so
the comparison has no evaluation noise. Reports mean ± std, median and per-seed values, and, for
FIRE, how evaluations ended (from the run's store).

    python benchmarks/fire_nqm.py --workers 22 --seeds 10 [--spectrum wide] [--methods ...]

Spectra: ``default`` (d = 1000, batch 4: the shipped NQM) and ``wide`` (d = 3000, batch 8), a
problem FIRE's defaults were not tuned on. Writes
``benchmarks/results/fire_nqm_<spectrum>_w<workers>.md`` (and ``.json`` with every run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from nqm_schedules import EVAL_EVERY, STEPS, run_nqm  # the shared NQM run

RESULTS = Path(__file__).parent / "results"
# PBT's defaults inside FIRE's sub-populations: FIRE's defaults before its warm-up and the FIRE
# paper's explore (docs/paper_readings.md), kept as a row to compare side by side.
PBT_EVOLUTION: dict[str, Any] = {
    "exploit": {"name": "truncation", "fraction": 0.25},
    "explore": [{"name": "perturb"}, {"name": "resample", "probability": 0.25}],
}
READY = 50
SPECTRA = {"default": {"dim": 1000, "batch_size": 4}, "wide": {"dim": 3000, "batch_size": 8}}


def methods(
    workers: int,
    sizes: list[int],
    variants: dict[str, dict[str, Any]] | None = None,
    pbt_variants: dict[str, dict[str, Any]] | None = None,
) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """name -> (strategy, population, options): each uses ``workers`` workers; FIRE with n
    sub-populations of ``sizes[n - 2]`` members where the evaluators left are at most the
    parents (more would stay idle). ``variants`` (label -> FIRE options) add rows
    ``"<FIRE row>, <label>"``; ``pbt_variants`` add rows ``"PBT, <label>"``."""
    out: dict[str, tuple[str, int, dict[str, Any]]] = {
        "random search (constant lr)": ("random", workers, {}),
        "PBT": ("pbt", workers, {}),
    }
    for label, options in (pbt_variants or {}).items():
        out[f"PBT, {label}"] = ("pbt", workers, options)
    for n, size in zip((2, 3), sizes, strict=False):
        population = n * size
        evaluators = workers - population
        if not 1 <= evaluators <= population - size:
            continue
        base = {"subpopulations": n, "evaluators": evaluators}
        tag = f"FIRE-{n} ({n}×{size}+{evaluators})"
        out[tag] = ("fire", population, base)
        out[f"{tag}, retarget"] = ("fire", population, {**base, "retarget": True})
        out[f"{tag}, min_steps 500"] = (
            "fire",
            population,
            {**base, "min_steps_before_eval": [0] + [500] * (n - 1)},
        )
        out[f"{tag}, thin 2"] = ("fire", population, {**base, "thin": 2})
        levels = {**base, "success_test": "levels"}
        out[f"{tag}, levels (the paper's test)"] = ("fire", population, levels)
        out[f"{tag}, levels, thin 2"] = ("fire", population, {**levels, "thin": 2})
        out[f"{tag}, keep_curves"] = ("fire", population, {**base, "keep_curves": True})
        out[f"{tag}, PBT paper's evolution, no warm-up"] = (
            "fire",
            population,
            {**base, **PBT_EVOLUTION, "warmup": 0},
        )
        for label, options in (variants or {}).items():
            out[f"{tag}, {label}"] = ("fire", population, {**base, **options})
    return out


def run_one(job: tuple[str, str, int, dict[str, Any], int, str, str]) -> dict[str, Any]:
    """One (method, seed) run, in a pool process."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from firepbt.examples.nqm import expected_loss_of_schedule, nqm_space
    from firepbt.fire.evaluation import Ending
    from firepbt.space import Space
    from firepbt.store import Store

    name, strategy, population, options, seed, spectrum, root = job
    fixed = SPECTRA[spectrum]
    space = Space({**dict(nqm_space()), **fixed})
    run_dir = Path(root) / f"{re.sub(r'[^0-9A-Za-z]+', '-', name)}-{seed}"
    started = time.perf_counter()
    result = run_nqm(space, strategy, population, READY, seed, run_dir, options)
    schedule = [(e.from_step, e.to_step, e.hyperparameters["lr"]) for e in result.schedule]
    endings: Counter[str] = Counter()
    handovers = assigns = 0
    store = Store.open(run_dir)
    for d in store.decisions():
        if d.kind == "release":
            ending = Ending.of(d.reason or "")
            endings[ending.value if ending else "other"] += 1
        elif d.kind == "handover":
            handovers += 1
        elif d.kind == "assign":
            assigns += 1
    store.close()
    return {
        "name": name,
        "seed": seed,
        "expected": expected_loss_of_schedule(
            schedule, d=fixed["dim"], batch_size=fixed["batch_size"]
        ),
        "worker_steps": result.worker_steps,
        "seconds": time.perf_counter() - started,
        "endings": dict(endings),
        "handovers": handovers,
        "assigns": assigns,
        "best_member": result.best_member,
    }


def hand_tuned(spectrum: str) -> list[dict[str, Any]]:
    """Best initial rate (and γ) of each schedule shape by the exact expected loss."""
    from firepbt.examples import nqm

    fixed = SPECTRA[spectrum]
    d, batch = fixed["dim"], fixed["batch_size"]
    lr0s = np.geomspace(1e-2, nqm.LR_MAX, 60)
    rows = []
    shapes = {
        "constant (best lr)": [nqm.constant(lr, STEPS) for lr in lr0s],
        "step decay ×0.1 at 50 %, 75 %": [nqm.step_decay(lr, total=STEPS) for lr in lr0s],
        "cosine": [nqm.cosine(lr, STEPS) for lr in lr0s],
        "exponential (best γ)": [
            nqm.exponential(lr, g, STEPS)
            for lr in lr0s[::2]
            for g in np.linspace(0.998, 0.99995, 16)
        ],
    }
    for name, schedules in shapes.items():
        losses = nqm.expected_losses(schedules, d=d, batch_size=batch)
        best = int(np.argmin(losses))
        rows.append({"name": name, "expected": float(losses[best]), "lr0": schedules[best][0]})
    return rows


def _fmt(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=22)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[8, 8],
        help="FIRE-2 and FIRE-3 sub-population sizes",
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="run seeds first_seed .. first_seed + seeds - 1 (fresh seeds check a tuned choice)",
    )
    parser.add_argument("--spectrum", choices=sorted(SPECTRA), default="default")
    parser.add_argument("--methods", nargs="*", help="substrings of method names to run")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=JSON",
        help="an extra FIRE row with these options, e.g. 'settle 30={\"settle\": 30}'",
    )
    parser.add_argument(
        "--pbt-variant",
        action="append",
        default=[],
        metavar="LABEL=JSON",
        help="an extra PBT row with these options",
    )
    parser.add_argument("--out", help="results file stem (default fire_nqm_<spectrum>_w<workers>)")
    args = parser.parse_args()
    started = time.time()
    variants, pbt_variants = {}, {}
    for specs, into in ((args.variant, variants), (args.pbt_variant, pbt_variants)):
        for spec in specs:
            label, _, options = spec.partition("=")
            into[label.strip()] = json.loads(options)
    table = methods(args.workers, args.sizes, variants, pbt_variants)
    if args.methods:
        table = {
            k: v
            for k, v in table.items()
            if any(m == k or (m.endswith("*") and k.startswith(m[:-1])) for m in args.methods)
        }
    tuned = hand_tuned(args.spectrum)
    with tempfile.TemporaryDirectory() as root:
        jobs = [
            (name, s, p, o, seed, args.spectrum, root)
            for name, (s, p, o) in table.items()
            for seed in range(args.first_seed, args.first_seed + args.seeds)
        ]
        with multiprocessing.get_context("forkserver").Pool(args.processes) as pool:
            runs = pool.map(run_one, jobs, chunksize=1)
    best_tuned = min(t["expected"] for t in tuned)
    by = {name: [r for r in runs if r["name"] == name] for name in table}
    pbt = [r["expected"] for r in by.get("PBT", [])]
    pbt_median = statistics.median(pbt) if pbt else float("nan")
    fixed = SPECTRA[args.spectrum]
    lines = [
        f"# FIRE PBT on the NQM ({args.spectrum}: d = {fixed['dim']}, "
        f"batch {fixed['batch_size']}), {args.workers} workers",
        "",
        f"{STEPS} steps; ready every {READY}, evaluated every {EVAL_EVERY}; {args.seeds} seeds. "
        "Exact expected loss of the found schedule (lower is better). FIRE sub-populations of "
        f"{' / '.join(map(str, args.sizes))} (FIRE-2 / FIRE-3); the rest of the workers are "
        "evaluators.",
        "",
        "| method | mean ± std | median | median vs PBT median | median vs best hand-tuned | "
        "seeds worse than PBT median | hand-overs | assignments | worker-steps | s/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in tuned:
        lines.append(
            f"| hand-tuned: {t['name']} (lr0 {t['lr0']:.3g}) | {t['expected']:.4f} | – | "
            f"{t['expected'] / pbt_median:.2f}× | {t['expected'] / best_tuned:.2f}× | "
            "– | – | – | – | – |"
        )
    for name, rs in by.items():
        xs = [r["expected"] for r in rs]
        med = statistics.median(xs)
        worse = sum(x > pbt_median for x in xs)
        lines.append(
            f"| {name} | {_fmt(xs)} | {med:.4f} | {med / pbt_median:.2f}× | "
            f"{med / best_tuned:.2f}× | {worse}/{len(xs)} | "
            f"{statistics.mean(r['handovers'] for r in rs):.1f} | "
            f"{statistics.mean(r['assigns'] for r in rs):.1f} | "
            f"{statistics.mean(r['worker_steps'] for r in rs):.0f} | "
            f"{statistics.median(r['seconds'] for r in rs):.1f} |"
        )
    first = args.first_seed
    lines += ["", f"Per seed (seed {first}, {first + 1}, …):", ""]
    for name, rs in by.items():
        lines.append(f"- {name}: " + ", ".join(f"{r['expected']:.4f}" for r in rs))
    fire = {n: rs for n, rs in by.items() if n.startswith("FIRE")}
    if fire:
        lines += ["", "How evaluations ended (total over seeds):", ""]
        for name, rs in fire.items():
            total: Counter[str] = Counter()
            for r in rs:
                total.update(r["endings"])
            lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in total.most_common()))
    lines += [
        "",
        f"Command: `python benchmarks/fire_nqm.py --workers {args.workers} "
        f"--sizes {' '.join(map(str, args.sizes))} "
        f"--seeds {args.seeds} --spectrum {args.spectrum}"
        + (f" --first-seed {first}" if first else "")
        + "".join(f" --variant {v!r}" for v in args.variant)
        + "".join(f" --pbt-variant {v!r}" for v in args.pbt_variant)
        + (f" --methods {' '.join(repr(m) for m in args.methods)}" if args.methods else "")
        + f"`; wall time {time.time() - started:.0f} s on 2 cores.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    stem = args.out or f"fire_nqm_{args.spectrum}_w{args.workers}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
