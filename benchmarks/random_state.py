"""What per-member random state costs per segment on MNIST-1D.

Every segment swaps the member's global generators in and the process's back out
(``firepbt.random_state``): one capture of the process's state, one seeding or restore of the
member's, one capture of the member's state after training (kept with its checkpoint) and one
restore of the process's. This benchmark measures it two ways, on the shipped MNIST-1D trainable
(``examples/mnist1d_fire.toml``'s segment: 200 steps, evaluated every 40):

- *side by side*: the same in-process PBT run (4 members × 800 steps, 16 segments) with the random
  state on and switched off (its functions replaced by no-ops in this process), alternately,
  ``--repeats`` times each; wall time per segment, medians;
- *alone*: the four calls a segment makes, timed 2,000 times with numpy and torch loaded.

    python benchmarks/random_state.py [--repeats 5]

Writes ``benchmarks/results/random_state.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import firepbt
from firepbt import random_state
from firepbt.examples.mnist1d import MNIST1D, mnist1d_space

RESULTS = Path(__file__).parent / "results" / "random_state.md"
TOTAL, READY, EVAL, POPULATION = 800, 200, 40, 4


@contextlib.contextmanager
def switched_off() -> Iterator[None]:
    """The random state's functions as no-ops (what a segment cost before it existed)."""
    saved = random_state.capture, random_state.restore, random_state.seed_all
    random_state.capture = lambda: {}  # type: ignore[assignment]
    random_state.restore = lambda state: None  # type: ignore[assignment]
    random_state.seed_all = lambda seed, skip=frozenset(): None  # type: ignore[assignment]
    try:
        yield
    finally:
        random_state.capture, random_state.restore, random_state.seed_all = saved


def one_run(root: Path, name: str) -> float:
    """Wall seconds per segment of one in-process run."""
    started = time.perf_counter()
    firepbt.run(
        MNIST1D,
        mnist1d_space(),
        total_steps=TOTAL,
        population=POPULATION,
        ready_every=READY,
        eval_every=EVAL,
        metric="val_accuracy",
        mode="max",
        seed=0,
        executor="inprocess",
        run_dir=root / name,
        progress=False,
    )
    return (time.perf_counter() - started) / (POPULATION * TOTAL // READY)


def calls_alone(repeats: int = 2000) -> float:
    """Seconds for a segment's four random-state calls, with numpy and torch loaded."""
    import numpy  # noqa: F401
    import torch  # noqa: F401

    started = time.perf_counter()
    for _ in range(repeats):
        outer = random_state.capture()
        random_state.seed_all(12345)
        random_state.capture()
        random_state.restore(outer)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    on: list[float] = []
    off: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one_run(root, "warm-up")
        for k in range(args.repeats):
            on.append(one_run(root, f"on-{k}"))
            with switched_off():
                off.append(one_run(root, f"off-{k}"))
            print(f"repeat {k + 1}: on {1e3 * on[-1]:.1f}, off {1e3 * off[-1]:.1f} ms per segment")
    alone = calls_alone()
    med_on, med_off = statistics.median(on), statistics.median(off)
    ratio = statistics.median(a / b for a, b in zip(on, off, strict=True))
    rows = [
        "| measure | per segment | share of a segment |",
        "|---|---|---|",
        f"| segment, random state off (median of {args.repeats}) | {1e3 * med_off:.1f} ms | |",
        f"| segment, random state on (median of {args.repeats}) | {1e3 * med_on:.1f} ms | "
        f"{100 * (ratio - 1):+.2f} % (median of the runs' on/off ratios; noise is larger) |",
        f"| the four random-state calls alone | {1e6 * alone:.0f} µs | "
        f"{100 * alone / med_off:.3f} % |",
    ]
    per_run = ", ".join(f"{1e3 * a:.1f}/{1e3 * b:.1f}" for a, b in zip(on, off, strict=True))
    text = "\n".join(
        [
            "# Per-member random state: cost per segment on MNIST-1D",
            "",
            f"In-process PBT, {POPULATION} members × {TOTAL} steps, ready every {READY}, evaluated "
            f"every {EVAL} (16 segments per run), on and off alternately; "
            "`python benchmarks/random_state.py`.",
            "",
            *rows,
            "",
            f"Per run, ms per segment on/off: {per_run}.",
            "",
        ]
    )
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
