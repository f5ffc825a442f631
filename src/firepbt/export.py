"""Exporting a run's store for analysis elsewhere (pandas, R, a notebook, another tool).

``export_run(run_dir, "csv")`` writes one table per file into ``<run_dir>/export/``:

- ``members.csv``: id, role, subpopulation, status, step, seed, ``h_<name>`` per hyperparameter
  (evaluators have role ``evaluator`` and sub-population ``-1``)
- ``points.csv``: member, step, score, ``m_<name>`` per metric
- ``decisions.csv``: id, member, step, kind, donor, source_step, reason, changes (joined with
  ``"; "``), ``h_<name>`` (the hyperparameters the decision set; empty when it set none)
- ``segments.csv``: id, member, start_step, end_step, source_segment, status, attempts, ``h_<name>``
- ``lineage.csv``: child, child_step, parent, parent_step
- ``evaluations.csv`` (FIRE PBT runs only): one row per evaluator assignment: evaluator, parent,
  subpopulation (the parent's), target (when assigned), start_step, end_step, ending (its kind:
  ``success``, ``binomial stop``, …, ``other``, or ``active`` while it runs), reason, and
  handed_to / handover_step when a member took its weights

Every file has its header row, even with no rows. Hyperparameter columns are the sorted names of
the run's space plus any other name that occurs; metric columns the sorted names that occur.
Missing values are empty; non-finite numbers are written ``nan``, ``inf`` and ``-inf``, which
``pandas.read_csv`` reads back as floats. A text cell that a spreadsheet would take for a formula
(it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return: a name, a reason, a
categorical value) is written with a leading ``'``.

``export_run(run_dir, "json")`` writes ``run.json``: the config, the run's status, the same tables
as lists of objects (``evaluations`` for FIRE PBT runs only), the recorded failures, and ``best``
(the best member, its score, step, hyperparameters and schedule, or null while no member has a
finite score). Non-finite numbers become null, so the file is strict JSON.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from firepbt.errors import ConfigError
from firepbt.fire.summary import Evaluation, fire_summary
from firepbt.results import result_from_store
from firepbt.store import Store, bulk_reading, decode_all

FORMATS = ("csv", "json")
EXPORT_DIR = "export"


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> list[Path]:
    """Write a run's members, curve points, decisions, segments and lineage as files.

    Args:
        run_dir: The run's directory.
        fmt: ``"csv"`` (one file per table) or ``"json"`` (one file).
        out: The directory to write into (default ``<run_dir>/export/``, created if needed).

    Returns:
        The paths written.

    Raises:
        ValueError: ``fmt`` is not a known format.
        firepbt.errors.StoreError: ``run_dir`` holds no run.
    """
    if fmt not in FORMATS:
        raise ValueError(
            f"export format {fmt!r} is not supported; choose one of: {', '.join(FORMATS)}"
        )
    store = Store.open(run_dir)
    try:
        out_dir = Path(out) if out is not None else Path(run_dir) / EXPORT_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        with bulk_reading():
            if fmt == "csv":
                return _export_csv(store, out_dir)
            return [_export_json(store, Path(run_dir), out_dir)]
    finally:
        store.close()


# -- CSV ------------------------------------------------------------------------------------------


DECISION_COLUMNS = ("id", "member", "step", "kind", "donor", "source_step", "reason", "changes")
SEGMENT_COLUMNS = (
    "id", "member", "start_step", "end_step", "source_segment", "status", "attempts",
)  # fmt: skip


def _export_csv(store: Store, out_dir: Path) -> list[Path]:
    # A long run has millions of points, decisions and segments: each table is read as SQLite
    # holds it, its metrics texts decoded in one call for all, and each hyperparameters, changes
    # or reason text (repeated thousands of times) turned into cells once.
    decisions = list(store.raw("decisions", (*DECISION_COLUMNS, "hyperparameters")))
    segments = list(store.raw("segments", (*SEGMENT_COLUMNS, "hyperparameters")))
    texts = {row[-1] for rows in (decisions, segments) for row in rows}
    decoded = {t: json.loads(t) for t in texts if t is not None}
    members = store.members()
    names = sorted(
        set(store.config().get("space", {}))
        .union(*(m.hyperparameters for m in members))
        .union(*decoded.values())
    )
    h_cols = [f"h_{n}" for n in names]
    cells = {t: tuple(_text(h.get(n)) for n in names) for t, h in decoded.items()}
    cells[None] = ("",) * len(names)  # a decision that sets none
    points = list(store.raw("points", ("member", "step", "score", "metrics")))
    metrics = decode_all(x for *_, x in points)
    metric_names = sorted(set().union(*metrics))
    changes = {t: _inert("; ".join(json.loads(t))) for t in {row[7] for row in decisions}}
    reasons = {t: _inert(t) for t in {row[6] for row in decisions}}

    def point_rows() -> Iterator[tuple[Any, ...]]:  # zipped from its columns
        return zip(
            [p[0] for p in points],
            [p[1] for p in points],
            ["nan" if p[2] is None else p[2] for p in points],
            *([_float(x.get(n)) for x in metrics] for n in metric_names),
            strict=True,
        )

    def decision_rows() -> Iterator[tuple[Any, ...]]:
        for i, m, step, kind, donor, source, reason, ch, h in decisions:
            yield (i, m, step, kind, "" if donor is None else donor,
                   "" if source is None else source, reasons[reason], changes[ch],
                   *cells[h])  # fmt: skip

    def segment_rows() -> Iterator[tuple[Any, ...]]:
        for i, m, a, b, src, status, attempts, h in segments:
            yield (i, m, a, b, "" if src is None else src, status, attempts, *cells[h])

    tables: list[tuple[str, list[str], Iterable[Sequence[Any]]]] = [
        (
            "members.csv",
            ["id", "role", "subpopulation", "status", "step", "seed", *h_cols],
            (
                [m.id, m.role.value, m.subpopulation, m.status.value, m.step, m.seed]
                + [_text(m.hyperparameters.get(n)) for n in names]
                for m in members
            ),
        ),
        (
            "points.csv",
            ["member", "step", "score", *(f"m_{n}" for n in metric_names)],
            point_rows(),
        ),
        ("decisions.csv", [*DECISION_COLUMNS, *h_cols], decision_rows()),
        ("segments.csv", [*SEGMENT_COLUMNS, *h_cols], segment_rows()),
        (
            "lineage.csv",
            ["child", "child_step", "parent", "parent_step"],
            (list(edge) for edge in store.lineage()),
        ),
    ]
    evaluations = _evaluations(store)
    if evaluations is not None:
        tables.append(
            (
                "evaluations.csv",
                list(EVALUATION_COLUMNS),
                ([_text(v) for v in row.values()] for row in evaluations),
            )
        )
    written = []
    for name, header, rows in tables:
        path = out_dir / name
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([_inert(c) for c in header])
            writer.writerows(rows)  # every text cell made inert where it was made
        written.append(path)
    return written


EVALUATION_COLUMNS = (
    "evaluator",
    "parent",
    "subpopulation",
    "target",
    "start_step",
    "end_step",
    "ending",
    "reason",
    "handed_to",
    "handover_step",
)


def _evaluations(store: Store) -> list[dict[str, Any]] | None:
    """The FIRE PBT evaluations table (one row per evaluator assignment); None for other runs."""
    summary = fire_summary(store, ranking=False)
    return None if summary is None else [_evaluation_row(e) for e in summary.evaluations]


def _evaluation_row(e: Evaluation) -> dict[str, Any]:
    values: tuple[Any, ...] = (e.evaluator, e.parent, e.subpopulation, e.target, e.start_step)
    values += (e.end_step, e.label, e.reason, e.handed_to, e.handover_step)
    return dict(zip(EVALUATION_COLUMNS, values, strict=True))


def _cell(x: Any) -> Any:
    """A CSV cell: None is empty, floats keep full precision (``nan`` / ``inf`` as Python writes
    them), lists and mappings are written as JSON."""
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, (list, tuple, dict)):
        return json.dumps(x, sort_keys=True, default=str)
    return x


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _float(x: Any) -> Any:
    """The cell of a value that is most often a float (a metric), which csv writes as repr()
    does, as ``_cell`` would; anything else through ``_text``."""
    return x if type(x) is float else _text(x)


def _text(x: Any) -> Any:
    """A CSV cell of a value that may be text: ``_cell``, made inert."""
    return _inert(_cell(x))


def _inert(cell: Any) -> Any:
    """A text cell a spreadsheet would read as a formula (it starts with ``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return) gets a leading ``'`` (OWASP's rule against CSV
    injection). A number stays as it is (``-0.5``, ``-inf``): it can carry no formula."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        try:
            float(cell)
        except ValueError:
            return "'" + cell
    return cell


