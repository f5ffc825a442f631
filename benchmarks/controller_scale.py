"""The controller at populations of thousands: barriers, decisions, the controller's
time per segment and the store's bytes, for each strategy at 64 to 4,096 members.

Each run is a real ``firepbt.run`` on the in-process executor with a trainable that costs
nothing (``firepbt.examples.sleep.Sleep``, ``seconds = 0``), every member ready ``--rounds``
times (``ready_every`` 20 steps), in a fresh Python process with the package of one checkout
(``PYTHONPATH=<checkout>/src``). In that process the strategy class's ``ready`` is wrapped by a
timer before the run, so every call the loop makes is timed as the loop makes it:

- longest ``ready()``: the longest single call. In a synchronous run the call that releases
  the barrier decides for everyone, so this is the longest barrier;
- mean decision: the time spent in ``ready()`` over the decisions it returned (a call at a
  barrier that is not released returns none);
- controller ms per segment: (the run's wall time − the time done segments spent training, by
  their recorded start and finish) ÷ done segments: what the loop, the strategy and the store
  cost per segment, end to end;
- the store's bytes per segment and per point (``store_size.store_bytes`` where
  ``benchmarks/store_size.py`` exists; this script's ``store_bytes`` otherwise).

Strategies: PBT synchronous (truncation) and asynchronous, random search, FIRE PBT synchronous
and asynchronous (4 sub-populations, one evaluator per 8 members, an evaluation every 5 steps,
so evaluators run and their curves are compared from the second round on). PBT and random
search run at 64, 256, 1,024, 2,048 and 4,096 members, FIRE PBT at 64, 128, 256, 512 and 1,024.

``--vectorised`` adds a population of a thousand end to end: 1,024 NQM members
(``examples/nqm_pbt.toml``, synchronous PBT) on the process pool with 2 workers of 512 slots
each (``NQMVectorised``), and the controller's share of the wall time: its own CPU time
(``getrusage(RUSAGE_SELF)`` around the run) over the wall time.

``--baseline DIR`` runs every measurement with another checkout's ``src`` too, side by side.
A run that passes ``--limit`` seconds is shown as ``> limit``, and larger sizes of that
strategy and checkout are not tried.

    python benchmarks/controller_scale.py [--baseline DIR] [--sizes 64,256]
        [--strategies pbt-sync fire-sync] [--limit 300] [--no-vectorised]

Writes ``benchmarks/results/controller_scale.md`` and ``controller_scale.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
EXAMPLES = HERE.parent / "examples"

READY_EVERY = 20
FIRE_OPTIONS = {"subpopulations": 4, "eval_every": 5}  # evaluators: one per 8 members
PBT_SIZES = (64, 256, 1024, 2048, 4096)
FIRE_SIZES = (64, 128, 256, 512, 1024)

# name: (firepbt.run's strategy, the strategy class in firepbt.strategies, options, sizes)
STRATEGIES: dict[str, tuple[str, str, dict[str, Any], tuple[int, ...]]] = {
    "pbt-sync": ("pbt", "PBT", {"synchrony": "sync"}, PBT_SIZES),
    "pbt-async": ("pbt", "PBT", {"synchrony": "async"}, PBT_SIZES),
    "random": ("random", "RandomSearch", {}, PBT_SIZES),
    "fire-sync": ("fire", "FirePBT", {**FIRE_OPTIONS, "synchrony": "sync"}, FIRE_SIZES),
    "fire-async": ("fire", "FirePBT", {**FIRE_OPTIONS, "synchrony": "async"}, FIRE_SIZES),
}

VECTORISED = {"population": 1024, "workers": 2, "steps": 600, "ready_every": 100}


# -- in the measuring subprocess ----------------------------------------------------------------


def _timed_ready(cls: type) -> list[tuple[float, int]]:
    """Wrap ``cls.ready`` with a timer; the list it appends (seconds, decisions) to per call."""
    calls: list[tuple[float, int]] = []
    ready = cls.ready

    def timed(self: Any, member: int, step: int) -> Any:
        started = time.perf_counter()
        decisions = ready(self, member, step)
        calls.append((time.perf_counter() - started, len(decisions)))
        return decisions

    cls.ready = timed
    return calls


def _segments(run_dir: Path) -> tuple[int, float]:
    """(done segments, seconds they spent training by their recorded start and finish)."""
    from firepbt import Store

    store = Store.open(run_dir)
    try:
        count, busy = store._conn.execute(
            "SELECT COUNT(*), SUM(finished - started) FROM segments WHERE status = 'done'"
        ).fetchone()
    finally:
        store.close()
    return int(count), float(busy or 0.0)


def _store_bytes(run_dir: Path) -> dict[str, Any]:
    """``store_bytes`` of ``benchmarks/store_size.py`` where that file exists and reads this
    checkout's store; this script's own ``store_bytes`` otherwise. Says which."""
    try:
        import store_size

        return {**store_size.store_bytes(run_dir), "method": "store_size.py"}
    except Exception:  # absent, or written for a store this checkout does not have
        return {**store_bytes(run_dir), "method": "fallback"}


def store_bytes(run_dir: Path) -> dict[str, Any]:
    """A local stand-in for ``benchmarks/store_size.store_bytes`` (same name and keys), used
    where that file does not exist: the store's size as a compact copy (``VACUUM INTO`` a
    temporary file: no free pages, no write-ahead log), over its segments (every row) and its
    points."""
    conn = sqlite3.connect(run_dir / "firepbt.sqlite")
    try:
        segments = conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
        points = conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "copy.sqlite"
            conn.execute("VACUUM INTO ?", (str(copy),))
            size = copy.stat().st_size
    finally:
        conn.close()
    return {
        "bytes": size,
        "segments": segments,
        "points": points,
        "per_segment": size / segments if segments else None,
        "per_point": size / points if points else None,
    }


def measure_strategy(name: str, population: int, rounds: int, run_dir: Path) -> dict[str, Any]:
    """One in-process run of ``name`` at ``population`` members, timed (in a subprocess)."""
    import warnings

    import firepbt
    import firepbt.strategies
    from firepbt.examples.sleep import Sleep

    strategy, cls_name, options, _ = STRATEGIES[name]
    calls = _timed_ready(getattr(firepbt.strategies, cls_name))
    if strategy == "fire":
        options = {**options, "evaluators": max(2, population // 8)}
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        firepbt.run(
            Sleep,
            {"x": firepbt.Uniform(0.0, 1.0), "seconds": 0.0},
            total_steps=rounds * READY_EVERY,
            population=population,
            ready_every=READY_EVERY,
            strategy=strategy,
            executor="inprocess",
            run_dir=run_dir,
            progress=False,
            **options,
        )
    wall = time.perf_counter() - started
    segments, busy = _segments(run_dir)
    return {
        "firepbt": firepbt.__file__,
        "wall": wall,
        "segments": segments,
        "busy": busy,
        "ready_calls": len(calls),
        "decisions": sum(n for _, n in calls),
        "ready_total": sum(t for t, _ in calls),
        "ready_longest": max((t for t, _ in calls), default=0.0),
        "warnings": sorted({type(w.message).__name__ for w in caught}),
        "store": _store_bytes(run_dir),
    }


def measure_vectorised(population: int, run_dir: Path) -> dict[str, Any]:
    """``population`` NQM members on the process pool, vectorised, and the controller's CPU
    time (in a subprocess)."""
    import resource

    import firepbt
    import firepbt.strategies
    from firepbt.api import run_config
    from firepbt.config import RunConfig
    from firepbt.config import tomllib as toml

    data = toml.loads((EXAMPLES / "nqm_pbt.toml").read_text())
    data["trainable"] = "firepbt.examples.nqm_vectorised:NQMVectorised"
    data["run_dir"] = str(run_dir)
    data["strategy"] = {
        **data["strategy"],
        "population": population,
        "ready_every": VECTORISED["ready_every"],
    }
    data["budget"] = {"steps": VECTORISED["steps"]}
    workers = VECTORISED["workers"]
    slots = -(-population // workers)
    data["executor"] = {"kind": "process", "workers": workers, "slots": slots}
    calls = _timed_ready(firepbt.strategies.PBT)
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run_config(RunConfig.from_mapping(data), progress=False)
    wall = time.perf_counter() - started
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the joined workers
    segments, _ = _segments(run_dir)
    return {
        "firepbt": firepbt.__file__,
        "population": population,
        "slots": slots,
        "wall": wall,
        "segments": segments,
        "cpu_controller": _cpu(own_after) - _cpu(own),
        "cpu_workers": _cpu(children_after) - _cpu(children),
        "ready_calls": len(calls),
        "decisions": sum(n for _, n in calls),
        "ready_total": sum(t for t, _ in calls),
        "ready_longest": max((t for t, _ in calls), default=0.0),
        "store": _store_bytes(run_dir),
    }


def _cpu(usage: Any) -> float:
    return float(usage.ru_utime + usage.ru_stime)


# -- in the driving process ---------------------------------------------------------------------


def _measure(src: Path, job: dict[str, Any], limit: float) -> dict[str, Any]:
    """Run ``job`` in a fresh process with the package in ``src``: its entry in the results,
    ``{"result": ..., "seconds": ...}``, the result None past ``limit`` or on an error (then
    ``"error"`` holds the end of its standard error)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        job = {**job, "run_dir": str(Path(tmp) / "run")}
        env = {**os.environ, "PYTHONPATH": str(src)}
        # a session of its own, so that a run past the limit is stopped with its workers
        proc = subprocess.Popen(
            [sys.executable, __file__, "--one", json.dumps(job)], env=env, cwd=tmp,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"result": None, "seconds": time.perf_counter() - started}
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        return {"result": None, "seconds": seconds, "error": stderr[-3000:]}
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    if not Path(result["firepbt"]).resolve().is_relative_to(src.resolve()):
        raise RuntimeError(f"{job} imported {result['firepbt']}, not the package in {src}")
    return {"result": result, "seconds": seconds}


