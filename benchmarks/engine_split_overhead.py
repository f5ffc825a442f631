"""The NQM examples' wall time with this checkout's engine against another checkout's (the code
before a change), side by side: runs alternate between the two, each a fresh Python process
timed as ``overhead.py`` times it (``overhead.py --one``), in-process and on the process pool.

    git worktree add /tmp/before <commit>
    python benchmarks/engine_split_overhead.py --before /tmp/before [--repeats 5]

Writes ``benchmarks/results/engine_split_overhead.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CONFIGS = ("nqm_pbt.toml", "nqm_fire.toml")
EXECUTORS = ("inprocess", "process")
OUT = HERE / "benchmarks" / "results" / "engine_split_overhead.md"


def one(tree: Path, config: str, executor: str, run_dir: Path) -> float:
    """Wall seconds of one run of ``config`` on ``executor`` with the code of ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    out = subprocess.run(
        [sys.executable, str(tree / "benchmarks" / "overhead.py"), "--one", config, executor,
         str(run_dir)],
        check=True, capture_output=True, text=True, env=env, cwd=tree,
    ).stdout  # fmt: skip
    return float(json.loads(out.strip().splitlines()[-1])["wall"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the old code")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": HERE}
    walls: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for config in CONFIGS:
                for executor in EXECUTORS:
                    order = ("before", "after") if r % 2 == 0 else ("after", "before")
                    for name in order:
                        run_dir = Path(tmp) / f"{name}-{config}-{executor}-{r}"
                        wall = one(trees[name], config, executor, run_dir)
                        walls.setdefault((config, executor, name), []).append(wall)
                        print(f"{config} {executor} {name}: {wall:.2f} s", flush=True)
    lines = [
        "# The engine split: NQM examples' wall time before and after, side by side",
        "",
        f"`python benchmarks/engine_split_overhead.py --before <checkout> --repeats "
        f"{args.repeats}`: runs alternate between the two checkouts (each a fresh process, timed "
        "from the call that starts the run); medians, and each repeat's seconds.",
        "",
        "| example | executor | before (median s) | after (median s) | after / before "
        "| before, per repeat | after, per repeat |",
        "|---|---|---|---|---|---|---|",
    ]
    for config in CONFIGS:
        for executor in EXECUTORS:
            b, a = walls[(config, executor, "before")], walls[(config, executor, "after")]
            mb, ma = statistics.median(b), statistics.median(a)
            lines.append(
                f"| {config} | {executor} | {mb:.2f} | {ma:.2f} | {ma / mb:.2f}x | "
                f"{', '.join(f'{x:.2f}' for x in b)} | {', '.join(f'{x:.2f}' for x in a)} |"
            )
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
