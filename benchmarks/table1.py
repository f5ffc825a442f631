"""The FIRE paper's Table 1 in miniature: MNIST-1D and CartPole, every method on the same compute.

For each task every method gets ``WORKERS`` workers × the task's steps (worker-steps are counted
and reported):

* random search over constant learning rates;
* random search with a hand-tuned schedule shape (cosine for MNIST-1D, linear decay for PPO) and
  a random initial rate;
* PBT, one population of ``WORKERS`` members;
* FIRE PBT, 2 sub-populations of 3 members and 2 evaluators (``WORKERS`` workers in all; with
  ``--workers w``, 2 × ⌊3w/8⌋ members and the rest as evaluators);
* Ray Tune's ``PopulationBasedTraining`` (the peer), same population, steps and perturbation
  interval, ``reuse_actors=True`` (``benchmarks/ray_tune_peer.py``).

Reported per method, mean ± std over seeds, as the run's report computes them
(``firepbt.report.table_one``): the top validation score any member reached, the test score of that
same evaluation, and the test score of the best final member's schedule replayed from scratch
(one replay, with the lineage's seed), plus wall time.
firepbt's methods run two at a time, each in one process with the in-process executor, so two
runs share the two cores; the peer comparison (our PBT and Ray Tune's PBT, each on 2 worker
processes, one run at a time) is measured separately so that wall times compare like with like.

    python benchmarks/table1.py [--tasks mnist1d cartpole] [--seeds 5] [--no-peer]
    python benchmarks/table1.py --tasks mnist1d --workers 16 --methods shape pbt fire \
        --no-peer --out table1_mnist1d_w16     # larger FIRE sub-populations (2 × 6 + 4)

Writes ``benchmarks/results/table1.md`` (``--out`` names it otherwise), ``table1.json`` with
every run's numbers and ``table1_<task>_lr.png``, the learning rate of each FIRE sub-population
over time with the best schedule on top.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
WORKERS = 8


@dataclass(frozen=True)
class Task:
    name: str
    trainable: str  # "module:Class"
    space: str  # "module:function" returning the default search space
    metric: str
    test_metric: str
    mode: str
    steps: int
    ready_every: int
    eval_every: int
    schedule_shape: str  # the hand-tuned shape for random search
    fixed: dict[str, Any] = field(default_factory=dict)  # fixed hyperparameters added to the space
    fire: dict[str, Any] = field(default_factory=dict)  # FIRE PBT settings beyond the defaults


TASKS = {
    "mnist1d": Task(
        "MNIST-1D",
        "firepbt.examples.mnist1d:MNIST1D",
        "firepbt.examples.mnist1d:mnist1d_space",
        metric="val_accuracy",
        test_metric="test_accuracy",
        mode="max",
        steps=3000,
        ready_every=200,
        eval_every=40,
        schedule_shape="cosine",
    ),
    "cartpole": Task(
        "CartPole-v1 (PPO)",
        "firepbt.examples.cartpole:CartPolePPO",
        "firepbt.examples.cartpole:cartpole_space",
        metric="return",
        test_metric="test_return",
        mode="max",
        steps=24,
        ready_every=4,
        eval_every=2,
        schedule_shape="linear",
        fixed={"test_episodes": 10},
    ),
}


# The FIRE paper's RL guidance as far as 2 cores allow: many more ready intervals (the paper:
# 100), evaluations at every step, and P2 evaluated only after a sixth of the budget (the paper's
# min_steps_before_eval, 1e9 of 6e9 actor steps).
TASKS["cartpole-long"] = replace(
    TASKS["cartpole"],
    name="CartPole-v1 (PPO), 60 steps",
    steps=60,
    eval_every=1,
    fire={"min_steps_before_eval": [0, 10]},
)

Method = tuple[str, int, dict[str, Any], str]


def methods(workers: int = WORKERS) -> dict[str, Method]:
    """name -> (strategy, population, strategy options, learning-rate shape: "constant" or
    "schedule"). FIRE PBT gets 2 sub-populations of ⌊3w/8⌋ members and the rest of the ``w``
    workers as evaluators (¾ of the parents' size, as the paper sets it: 3 + 3 + 2 for 8)."""
    size = 3 * workers // 8
    evaluators = workers - 2 * size
    return {
        "random search, constant lr": ("random", workers, {}, "constant"),
        "random search, hand-tuned shape": ("random", workers, {}, "schedule"),
        "PBT": ("pbt", workers, {}, "constant"),
        f"FIRE PBT (2 × {size} + {evaluators} evaluators)": (
            "fire",
            2 * size,
            {"subpopulations": 2, "evaluators": evaluators},
            "constant",
        ),
    }


METHOD_KEYS = ("constant", "shape", "pbt", "fire")  # --methods picks by these, in this order


def _load(path: str) -> Any:
    import importlib

    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def task_space(task: Task, kind: str) -> dict[str, Any]:
    """The task's space with the learning-rate schedule shape fixed as ``kind`` asks."""
    from firepbt import Fixed

    space = dict(_load(task.space)())
    shape = task.schedule_shape if kind == "schedule" else "constant"
    space["lr_schedule"] = Fixed(shape)
    space["total_steps"] = Fixed(task.steps)
    space.update({k: Fixed(v) for k, v in task.fixed.items()})
    return space


def run_method(job: tuple[str, str, int, str, int]) -> dict[str, Any]:
    """One (task, method, seed) run with the in-process executor, and its replay."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    import firepbt
    from firepbt.report import table_one

    torch.set_num_threads(1)
    task_key, name, seed, root, workers = job
    task = TASKS[task_key]
    table = methods(workers)
    strategy, population, options, kind = table[name]
    if strategy == "fire":
        options = {**options, **task.fire, **json.loads(os.environ.get("TABLE1_FIRE", "{}"))}
    run_dir = Path(root) / task_key / f"{list(table).index(name)}-seed{seed}"
    started = time.perf_counter()
    result = firepbt.run(
        task.trainable,
        task_space(task, kind),
        total_steps=task.steps,
        population=population,
        ready_every=task.ready_every,
        eval_every=task.eval_every,
        mode=task.mode,
        metric=task.metric,
        test_metric=task.test_metric,
        strategy=strategy,
        executor="inprocess",
        run_dir=run_dir,
        seed=seed,
        **options,
    )
    seconds = time.perf_counter() - started
    firepbt.replay(run_dir, member="best", seeds=1)
    t = table_one(run_dir)  # the numbers the run's report shows
    return {
        "task": task_key,
        "method": name,
        "seed": seed,
        "val": t["top_validation"],
        "test": t["matching_test"],
        "replay_test": t["replay_test"],
        "final_val": result.best_score,
        "final_test": result.metrics[task.test_metric],
        "worker_steps": result.worker_steps,
        "seconds": seconds,
        "schedule": [(e.from_step, e.to_step, e.hyperparameters["lr"]) for e in result.schedule],
        "run_dir": str(run_dir),
    }


def peer_pair(task_key: str, seed: int, root: str) -> dict[str, Any]:
    """Our PBT and Ray Tune's PBT on the same task, population, steps and interval, each on 2
    worker processes, one after the other."""
    import ray
    from ray_tune_peer import tune_pbt

    import firepbt

    task = TASKS[task_key]
    space = task_space(task, "constant")
    common = dict(population=WORKERS, total_steps=task.steps, ready_every=task.ready_every)
    common.update(eval_every=task.eval_every, metric=task.metric, mode=task.mode, seed=seed)
    started = time.perf_counter()
    ours = firepbt.run(
        task.trainable,
        space,
        strategy="pbt",
        test_metric=task.test_metric,
        executor="process",
        workers=2,
        run_dir=Path(root) / "peer" / f"{task_key}-seed{seed}",
        **common,
    )
    ours_seconds = time.perf_counter() - started
    theirs = tune_pbt(_load(task.trainable), space, workers=2, **common)
    ray.shutdown()
    return {
        "task": task_key,
        "seed": seed,
        "ours_val": ours.best_score,
        "ours_test": ours.metrics[task.test_metric],
        "ours_seconds": ours_seconds,
        "ours_steps": ours.worker_steps,
        "tune_val": theirs.best_score,
        "tune_test": theirs.best_metrics[task.test_metric],
        "tune_seconds": theirs.wall_seconds,
        "tune_ray_start": theirs.ray_start_seconds,
        "tune_steps": theirs.worker_steps,
    }


def peer_table(task: Task, rows: list[dict[str, Any]]) -> list[str]:
    n = len(rows)
    ratio = [r["tune_seconds"] / r["ours_seconds"] for r in rows]
    return [
        f"#### {task.name}: our PBT against Ray Tune's PopulationBasedTraining",
        "",
        f"Same population ({WORKERS}), steps, perturbation interval and explore settings; each "
        "on 2 worker processes, run one after the other in the same session. Ray Tune: "
        "asynchronous (its default), `reuse_actors=True`, checkpoint every perturbation "
        "interval; its wall time is `Tuner.fit()` without starting Ray "
        f"({_ms([r['tune_ray_start'] for r in rows], 1)} s more). Ours: synchronous (our "
        "default), process pool, wall time of `firepbt.run` including starting its workers. "
        "Scores are those of each side's best member at the end (the same PBT run as in the "
        "table above, which gives bit-identical results in-process and on the process pool).",
        "",
        "| | seeds | best final member: validation | its test score | wall s | worker-steps |",
        "|---|---|---|---|---|---|",
        f"| firepbt PBT | {n} | {_ms([r['ours_val'] for r in rows])} | "
        f"{_ms([r['ours_test'] for r in rows])} | {_ms([r['ours_seconds'] for r in rows], 1)} | "
        f"{_ms([r['ours_steps'] for r in rows], 0)} |",
        f"| Ray Tune PBT | {n} | {_ms([r['tune_val'] for r in rows])} | "
        f"{_ms([r['tune_test'] for r in rows])} | {_ms([r['tune_seconds'] for r in rows], 1)} | "
        f"{_ms([r['tune_steps'] for r in rows], 0)} |",
        "",
        f"Ray Tune's wall time / ours, per seed: {', '.join(f'{x:.2f}×' for x in ratio)} "
        f"(median {statistics.median(ratio):.2f}×).",
    ]


def plot_fire_lr(rows: list[dict[str, Any]], tasks: list[str], out: str) -> None:
    """The FIRE paper's Figure 4a for each task's first FIRE run: the learning rate of every
    member of each sub-population over time, with the best member's schedule on top."""
    from firepbt.report import plot_hyperparameters

    for t in tasks:
        fire = [r for r in rows if r["task"] == t and r["method"].startswith("FIRE")]
        mine = sorted(fire, key=_seed)
        if mine:
            title = f"{TASKS[t].name}: FIRE PBT, seed {mine[0]['seed']}"
            plot_hyperparameters(
                mine[0]["run_dir"], RESULTS / f"{out}_{t}_lr.png", "lr", title=title
            )


def _seed(row: dict[str, Any]) -> int:
    return int(row["seed"])


def _ms(xs: list[float], digits: int = 3) -> str:
    if not xs:
        return "–"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.{digits}f} ± {sd:.{digits}f}"