def _gone(entry: dict[str, Any], limit: float) -> str:
    """The cell of a run without a result."""
    if entry.get("skipped"):
        return "skipped"
    return "failed" if entry.get("error") else f"> {limit:.0f} s"


def _derived(r: dict[str, Any]) -> dict[str, float | None]:
    """The table's per-segment and per-decision figures of one run."""
    segments = r["segments"]
    return {
        "longest_ms": r["ready_longest"] * 1e3,
        "per_decision_ms": r["ready_total"] / r["decisions"] * 1e3 if r["decisions"] else None,
        "wall_ms_segment": r["wall"] / segments * 1e3 if segments else None,
        "controller_ms_segment": (r["wall"] - r["busy"]) / segments * 1e3 if segments else None,
        "bytes_segment": r["store"]["per_segment"],
        "bytes_point": r["store"]["per_point"],
    }


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _targets(results: dict[str, Any], limit: float) -> list[tuple[str, str, bool | None]]:
    """(target, what this checkout measured, met) for each target."""

    def this(strategy: str, size: int) -> dict[str, Any] | None:
        return results["this"].get(f"{strategy}@{size}")

    def figure(strategy: str, size: int, key: str) -> float | None:
        r = this(strategy, size)
        return None if not r or r.get("result") is None else _derived(r["result"])[key]

    def shown(strategy: str, size: int, key: str, unit: str, scale: float = 1.0) -> str:
        r = this(strategy, size)
        if r is None:
            return "not run"
        value = figure(strategy, size, key)
        return _gone(r, limit) if value is None else f"{value * scale:,.2f} {unit}"

    rows: list[tuple[str, str, bool | None]] = []

    def at_most(label: str, strategy: str, size: int, key: str, bound: float, unit: str) -> None:
        value = figure(strategy, size, key)
        met = None if this(strategy, size) is None else (value is not None and value <= bound)
        rows.append((label, shown(strategy, size, key, unit), met))

    def ratio(label: str, strategy: str, big: int, small: int, bound: float) -> None:
        a = figure(strategy, big, "controller_ms_segment")
        b = figure(strategy, small, "controller_ms_segment")
        if this(strategy, big) is None or this(strategy, small) is None:
            rows.append((label, "not run", None))
            return
        if a is None or b is None:
            gone = [_gone(r, limit) for r in (this(strategy, big), this(strategy, small)) if r]
            rows.append((label, " / ".join(gone), False))
            return
        rows.append((label, f"{a:.2f} / {b:.2f} ms = {a / b:.2f}×", a / b <= bound))

    at_most("PBT sync longest barrier at 4,096 ≤ 50 ms", "pbt-sync", 4096, "longest_ms", 50, "ms")
    at_most("FIRE sync longest barrier at 512 ≤ 0.5 s", "fire-sync", 512, "longest_ms", 500, "ms")
    at_most("FIRE async mean decision at 128 ≤ 5 ms", "fire-async", 128, "per_decision_ms", 5, "ms")
    ratio("controller ms/segment: PBT sync 2,048 ≤ 1.2 × 256", "pbt-sync", 2048, 256, 1.2)
    ratio("controller ms/segment: FIRE sync 512 ≤ 1.5 × 64", "fire-sync", 512, 64, 1.5)
    # at one point per segment: the PBT and random search runs (FIRE's evaluators report several)
    label = "store ≤ 250 bytes per segment at one point per segment (every PBT and random run)"
    stores = [
        (r["result"]["store"]["per_segment"], key)
        for key, r in results["this"].items()
        if key.startswith(("pbt", "random"))
        and r.get("result") is not None
        and r["result"]["store"]["per_segment"] is not None
    ]
    if stores:
        worst, where = max(stores)
        rows.append((label, f"{worst:.0f} B ({where})", worst <= 250))
    else:
        rows.append((label, "not run", None))
    vec = results["this"].get("vectorised")
    label = "the vectorised NQM run: controller CPU ≤ 10 % of wall"
    if vec is None:
        rows.append((label, "not run", None))
    elif vec.get("result") is None:
        rows.append((label, _gone(vec, limit), False))
    else:
        share = vec["result"]["cpu_controller"] / vec["result"]["wall"]
        label = f"{vec['result']['population']:,} NQM members, vectorised: controller CPU ≤ 10 %"
        rows.append((label + " of wall", f"{share:.1%}", share <= 0.10))
    return rows


