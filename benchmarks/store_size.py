"""Bytes a run's store costs per segment and per curve point (issue 28, item 4).

The run: PBT on ``firepbt.examples.sleep:Sleep`` with no sleep (a trainable that costs nothing),
200 steps in segments of 10 with one evaluation each (one point per segment), in process, for
64 and 256 members. Each runs in a fresh process with the firepbt package of this checkout,
and with ``--baseline DIR`` also with that of another checkout (its ``src``), side by side.
``store_bytes`` measures a store as SQLite would write it anew: the size of a ``VACUUM INTO``
copy (the store itself is left as it is); ``--objects`` adds where those bytes go, by table
and index (SQLite's ``dbstat``).

    python benchmarks/store_size.py [--members 64,256] [--baseline DIR] [--objects]

Writes ``benchmarks/results/store_size.md``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
STORE_FILE = "firepbt.sqlite"

RUN = (
    "import sys, firepbt; from firepbt import Uniform; from firepbt.examples.sleep import Sleep; "
    "firepbt.run(Sleep, {'x': Uniform(0.0, 1.0), 'seconds': 0.0}, total_steps=200, "
    "population=int(sys.argv[2]), ready_every=10, executor='inprocess', run_dir=sys.argv[1], "
    "progress=False)"
)


def store_bytes(run_dir: Path) -> dict[str, float]:
    """The bytes of ``run_dir``'s store as SQLite writes it anew (a ``VACUUM INTO`` copy: no
    free pages, no write-ahead log), its segments and curve points, and bytes per each. Reads
    a store of any version; changes nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / STORE_FILE
        conn = sqlite3.connect(f"file:{Path(run_dir) / STORE_FILE}?mode=ro", uri=True)
        try:
            conn.execute("VACUUM INTO ?", (str(copy),))
            segments = conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
            points = conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        finally:
            conn.close()
        size = copy.stat().st_size
    return {
        "bytes": float(size),
        "segments": float(segments),
        "points": float(points),
        "per_segment": size / segments if segments else 0.0,
        "per_point": size / points if points else 0.0,
    }


def objects(run_dir: Path) -> dict[str, int]:
    """Bytes of each table and index of ``run_dir``'s store, rewritten as ``store_bytes`` does."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / STORE_FILE
        conn = sqlite3.connect(f"file:{Path(run_dir) / STORE_FILE}?mode=ro", uri=True)
        try:
            conn.execute("VACUUM INTO ?", (str(copy),))
        finally:
            conn.close()
        conn = sqlite3.connect(copy)
        try:
            rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        finally:
            conn.close()
    return {str(name): int(size) for name, size in rows}


def _run(src: Path, run_dir: Path, members: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-c", RUN, str(run_dir), str(members)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)


def _commit(src: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(src), "log", "-1", "--format=%h"], capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="64,256")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure beside")
    parser.add_argument("--objects", action="store_true", help="bytes by table and index")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "store_size.md")
    args = parser.parse_args(argv)
    trees = {f"this tree ({_commit(SRC)})": SRC}
    if args.baseline is not None:
        base = args.baseline / "src"
        trees = {f"baseline ({_commit(base)})": base, **trees}
    rows, by_object = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for members in (int(m) for m in args.members.split(",")):
            for i, (name, src) in enumerate(trees.items()):
                run_dir = Path(tmp) / f"{i}-{members}"
                _run(src, run_dir, members)
                b = store_bytes(run_dir)
                rows.append(
                    f"| {name} | {members} | {b['segments']:.0f} | {b['points']:.0f} | "
                    f"{b['bytes']:,.0f} | {b['per_segment']:.1f} | {b['per_point']:.1f} |"
                )
                print(rows[-1], flush=True)
                if args.objects:
                    by_object[(name, members)] = (objects(run_dir), b["segments"])
    lines = [
        "# Store bytes per segment and per point",
        "",
        "`python benchmarks/store_size.py"
        + (" --baseline DIR" if args.baseline else "")
        + (" --objects" if args.objects else "")
        + "`: PBT on Sleep (no sleep), 200 steps, segments of 10 with one evaluation each, "
        "in process; bytes of a `VACUUM INTO` copy of the store (`store_bytes`).",
        "",
        "| firepbt | members | segments | points | bytes | per segment | per point |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    for (name, members), (sizes, segments) in by_object.items():
        lines += ["", f"## Where the bytes go: {name}, {members} members", ""]
        lines += ["| table or index | bytes | per segment |", "|---|---:|---:|"]
        for obj, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {obj} | {size:,} | {size / segments:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
