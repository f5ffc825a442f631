"""A long FIRE PBT run's store, written directly through the store's API (no training), for
``readers_scale.py`` and the tests of the readers on long runs.

The shape follows the FIRE PBT paper's runs: members in sub-populations (P1 the children, the
others parents), evaluators that copy a parent's weights, train with the best child's
hyperparameters and either hand their weights over or are released, synchronous rounds in
which the bottom quarter of each sub-population exploits the top quarter and perturbs its
learning rate, one evaluation per segment, checkpoints deleted once replaced, and now and then
a failed attempt, a non-finite score and a warning. Everything is drawn from ``seed``.

    store = write_long_store(run_dir, points=100_000)
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from firepbt.checkpoints import CheckpointRef
from firepbt.decisions import (
    Assign,
    Continue,
    Exploit,
    Finish,
    Handover,
    Release,
    Start,
    Weights,
)
from firepbt.errors import FailureKind
from firepbt.segments import Failure, Point, Segment, SegmentResult
from firepbt.store import Store
from firepbt.trainable import Trainable

READY = 200  # steps per segment, one evaluation at its end


def long_config(total_steps: int, members: int, subpopulations: int, evaluators: int) -> dict:
    """The stored config of such a run (as ``firepbt run`` stores one)."""
    return {
        "trainable": "firepbt.examples.nqm:NQM",
        "strategy": "fire",
        "mode": "min",
        "metric": "loss",
        "test_metric": "expected_loss",
        "eval_every": READY,
        "ready_every": READY,
        "total_steps": total_steps,
        "population": members,
        "seed": 0,
        "space": {"lr": {"dist": "loguniform", "low": 0.001, "high": 1.9}, "batch": 16},
        "strategy_options": {
            "subpopulations": subpopulations,
            "evaluators": evaluators,
            "synchrony": "sync",
            "exploit": {"name": "truncation", "fraction": 0.25},
            "explore": [{"name": "perturb", "factors": [0.8, 1.2]}],
        },
    }


class _Writer:
    def __init__(self, store: Store, run_dir: Path, rng: random.Random) -> None:
        self.store, self.run_dir, self.rng = store, run_dir, rng
        self.last: dict[int, tuple[int, int, str]] = {}  # worker -> (segment, step, path)
        self.h: dict[int, dict] = {}
        self.loss: dict[int, float] = {}
        self.own: dict[int, list[str]] = {}  # worker -> paths of its latest checkpoints
        self.points = 0

    def train(self, member: int, start: int, end: int, source: int | None) -> None:
        """One segment of ``member`` from ``start`` to ``end``, from segment ``source``."""
        h = self.h[member]
        prior = self.last.get(source) if source is not None else None
        seg_id = self.store.add_segment(
            member, start, end, h, prior[0] if prior else None, prior[2] if prior else None
        )
        path = str(
            self.run_dir
            / "checkpoints"
            / f"member-{member:04d}"
            / f"step-{end:08d}-seg-{seg_id}.ckpt"
        )
        segment = Segment(seg_id, member, 0, start, end, READY, h, None, path, Trainable)
        if self.rng.random() < 0.0005:  # a failed attempt, then the retry that finishes
            failure = Failure(FailureKind.RAISED, "RuntimeError: CUDA error: an illegal memory")
            self.store.segment_failed(SegmentResult(segment, failure=failure), final=False)
        lr = float(h["lr"])
        base = self.loss.get(source if source is not None else member, 1.0)
        loss = base * (1 - min(0.5, lr) * 0.002) + abs(self.rng.gauss(0, 0.0005))
        self.loss[member] = loss
        score = loss if self.rng.random() > 0.0002 else math.nan
        points = (Point(end, score, {"loss": score, "expected_loss": loss}),)
        if not math.isfinite(score):
            self.store.record_warning(
                member, seg_id, end, "nan_metric", "score is nan: it ranks worst"
            )
        ref = CheckpointRef(path, "0" * 64, member, end, seg_id)
        self.store.segment_done(
            SegmentResult(segment, points, ref, 4096, worker=f"pid-{member % 16}", finished=1.0)
        )
        self.points += len(points)
        self.last[member] = (seg_id, end, path)
        own = self.own.setdefault(member, [])
        own.append(path)
        if len(own) > 2:  # replaced twice over: no decision can still read it
            self.store.checkpoint_deleted(own.pop(0))


def write_long_store(
    run_dir: str | Path,
    points: int,
    *,
    members: int = 40,
    subpopulations: int = 2,
    evaluators: int = 8,
    seed: int = 0,
) -> Store:
    """A store of about ``points`` curve points (one per segment) in ``run_dir``, finished."""
    rng = random.Random(seed)
    run_dir = Path(run_dir).absolute()
    workers = members + evaluators
    rounds = max(2, points // workers)
    total = rounds * READY
    store = Store.create(run_dir, long_config(total, members, subpopulations, evaluators))
    w = _Writer(store, run_dir, rng)
    sp_of = {m: m % subpopulations for m in range(members)}
    by_sp = {sp: [m for m in range(members) if sp_of[m] == sp] for sp in range(subpopulations)}
    with store.batch():
        for m in range(members):
            w.h[m] = {"lr": math.exp(rng.uniform(math.log(0.001), math.log(1.9))), "batch": 16}
            store.record_decision(Start(m, w.h[m], m, READY, sp_of[m]))
    evaluating: dict[int, tuple[int, int, int]] = {}  # evaluator -> (parent, target, rounds left)
    for r in range(rounds):
        start, end = r * READY, (r + 1) * READY
        with store.batch():
            for m in range(members):
                w.train(m, start, end, m)
            for e, (parent, target, left) in list(evaluating.items()):
                w.train(e, start, end, e)
                evaluating[e] = (parent, target, left - 1)
            if end >= total:
                break
            _evolve(store, w, by_sp, end, rng)
            _evaluators(store, w, by_sp, evaluating, members, evaluators, end, rng)
    with store.batch():
        for e in evaluating:
            store.record_decision(Release(e, total, "run over: the step budget is spent"))
        for m in range(members):
            store.record_decision(Finish(m, total))
        store.set_meta("status", "finished")
        store.set_meta("wall_seconds", str(float(rounds)))
    for path, *_ in store.live_checkpoints():  # as a run leaves them (empty here)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).touch()
    return store


def _evolve(store: Store, w: _Writer, by_sp: dict[int, list[int]], step: int, rng) -> None:
    """Each sub-population's bottom quarter copies a top-quarter member and perturbs lr."""
    for group in by_sp.values():
        ranked = sorted(group, key=lambda m: w.loss[m])
        quarter = max(1, len(ranked) // 4)
        for m in ranked[-quarter:]:
            donor = rng.choice(ranked[:quarter])
            old = w.h[m]
            factor = rng.choice((0.8, 1.2))
            new = dict(w.h[donor], lr=min(1.9, float(w.h[donor]["lr"]) * factor))
            source = Weights(donor, step, w.h[donor])
            change = f"lr: {w.h[donor]['lr']:.4g} -> {new['lr']:.4g} (perturb x{factor})"
            store.record_decision(
                Exploit(m, step, donor, source, old, new, (change,), "truncation", step + READY)  # type: ignore[arg-type]
            )
            w.h[m] = new
            w.loss[m] = w.loss[donor]
            w.last[m] = w.last[donor]
        for m in ranked[:-quarter]:
            store.record_decision(Continue(m, step, step + READY))


def _evaluators(
    store: Store,
    w: _Writer,
    by_sp: dict[int, list[int]],
    evaluating: dict[int, tuple[int, int, int]],
    members: int,
    evaluators: int,
    step: int,
    rng,
) -> None:
    """Evaluators that are done hand over (one in five) or are released; idle ones are assigned
    a parent (P2 and above) and the best child's hyperparameters as the target."""
    for e, (_, target, left) in list(evaluating.items()):
        if left > 0:
            store.record_decision(Continue(e, step, step + READY))
            continue
        del evaluating[e]
        if rng.random() < 0.2:
            source = Weights(e, step, w.h[target])
            store.record_decision(
                Handover(target, step, e, source, w.h[target], "success", step + READY)
            )
            w.loss[target] = w.loss[e]
            w.last[target] = w.last[e]
            store.record_decision(Release(e, step, "success: binomial p 0.004"))
        else:
            store.record_decision(Release(e, step, "binomial stop: p 0.62 above 0.5"))
    children = sorted(by_sp[0], key=lambda m: w.loss[m])
    for e in range(members, members + evaluators):
        if e in evaluating or len(by_sp) < 2:
            continue
        parent = rng.choice([m for sp in range(1, len(by_sp)) for m in by_sp[sp]])
        target = children[0]
        w.h[e] = dict(w.h[target])
        w.loss[e] = w.loss[parent]
        w.last[e] = w.last[parent]
        store.record_decision(
            Assign(
                e,
                parent,
                target,
                Weights(parent, step, w.h[parent]),
                w.h[e],
                e,
                step + READY,
                f"evaluate parent {parent} for target {target}",
            )  # fmt: skip
        )
        evaluating[e] = (parent, target, rng.randint(4, 14))