def _write(
    out: Path, results: dict[str, Any], args: argparse.Namespace, command: str, show: bool
) -> None:
    """Write the tables (and the raw numbers beside them); print them if ``show``."""
    sources = [s for s in ("this", "baseline") if s in results]
    head = (
        "| strategy | members | source | longest ready() (ms) | mean per decision (ms) "
        "| ready() calls / decisions | wall (s) | segments | wall ms / segment "
        "| controller ms / segment | store B / segment | store B / point |"
    )
    lines = [
        "# The controller at populations of thousands",
        "",
        f"`{command}` — {datetime.date.today().isoformat()}, this machine (2 cores, shared), "
        "each run a fresh Python process with one checkout's `src`: "
        + ", ".join(f"{s} = `{results['sources'][s]}`" for s in sources)
        + ".",
        "",
        f"In-process runs of `Sleep` (0 s a step), ready every {READY_EVERY} steps, "
        f"{args.rounds} ready points per member. FIRE PBT: 4 sub-populations, one evaluator per "
        "8 members, an evaluation every 5 steps. Longest ready(): the longest single call (in a "
        "synchronous run, the barrier). Mean per decision: time in ready() ÷ decisions it "
        "returned. Controller ms / segment: (wall − Σ(finished − started) of done segments) ÷ "
        "done segments. Store bytes: the store compacted (`VACUUM INTO`) ÷ its segments and "
        f"points. `> {args.limit:.0f} s`: the run passed `--limit`; `skipped`: a smaller size "
        "already had.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for key in dict.fromkeys(k for s in sources for k in results[s] if "@" in k):
        for source in sources:
            entry = results[source].get(key)
            if entry is None:
                continue
            name, size = key.split("@")
            r = entry["result"]
            if r is None:
                gone = _gone(entry, args.limit)
                lines.append(f"| {name} | {int(size):,} | {source} | {gone} |" + " |" * 8)
                continue
            d = _derived(r)
            lines.append(
                f"| {name} | {int(size):,} | {source} | {_f(d['longest_ms'])} "
                f"| {_f(d['per_decision_ms'], 3)} | {r['ready_calls']:,} / {r['decisions']:,} "
                f"| {_f(r['wall'])} | {r['segments']:,} | {_f(d['wall_ms_segment'])} "
                f"| {_f(d['controller_ms_segment'])} | {_f(d['bytes_segment'], 0)} "
                f"| {_f(d['bytes_point'], 0)} |"
            )
    methods = {
        s: sorted({r["result"]["store"]["method"] for r in results[s].values() if r["result"]})
        for s in sources
    }
    measured_by = "; ".join(f"{s}: {', '.join(m) or '–'}" for s, m in methods.items())
    lines += [
        "",
        f"Store bytes measured by (`store_size.py` or this script's fallback): {measured_by}.",
    ]
    if any("vectorised" in results[s] for s in sources):
        lines += [
            "",
            f"## {args.vectorised_population:,} NQM members, vectorised, end to end",
            "",
            f"`examples/nqm_pbt.toml` (synchronous PBT) with `NQMVectorised`, "
            f"{VECTORISED['steps']} steps, ready every {VECTORISED['ready_every']}, on the "
            "process pool with every member in a slot. Controller share: the controller "
            "process's CPU time (`RUSAGE_SELF`) ÷ wall time; workers: `RUSAGE_CHILDREN` after "
            "the pool has joined them.",
            "",
            "| source | members | slots per worker | wall (s) | segments | controller CPU (s) "
            "| controller share of wall | workers CPU (s) | longest ready() (ms) "
            "| store B / segment |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for source in sources:
            entry = results[source].get("vectorised")
            if entry is None:
                continue
            r = entry["result"]
            if r is None:
                lines.append(f"| {source} | {_gone(entry, args.limit)} |" + " |" * 8)
                continue
            lines.append(
                f"| {source} | {r['population']:,} | {r['slots']} | {_f(r['wall'])} "
                f"| {r['segments']:,} | {_f(r['cpu_controller'])} "
                f"| {r['cpu_controller'] / r['wall']:.1%} | {_f(r['cpu_workers'])} "
                f"| {_f(r['ready_longest'] * 1e3)} | {_f(r['store']['per_segment'], 0)} |"
            )
    lines += [
        "",
        "## Targets (this checkout)",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for label, measured, met in _targets(results, args.limit):
        verdict = "–" if met is None else ("pass" if met else "miss")
        lines.append(f"| {label} | {measured} | {verdict} |")
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    if show:
        print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to run side by side")
    parser.add_argument(
        "--sizes", help="members, comma-separated, for every strategy (default: each its own)"
    )
    parser.add_argument(
        "--strategies", nargs="*", default=list(STRATEGIES), choices=list(STRATEGIES)
    )
    parser.add_argument("--rounds", type=int, default=6, help="ready points per member")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--vectorised", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--vectorised-population", type=int, default=VECTORISED["population"])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "controller_scale.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a job, in the measuring subprocess
    args = parser.parse_args()
    if args.one:
        job = json.loads(args.one)
        if job["kind"] == "vectorised":
            result = measure_vectorised(job["population"], Path(job["run_dir"]))
        else:
            result = measure_strategy(
                job["strategy"], job["population"], job["rounds"], Path(job["run_dir"])
            )
        print(json.dumps(result))
        return
    sources = {"this": SRC} | ({"baseline": args.baseline / "src"} if args.baseline else {})
    command = "python benchmarks/controller_scale.py " + shlex.join(sys.argv[1:])
    results: dict[str, Any] = {
        "command": command,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": "2 cores, shared",
        "settings": {
            "ready_every": READY_EVERY,
            "rounds": args.rounds,
            "fire": {**FIRE_OPTIONS, "evaluators": "max(2, members // 8)"},
            "vectorised": {**VECTORISED, "population": args.vectorised_population},
            "limit": args.limit,
        },
        "sources": {name: str(src) for name, src in sources.items()},
        **{name: {} for name in sources},
    }
    order = sorted(sources, key=lambda s: s != "baseline")  # the baseline first, as it ran
    for name in args.strategies:
        sizes = STRATEGIES[name][3]
        if args.sizes:
            sizes = tuple(int(x) for x in args.sizes.split(","))
        for source in order:
            ran_out = False
            for size in sizes:
                key = f"{name}@{size}"
                if ran_out:
                    results[source][key] = {"result": None, "skipped": True}
                    continue
                job = {"kind": "strategy", "strategy": name, "population": size}
                job["rounds"] = args.rounds
                entry = results[source][key] = _measure(sources[source], job, args.limit)
                ran_out = entry["result"] is None
                print(_progress(source, key, entry), flush=True)
                _write(args.out, results, args, command, show=False)  # so far, if stopped
    if args.vectorised:
        for source in order:
            job = {"kind": "vectorised", "population": args.vectorised_population}
            entry = results[source]["vectorised"] = _measure(sources[source], job, args.limit)
            print(_progress(source, "vectorised", entry), flush=True)
            _write(args.out, results, args, command, show=False)
    _write(args.out, results, args, command, show=True)


def _progress(source: str, key: str, entry: dict[str, Any]) -> str:
    r, seconds = entry["result"], entry["seconds"]
    if r is None and entry.get("error"):
        return f"  {source:8} {key:18} failed after {seconds:.0f} s:\n{entry['error']}"
    if r is None:
        return f"  {source:8} {key:18} ran out of time after {seconds:.0f} s"
    line = f"  {source:8} {key:18} wall {r['wall']:7.2f} s  longest ready() "
    line += f"{r['ready_longest'] * 1e3:8.2f} ms  ({seconds:.1f} s in all)"
    if "cpu_controller" in r:
        line += f"  controller CPU {r['cpu_controller'] / r['wall']:.1%} of wall"
    return line


if __name__ == "__main__":
    main()
