"""The worker runtime: what a worker does with a segment. ``run_segment`` runs one; it keeps a
few trainables alive between segments, so a member that continues on the same worker is not
reloaded from disk; correctness never depends on it (a cached trainable is used only when it is
exactly at the segment's source checkpoint).

A segment that is not asked to ``persist`` leaves its checkpoint *held*: pickled, in this worker's
memory, not on disk. The runner sends the member's next segment back to this worker, which goes on
from memory; ``flush_held`` writes a held checkpoint to its path when another worker needs it, and
``drop_held`` forgets it once nobody does. A held checkpoint lost with its worker is trained again
from the last checkpoint on disk: a repair segment carries the segments to run again first, in
``prelude``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from firepbt import random_state
from firepbt.checkpoints import (
    CheckpointRef,
    MemberState,
    dump_state,
    load_state,
    member_state,
    read_checkpoint,
    write_bytes,
)
from firepbt.errors import CheckpointError, FailureKind, MetricError, SourceUnreadable
from firepbt.execution.logs import segment_started, with_own_tail
from firepbt.random_state import RandomState
from firepbt.reads import ReadRecorder, unread
from firepbt.segments import Failure, Point, Segment, SegmentResult
from firepbt.space import Hyperparameters
from firepbt.trainable import Trainable


def as_number(value: object, what: str) -> float:
    """``value`` as a float when it is a real number: an ``int`` or ``float``, a numpy scalar or a
    0-d array or tensor holding one. A bool or a string is no number: ``MetricError``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    kind = type(value)
    if kind.__module__.split(".")[0] in ("numpy", "torch", "jax", "jaxlib", "tensorflow"):
        shape = getattr(value, "shape", None)
        item = getattr(value, "item", None)
        if shape == () or (shape is not None and len(shape) == 0):  # a scalar or a 0-d array
            dtype = str(getattr(value, "dtype", ""))
            if callable(item) and "bool" not in dtype:
                number = item()
                if isinstance(number, (int, float)) and not isinstance(number, bool):
                    return float(number)
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise MetricError(f"{what}: {kind.__name__} {shown} is not a number")


def extract_score(value: object, metric: str | None) -> tuple[float, dict[str, float]]:
    """Turn what ``evaluate()`` returned into (selection score, all metrics)."""
    if isinstance(value, Mapping):
        metrics = {str(k): as_number(v, f"evaluate() metric {str(k)!r}") for k, v in value.items()}
        if metric is None:
            if len(metrics) != 1:
                raise MetricError(
                    f"evaluate() returned several metrics {sorted(metrics)}; "
                    "name the one to select on with metric=..."
                )
            metric = next(iter(metrics))
        if metric not in metrics:
            raise MetricError(
                f"evaluate() returned metrics {sorted(metrics)} but the run selects on {metric!r}"
            )
        return metrics[metric], metrics
    score = as_number(value, "evaluate() (a number or a mapping of numbers)")
    return score, {metric or "score": score}


# Trainables kept alive in this worker process: member -> (checkpoint path it is at, trainable,
# the member's random state at that checkpoint).
_ALIVE: OrderedDict[int, tuple[str, Trainable, RandomState]] = OrderedDict()
KEEP_ALIVE = 4
# Checkpoints held in this worker's memory: path -> pickled state.
_HELD: dict[str, bytes] = {}
# A worker that relays its checkpoints (a Ray node that does not see the run directory): those
# due to be written wait here for the controller, which writes them (``ray_worker``).
_OUTGOING: dict[str, bytes] | None = None


def worker_name() -> str:
    return f"pid-{os.getpid()}"


def flush_held(path: str) -> str:
    """Write a held checkpoint to its path (it stays held too); return its sha256."""
    data = _HELD.get(path)
    if data is None:
        raise CheckpointError(f"checkpoint {path} is not held by worker {worker_name()}")
    return write_bytes(path, data)


def drop_held(path: str) -> None:
    _HELD.pop(path, None)


def hold(path: str, data: bytes) -> None:
    """Hold ``data`` as the checkpoint at ``path`` (a source the controller sent)."""
    _HELD[path] = data


def held(path: str) -> bytes | None:
    return _HELD.get(path)


def relay_checkpoints() -> None:
    """Hand checkpoints due to be written to the controller (``outgoing``) from now on."""
    global _OUTGOING
    if _OUTGOING is None:
        _OUTGOING = {}


