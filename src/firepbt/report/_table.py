"""The FIRE PBT paper's Table 1 numbers of a run, including the replays of its schedule that
the store records."""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
from pathlib import Path
from typing import Any

from firepbt.report._data import _opened, _read, _top
from firepbt.store import Store


def table_one(store: Store | str | Path) -> dict[str, Any]:
    """The FIRE PBT paper's Table 1 numbers for this run.

    - ``top_validation``: the best score any member reached during the run (``mode`` decides),
      with ``top_member`` and ``top_step`` where it happened;
    - ``matching_test``: the config's ``test_metric`` at that same point, or None;
    - ``replay_test``: the mean final ``test_metric`` (the score when the run names no
      ``test_metric``) of the finished replays recorded in the store, ``replay_test_std`` their
      standard deviation when there are several, ``replay_count``, ``replay_members``; None
      when the store holds no finished replay.
    """
    with _opened(store) as st:
        config = st.config()
        mode = "min" if config.get("mode") == "min" else "max"
        test_metric = config.get("test_metric")
        out: dict[str, Any] = {
            "metric": str(config.get("metric") or "score"),
            "mode": mode,
            "test_metric": test_metric,
            "top_validation": None,
            "top_member": None,
            "top_step": None,
            "matching_test": None,
            "replay_test": None,
            "replay_test_std": None,
            "replay_count": 0,
            "replay_members": [],
        }
        run = _read(st)
        top = _top(run.points, mode == "min")
        if top is not None:
            m, step, score, segment = top
            out.update(top_validation=score, top_member=m, top_step=step)
            at = [q for q in st.segment_points(segment) if q.step == step]
            if test_metric and at and test_metric in at[0].metrics:
                out["matching_test"] = float(at[0].metrics[test_metric])
        finals = _replay_finals(st.path, test_metric)
        if finals:
            values = [v for _, v in finals]
            out.update(
                replay_test=statistics.fmean(values),
                replay_test_std=statistics.stdev(values) if len(values) > 1 else None,
                replay_count=len(values),
                replay_members=sorted({m for m, _ in finals}),
            )
        return out


def _replay_finals(path: Path, test_metric: str | None) -> list[tuple[int, float]]:
    """(member, final value) of each finished replay; [] when the store has no replay tables."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error:
        return []
    try:
        tables = {
            str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not {"replays", "replay_points"} <= tables:
            return []
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(replays)")}
        sql = "SELECT id, member FROM replays"
        if "status" in columns:
            sql += " WHERE status IN ('done', 'finished')"
        replays = {int(i): int(m) for i, m in conn.execute(sql)}
        last: dict[int, tuple[int, float | None, str]] = {}
        for r, step, score, metrics in conn.execute(
            "SELECT replay, step, score, metrics FROM replay_points ORDER BY rowid"
        ):
            if r in replays and (r not in last or step >= last[r][0]):
                last[r] = (int(step), score, str(metrics))
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    out = []
    for r, (_, score, metrics) in sorted(last.items()):
        value: Any = score
        if test_metric:
            try:
                value = json.loads(metrics).get(test_metric)
            except (ValueError, AttributeError):
                value = None
        if value is not None and math.isfinite(float(value)):
            out.append((replays[r], float(value)))
    return out
