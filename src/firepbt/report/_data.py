"""Reading a run's store into what the figures, Table 1 and the page need, and the helpers
they share: the run's members and segments, the best member, the lineage's stretches and
copies, and plain formatting of values."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from firepbt.errors import ConfigError
from firepbt.lineage import segment_chain
from firepbt.results import result_from_store
from firepbt.segments import Point
from firepbt.space import Hyperparameters
from firepbt.store import MemberRow, Role, SegmentRow, Store

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
    # Finished segments, by id: (id, member, start_step, end_step, source_segment, the JSON text
    # of its hyperparameters: ``hyperparameters`` decodes it).
    segments: list[tuple[int, int, int, int, int | None, str]]
    # Points of member-role workers, finite or not: (member, step, score, the segment that
    # recorded it), in the order they were recorded.
    points: list[tuple[int, int, float, int]]
    best: int | None
    total_steps: int
    mode: str = "max"
    metric: str = "score"
    subpopulations: list[int] = field(default_factory=list)
    _chain_of: dict[int, list[SegmentRow]] = field(default_factory=dict)
    _copies_of: dict[int, list[_Copy]] = field(default_factory=dict)

    @functools.cached_property
    def by_segment(self) -> dict[int, list[tuple[int, float]]]:
        """(step, score) of the points by the segment that recorded them."""
        out: dict[int, list[tuple[int, float]]] = {}
        for _, step, score, seg in self.points:
            got = out.get(seg)
            if got is None:
                got = out[seg] = []
            got.append((step, score))
        return out

    @functools.cached_property
    def _scored(self) -> list[tuple[int, int, float, int]]:
        finite = math.isfinite
        return [p for p in self.points if finite(p[2])]

    @functools.cached_property
    def _decoded(self) -> dict[str, Hyperparameters]:
        return {text: json.loads(text) for text in {seg[5] for seg in self.segments}}

    def hyperparameters(self, text: str) -> Hyperparameters:
        """A segment's hyperparameters, from their text (decoded once; shared: read only)."""
        return self._decoded[text]

    @functools.cached_property
    def varying(self) -> tuple[list[str], list[str]]:
        """(numeric, all) names of the hyperparameters whose value differs between segments."""
        return _varying(self._decoded.values())

    def chain(self, worker: int) -> list[SegmentRow]:
        """The segments behind ``worker``'s latest weights (``segment_chain``), read once."""
        if worker not in self._chain_of:
            self._chain_of[worker] = segment_chain(self.store, worker)
        return self._chain_of[worker]

    def copies(self, worker: int) -> list[_Copy]:
        """Every change of worker along ``worker``'s trained chain (``_copies``), found once."""
        if worker not in self._copies_of:
            trained = [s for s in self.chain(worker) if s.end_step > s.start_step]
            self._copies_of[worker] = _copies(self.store, trained)
        return self._copies_of[worker]

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

    def scored(self) -> list[tuple[int, int, float, int]]:
        """The points whose score is finite."""
        return self._scored

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
    last = {
        m: p.score
        for m, p in store.latest_points().items()
        if m in members and members[m].role is Role.MEMBER
    }
    sign = -1.0 if mode == "min" else 1.0
    finite = [(sign * score, -m) for m, score in last.items() if math.isfinite(score)]
    return -max(finite)[1] if finite else None


# The stores being read by ``reading`` (id → their run, once read).
_READ: dict[int, _Run | None] = {}


@contextmanager
def reading(store: Store) -> Iterator[None]:
    """Within this block, ``_read(store)`` reads the store once and hands every later caller
    the same ``_Run`` (the report's figures and page); outside it, each call reads anew."""
    if id(store) in _READ:  # read already (a caller reads the same store around us)
        yield
        return
    _READ[id(store)] = None
    try:
        yield
    finally:
        _READ.pop(id(store), None)


def _read(store: Store) -> _Run:
    if id(store) not in _READ:
        return _read_anew(store)
    run = _READ[id(store)]
    if run is None:
        run = _READ[id(store)] = _read_anew(store)
    return run


def _read_anew(store: Store) -> _Run:
    config = store.config()
    members = {m.id: m for m in store.members()}
    segments = store.done_segments()
    mine = {m for m, row in members.items() if row.role is Role.MEMBER}
    points = [p for p in store.scores() if p[0] in mine]
    reached = max([seg[3] for seg in segments], default=0)
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


def _varying(hyperparameters: Iterable[Hyperparameters]) -> tuple[list[str], list[str]]:
    """(numeric, all) names of the hyperparameters whose value differs between these."""
    seen: dict[str, set[str]] = {}
    numeric: dict[str, bool] = {}
    for h in hyperparameters:
        for k, v in h.items():
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
    wanted = {
        (seg.member, prev.member, seg.start_step)
        for prev, seg in zip(chain, chain[1:], strict=False)
        if seg.member != prev.member
    }
    found: dict[tuple[int, int, int], int] = {}  # the decision of each copy: the latest wins
    for i, member, donor, source_step, step in store.copy_decisions():
        key = (member, donor, source_step if source_step is not None else step)
        if key in wanted:
            found[key] = i
    decisions = {row.id: row for row in store.decisions_by_id(list(found.values()))}
    out = []
    for prev, seg in zip(chain, chain[1:], strict=False):
        if seg.member == prev.member:
            continue
        made = decisions.get(found.get((seg.member, prev.member, seg.start_step), -1))
        kind, reason, changes = (
            ("copy", "", []) if made is None else (made.kind, made.reason, made.changes)
        )
        out.append(_Copy(seg.start_step, prev.member, seg.member, kind, reason, changes))
    return out


def _direction(run: _Run) -> str:
    return "lower is better" if run.minimise else "higher is better"


def _top(
    points: Sequence[tuple[int, int, float, int]], minimise: bool
) -> tuple[int, int, float, int] | None:
    """The point (member, step, score, segment) with the best finite score (the first such
    point on ties)."""
    sign = -1.0 if minimise else 1.0
    top: tuple[int, int, float, int] | None = None
    for p in points:
        if math.isfinite(p[2]) and (top is None or sign * p[2] > sign * top[2]):
            top = p
    return top


def _final_point(run: _Run, worker: int) -> Point | None:
    last = next((p for p in reversed(run.points) if p[0] == worker), None)
    return None if last is None else Point(last[1], last[2], {})
