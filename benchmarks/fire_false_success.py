"""How often FIRE PBT's success test fires between two copies of one process (a false success).

Two curves of the same process on the NQM: the same starting weights, the same learning rate,
different gradient noise. The *target* is evaluated from its start every ``EVAL_EVERY`` steps; the
*evaluator* first trains ``offset`` steps unobserved (it copied a parent further along the same
process, as FIRE's evaluators do) and is then evaluated every ``EVAL_EVERY`` steps. At every
ready step (``READY``) the evaluator is judged against the target exactly as FIRE PBT judges it
(``firepbt.fire.evaluation.judge``), until it stops, succeeds or reaches ``max_eval_steps``.
Neither curve is better, so every success is false: the rate should sit near ``p_stat``. The
paper's test compares levels (every pair, or every 2nd / 3rd with ``thin``); FIRE's option
``success_test = "increments"`` compares the gains between matching offsets instead. A
win is ``best_score_diff > 0`` at the first check past the unthinned max_eval_steps: it should
be near one half.

    python benchmarks/fire_false_success.py [--pairs 100]

Writes ``benchmarks/results/fire_false_success.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
EVAL_EVERY = 10
READY = 50
P_STAT = 0.01
THINS = (1, 2, 3)
VARIANTS = [(t, False) for t in THINS] + [(t, True) for t in THINS]  # (thin, increments)
LR = 0.3


def curve(
    start: Any, seed: int, skip: int, points: int, first_step: int
) -> list[tuple[int, float]]:
    """Train a copy of ``start`` ``skip`` steps unobserved, then record ``points`` points."""
    from firepbt.examples.nqm import NQM

    model = NQM({"lr": LR}, seed=seed)
    model.load(start)
    model.rng = np.random.Generator(np.random.PCG64(seed))  # its own noise, not the saved stream
    if skip:
        model.train(skip)
    out = [(first_step, model.evaluate()["loss"])]
    for k in range(1, points):
        model.train(EVAL_EVERY)
        out.append((first_step + k * EVAL_EVERY, model.evaluate()["loss"]))
    return out


def one_pair(job: tuple[int, int, int, int]) -> dict[str, Any]:
    """Judge one evaluator against one target of the same process; verdicts for each thinning."""
    from firepbt.examples.nqm import NQM
    from firepbt.fire import curves
    from firepbt.fire.evaluation import Outcome, judge
    from firepbt.fire.settings import default_max_eval_steps

    pair, offset, warmup, _ = job
    base = NQM({"lr": LR}, seed=10_000 + pair)
    if warmup:
        base.train(warmup)
    start = base.save()
    # Each thinning gets the max_eval_steps FIRE PBT defaults to for it (longer for more thinning:
    # a success needs the start pair plus 7 won comparisons, every thin-th point).
    max_eval = {thin: default_max_eval_steps(READY, EVAL_EVERY, P_STAT, thin) for thin in THINS}
    checks = max(max_eval.values()) // READY + 1
    n_ev = checks * READY // EVAL_EVERY + 1
    n_target = (offset + checks * READY) // EVAL_EVERY + 1
    # Higher is better for FIRE: orient the loss.
    target = [(s, -v) for s, v in curve(start, 2 * pair, 0, n_target, 0)]
    evaluator = [(s, -v) for s, v in curve(start, 2 * pair + 1, offset, n_ev, offset)]
    out: dict[str, Any] = {"pair": pair, "offset": offset, "warmup": warmup}
    verdicts = {v: "continue" for v in VARIANTS}
    first_diff = None
    for check in range(1, checks + 1):
        if first_diff is not None and all(v != "continue" for v in verdicts.values()):
            break
        trained = check * READY
        ev = evaluator[: trained // EVAL_EVERY + 1]
        tg = [p for p in target if p[0] <= offset + trained]
        ev_curve = curves.fit_curve([p[0] for p in ev], [p[1] for p in ev])
        tg_curve = curves.fit_curve([p[0] for p in tg], [p[1] for p in tg])
        if trained >= max_eval[1] and first_diff is None:
            first_diff = curves.best_score_diff(ev_curve, tg_curve)
        for thin, increments in VARIANTS:
            key = (thin, increments)
            if verdicts[key] != "continue":
                continue
            verdict = judge(ev_curve, tg_curve, trained, max_eval[thin], P_STAT, thin, increments)
            if verdict.outcome is Outcome.SUCCESS:
                verdicts[key] = "success"
            elif verdict.outcome is Outcome.STOP:
                verdicts[key] = "stop"
    last_diff = first_diff if first_diff is not None else 0.0
    out["verdicts"] = verdicts
    out["win"] = last_diff > 0
    out["tie"] = last_diff == 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    started = time.time()
    conditions = [(offset, warmup) for warmup in (0, 500) for offset in (0, 25)]
    jobs = [(p, o, w, 0) for o, w in conditions for p in range(args.pairs)]
    with multiprocessing.get_context("forkserver").Pool(args.processes) as pool:
        results = pool.map(one_pair, jobs, chunksize=4)
    lines = [
        "# False successes of FIRE's success test between copies of one process",
        "",
        f"NQM (d = 1000, batch 4), lr {LR} for both curves; evaluated every {EVAL_EVERY} steps, "
        f"judged every {READY} steps up to FIRE PBT's default max_eval_steps for each thinning; "
        f"p_stat {P_STAT}; "
        f"{args.pairs} pairs per row. The evaluator starts `offset` steps further along the same "
        "process; `warm-up` is how far both had trained before (0: steep early curves).",
        "",
        "| warm-up | offset | evaluator 'wins' (best_score_diff > 0) | "
        + " | ".join(
            f"false successes, {'increments' if inc else 'levels'}, thin {t}" for t, inc in VARIANTS
        )
        + " |",
        "|---|---|---|" + "---|" * len(VARIANTS),
    ]
    for offset, warmup in conditions:
        rows = [r for r in results if r["offset"] == offset and r["warmup"] == warmup]
        n = len(rows)
        wins = sum(r["win"] for r in rows)
        cells = []
        for variant in VARIANTS:
            k = sum(r["verdicts"][variant] == "success" for r in rows)
            cells.append(f"{k}/{n} ({k / n:.1%})")
        lines.append(
            f"| {warmup} | {offset} | {wins}/{n} ({wins / n:.0%}) | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        f"Command: `python benchmarks/fire_false_success.py --pairs {args.pairs}`; wall time "
        f"{time.time() - started:.0f} s on 2 cores.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fire_false_success.md").write_text(text)


if __name__ == "__main__":
    main()