def quality_table(task: Task, rows: list[dict[str, Any]], workers: int) -> list[str]:
    lines = [
        f"### {task.name}",
        "",
        f"{workers} workers × {task.steps} steps each, ready every {task.ready_every}, "
        f"evaluated every {task.eval_every}; Q = `{task.metric}`, test = `{task.test_metric}`.",
        "",
        "| method | seeds | top validation | its test score | replayed schedule's test | "
        "worker-steps | wall s (2 runs share 2 cores) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in methods(workers):
        mine = [r for r in rows if r["method"] == name]
        if not mine:
            continue
        lines.append(
            f"| {name} | {len(mine)} | {_ms([r['val'] for r in mine])} | "
            f"{_ms([r['test'] for r in mine])} | {_ms([r['replay_test'] for r in mine])} | "
            f"{mine[0]['worker_steps']} | {_ms([r['seconds'] for r in mine], 1)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["mnist1d", "cartpole"], choices=list(TASKS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true", help="skip the Ray Tune comparison")
    parser.add_argument("--workers", type=int, default=WORKERS, help="workers per method")
    parser.add_argument(
        "--methods", nargs="+", choices=METHOD_KEYS, default=list(METHOD_KEYS), help="a subset"
    )
    parser.add_argument("--out", default="table1", help="results file name, without .md")
    parser.add_argument(
        "--fire-options",
        default="{}",
        help='FIRE PBT settings as JSON, e.g. \'{"success_test": "increments"}\'',
    )
    args = parser.parse_args()
    if args.workers != WORKERS and not args.no_peer:
        parser.error("the peer comparison runs with 8 workers; add --no-peer")
    os.environ["TABLE1_FIRE"] = json.dumps(json.loads(args.fire_options))  # to the workers
    table = methods(args.workers)
    chosen = [name for key, name in zip(METHOD_KEYS, table, strict=True) if key in args.methods]
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune prints a header per run otherwise
    started = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="table1-") as root:
        jobs = [
            (t, name, seed, root, args.workers)
            for t in args.tasks
            for seed in range(args.seeds)
            for name in chosen
        ]
        context = multiprocessing.get_context("forkserver")
        with context.Pool(2, maxtasksperchild=1) as pool:
            for row in pool.imap_unordered(run_method, jobs):
                rows.append(row)
                print(
                    f"{row['task']:>8} {row['method']:<34} seed {row['seed']}: val "
                    f"{row['val']:.3f} test {row['test']:.3f} replay {row['replay_test']:.3f} "
                    f"({row['seconds']:.0f} s)",
                    flush=True,
                )
        plot_fire_lr(rows, args.tasks, args.out)
        peers = []
        if not args.no_peer:
            for t in args.tasks:
                for seed in range(args.seeds):
                    peers.append(peer_pair(t, seed, root))
                    p = peers[-1]
                    print(
                        f"{t:>8} peer seed {seed}: ours {p['ours_val']:.3f} in "
                        f"{p['ours_seconds']:.0f} s, Ray Tune {p['tune_val']:.3f} in "
                        f"{p['tune_seconds']:.0f} s",
                        flush=True,
                    )
    lines = ["# Table 1 in miniature", ""]
    for t in args.tasks:
        lines += quality_table(TASKS[t], [r for r in rows if r["task"] == t], args.workers)
        lines.append("")
        mine = [p for p in peers if p["task"] == t]
        if mine:
            lines += peer_table(TASKS[t], mine) + [""]
    total = time.perf_counter() - started
    lines += [
        f"Command: `python benchmarks/table1.py {' '.join(sys.argv[1:])}`; wall time "
        f"{total / 60:.1f} min on 2 cores.",
    ]
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{args.out}.md").write_text(text)
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"runs": rows, "peer": peers}, indent=1))
    print(text)


if __name__ == "__main__":
    sys.exit(main())
