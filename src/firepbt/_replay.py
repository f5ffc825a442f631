"""Replay a found hyperparameter schedule from scratch.

PBT and FIRE PBT find a schedule, not a single setting. To judge it, the FIRE paper trains a fresh
network from scratch following the schedule (its Table 1, "schedule replay"). ``replay`` does the
same for any member of a run: it rebuilds the trainable, walks the member's lineage segment by
segment with the hyperparameters each one used, evaluates on the run's grid, and records the
curve in the run's store (tables ``replays`` and ``replay_points``).

The call pattern is the one the run used (a ``set_hyperparameters`` and ``train(k)`` chunks of
``eval_every`` per segment; at an exploit the receiver's trainable built anew and loaded), and the
global random generators are seeded and carried along the lineage as the run's workers did
(``firepbt.random_state``), so a trainable whose state is in ``save()`` or in those generators,
replayed with the seed its lineage started from, reproduces the original curve exactly.

>>> # result = replay("runs/nqm-pbt", member="best", seeds=3)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from firepbt import random_state
from firepbt.checkpoints import MemberState
from firepbt.config import RunConfig
from firepbt.errors import ConfigError
from firepbt.execution.bootstrap import limit_threads_here
from firepbt.execution.worker import build, extract_score
from firepbt.lineage import ScheduleEntry, schedule, segment_chain
from firepbt.results import result_from_store
from firepbt.segments import Point
from firepbt.store import SegmentRow, Store
from firepbt.text import printable
from firepbt.trainable import Trainable, trainable_of_run


@dataclass(frozen=True)
class ReplayRun:
    """One replay: its id in the store, the seed, and the curve it produced.

    Attributes:
        id: The replay's id in the run's store.
        seed: The seed it trained with (the first replay's is the lineage's own).
        points: Its curve, one point per evaluation.
    """

    id: int
    seed: int
    points: list[Point]

    @property
    def final(self) -> Point:
        """The curve's last point."""
        return self.points[-1]

    def summary(self) -> str:
        """``seed S: step N: metric=value, …`` of its last point."""
        metrics = ", ".join(f"{k}={v:.6g}" for k, v in self.final.metrics.items())
        return printable(f"seed {self.seed}: step {self.final.step}: {metrics}")

    def __repr__(self) -> str:  # the curve can hold thousands of points: show its end only
        return f"ReplayRun(id={self.id}, {len(self.points)} points, {self.summary()})"


@dataclass(frozen=True)
class ReplayResult:
    """The replays of one member's schedule; ``describe()`` summarises them as text.

    Attributes:
        member: The member whose schedule was replayed.
        schedule: That member's hyperparameter schedule, one stretch of steps per entry, as
            :func:`firepbt.schedule` reads it.
        runs: One replay per seed, in the order trained: its id in the store, its seed and the
            curve of points it recorded.
    """

    member: int
    schedule: list[ScheduleEntry]
    runs: list[ReplayRun]

    def describe(self) -> str:
        """Summarise the replays for a terminal.

        Returns:
            A line naming the member and how many stretches its schedule has, then one line per
            replay: its seed, the step of its last point and that point's metrics.
        """
        lines = [f"replayed the schedule of member {self.member} ({len(self.schedule)} stretches)"]
        return "\n".join(lines + [f"  {run.summary()}" for run in self.runs])

    def __repr__(self) -> str:
        return (
            f"ReplayResult(member={self.member}, {len(self.schedule)} schedule stretches, "
            f"runs={self.runs!r})"
        )


