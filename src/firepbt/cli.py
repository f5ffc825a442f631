"""The command line: ``firepbt run CONFIG`` and ``firepbt status RUN_DIR``."""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from firepbt.errors import (
    CheckpointError,
    ConfigError,
    FireSettingsWarning,
    ResumeError,
    RunFailed,
    SpaceError,
    StoreError,
    TrainableError,
)
from firepbt.text import printable

USER_ERRORS = (
    ConfigError,
    SpaceError,
    TrainableError,
    StoreError,
    RunFailed,
    ResumeError,
    CheckpointError,
)


def _importable(*folders: str | Path) -> None:
    """Let the trainable's module be imported from ``folders`` (the current directory, the
    config's), as ``python -m`` would; worker processes inherit the path."""
    for folder in reversed([str(Path(f).resolve()) for f in folders]):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def _run(args: argparse.Namespace) -> int:
    from firepbt.api import run_config
    from firepbt.config import RunConfig

    _importable(Path.cwd(), Path(args.config).parent)
    config = RunConfig.from_toml(args.config)
    overrides = {
        k: getattr(args, k) for k in ("run_dir", "workers", "seed") if getattr(args, k) is not None
    }
    if overrides:
        config = RunConfig(**{**config.to_dict(), **overrides})
    result = run_config(config, progress=not args.quiet)
    print(result.describe())
    return 0


def _resume(args: argparse.Namespace) -> int:
    from firepbt.api import resume

    _importable(Path.cwd())
    result = resume(args.run_dir, progress=not args.quiet, storage=args.storage)
    print(result.describe())
    return 0


def _status(args: argparse.Namespace) -> int:
    from firepbt import storage
    from firepbt.display import best_result, fire_section, schedule_table, status_table
    from firepbt.store import Store

    store = Store.open(args.run_dir)
    try:
        width = shutil.get_terminal_size((140, 24)).columns  # wide enough when piped
        console = Console(width=width)
        result, full = best_result(store), args.full
        console.print(status_table(store, result, full=full))
        best_schedule = schedule_table(store, result, full=full)
        if best_schedule is not None:
            console.print(best_schedule)
        for part in fire_section(store, full=full):
            console.print(part)
        live = [path for path, *_ in store.live_checkpoints()]
        on_disk, held = sum(storage.exists(p) for p in live), len(store.held_checkpoints())
        root = store.root or str(store.path.parent)
        line = f"\ncheckpoints: {on_disk} {'in ' + root if storage.is_uri(root) else 'on disk'}"
        if on_disk < len(live):
            line += f" ({len(live) - on_disk} recorded ones missing from {root})"
        if held:
            line += (
                f", {held} held in workers' memory (if the run was stopped, resume trains them "
                "again from the last checkpoints on disk)"
            )
        print(line)
        recorded = sum(store.failure_counts().values())
        if recorded:
            print(f"\n{recorded} failure(s) / warning(s) recorded; latest:")
            for member, step, kind, message in store.failures(last=None if full else 3):
                who = f"member {member}" if member >= 0 else "the run"  # e.g. a callback's start
                print(printable(f"  {who} at step {step}: [{kind}] {message}"))
    finally:
        store.close()
    return 0


def _replay(args: argparse.Namespace) -> int:
    from rich.progress import Progress, TaskID

    from firepbt._replay import replay
    from firepbt.store import Store

    _importable(Path.cwd())

    store = Store.open(args.run_dir)
    total = int(store.config().get("total_steps", 0))
    store.close()
    with Progress(console=Console(stderr=True), transient=True) as bar:
        tasks: dict[int, TaskID] = {}

        def on_step(index: int, step: int) -> None:
            if index not in tasks:
                tasks[index] = bar.add_task(f"replay {index + 1}/{args.seeds}", total=total)
            bar.update(tasks[index], completed=step)

        result = replay(args.run_dir, args.member, args.seeds, split=args.split, on_step=on_step)
    print(result.describe())
    return 0


def _export(args: argparse.Namespace) -> int:
    from firepbt.export import export_run

    for path in export_run(args.run_dir, args.format, args.out):
        print(path)
    return 0


def _report(args: argparse.Namespace) -> int:
    from firepbt.report import reading, table_one, write_report
    from firepbt.store import Store, bulk_reading

    store = Store.open(args.run_dir)
    try:
        with reading(store), bulk_reading():  # the page and the lines below read it once
            print(write_report(store, args.out))
            print(printable(table_one_text(table_one(store))))
    finally:
        store.close()
    return 0


