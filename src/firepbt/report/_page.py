"""The self-contained HTML report page: the run's summary, the best member's schedule, Table 1
numbers, every figure embedded as PNG, failures and the config."""

from __future__ import annotations

import base64
import html
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from firepbt.fire.summary import COUNT_COLUMNS, RANKING_NOTE, fire_summary
from firepbt.lineage import ScheduleEntry, fold_schedule
from firepbt.report._data import (
    _direction,
    _final_point,
    _opened,
    _read,
    _Run,
    _stretches,
    reading,
)
from firepbt.report._fig_hyperparameters import plot_hyperparameters
from firepbt.report._fig_lineage import plot_lineage
from firepbt.report._fig_scores import plot_best_score, plot_curves
from firepbt.report._plotting import _require_matplotlib
from firepbt.report._table import table_one
from firepbt.store import Role, SegmentStatus, Store, bulk_reading

FIGURES: tuple[tuple[str, Callable[[Store, Path], Path], str], ...] = (
    (
        "best_score",
        plot_best_score,
        "The best {metric} reached by any member up to each step ({direction}), as in Figure 4b "
        "of the FIRE PBT paper. With several sub-populations, each one's best is drawn thinly.",
    ),
    (
        "hyperparameters",
        plot_hyperparameters,
        "Hyperparameters of every member over time, coloured by sub-population (one line per "
        "trained segment); black: the schedule behind the best member's final weights; "
        "circles: evaluator hand-overs on that lineage (Figure 4a of the FIRE PBT paper).",
    ),
    (
        "lineage",
        plot_lineage,
        "Whose training the best member's final weights carry: one lane per worker, a bar per "
        "stretch of training (labelled with the hyperparameters that vary in the run where "
        "there is room), an arrow per copy of weights.",
    ),
    (
        "curves",
        plot_curves,
        "Every member's {metric} over training (evaluators left out), coloured by "
        "sub-population; black: the curve followed by the best member's weights along its "
        "lineage.",
    ),
)