def _seeds(root_seed: int, seeds: int | Sequence[int]) -> list[int]:
    """``N`` seeds: the lineage's own first, then others derived from it; or the list given."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"seeds: need at least 1 replay, got {seeds}")
        return [root_seed] + [(root_seed + 7919 * k) % (2**31 - 1) for k in range(1, seeds)]
    return [int(s) for s in seeds]


def replay(
    run_dir: str | Path,
    member: int | str = "best",
    seeds: int | Sequence[int] = 1,
    *,
    trainable: type[Trainable] | None = None,
    split: str | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Train ``seeds`` fresh trainables along ``member``'s schedule and record their curves.

    Each replay builds the trainable with the hyperparameters its lineage started with, then
    follows the member's finished segments oldest first: it sets each segment's hyperparameters
    and trains to the segment's end in chunks of the run's evaluation interval, evaluating after
    each chunk. The points are recorded in the run's store, segment by segment.

    Args:
        run_dir: The run's directory.
        member: A member id, or ``"best"`` for the run's best member (as
            :class:`firepbt.RunResult` names it).
        seeds: How many replays to train (the seed the lineage started from, then seeds derived
            from it), or the list of seeds to train with.
        trainable: The trainable class, for a run whose ``"module:Class"`` path does not import
            here. Left out, the class the run kept pickled by value is used if it kept one, else
            the run's path is imported.
        split: A data split passed to :meth:`firepbt.Trainable.use_split` before training.
        on_step: Called as ``on_step(replay_index, step)`` after each evaluation, to report
            progress.

    Returns:
        The member, its schedule and one replay (seed and curve) per seed; ``describe()``
        summarises them.

    Raises:
        firepbt.ConfigError: ``seeds`` is below 1, the member has no finished segment to replay,
            or ``member`` is ``"best"`` and no member has a finite score.
        firepbt.errors.StoreError: ``run_dir`` holds no readable firepbt store.
        firepbt.errors.TrainableError: The run's trainable cannot be loaded or imported.
        firepbt.errors.MetricError: ``evaluate()`` returned something that is not a usable score.
        ValueError: ``member`` is neither a member id nor ``"best"``.
    """

    store = Store.open(run_dir)
    try:
        config = RunConfig(**store.config())
        if member == "best":
            member_id = result_from_store(store, Path(run_dir)).best_member
        else:
            member_id = int(member)
        chain = [s for s in segment_chain(store, member_id) if s.end_step > s.start_step]
        if not chain:
            raise ConfigError(f"member {member_id} has no finished segment to replay")
        cls = trainable or trainable_of_run(config.trainable, run_dir)
        member_seeds = {m.id: m.seed for m in store.members()}
        root_seed = member_seeds[chain[0].member]
        runs = []
        for index, seed in enumerate(_seeds(root_seed, seeds)):
            replay_id = store.add_replay(member_id, seed, split)
            lineage_seeds = {**member_seeds, chain[0].member: seed}
            try:
                points = _train(
                    cls, chain, lineage_seeds, split, config, store, replay_id, index, on_step
                )
            except BaseException:
                store.replay_finished(replay_id, "failed")
                raise
            store.replay_finished(replay_id, "done")
            runs.append(ReplayRun(replay_id, seed, points))
        return ReplayResult(member_id, schedule(store, member_id), runs)
    finally:
        store.close()


@contextlib.contextmanager
def threads_of(config: RunConfig) -> Iterator[None]:
    """Train with as many threads as the run's workers did: one (or ``OMP_NUM_THREADS``) unless
    the run trained in-process. Float sums split over another number of threads round
    differently, and a replay would then differ from its run in the last bits."""
    if config.executor == "inprocess":
        yield
        return
    chosen = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(chosen) if chosen.isdigit() and int(chosen) > 0 else 1
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    limits = limit_threads_here()
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        limits.restore_original_limits()
        if torch is not None and before is not None:
            torch.set_num_threads(before)


def _train(
    cls: type[Trainable],
    chain: list[SegmentRow],
    seeds: Mapping[int, int],
    split: str | None,
    config: RunConfig,
    store: Store,
    replay_id: int,
    index: int,
    on_step: Callable[[int, int], None] | None,
) -> list[Point]:
    """Train one replay along ``chain`` as the run did: the global random generators seeded from
    the replay's seed (``seeds`` of the lineage's first member), and at an exploit the receiver's
    trainable built anew with its own seed and loaded with the state and random state reached."""
    points: list[Point] = []
    with random_state.kept(), threads_of(config):
        model = build(cls, dict(chain[0].hyperparameters), seeds[chain[0].member], None)
        if split is not None:
            model.use_split(split)
        for before, seg in zip([None, *chain], chain, strict=False):
            if before is not None and seg.member != before.member:
                state = MemberState(model.save(), random_state.capture())
                model.close()
                model = build(cls, dict(seg.hyperparameters), seeds[seg.member], state)
                if split is not None:
                    model.use_split(split)
            model.total_steps = config.total_steps
            model.set_hyperparameters(dict(seg.hyperparameters))
            step = seg.start_step
            done: list[Point] = []
            while step < seg.end_step:
                k = min(config.eval_interval, seg.end_step - step)
                model.train(k)
                step += k
                score, metrics = extract_score(model.evaluate(), config.metric)
                done.append(Point(step, score, metrics))
                if on_step is not None:
                    on_step(index, step)
            store.add_replay_points(replay_id, done)
            points += done
        model.close()
    return points
