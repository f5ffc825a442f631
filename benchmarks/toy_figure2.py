"""The PBT paper's toy example (its Figure 2): PBT against explore-only, exploit-only and grid.

Two members start at θ = (0.9, 0.9) with h = (1, 0) and (0, 1). Each step is gradient ascent on
the surrogate Q̂(θ|h) = 1.2 − (h0 θ0² + h1 θ1²); the score is the true Q(θ) = 1.2 − (θ0² + θ1²).
Every ``READY`` steps a member may exploit (copy the better member's θ and h) and explore (add
Gaussian noise to h). Over several seeds we report how many steps the population needs to reach
Q ≥ 1.19 and the best final Q.

    python benchmarks/toy_figure2.py [--seeds 20] [--steps 300]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import firepbt
from firepbt import AddNoise, KeepOwn, NoExploit, NoExplore, Store, Truncation
from firepbt.examples.toy import Toy, toy_space

READY = 4
TARGET = 1.19
INITIAL = [{"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0}]
NOISE = AddNoise(0.1)

METHODS = {
    "PBT": dict(exploit=Truncation(0.5), explore=NOISE),
    "explore only": dict(exploit=KeepOwn(), explore=NOISE),
    "exploit only": dict(exploit=Truncation(0.5), explore=NoExplore()),
    "grid search": dict(exploit=NoExploit(), explore=NoExplore()),
}


def run_method(
    options: dict, seed: int, steps: int, root: Path
) -> tuple[float, float, list[float]]:
    """(first step at which any member reaches TARGET (inf if never), best final Q,
    the population's best Q at each step)."""
    run_dir = root / f"{len(list(root.iterdir()))}"
    result = firepbt.run(
        Toy, toy_space(), total_steps=steps, population=2, ready_every=READY, eval_every=1,
        executor="inprocess", run_dir=run_dir, seed=seed, initial_hyperparameters=INITIAL,
        **options,
    )  # fmt: skip
    store = Store.open(run_dir)
    points = [p for _, p in store.points()]
    store.close()
    reached = [p.step for p in points if p.score >= TARGET]
    best_at = [-math.inf] * (steps + 1)
    for p in points:
        best_at[p.step] = max(best_at[p.step], p.score)
    curve = [best_at[s] for s in range(1, steps + 1)]
    return (min(reached) if reached else math.inf), result.best_score, curve


def plot(curves: dict[str, list[list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, runs in curves.items():
        arr = np.array(runs)
        steps = np.arange(1, arr.shape[1] + 1)
        mean, std = arr.mean(axis=0), arr.std(axis=0)
        ax.plot(steps, mean, label=name)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.axhline(TARGET, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("step")
    ax.set_ylabel("best Q in the population")
    ax.set_ylim(-0.5, 1.25)
    ax.set_title("PBT toy example (mean ± std over seeds)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _mean_std(xs: list[float]) -> str:
    finite = [x for x in xs if math.isfinite(x)]
    if not finite:
        return "never"
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{statistics.mean(finite):.1f} ± {sd:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "toy_figure2.md"))
    args = parser.parse_args()
    started = time.time()
    rows = []
    curves: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in METHODS.items():
            root = Path(tmp) / name.replace(" ", "_")
            root.mkdir()
            outcomes = [run_method(options, seed, args.steps, root) for seed in range(args.seeds)]
            hits = [s for s, _, _ in outcomes]
            finals = [q for _, q, _ in outcomes]
            curves[name] = [c for _, _, c in outcomes]
            rows.append((
                name,
                f"{sum(math.isfinite(h) for h in hits)}/{args.seeds}",
                _mean_std(hits),
                f"{statistics.mean(finals):.4f} ± {statistics.stdev(finals):.4f}",
            ))  # fmt: skip
    header = ("method", f"seeds reaching Q ≥ {TARGET}", "steps to reach it (mean ± std)",
              "final best Q (mean ± std)")  # fmt: skip
    lines = [
        f"# PBT toy example (Figure 2 of the PBT paper): {args.seeds} seeds, {args.steps} steps, "
        f"ready every {READY} steps",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"Command: `python benchmarks/toy_figure2.py --seeds {args.seeds} --steps {args.steps}`; "
        f"wall time {time.time() - started:.1f} s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    plot(curves, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