def table_one_text(t: dict[str, Any]) -> str:
    """The FIRE paper's Table 1 numbers of a run, as a few lines for the terminal."""
    if t["top_validation"] is None:
        return "no scores recorded yet"
    lines = [
        f"top {t['metric']}: {t['top_validation']:.4g} "
        f"(member {t['top_member']}, step {t['top_step']})"
    ]
    test = t["test_metric"]
    if test and t["matching_test"] is not None:
        lines.append(f"{test} at that point: {t['matching_test']:.4g}")
    if t["replay_test"] is not None:
        spread = f" ± {t['replay_test_std']:.2g}" if t["replay_test_std"] is not None else ""
        lines.append(
            f"{test or t['metric']} of the replayed schedule: {t['replay_test']:.4g}{spread} "
            f"({t['replay_count']} replay{'s' if t['replay_count'] != 1 else ''})"
        )
    else:
        lines.append("no replay yet: firepbt replay RUN_DIR adds the replayed schedule's score")
    return "\n".join(lines)


def _member(value: str) -> int | str:
    if value == "best":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a member id or 'best', got {value!r}") from None


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, like every other error, and says where the help is."""

    def error(self, message: str) -> NoReturn:
        print(printable(f"firepbt: error: {message} (see `{self.prog} --help`)"), file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="firepbt",
        description="Population Based Training: train a population, tune as it trains.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("run", help="run the experiment described by a TOML config")
    p.add_argument("config", help="path to the TOML config")
    p.add_argument("--run-dir", dest="run_dir", help="override the config's run directory")
    p.add_argument("--workers", type=int, help="override the number of worker processes")
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument("--quiet", action="store_true", help="no live progress display")
    p.set_defaults(func=_run)
    c = sub.add_parser("resume", help="continue a run that was killed, from its run directory")
    c.add_argument("run_dir")
    c.add_argument("--quiet", action="store_true", help="no live progress display")
    c.add_argument(
        "--storage", help="where the run's storage folder is now, if it was moved (path or URI)"
    )
    c.set_defaults(func=_resume)
    s = sub.add_parser("status", help="show the population of a run directory")
    s.add_argument("run_dir")
    s.add_argument(
        "--full",
        action="store_true",
        help="every worker, schedule stretch, hand-over and failure (by default a long run is "
        "folded to fit a terminal)",
    )
    s.set_defaults(func=_status)
    r = sub.add_parser("replay", help="train fresh members from scratch along a found schedule")
    r.add_argument("run_dir")
    r.add_argument("--member", type=_member, default="best", help="member id or 'best'")
    r.add_argument("--seeds", type=int, default=1, help="how many replays (first: same seed)")
    r.add_argument("--split", help="data split passed to Trainable.use_split before training")
    r.set_defaults(func=_replay)
    e = sub.add_parser("export", help="write members, curves and decisions as CSV or JSON")
    e.add_argument("run_dir")
    e.add_argument("--format", choices=("csv", "json"), default="csv")
    e.add_argument("--out", help="output folder (default RUN_DIR/export)")
    e.set_defaults(func=_export)
    p = sub.add_parser("report", help="write an HTML report with plots (needs matplotlib)")
    p.add_argument("run_dir")
    p.add_argument("--out", help="output folder (default RUN_DIR/report)")
    p.set_defaults(func=_report)
    return parser


def _show_setting_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Settings warnings as one line each (once: a config is validated, then built), without
    the source line that raised them."""
    if issubclass(category, FireSettingsWarning):
        if str(message) not in _shown:
            _shown.add(str(message))
            print(f"firepbt: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning
_shown: set[str] = set()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            _shown.clear()
            warnings.simplefilter("always", FireSettingsWarning)
            warnings.showwarning = _show_setting_warning
            return int(args.func(args))
    except USER_ERRORS as e:
        print(printable(f"firepbt: error: {e}"), file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written: name it, no traceback
        where = f" ({e.filename})" if e.filename else ""
        print(printable(f"firepbt: error: {e.strerror or e}{where}"), file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as e:
        print(printable(f"firepbt: error: the run's store cannot be read ({e})"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "firepbt: interrupted; everything recorded so far is in the run directory",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