# A long run's page stays small: its best member's schedule in at most this many rows
# (lineage.fold_schedule), and the last this many copies and hand-overs.
SCHEDULE_ROWS = 40
COPY_ROWS = 50

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1120px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
.sub{color:#555;margin-top:0}.status{display:inline-block;padding:0 .5em;border-radius:4px;
background:#eee;font-weight:600}.status.finished{background:#d8f0dc}
.status.running{background:#fff1c2}.note{background:#fff6d6;border-left:4px solid #e0b100;
padding:.6em 1em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;
font-variant-numeric:tabular-nums}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#444;font-size:.93em;margin-top:.3em}code,pre{font-size:.9em}
pre{background:#f7f7f7;padding:.8em;overflow:auto}
"""


def write_report(run_dir: str | Path | Store, out_dir: str | Path | None = None) -> Path:
    """Write the four figures and a self-contained ``report.html`` (needs matplotlib).

    Works on finished, running, killed and failed runs alike; a run without any score yet
    gets a page that says so.

    Args:
        run_dir: The run's directory (or its open store).
        out_dir: Where to write (default ``<run_dir>/report/``).

    Returns:
        The page's path.
    """
    _require_matplotlib()
    store = run_dir
    run_dir = store.path.parent if isinstance(store, Store) else Path(store)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    with _opened(store) as st, reading(st), bulk_reading():
        run = _read(st)
        figures: list[tuple[str, str, str | None]] = []  # (name, caption, base64 png or error)
        if run.scored():
            for name, plot, caption in FIGURES:
                text = caption.format(metric=run.metric, direction=_direction(run))
                try:
                    png = plot(st, out / f"{name}.png")
                except Exception as e:  # one broken figure must not cost the whole report
                    figures.append((name, f"figure failed: {type(e).__name__}: {e}", None))
                    continue
                figures.append((name, text, base64.b64encode(png.read_bytes()).decode("ascii")))
        page = _page(run, table_one(st), figures, run_dir)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _page(
    run: _Run,
    table: Mapping[str, Any],
    figures: Sequence[tuple[str, str, str | None]],
    run_dir: Path,
) -> str:
    st = run.store
    status = st.meta("status") or "unknown"
    title = f"{run.strategy_name()} · {run.config.get('trainable', '?')}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>firepbt report: {_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">status <span class="status {_e(status)}">{_e(status)}</span> · '
        f"run directory <code>{_e(run_dir)}</code> · report written "
        f"{_e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
    ]
    parts += _summary(run)
    parts += _fire_section(run)
    if not run.scored():
        parts.append(
            '<p class="note">No member has recorded a score yet: there is nothing to plot. '
            "Write the report again once the run has made progress.</p>"
        )
    else:
        parts += _best_section(run)
        parts += _table_one_section(run, table)
        parts.append("<h2>Figures</h2>")
        for name, caption, data in figures:
            if data is None:
                parts.append(f'<p class="note">{_e(name)}: {_e(caption)}</p>')
                continue
            parts.append(
                f'<figure id="{_e(name)}"><img alt="{_e(name)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption>'
                "</figure>"
            )
    parts += _failures_section(run)
    parts.append("<h2>Configuration</h2><details><summary>the run's config</summary><pre>")
    parts.append(_e(json.dumps(run.config, indent=2, sort_keys=True, default=str)))
    parts.append("</pre></details></body></html>")
    return "\n".join(parts) + "\n"


def _rows(rows: Sequence[tuple[str, Any]]) -> list[str]:
    out = ["<table>"]
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    out.append("</table>")
    return out


def _summary(run: _Run) -> list[str]:
    st = run.store
    members = [m for m in run.members.values() if m.role is Role.MEMBER]
    evaluators = [m for m in run.members.values() if m.role is Role.EVALUATOR]
    statuses = Counter(m.status.value for m in members)
    queued = st.segment_count(SegmentStatus.QUEUED)
    reached = [m.step for m in members]
    rows: list[tuple[str, Any]] = [
        ("strategy", run.strategy_name()),
        ("trainable", run.config.get("trainable", "?")),
        ("status", st.meta("status") or "unknown"),
        (
            "population",
            f"{len(members)} members"
            + (
                f" in {len(run.subpopulations)} sub-populations"
                if len(run.subpopulations) > 1
                else ""
            )
            + (f", {len(evaluators)} evaluators" if evaluators else ""),
        ),
        ("members by status", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "–"),
        (
            "steps",
            f"{run.config.get('total_steps', '?')} per member; reached "
            + (f"{min(reached)}–{max(reached)}" if reached else "–"),
        ),
        ("worker-steps", f"{st.worker_steps()} (segments still queued: {queued})"),
        ("selection metric", f"{run.metric} ({_direction(run)})"),
    ]
    wall = st.meta("wall_seconds")
    if wall:
        rows.append(("wall time", f"{float(wall):.1f} s"))
    if run.best is not None:
        final = _final_point(run, run.best)
        if final is not None:
            rows.append(
                (
                    "best member (the best latest score, as firepbt.run returns it)",
                    f"{run.label(run.best)}: {run.metric} {final.score:.6g} at step {final.step}",
                )
            )
    return ["<h2>Summary</h2>", *_rows(rows)]


def _best_section(run: _Run) -> list[str]:
    if run.best is None:
        return []
    chain = [s for s in run.chain(run.best) if s.end_step > s.start_step]
    stretches = _stretches(chain)
    _, varying = run.varying
    names = sorted({k for s in stretches for k in s.hyperparameters})
    names = [k for k in names if k in varying] + [k for k in names if k not in varying]
    out = [
        f"<h2>Schedule of the best member: {_e(run.label(run.best))}</h2>",
        "<p>The hyperparameters in force over each range of steps behind its final weights, and "
        "the worker that trained them.</p>",
        "<table><tr><th>from step</th><th>to step</th><th>trained by</th>",
        *[f"<th>{_e(k)}</th>" for k in names],
        "</tr>",
    ]
    entries = [ScheduleEntry(s.start, s.end, s.worker, s.hyperparameters) for s in stretches]
    rows, note = fold_schedule(entries, SCHEDULE_ROWS)
    for r in rows:
        who = run.label(r.workers[0]) if len(r.workers) == 1 else f"{len(r.workers)} workers"
        cells = "".join(
            f'<td class="num">{_e(r.value(k))}</td>' if k in r.low else "<td></td>" for k in names
        )
        out.append(
            f'<tr><td class="num">{r.start}</td><td class="num">{r.end}</td>'
            f"<td>{_e(who)}</td>{cells}</tr>"
        )
    out.append("</table>")
    if note:
        out.append(f'<p class="note">{_e(note)}; <code>firepbt status RUN_DIR --full</code> and '
                   "<code>firepbt export</code> give every stretch.</p>")  # fmt: skip
    copies = run.copies(run.best)
    if copies:
        shown = copies[-COPY_ROWS:]
        which = f"the last {len(shown)} of {len(copies)}" if len(shown) < len(copies) else ""
        out += [
            f"<details><summary>copies of weights on this lineage ({len(copies)})</summary>",
            f"<p>{_e(which)}</p>" if which else "",
            "<table><tr><th>step</th><th>kind</th><th>from</th><th>to</th><th>changes</th>"
            "<th>reason</th></tr>",
        ]
        for c in shown:
            out.append(
                f'<tr><td class="num">{c.step}</td><td>{_e(c.kind)}</td>'
                f"<td>{_e(run.label(c.parent))}</td><td>{_e(run.label(c.child))}</td>"
                f"<td>{_e('; '.join(c.changes))}</td><td>{_e(c.reason)}</td></tr>"
            )
        out.append("</table></details>")
    return out


def _table_one_section(run: _Run, t: Mapping[str, Any]) -> list[str]:
    def num(x: Any) -> str:
        return "–" if x is None else f"{x:.6g}"

    test = t.get("test_metric")
    top = (
        "–"
        if t["top_validation"] is None
        else f"{num(t['top_validation'])} ({run.label(t['top_member'])}, step {t['top_step']})"
    )
    if t["replay_test"] is None:
        replay = "– (no finished replay recorded)"
    else:
        replay = num(t["replay_test"])
        if t["replay_test_std"] is not None:
            replay += f" ± {num(t['replay_test_std'])}"
        members = ", ".join(str(m) for m in t["replay_members"])
        replay += f" over {t['replay_count']} replay(s) of member(s) {members}"
        if not test:
            replay += f" (final {run.metric}: the run names no test_metric)"
    rows = [
        (f"top validation any member reached ({run.metric}, {_direction(run)})", top),
        (
            f"test at the same point ({test})" if test else "test at the same point",
            num(t["matching_test"]) if test else "– (the run names no test_metric)",
        ),
        ("schedule replay, final test" if test else "schedule replay, final score", replay),
    ]
    return [
        "<h2>Table 1 numbers</h2>",
        "<p>As in Table 1 of the FIRE PBT paper: the best validation score any member reached, "
        "the test score at that same point, and the final test score of replays of the found "
        "schedule from scratch.</p>",
        *_rows(rows),
    ]


def _fire_section(run: _Run) -> list[str]:
    """FIRE PBT only: per parent sub-population, the evaluator assignments and how they ended,
    the hand-overs, and the fitness ranking."""
    summary = fire_summary(run.store)
    if summary is None:
        return []
    head = ["parents", *COUNT_COLUMNS]
    out = [
        "<h2>FIRE evaluations</h2>",
        "<p>Evaluator assignments per parent sub-population and how each evaluation ended.</p>",
        "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>",
    ]
    for sp in summary.subpopulations:
        out.append(
            f"<tr><td>{_e(sp.name)}</td>"
            + "".join(f'<td class="num">{c}</td>' for c in sp.counts())
            + "</tr>"
        )
    out.append("</table>")
    warning = summary.warning()
    if warning is not None:
        out.append(f'<p class="note">{_e(warning)}</p>')
    every = [(sp.name, h) for sp in summary.subpopulations for h in sp.handovers]
    if every:
        shown = sorted(every, key=lambda x: x[1].step)[-COPY_ROWS:]
        if len(shown) < len(every):
            out.append(f"<p>The last {len(shown)} of {len(every)} hand-overs:</p>")
        out += [
            "<table><tr><th>parents</th><th>step</th><th>evaluator</th><th>weights of</th>"
            "<th>target</th></tr>"
        ]
        out += [
            f'<tr><td>{_e(name)}</td><td class="num">{h.step}</td>'
            f"<td>{_e(run.label(h.evaluator))}</td>"
            f"<td>{_e('–' if h.parent is None else run.label(h.parent))}</td>"
            f"<td>{_e(run.label(h.target))}</td></tr>"
            for name, h in shown
        ]
        out.append("</table>")
    for sp in summary.subpopulations:
        ranks = " &gt; ".join(f"{r.member} ({r.fitness:.3g})" for r in sp.ranking)
        out.append(f"<p>{_e(sp.name)} {_e(RANKING_NOTE)}: {ranks or '– (fewer than 2 curves)'}</p>")
    return out


def _failures_section(run: _Run) -> list[str]:
    failures = run.store.failures()
    if not failures:
        return []
    out = [
        f"<h2>Failures and warnings ({len(failures)})</h2><details><summary>the last "
        f"{min(len(failures), 20)}</summary><table>",
        "<tr><th>worker</th><th>step</th><th>kind</th><th>message</th></tr>",
    ]
    for member, step, kind, message in failures[-20:]:
        out.append(
            f'<tr><td>{_e(run.label(member))}</td><td class="num">{_e(step)}</td>'
            f"<td>{_e(kind)}</td><td>{_e(message)}</td></tr>"
        )
    out.append("</table></details>")
    return out
