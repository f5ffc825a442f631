"""The Python entry point: ``firepbt.run(...)`` and the result it returns."""

from __future__ import annotations

import importlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firepbt.callbacks import Callback
from firepbt.checkpoints import read_checkpoint, write_bytes
from firepbt.config import RunConfig
from firepbt.control.loop import Runner
from firepbt.control.progress import RunProgress
from firepbt.decisions import Mode
from firepbt.errors import ConfigError, ResumeError, StoreError, TrainableError
from firepbt.execution.base import Executor
from firepbt.execution.bootstrap import closed_in_workers
from firepbt.execution.in_process import InProcessExecutor
from firepbt.execution.pool import ProcessPoolExecutor
from firepbt.fire.summary import no_handover_warning
from firepbt.lineage import ScheduleEntry, schedule
from firepbt.loggers import build_writers, check_logging
from firepbt.space import Distribution, Hyperparameters
from firepbt.store import MemberStatus, Role, Store, config_digest, pid_alive
from firepbt.strategies import Strategy
from firepbt.text import printable
from firepbt.trainable import (
    BY_VALUE_FILE,
    Trainable,
    dumps_by_value,
    import_trainable,
    kept_by_value,
    trainable_of_run,
)
from firepbt.vectorised import VectorisedTrainable


@dataclass(frozen=True)
class RunResult:
    """What a run hands back: the best final member, its score and the schedule that made it."""

    run_dir: Path
    best_member: int
    best_score: float
    best_step: int
    hyperparameters: Hyperparameters
    schedule: list[ScheduleEntry]
    checkpoint: tuple[str, str] | None  # (path, sha256) of the best member's final weights
    mode: Mode
    wall_seconds: float
    worker_steps: int
    metrics: dict[str, float]  # every metric of the best member's final evaluation
    warnings: tuple[str, ...] = ()  # e.g. a FIRE PBT run that made no hand-over, and why

    def load_best(self, trainable: type[Trainable], seed: int = 0) -> Trainable:
        """Rebuild the best member's trainable with its final weights."""
        if self.checkpoint is None:
            raise FileNotFoundError(f"no checkpoint of member {self.best_member} in {self.run_dir}")
        t = trainable(dict(self.hyperparameters), seed)
        t.load(read_checkpoint(*self.checkpoint))
        return t

    def describe(self) -> str:
        lines = [
            f"best member {self.best_member}: score {self.best_score:.6g} at step {self.best_step}",
            f"metrics: {_fmt_h(self.metrics)}",
            f"hyperparameters: {_fmt_h(self.hyperparameters)}",
            "schedule:",
        ]
        lines += [
            f"  steps {e.from_step:>6}–{e.to_step:<6} {_fmt_h(e.hyperparameters)}"
            f"  (member {e.member})"
            for e in self.schedule
        ]
        lines.append(
            f"{self.worker_steps} worker-steps in {self.wall_seconds:.1f} s; "
            f"run directory {self.run_dir}"
        )
        lines += [f"warning: {w}" for w in self.warnings]
        return printable("\n".join(lines))


def _fmt_h(h: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in h.items())


def _trainable_path(
    trainable: type[Trainable] | type[VectorisedTrainable] | str,
) -> tuple[str, type[Trainable]]:
    """The trainable's path for the config, and the ordinary class its members are (a
    vectorised trainable's ``member``)."""
    if isinstance(trainable, type) and issubclass(trainable, VectorisedTrainable):
        path = f"{trainable.__module__}:{trainable.__qualname__}"
        return path, import_trainable(path)
    if isinstance(trainable, str):
        return trainable, import_trainable(trainable)
    if not (isinstance(trainable, type) and issubclass(trainable, Trainable)):
        raise TrainableError(f"trainable: expected a firepbt.Trainable subclass, got {trainable!r}")
    return f"{trainable.__module__}:{trainable.__qualname__}", trainable


def _space_dict(space: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.to_dict() if isinstance(v, Distribution) else v for k, v in space.items()}