# -- JSON -----------------------------------------------------------------------------------------


def _export_json(store: Store, run_dir: Path, out_dir: Path) -> Path:
    doc: dict[str, Any] = {
        "config": store.config(),
        "status": store.meta("status"),
        "members": (
            {
                "id": m.id,
                "role": m.role.value,
                "subpopulation": m.subpopulation,
                "status": m.status.value,
                "step": m.step,
                "seed": m.seed,
                "hyperparameters": m.hyperparameters,
            }
            for m in store.members()
        ),
        # The big tables are written from the rows SQLite holds, their JSON texts spliced in
        # as stored (the same text json.dumps gives of them), not decoded and encoded again.
        "points": (
            f'{{"member": {m}, "step": {step}, "score": {_number(score)}, '
            f'"metrics": {_spliced(metrics)}}}'
            for m, step, score, metrics in store.raw(
                "points", ("member", "step", "score", "metrics")
            )
        ),
        "decisions": (
            f'{{"id": {i}, "member": {m}, "step": {step}, "kind": {_strict(kind)}, '
            f'"donor": {_number(donor)}, "source_step": {_number(source)}, '
            f'"reason": {_strict(reason)}, "changes": {_spliced(changes)}, '
            f'"hyperparameters": {_spliced(h)}}}'
            for i, m, step, kind, donor, source, reason, changes, h in store.raw(
                "decisions", (*DECISION_COLUMNS, "hyperparameters")
            )
        ),
        "segments": (
            f'{{"id": {i}, "member": {m}, "start_step": {a}, "end_step": {b}, '
            f'"source_segment": {_number(src)}, "status": {_strict(status)}, '
            f'"attempts": {attempts}, "hyperparameters": {_spliced(h)}}}'
            for i, m, a, b, src, status, attempts, h in store.raw(
                "segments", (*SEGMENT_COLUMNS, "hyperparameters")
            )
        ),
        "lineage": (
            {"child": c, "child_step": cs, "parent": p, "parent_step": ps}
            for c, cs, p, ps in store.lineage()
        ),
        "failures": (
            {"member": member, "step": step, "kind": kind, "message": message}
            for member, step, kind, message in store.failures()
        ),
        "best": _best(store, run_dir),
    }
    evaluations = _evaluations(store)
    if evaluations is not None:
        doc["evaluations"] = iter(evaluations)
    path = out_dir / "run.json"
    with path.open("w", encoding="utf-8") as f:  # written as it is read: a table row per line
        f.write("{")
        for i, (key, value) in enumerate(doc.items()):
            f.write(("," if i else "") + f"\n  {json.dumps(key)}: ")
            if isinstance(value, Iterator):
                f.write("[")
                for n, row in enumerate(value):
                    text = row if isinstance(row, str) else _strict(row)
                    f.write(("," if n else "") + "\n    " + text)
                f.write("\n  ]")
            else:
                f.write(_strict(value, indent=2).replace("\n", "\n  "))
        f.write("\n}\n")
    return path


