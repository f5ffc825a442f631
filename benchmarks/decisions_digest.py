"""Digests of what a run records: its decisions and its curve points, to show a change to the
engine leaves behaviour identical. Runs ``examples/nqm_pbt.toml`` and ``nqm_fire.toml`` with
seeds 0 and 1, in-process and on the process pool (2 workers), each in a fresh Python process,
and prints one sha256 per run of

- every decision in the order recorded (member, step, kind, donor, source step, hyperparameters);
- every curve point, by member and step (score and every metric, to the bit).

    python benchmarks/decisions_digest.py [--out benchmarks/results/decisions_digest.md]
    python benchmarks/decisions_digest.py --compare benchmarks/results/decisions_digest.md

``--compare`` reruns and says, per run, whether both digests match the file's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIGS = ("nqm_pbt.toml", "nqm_fire.toml")
SEEDS = (0, 1)
EXECUTORS = ("inprocess", "process")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "decisions_digest.md"


def one_run(config: str, seed: int, executor: str, run_dir: str) -> None:
    """Run one example and print its two digests as JSON (in a subprocess)."""
    from firepbt.api import run_config
    from firepbt.config import RunConfig
    from firepbt.config import tomllib as toml
    from firepbt.store import Store

    data = toml.loads((EXAMPLES / config).read_text())
    data["executor"] = {**data.get("executor", {}), "kind": executor}
    data["run_dir"] = run_dir
    data["seed"] = seed
    run_config(RunConfig.from_mapping(data))
    store = Store.open(Path(run_dir))
    decisions = [
        (d.member, d.step, d.kind, d.donor, d.source_step, d.hyperparameters)
        for d in store.decisions()
    ]
    points = sorted(
        (member, p.step, p.score.hex(), sorted((k, v.hex()) for k, v in p.metrics.items()))
        for member, p in store.points()
    )
    store.close()
    print(
        json.dumps(
            {
                "decisions": digest(decisions),
                "points": digest(points),
                "counts": [len(decisions), len(points)],
            }
        )
    )


def digest(rows: object) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def table(root: Path) -> list[tuple[str, int, str, str, str, str]]:
    rows = []
    for config in CONFIGS:
        for seed in SEEDS:
            for executor in EXECUTORS:
                run_dir = root / f"{config}-{seed}-{executor}"
                out = subprocess.run(
                    [sys.executable, __file__, "--one", config, str(seed), executor, str(run_dir)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                found = json.loads(out.strip().splitlines()[-1])
                counts = "{} decisions, {} points".format(*found["counts"])
                rows.append((config, seed, executor, found["decisions"], found["points"], counts))
                print(" | ".join(map(str, rows[-1])), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--compare", type=Path, default=None)
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        config, seed, executor, run_dir = args.one
        one_run(config, int(seed), executor, run_dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = table(Path(tmp))
    if args.compare is not None:
        expected = {
            tuple(cell.strip(" `") for cell in line.strip("|").split("|"))[:5]
            for line in args.compare.read_text().splitlines()
            if line.startswith("| nqm")
        }
        same = [tuple(map(str, row[:5])) in expected for row in rows]
        for row, ok in zip(rows, same, strict=True):
            print(f"{row[0]} seed {row[1]} {row[2]}: {'identical' if ok else 'DIFFERENT'}")
        sys.exit(0 if all(same) else 1)
    lines = [
        "# Decisions and points recorded, as digests",
        "",
        "`python benchmarks/decisions_digest.py`: sha256 (first 16 hex digits) of every decision",
        "in recorded order and every curve point by member and step, per run.",
        "",
        "| example | seed | executor | decisions | points | rows |",
        "|---|---|---|---|---|---|",
        *(f"| {c} | {s} | {e} | `{d}` | `{p}` | {n} |" for c, s, e, d, p, n in rows),
    ]
    out = args.out or DEFAULT_OUT
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