def outgoing(path: str) -> bytes | None:
    """The bytes of the checkpoint at ``path`` that this relaying worker did not write."""
    return None if _OUTGOING is None else _OUTGOING.pop(path, None)


def _obtain(seg: Segment) -> tuple[Trainable, bool, tuple[object, ...]]:
    """The segment's trainable, whether it was kept alive here, and (when built anew) the
    hyperparameters it was built from and holds, which record what it read. The member's random
    state is set as it was at the segment's source (seeded from its seed for a first segment)."""
    first = seg.prelude[0] if seg.prelude else seg
    cached = _ALIVE.pop(first.member, None)
    if (
        seg.source is not None
        and cached is not None
        and cached[0] == seg.source.path
        and type(cached[1]) is first.trainable  # a resume in this process may bring another
    ):
        random_state.restore(cached[2])
        return cached[1], True, ()
    if cached is not None:
        release(cached[1])
    given = ReadRecorder(first.hyperparameters)
    source = read_source(seg.source) if seg.source is not None else None
    trainable = build(first.trainable, given, first.seed, source)
    return trainable, False, (given, trainable.hyperparameters)  # what the constructor read


def build(
    cls: type[Trainable], hyperparameters: Hyperparameters, seed: int, source: MemberState | None
) -> Trainable:
    """A member's trainable: built with the global generators seeded from ``seed``, then (from a
    checkpoint) loaded, with the random state the checkpoint holds set."""
    random_state.seed_all(seed)
    before = random_state.loaded()
    trainable = cls(hyperparameters, seed)
    random_state.seed_all(seed, skip=before)  # a generator module the constructor imported
    if source is not None:
        trainable.load(source.state)
        if source.random is not None:
            random_state.restore(source.random)
    return trainable


def release(trainable: Trainable) -> None:
    """Let a trainable go (``Trainable.close``); an error there is not the segment's."""
    with contextlib.suppress(Exception):
        trainable.close()


def release_kept() -> None:
    """Let go of every trainable this process keeps alive (when its worker stops)."""
    while _ALIVE:
        release(_ALIVE.popitem()[1][1])


def read_source(source: CheckpointRef) -> MemberState:
    """The state a segment starts from: held in this worker's memory, else read from its file
    (``SourceUnreadable`` when that is missing or corrupted)."""
    held = _HELD.get(source.path)
    try:
        data = load_state(held) if held is not None else read_checkpoint(source.path, source.sha256)
    except CheckpointError as e:
        raise SourceUnreadable(str(e)) from None
    return member_state(data)


def _advance(trainable: Trainable, seg: Segment, points: list[Point]) -> ReadRecorder:
    """Train ``seg.start_step`` → ``seg.end_step`` with its hyperparameters, evaluating every
    ``eval_every`` steps and at the end (into ``points``); the hyperparameters it was given."""
    trainable.total_steps = seg.budget or None
    given = ReadRecorder(seg.hyperparameters)
    trainable.set_hyperparameters(given)
    step = seg.start_step
    while True:
        k = min(seg.eval_every, seg.end_step - step)
        if k > 0:
            trainable.train(k)
            step += k
        score, metrics = extract_score(trainable.evaluate(), seg.metric)
        points.append(Point(step, score, metrics))
        if step >= seg.end_step:
            return given


def _run_prelude(trainable: Trainable, seg: Segment) -> Trainable:
    """Run a repair's earlier segments again; where the member changes (an exploit), the next
    member's trainable is built and loaded from the state, as it was the first time."""
    member = seg.prelude[0].member
    for part in (*seg.prelude, seg):
        if part.member != member:
            state = MemberState(trainable.save(), random_state.capture())
            release(trainable)
            trainable = build(part.trainable, dict(part.hyperparameters), part.seed, state)
            member = part.member
        if part is not seg:
            _advance(trainable, part, [])
    return trainable


_THREADS_PINNED = False


def pin_torch_threads() -> None:
    """If the trainable's module brought in torch, keep it to one thread per worker."""
    global _THREADS_PINNED
    torch = sys.modules.get("torch")
    if torch is not None and not _THREADS_PINNED and os.environ.get("OMP_NUM_THREADS") == "1":
        torch.set_num_threads(1)
        _THREADS_PINNED = True