def run(
    trainable: type[Trainable] | type[VectorisedTrainable] | str,
    space: Mapping[str, Any],
    *,
    total_steps: int,
    strategy: str = "pbt",
    population: int = 8,
    ready_every: int = 10,
    eval_every: int | None = None,
    mode: str = "max",
    metric: str | None = None,
    test_metric: str | None = None,
    seed: int = 0,
    executor: str | Executor = "process",
    workers: int = 2,
    run_dir: str | Path | None = None,
    max_retries: int = 2,
    checkpoint_every: int | None = None,
    segment_timeout: float | None = None,
    address: str | None = None,
    num_cpus_per_worker: float | None = None,
    gpus_per_worker: float | None = None,
    devices: list[str] | None = None,
    slots: int | None = None,
    progress: bool | Callable[[RunProgress], None] = False,
    logging: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    **strategy_options: Any,
) -> RunResult:
    """Train a population and return the best member with its hyperparameter schedule.

    ``space`` maps names to distributions (``LogUniform(1e-4, 1e-1)``) or constants; ``strategy``
    is ``"pbt"``, ``"fire"`` (FIRE PBT) or ``"random"``; their options (PBT: ``exploit``,
    ``explore``, ``synchrony``, ``burn_in``, ``initial_hyperparameters``, ``replace_failed``;
    FIRE PBT adds ``subpopulations``, ``evaluators``, ``max_eval_steps``, ``p_stat``,
    ``min_steps_before_eval``, ``warmup``, ``success_test``, ``thin``, ``retarget``,
    ``keep_curves``) pass
    through. Scores are maximised unless ``mode="min"``; ``metric`` names the one to select on
    when ``evaluate()`` returns several. ``executor`` is ``"process"``, ``"inprocess"``,
    ``"ray"`` (with ``address`` and ``num_cpus_per_worker``; see
    ``firepbt.execution.ray_actors``) or an ``Executor`` instance. ``gpus_per_worker`` (1, or
    0.5 for two workers per GPU) gives each worker its own GPUs, out of ``devices`` (process
    pool; default: every visible GPU) or reserved from Ray; a trainable trains on
    ``self.device`` (see ``firepbt.execution.devices``). With a vectorised ``trainable`` (a
    ``VectorisedTrainable`` such as ``MNIST1DVectorised``),
    ``slots`` is how many members each worker process trains at once as one population (see
    ``firepbt.execution.vectorised_pool``); the run records, replays and loads its members as the
    ordinary trainable its slots mirror. The
    result's ``schedule`` is the best member's hyperparameter schedule (``RunResult.schedule``;
    ``describe()`` prints it).

    ``logging`` names per-member writers as a config's ``[logging]`` does
    (``{"tensorboard": "tb", "mlflow": "mlruns", "wandb": "project"}``; kept in the run's
    config, so a resume writes to them too); ``callbacks`` are further
    :class:`firepbt.Callback` objects (``firepbt.loggers.TensorBoardWriter("tb")``, your own),
    called in this process with each point, decision and failure as it is recorded.

    >>> from firepbt.examples.toy import Toy
    >>> r = run(Toy, {"h0": Uniform(0, 1), "h1": Uniform(0, 1)}, total_steps=20,
    ...         population=2, ready_every=4, executor="inprocess", run_dir=tmp)  # doctest: +SKIP
    """
    _refuse_inside_worker()
    path, cls = _trainable_path(trainable)
    config = RunConfig(
        trainable=path,
        space=_space_dict(space),
        total_steps=total_steps,
        strategy=strategy,
        population=population,
        ready_every=ready_every,
        eval_every=eval_every,
        mode=mode,
        metric=metric,
        test_metric=test_metric,
        seed=seed,
        executor=executor if isinstance(executor, str) else "process",
        workers=workers,
        max_retries=max_retries,
        checkpoint_every=checkpoint_every,
        segment_timeout=segment_timeout,
        address=address,
        num_cpus_per_worker=num_cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        devices=list(devices) if isinstance(devices, (list, tuple)) else devices,
        slots=slots,
        run_dir=str(run_dir) if run_dir is not None else None,
        strategy_options=_plain_options(strategy_options),
        logging=dict(check_logging(logging or {})),
    )
    if isinstance(executor, Executor) and (gpus_per_worker or devices is not None):
        raise ConfigError(
            "gpus_per_worker / devices: an Executor instance carries its own settings; give "
            "them to it (ProcessPoolExecutor(workers, gpus_per_worker=1)) or pass "
            "executor='process'"
        )
    if isinstance(executor, Executor) and slots is not None:
        raise ConfigError(
            "slots: an Executor instance carries its own settings; give them to it "
            "(VectorisedPoolExecutor(population, slots, workers)) or pass executor='process'"
        )
    objects = {k: v for k, v in strategy_options.items() if not _is_plain(v)}
    return run_config(
        config,
        trainable=cls,
        executor=executor if isinstance(executor, Executor) else None,
        progress=progress,
        strategy_objects=objects,
        callbacks=callbacks,
    )


