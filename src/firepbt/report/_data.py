"""Reading a run's store into what the figures, Table 1 and the page need, and the helpers
they share: the run's members and segments, the best member, the lineage's stretches and
copies, and plain formatting of values."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from firepbt.errors import ConfigError
from firepbt.results import result_from_store
from firepbt.segments import Point
from firepbt.store import MemberRow, Role, SegmentRow, SegmentStatus, Store

SUBPOPULATION_COLOURS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
)
EVALUATOR_COLOUR = "0.55"
STRATEGY_NAMES = {"pbt": "PBT", "fire": "FIRE PBT", "random": "random search"}


@dataclass
class _Run:
    """Everything the figures and the page read from a store, read once."""

    store: Store
    config: dict[str, Any]
    members: dict[int, MemberRow]
    segments: list[SegmentRow]  # done ones, by id
    points: list[tuple[int, Point]]  # points of member-role workers, finite or not
    best: int | None
    total_steps: int
    mode: str = "max"
    metric: str = "score"
    subpopulations: list[int] = field(default_factory=list)

    @property
    def minimise(self) -> bool:
        return self.mode == "min"

    def is_member(self, worker: int) -> bool:
        row = self.members.get(worker)
        return row is not None and row.role is Role.MEMBER

    def label(self, worker: int) -> str:
        row = self.members.get(worker)
        if row is None:
            return "the run" if worker < 0 else f"worker {worker}"  # -1: not one worker's
        if row.role is Role.EVALUATOR:
            return f"evaluator {worker}"
        if len(self.subpopulations) > 1:
            return f"member {worker} (P{row.subpopulation + 1})"
        return f"member {worker}"

    def colour(self, worker: int) -> str:
        row = self.members.get(worker)
        if row is None or row.role is Role.EVALUATOR:
            return EVALUATOR_COLOUR
        return _subpopulation_colour(row.subpopulation)

    def scored(self) -> list[tuple[int, Point]]:
        return [(m, p) for m, p in self.points if math.isfinite(p.score)]

    def strategy_name(self) -> str:
        name = str(self.config.get("strategy", "?"))
        return STRATEGY_NAMES.get(name, name)

    def trainable_name(self) -> str:
        return str(self.config.get("trainable", "?")).rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def _subpopulation_colour(sp: int) -> str:
    return SUBPOPULATION_COLOURS[sp % len(SUBPOPULATION_COLOURS)]


def _subpopulation_label(run: _Run, sp: int) -> str:
    return f"P{sp + 1}" if len(run.subpopulations) > 1 else "members"


def _best_member(store: Store, members: Mapping[int, MemberRow], mode: str) -> int | None:
    """The run's best final member, as ``firepbt.run`` reports it; when every member failed,
    the failed one whose last score is best; None before any finite score."""

    try:
        return result_from_store(store, store.path.parent).best_member
    except ConfigError:
        pass
    last: dict[int, float] = {}
    for m, p in store.points():
        row = members.get(m)
        if row is not None and row.role is Role.MEMBER:
            last[m] = p.score
    sign = -1.0 if mode == "min" else 1.0
    finite = [(sign * score, -m) for m, score in last.items() if math.isfinite(score)]
    return -max(finite)[1] if finite else None


def _read(store: Store) -> _Run:
    config = store.config()
    members = {m.id: m for m in store.members()}
    segments = [s for s in store.segments() if s.status is SegmentStatus.DONE]
    points = [(m, p) for m, p in store.points() if m in members and members[m].role is Role.MEMBER]
    reached = max([s.end_step for s in segments], default=0)
    total = int(config.get("total_steps") or reached or 1)
    mode = "min" if config.get("mode") == "min" else "max"
    return _Run(
        store=store,
        config=config,
        members=members,
        segments=segments,
        points=points,
        best=_best_member(store, members, mode),
        total_steps=max(total, reached),
        mode=mode,
        metric=str(config.get("metric") or "score"),
        subpopulations=sorted({m.subpopulation for m in members.values() if m.role is Role.MEMBER}),
    )


@contextmanager
def _opened(store: Store | str | Path) -> Iterator[Store]:
    """Use a store as given, or open (and afterwards close) the one in a run directory."""
    if isinstance(store, Store):
        yield store
        return
    opened = Store.open(store)
    try:
        yield opened
    finally:
        opened.close()


def _varying(segments: Sequence[SegmentRow]) -> tuple[list[str], list[str]]:
    """(numeric, all) names of the hyperparameters whose value differs between segments."""
    seen: dict[str, set[str]] = {}
    numeric: dict[str, bool] = {}
    for seg in segments:
        for k, v in seg.hyperparameters.items():
            seen.setdefault(k, set()).add(json.dumps(v, sort_keys=True, default=str))
            numeric[k] = numeric.get(k, True) and _is_number(v)
    varying = sorted(k for k, vs in seen.items() if len(vs) > 1)
    return [k for k in varying if numeric[k]], varying


def _is_number(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _fmt_h(h: Mapping[str, Any], names: Sequence[str] | None = None, digits: int = 4) -> str:
    keys = list(h) if names is None else [k for k in names if k in h]
    return ", ".join(f"{k}={_fmt(h[k], digits)}" for k in keys)


@dataclass(frozen=True)
class _Stretch:
    """Consecutive segments of one worker with the same hyperparameters on a lineage."""

    worker: int
    start: int
    end: int
    hyperparameters: dict[str, Any]


@dataclass(frozen=True)
class _Copy:
    """A place where a lineage passes from one worker's weights to another's."""

    step: int
    parent: int
    child: int
    kind: str  # exploit, assign, handover or copy (no matching decision found)
    reason: str
    changes: list[str]


def _stretches(chain: Sequence[SegmentRow]) -> list[_Stretch]:
    out: list[_Stretch] = []
    for seg in chain:
        if seg.end_step <= seg.start_step:
            continue
        last = out[-1] if out else None
        if (
            last is not None
            and last.worker == seg.member
            and last.hyperparameters == seg.hyperparameters
            and last.end == seg.start_step
        ):
            out[-1] = _Stretch(last.worker, last.start, seg.end_step, last.hyperparameters)
        else:
            out.append(_Stretch(seg.member, seg.start_step, seg.end_step, seg.hyperparameters))
    return out


def _copies(store: Store, chain: Sequence[SegmentRow]) -> list[_Copy]:
    """Every change of worker along ``chain``, with the decision that made it."""
    decisions: dict[tuple[int, int, int], tuple[str, str, list[str]]] = {}
    for d in store.decisions():
        if d.kind in ("exploit", "assign", "handover") and d.donor is not None:
            key = (d.member, d.donor, d.source_step if d.source_step is not None else d.step)
            decisions[key] = (d.kind, d.reason, d.changes)  # the latest one wins
    out = []
    for prev, seg in zip(chain, chain[1:], strict=False):
        if seg.member == prev.member:
            continue
        kind, reason, changes = decisions.get(
            (seg.member, prev.member, seg.start_step), ("copy", "", [])
        )
        out.append(_Copy(seg.start_step, prev.member, seg.member, kind, reason, changes))
    return out


def _direction(run: _Run) -> str:
    return "lower is better" if run.minimise else "higher is better"


def _top(points: Sequence[tuple[int, Point]], minimise: bool) -> tuple[int, Point] | None:
    """The member and point with the best finite score (the first such point on ties)."""
    sign = -1.0 if minimise else 1.0
    top: tuple[int, Point] | None = None
    for m, p in points:
        if math.isfinite(p.score) and (top is None or sign * p.score > sign * top[1].score):
            top = (m, p)
    return top


def _final_point(run: _Run, worker: int) -> Point | None:
    pts = [p for m, p in run.points if m == worker]
    return pts[-1] if pts else None