def after_segment(seg: Segment, points: tuple[Point, ...]) -> object:
    """The strategy's work after ``seg`` (``Segment.after``), or None. It only saves the strategy
    doing it itself, so it never fails the segment: on an error the strategy does it after all."""
    if seg.after is None:
        return None
    try:
        return seg.after(tuple((p.step, -p.score if seg.negate else p.score) for p in points))
    except Exception:
        return None


def run_segment(seg: Segment) -> SegmentResult:
    """Run one segment; every error becomes a recorded ``Failure``, never an exception."""
    started = time.time()
    segment_started()
    pin_torch_threads()
    worker = worker_name()
    points: list[Point] = []
    try:
        with random_state.kept():  # the member's generators in, the process's back after
            trainable, reused, built = _obtain(seg)
            if seg.prelude:
                trainable = _run_prelude(trainable, seg)
            given = _advance(trainable, seg, points)
            first = seg.source is None and seg.start_step == 0 and not seg.prelude
            held = trainable.hyperparameters
            unused = unread(seg.hyperparameters, *built, given, held) if first else []
            notices = [str(n) for n in trainable.notices()] if first else []
            randomness = random_state.capture()
            data = dump_state(MemberState(trainable.save(), randomness))
        sha = keep_checkpoint(seg, data)
    except MetricError as e:
        return _failed(seg, FailureKind.BAD_METRIC, str(e), "", worker, started, points)
    except SourceUnreadable as e:
        return _failed(seg, FailureKind.SOURCE_UNREADABLE, str(e), "", worker, started, points)
    except CheckpointError as e:
        return _failed(seg, FailureKind.CHECKPOINT, str(e), "", worker, started, points)
    except Exception as e:
        tb = traceback.format_exc()
        message = f"{type(e).__name__}: {e}"
        return _failed(seg, FailureKind.RAISED, message, tb, worker, started, points)
    except SystemExit as e:  # sys.exit() in a trainable: a failure of its segment, not the end
        tb = traceback.format_exc()  # of the run (in-process, it would end the controller)
        message = f"SystemExit({e.code!r}): the trainable called sys.exit()"
        return _failed(seg, FailureKind.RAISED, message, tb, worker, started, points)
    _ALIVE[seg.member] = (seg.checkpoint_path, trainable, randomness)
    while len(_ALIVE) > KEEP_ALIVE:
        release(_ALIVE.popitem(last=False)[1][1])
    return finished(seg, points, data, sha, started, reused, unused, notices)


def keep_checkpoint(seg: Segment, data: bytes) -> str:
    """Write a finished segment's pickled state to its checkpoint path when it is due
    (``persist``), else hold it in this worker's memory; its sha256 ("" while held: the checksum
    is taken if it is ever written out)."""
    if seg.persist:
        if _OUTGOING is not None:  # the controller writes it
            _OUTGOING[seg.checkpoint_path] = data
            sha = hashlib.sha256(data).hexdigest()
        else:
            sha = write_bytes(seg.checkpoint_path, data)
        _HELD.pop(seg.checkpoint_path, None)
        return sha
    _HELD[seg.checkpoint_path] = data
    return ""


def finished(
    seg: Segment,
    points: list[Point],
    data: bytes,
    sha: str,
    started: float,
    reused: bool,
    unused: Sequence[str] = (),
    notices: Sequence[str] = (),
) -> SegmentResult:
    """The result of a segment whose checkpoint ``keep_checkpoint`` kept, with the strategy's work
    after it done."""
    worker = worker_name()
    holder = "" if seg.persist else worker
    ref = CheckpointRef(seg.checkpoint_path, sha, seg.member, seg.end_step, seg.id, holder)
    done = tuple(points)
    after = after_segment(seg, done)
    return SegmentResult(
        seg,
        done,
        ref,
        len(data),
        None,
        worker,
        started,
        time.time(),
        reused,
        after,
        tuple(unused),
        tuple(notices),
    )


def _failed(
    seg: Segment,
    kind: FailureKind,
    message: str,
    tb: str,
    worker: str,
    started: float,
    points: list[Point],
) -> SegmentResult:
    dropped = _ALIVE.pop(seg.member, None)
    if dropped is not None:
        release(dropped[1])
    message = with_own_tail(message)
    return SegmentResult(
        seg, tuple(points), None, 0, Failure(kind, message, tb), worker, started, time.time()
    )