def _refuse_inside_worker() -> None:
    """A script that calls ``firepbt.run`` at import time is re-imported by every worker process
    (spawn / forkserver); say so plainly instead of starting a pool from inside a worker."""
    import multiprocessing

    # The same flag multiprocessing itself checks while a child imports the parent's main module.
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(
            "firepbt.run was called inside a worker process: the script that starts the run is "
            "imported again by each worker. Put the call under `if __name__ == '__main__':`."
        )


def _is_plain(v: Any) -> bool:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return True
    if isinstance(v, Mapping):
        return all(_is_plain(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return all(_is_plain(x) for x in v)
    return False


def _plain_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options that can be written to the store's config as data (policy objects are kept aside)."""
    return {k: v for k, v in options.items() if _is_plain(v)}


def default_run_dir(name: str) -> Path:
    """``runs/<strategy>-<date>-<time>``; a second run started within the same second gets
    ``-2``, ``-3``, ... so that it does not find the first run's directory."""
    base = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def run_config(
    config: RunConfig,
    *,
    trainable: type[Trainable] | None = None,
    executor: Executor | None = None,
    progress: bool | Callable[[RunProgress], None] = False,
    strategy_objects: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Run a validated config (what ``firepbt run CONFIG`` does): with the writers its
    ``[logging]`` names, then ``callbacks``."""
    cls = trainable or import_trainable(config.trainable)
    strategy = config.build_strategy(strategy_objects)
    writers = [*build_writers(config.logging), *_callbacks(callbacks)]
    executor = executor or make_executor(config)  # e.g. too few GPUs: refused before any file
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config.strategy)
    by_value = dumps_by_value(cls) if kept_by_value(cls) else None  # before anything is made
    store = Store.create(run_dir, config.to_dict())
    if by_value is not None:  # resume and replay from the command line load it from here
        write_bytes(run_dir / BY_VALUE_FILE, by_value)
    else:  # left by an earlier run that failed early in this directory
        (run_dir / BY_VALUE_FILE).unlink(missing_ok=True)
    if strategy_objects:
        store.set_meta("unresumable", ", ".join(sorted(strategy_objects)))
    return _drive(config, store, run_dir, strategy, cls, executor, progress, writers, resume=False)


def _callbacks(callbacks: Sequence[Callback]) -> list[Callback]:
    if isinstance(callbacks, (Callback, str)) or not isinstance(callbacks, Sequence):
        raise ConfigError(f"callbacks: expected a list of firepbt.Callback, got {callbacks!r}")
    callbacks = list(callbacks)
    for i, c in enumerate(callbacks):
        if not isinstance(c, Callback):
            raise ConfigError(
                f"callbacks[{i}]: expected a firepbt.Callback (such as "
                f"firepbt.loggers.TensorBoardWriter('tb')), got {c!r}"
            )
    return callbacks


def resume(
    run_dir: str | Path,
    *,
    trainable: type[Trainable] | None = None,
    executor: Executor | None = None,
    progress: bool | Callable[[RunProgress], None] = False,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Continue a run that was killed (at any moment) from its store and checkpoints.

    The strategy is rebuilt by replaying the recorded results in order into a fresh strategy
    with the same config and seed; finished segments are not run again, segments that were
    queued or running are. A run directory that another live process is running is refused.
    The writers the run's ``[logging]`` names are built again, and they and ``callbacks`` hear
    of what happens from then on (not of the replayed events).
    """
    run_dir = Path(run_dir)
    store = Store.open(run_dir)
    try:
        unresumable = store.meta("unresumable")
        if unresumable:
            raise ConfigError(
                f"{run_dir} was started from Python with policy objects ({unresumable}) that its "
                "config cannot rebuild; give them by name (e.g. exploit={'name': 'truncation'}) "
                "to make a run resumable"
            )
        if store.meta("status") == "finished":
            return result_from_store(store, run_dir)
        digest, stored = store.meta("config_digest"), store.meta("config") or ""
        if digest is not None and digest != config_digest(stored):  # older stores keep none
            raise ResumeError(
                f"{run_dir}: the run's stored config was changed after the run started (it no "
                "longer matches the digest kept with it); a changed run cannot be resumed: "
                "start a new run with the changed config"
            )
        config = RunConfig(**store.config())
        writers = [*build_writers(config.logging), *_callbacks(callbacks)]
    except BaseException:
        store.close()
        raise
    try:
        cls = trainable or trainable_of_run(config.trainable, run_dir)
    except TrainableError:
        store.close()
        raise
    store.set_meta("status", "running")
    strategy = config.build_strategy()
    return _drive(config, store, run_dir, strategy, cls, executor, progress, writers, resume=True)


def _drive(
    config: RunConfig,
    store: Store,
    run_dir: Path,
    strategy: Strategy,
    cls: type[Trainable],
    executor: Executor | None,
    progress: bool | Callable[[RunProgress], None],
    callbacks: Sequence[Callback],
    resume: bool,
) -> RunResult:
    """Run (or resume) a store's run to the end, holding the run directory's lock."""
    if executor is None:
        executor = make_executor(config)
    started = time.time()
    display = None
    callback: Callable[[RunProgress], None] | None = None
    if progress is True:
        from firepbt.display import LiveProgress

        where = (
            "in this process"
            if config.executor == "inprocess"
            else f"on {config.workers} worker{'s' if config.workers != 1 else ''}"
        )
        every = config.ready_every
        first = f"training the first segments {where}: the bar moves each {every} steps"
        workers = f"{config.workers} worker process{'es' if config.workers != 1 else ''}"
        display = LiveProgress(
            config.population,
            config.total_steps,
            starting=first,
            phases={"starting workers": f"starting {workers}", "first segments": first},
        )
        callback = display.update
    elif callable(progress):
        callback = progress
    runner = Runner(
        strategy,
        executor,
        store,
        cls,
        run_dir=run_dir,
        total_steps=config.total_steps,
        eval_every=config.eval_interval,
        mode=config.mode_enum,
        metric=config.metric,
        max_retries=config.max_retries,
        checkpoint_every=config.checkpoint_every,
        on_progress=callback,
        callbacks=callbacks,
    )
    try:
        with run_lock(run_dir):
            try:
                if display is not None:
                    with display:
                        runner.run(resume=resume)
                else:
                    runner.run(resume=resume)
            except KeyboardInterrupt:  # Ctrl-C, or a trainable that raised it in this process
                store.set_meta("status", "interrupted")
                raise
        store.set_meta("wall_seconds", f"{time.time() - started:.3f}")
        return result_from_store(store, run_dir)
    finally:
        store.close()


def make_executor(config: RunConfig) -> Executor:
    """The executor a config names (Ray is imported only when it is asked for); a vectorised
    trainable with ``slots``, or an ordinary one that names its ``vectorised`` version, gets
    the vectorised pool."""
    population = _vectorised_class(config.trainable)
    if population is None and config.slots is not None:
        twin = import_trainable(config.trainable).vectorised
        population = _vectorised_class(twin) if twin else None
    if population is not None or config.slots is not None:
        from firepbt.execution.vectorised_pool import VectorisedPoolExecutor, check_population

        if config.slots is None:
            member = population.member if population is not None else None
            raise ConfigError(
                f"trainable: {config.trainable} is a vectorised trainable: say how many members "
                "each worker trains at once with slots (firepbt.run(..., slots=8), or "
                "slots = 8 under [executor]), or run its ordinary trainable "
                f"{getattr(member, '__name__', '')} instead"
            )
        return VectorisedPoolExecutor(
            check_population(population or import_trainable(config.trainable), config.slots),
            config.slots,
            config.workers,
            timeout=config.segment_timeout,
            gpus_per_worker=config.gpus_per_worker or 0,
            devices=config.devices,
        )
    if config.executor == "inprocess":
        return InProcessExecutor()
    if config.executor == "ray":
        from firepbt.execution.ray_actors import RayExecutor

        return RayExecutor(
            config.workers,
            address=config.address,
            num_cpus_per_worker=config.num_cpus_per_worker or 1.0,
            num_gpus_per_worker=config.gpus_per_worker or 0,
            timeout=config.segment_timeout,
        )
    return ProcessPoolExecutor(
        config.workers,
        timeout=config.segment_timeout,
        gpus_per_worker=config.gpus_per_worker or 0,
        devices=config.devices,
    )


def _vectorised_class(path: str) -> type[VectorisedTrainable] | None:
    """The class at ``path`` if it is a vectorised trainable (``import_trainable`` has checked
    that the path imports)."""
    module, _, name = path.partition(":")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except Exception:
        return None
    is_vectorised = isinstance(found, type) and issubclass(found, VectorisedTrainable)
    return found if is_vectorised else None


LOCK_FILE = "firepbt.lock"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while a run is driven: an exclusive ``flock`` on ``firepbt.lock``
    (POSIX), held by the open file for the life of the driver, so two drivers can never both
    hold it, and a killed driver's lock goes with its process. The file names the holder's
    process id for the message a second driver gets. Where ``flock`` is missing, a lock file
    created exclusively, whose holder is checked to be alive, stands in. On a network file
    system ``flock`` may hold only among the processes of one machine."""
    path = run_dir / LOCK_FILE
    try:
        import fcntl
    except ImportError:  # not POSIX
        with _pid_file_lock(path):
            yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(_locked_message(run_dir, _holder(path))) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        with closed_in_workers(fd):  # a forked worker must not keep the lock after this process
            yield
    finally:
        os.close(fd)  # releases the lock; the file stays, so every driver locks the same file


def _holder(path: Path) -> int:
    """The process id the lock file names (the holder writes it just after locking)."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                return 0
            time.sleep(0.01)


def _locked_message(run_dir: Path, pid: int) -> str:
    who = f"process {pid}" if pid else "another process"
    return f"{run_dir} is being run by {who}; wait for it to end or stop it first"


@contextmanager
def _pid_file_lock(path: Path) -> Iterator[None]:
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            pid = _holder(path)
            if pid and pid != os.getpid() and pid_alive(pid):
                raise StoreError(_locked_message(path.parent, pid)) from None
            path.unlink(missing_ok=True)  # left by a process that is gone
    else:
        raise StoreError(_locked_message(path.parent, 0))
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def result_from_store(store: Store, run_dir: Path) -> RunResult:
    """The best member among those that finished (or are training, for a partial run)."""
    config = store.config()
    mode = Mode(config.get("mode", "max"))
    last: dict[int, tuple[int, float]] = {}
    metrics: dict[int, dict[str, float]] = {}
    for member, point in store.points():
        last[member] = (point.step, point.score)
        metrics[member] = point.metrics
    usable = {
        m.id: m
        for m in store.members()
        if m.status is not MemberStatus.FAILED and m.role is Role.MEMBER
    }
    candidates = [
        (mode.orient(score), step, member)
        for member, (step, score) in last.items()
        if member in usable and math.isfinite(score)
    ]
    if not candidates:
        raise ConfigError(f"{run_dir}: no member has a finite score yet")
    _, best_step, best = max(candidates, key=lambda c: (c[0], c[1], -c[2]))
    chain = schedule(store, best)
    segments = [s for s in store.segments(best) if s.status.value == "done"]
    checkpoint = store.checkpoint_of_segment(segments[-1].id) if segments else None
    wall = store.meta("wall_seconds")
    return RunResult(
        run_dir=run_dir,
        best_member=best,
        best_score=last[best][1],
        best_step=best_step,
        hyperparameters=usable[best].hyperparameters,
        schedule=chain,
        checkpoint=checkpoint,
        mode=mode,
        wall_seconds=float(wall) if wall else math.nan,
        worker_steps=store.worker_steps(),
        metrics=metrics[best],
        warnings=tuple(
            w
            for w in [no_handover_warning(store), _missing_test_metric(config, metrics)]
            if w is not None
        ),
    )


def _missing_test_metric(
    config: Mapping[str, Any], metrics: Mapping[int, Mapping[str, float]]
) -> str | None:
    """A warning when the config names a ``test_metric`` that no evaluation returned."""
    name = config.get("test_metric")
    if not name or any(name in m for m in metrics.values()):
        return None
    seen = sorted({k for m in metrics.values() for k in m})
    return (
        f"test_metric {name!r} was never returned by evaluate() (it returned {seen}); the "
        "report's Table 1 has no test score"
    )
