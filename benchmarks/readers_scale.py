"""Every reader of a run's store, timed on stores of 10^4, 10^5 and 10^6 curve points.

The stores are written directly through the store's API (``long_store.py``: a FIRE PBT run of
40 members in two sub-populations and 8 evaluators, one evaluation per segment, exploits,
assignments, hand-overs, a few failures and warnings), not trained, and kept in ``--cache``
between runs. Each reader runs in a fresh process, as a user runs it:

- ``status``: ``firepbt status RUN_DIR`` (also its number of lines);
- ``report``: ``firepbt report RUN_DIR`` (every figure and the HTML page; also its size);
- ``export csv`` and ``export json``: ``firepbt export RUN_DIR --format …``;
- ``result``: the result read model (``RunResult``: the best member, its schedule);
- ``lineage``: the best member's schedule and ancestry (what ``replay`` reads before training).

``--baseline DIR`` times the same readers with the firepbt package of another checkout (its
``src``), on the same stores, side by side; a reader that passes ``--timeout`` is shown as
``> T``. The first open of a store made by an older firepbt adds its indexes, so each reader
is timed on a store that has already been opened once.

    python benchmarks/readers_scale.py [--sizes 10000,100000,1000000] [--baseline DIR]

Writes ``benchmarks/results/readers_scale.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

READERS = {
    "open": "from firepbt.store import Store; Store.open(RUN).close()",
    "status": "from firepbt.cli import main; main(['status', RUN])",
    "report": "from firepbt.cli import main; main(['report', RUN, '--out', OUT])",
    "export csv": "from firepbt.cli import main; main(['export', RUN, '--format', 'csv', "
    "'--out', OUT])",
    "export json": "from firepbt.cli import main; main(['export', RUN, '--format', 'json', "
    "'--out', OUT])",
    "result": "from firepbt.store import Store; from firepbt.results import result_from_store; "
    "from pathlib import Path; s = Store.open(RUN); "
    "print(result_from_store(s, Path(RUN)).best_member)",
    "lineage": "import firepbt; from firepbt.store import Store; "
    "from firepbt.results import result_from_store; from firepbt.lineage import ancestry; "
    "from pathlib import Path; s = Store.open(RUN); "
    "b = result_from_store(s, Path(RUN)).best_member; "
    "print(len(firepbt.schedule(s, b)), len(ancestry(s, b)))",
}


def _store(cache: Path, points: int) -> Path:
    run_dir = cache / f"fire-{points}"
    if (run_dir / "firepbt.sqlite").exists() and (run_dir / ".complete").exists():
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    sys.path.insert(0, str(SRC))
    sys.path.insert(0, str(HERE))
    from long_store import write_long_store

    started = time.perf_counter()
    write_long_store(run_dir, points).close()
    (run_dir / ".complete").write_text(f"{time.perf_counter() - started:.1f} s to write\n")
    return run_dir


def _drop_indexes(run_dir: Path) -> None:
    """Make the store as an older firepbt left it: without the indexes this one adds."""
    sys.path.insert(0, str(SRC))
    from firepbt.store._rows import INDEXES

    conn = sqlite3.connect(run_dir / "firepbt.sqlite")
    for name in re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", INDEXES):
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    conn.close()


def _time(src: Path, reader: str, run_dir: Path, timeout: float) -> tuple[float | None, str]:
    """(seconds, stdout) of one reader in a fresh process with the package in ``src``."""
    with tempfile.TemporaryDirectory() as out:
        code = f"RUN = {str(run_dir)!r}; OUT = {out!r}; " + READERS[reader]
        env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "120"}
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True,
                timeout=timeout, cwd=out,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return None, ""
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{reader} failed on {run_dir}:\n{done.stderr[-2000:]}")
        html = Path(out) / "report.html"
        extra = f" html {html.stat().st_size / 1e3:.0f} kB" if html.exists() else ""
        return seconds, done.stdout + extra


def _cell(seconds: float | None, timeout: float) -> str:
    return f"> {timeout:.0f}" if seconds is None else f"{seconds:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--baseline", type=Path, help="another checkout to time side by side")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--readers", default=",".join(READERS), help="which readers, comma-separated"
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "readers-scale")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "readers_scale.md")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    readers = [r for r in args.readers.split(",") if r]
    unknown = sorted(set(readers) - set(READERS))
    if unknown:
        parser.error(f"no reader {unknown}; choose from {list(READERS)}")
    args.cache.mkdir(parents=True, exist_ok=True)
    sources = [("this", SRC)] + ([("baseline", args.baseline / "src")] if args.baseline else [])
    rows = []
    for points in sizes:
        run_dir = _store(args.cache, points)
        mb = (run_dir / "firepbt.sqlite").stat().st_size / 1e6
        print(
            f"store of {points} points: {mb:.0f} MB ({(run_dir / '.complete').read_text().strip()})"
        )
        _drop_indexes(run_dir)  # the baseline reads the store as it knew it
        for name, src in sorted(sources, key=lambda x: x[0] != "baseline"):
            if name == "this":  # a store's first open by this firepbt adds its indexes
                seconds, _ = _time(src, "open", run_dir, args.timeout)
                rows.append((points, "first open", name, seconds, "adds the indexes"))
                print(f"  {name:8} {'first open':12} {_cell(seconds, args.timeout):>8} s")
            for reader in readers:
                seconds, out = _time(src, reader, run_dir, args.timeout)
                note = ""
                if reader == "status" and seconds is not None:
                    note = f"{out.count(chr(10))} lines"
                if reader == "report" and seconds is not None:
                    note = out.rsplit("html", 1)[-1].strip() if "html" in out else ""
                rows.append((points, reader, name, seconds, note))
                print(f"  {name:8} {reader:12} {_cell(seconds, args.timeout):>8} s  {note}")
    _write(args.out, rows, sizes, sources, args.timeout)


def _write(out: Path, rows: list, sizes: list[int], sources: list, timeout: float) -> None:
    names = [n for n, _ in sources]
    head = "| reader | source | " + " | ".join(f"{p:,} points (s)" for p in sizes)
    head += f" | s per point at {sizes[-1]:,} ÷ at {sizes[0]:,} | notes at {sizes[-1]:,} |"
    lines = [
        "# Readers on long runs",
        "",
        "`python benchmarks/readers_scale.py` (this machine, one run, each reader in a fresh "
        "process). Stores written by `benchmarks/long_store.py`: FIRE PBT, 40 members in two "
        "sub-populations and 8 evaluators, one point per segment.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for reader in dict.fromkeys(r for _, r, *_ in rows):
        for name in names:
            if not any(r == reader and n == name for _, r, n, *_ in rows):
                continue
            cells = {p: s for p, r, n, s, _ in rows if r == reader and n == name}
            notes = [nt for p, r, n, _, nt in rows if r == reader and n == name and p == sizes[-1]]
            first, last = cells.get(sizes[0]), cells.get(sizes[-1])
            ratio = "–"
            if first and last and len(sizes) > 1:
                ratio = f"{(last / sizes[-1]) / (first / sizes[0]):.2f}"
            values = " | ".join(_cell(cells.get(p), timeout) for p in sizes)
            lines.append(f"| {reader} | {name} | {values} | {ratio} | {''.join(notes)} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