def _number(x: float | int | None) -> str:
    """A number (or None) as strict JSON: NaN and infinities as null."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "null"
    return repr(x)


def _spliced(text: str | None) -> str:
    """A JSON text from the store as strict JSON: as it is, unless it holds NaN or an
    infinity (Python's JSON writes them as NaN and Infinity), which become null."""
    if text is None:
        return "null"
    if "NaN" in text or "Infinity" in text:
        return _strict(json.loads(text))
    return text


def _strict(x: Any, indent: int | None = None) -> str:
    """``x`` as strict JSON: NaN and infinities as null."""
    try:
        return json.dumps(x, allow_nan=False, ensure_ascii=False, indent=indent)
    except ValueError:
        return json.dumps(_finite(x), allow_nan=False, ensure_ascii=False, indent=indent)


def _best(store: Store, run_dir: Path) -> dict[str, Any] | None:

    try:
        r = result_from_store(store, run_dir)
    except ConfigError:  # no member has a finite score yet
        return None
    return {
        "member": r.best_member,
        "score": r.best_score,
        "step": r.best_step,
        "hyperparameters": r.hyperparameters,
        "schedule": [
            {
                "from_step": e.from_step,
                "to_step": e.to_step,
                "member": e.member,
                "hyperparameters": e.hyperparameters,
            }
            for e in r.schedule
        ],
    }


def _finite(x: Any) -> Any:
    """``x`` with every NaN or infinite float replaced by None (strict JSON has neither)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x
