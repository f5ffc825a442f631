"""The Python entry points: ``firepbt.run(...)``, ``run_config`` (what ``firepbt run CONFIG``
does) and ``resume``. The result they return is ``firepbt.results.RunResult``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from firepbt import storage as storages
from firepbt.callbacks import Callback
from firepbt.checkpoints import write_bytes
from firepbt.config import RunConfig
from firepbt.control.executor_choice import make_executor
from firepbt.control.lock import run_lock
from firepbt.control.loop import Runner
from firepbt.control.progress import RunProgress
from firepbt.errors import ConfigError, ResumeError, TrainableError
from firepbt.execution.base import Executor
from firepbt.loggers import build_writers, check_logging
from firepbt.results import RunResult, result_from_store
from firepbt.run_setup import (
    check_callbacks,
    default_run_dir,
    is_plain,
    plain_options,
    progress_display,
    refuse_inside_worker,
)
from firepbt.space import space_config
from firepbt.store import Store, config_digest
from firepbt.strategies import Strategy
from firepbt.trainable import (
    BY_VALUE_FILE,
    ResolvedTrainable,
    Trainable,
    dumps_by_value,
    kept_by_value,
    resolve_trainable,
    stored_trainable,
)
from firepbt.vectorised import VectorisedTrainable


def _resolve(
    trainable: type[Trainable] | type[VectorisedTrainable] | str, slots: int | None
) -> tuple[str, ResolvedTrainable]:
    """The trainable's path for the config, and the trainable resolved once (a class given as
    an object is not imported again)."""
    if isinstance(trainable, str):
        return trainable, resolve_trainable(trainable, slots)
    if not (
        isinstance(trainable, type) and issubclass(trainable, (Trainable, VectorisedTrainable))
    ):
        raise TrainableError(f"trainable: expected a firepbt.Trainable subclass, got {trainable!r}")
    return f"{trainable.__module__}:{trainable.__qualname__}", ResolvedTrainable.of(
        trainable, slots
    )


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
    storage: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    max_retries: int = 2,
    checkpoint_every: int | None = None,
    segment_timeout: float | None = None,
    address: str | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    num_cpus_per_worker: float | None = None,
    gpus_per_worker: float | None = None,
    devices: list[str] | None = None,
    slots: int | None = None,
    progress: bool | Callable[[RunProgress], None] | None = None,
    logging: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    **strategy_options: Any,
) -> RunResult:
    """Train a population and return the best member with its hyperparameter schedule.

    Every keyword has a config-file twin (:doc:`/guides/configs`); a bad value is refused
    before anything runs, in one line naming it. :doc:`/guides/quickstart` has a complete
    script.

    Args:
        trainable: A :class:`firepbt.Trainable` subclass, a
            :class:`firepbt.vectorised.VectorisedTrainable` (with ``slots``), or its
            ``"module:Class"`` path.
        space: Hyperparameter names mapped to distributions (``LogUniform(1e-4, 1e-1)``,
            ``Choice([...])``, ...) or constants, which every member gets as they are.
        total_steps: Steps each member trains for: the budget.
        strategy: ``"pbt"``, ``"fire"`` (FIRE PBT) or ``"random"`` (random search).
        population: Members trained (for FIRE PBT, across its sub-populations; evaluators come
            on top).
        ready_every: Steps between a member's ready points, where it may exploit and explore.
        eval_every: Steps between evaluations (default ``ready_every``); must divide it.
        mode: ``"max"`` (the default) or ``"min"``: which way scores are better.
        metric: The metric to select on when ``evaluate()`` returns a dict of several.
        test_metric: A recorded metric the report shows beside the selection metric (the FIRE
            paper's Table 1: test score at the top validation point).
        seed: Seeds the strategy's generator and every member's seed.
        executor: ``"process"`` (worker processes, the default), ``"inprocess"``, ``"ray"``,
            or an :class:`firepbt.execution.base.Executor` instance.
        workers: Worker processes (or Ray actors) training at once.
        run_dir: Where the store and checkpoints go (default ``runs/<strategy>-<time>``).
        storage: Where checkpoints go instead: a path every node sees, or a URI that fsspec
            opens (``"s3://bucket/runs"``; ``pip install 'firepbt[s3]'``). The run writes
            under its own folder there; the store stays in ``run_dir``.
        storage_options: fsspec's options for a storage URI (``{"endpoint_url": ...}``);
            credentials come from the environment (``AWS_ACCESS_KEY_ID``, ...), never here.
        max_retries: Times a failed segment is retried from its last good checkpoint.
        checkpoint_every: Steps between checkpoints written to disk (default a fifth of
            ``total_steps``); between them checkpoints are held in worker memory.
        segment_timeout: Seconds after which a segment that has not finished is stopped and
            recorded as a failure (default: none).
        address, num_cpus_per_worker: Ray only: the cluster to join (``"auto"``; left out, a
            private Ray starts), and the CPUs each actor reserves.
        runtime_env: Ray only: Ray's ``runtime_env`` for each worker actor
            (``{"working_dir": ".", "env_vars": {...}}``).
        gpus_per_worker: GPUs each worker gets (1, 2, or 0.5 for two workers per GPU); the
            trainable trains on ``self.device``.
        devices: The GPUs to hand out on the process pool (default: every visible GPU).
        slots: With a vectorised trainable, how many members each worker trains at once as
            one population.
        progress: ``True`` for a progress line on the terminal, ``False`` for none, or a
            callable given a :class:`firepbt.control.progress.RunProgress` at every change.
            By default a progress line is shown when standard error is a terminal.
        logging: Per-member writers, as a config's ``[logging]`` table:
            ``{"tensorboard": "tb", "mlflow": "mlruns", "wandb": "project"}``. Kept in the
            run's config, so a resume writes to them too.
        callbacks: Further :class:`firepbt.Callback` objects (a
            :class:`firepbt.TensorBoardWriter`, your own), called in this process with each
            point, decision and failure as it is recorded.
        **strategy_options: The strategy's options. PBT: ``exploit``, ``explore``,
            ``synchrony``, ``burn_in``, ``initial_hyperparameters``, ``replace_failed``; FIRE
            PBT adds ``subpopulations``, ``evaluators``, ``max_eval_steps``, ``p_stat``,
            ``min_steps_before_eval``, ``warmup``, ``success_test``, ``thin``, ``retarget``,
            ``keep_curves``. Policies given as objects rather than by name make the run
            unresumable.

    Returns:
        The run's result: ``best_member``, ``best_score``, ``schedule`` (the best member's
        hyperparameter schedule), ``describe()`` and ``load_best()``.

    Raises:
        firepbt.ConfigError: A keyword or strategy option is wrong; the message names it.
        firepbt.SpaceError: The space is malformed.
        firepbt.errors.TrainableError: ``trainable`` is not a trainable class or cannot be imported.
    """
    refuse_inside_worker()
    path, resolved = _resolve(trainable, slots)
    config = RunConfig(
        trainable=path,
        space=space_config(space),
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
        runtime_env=dict(runtime_env) if runtime_env is not None else None,
        num_cpus_per_worker=num_cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        devices=list(devices) if isinstance(devices, (list, tuple)) else devices,
        slots=slots,
        run_dir=str(run_dir) if run_dir is not None else None,
        storage=storage,
        storage_options=dict(storage_options) if storage_options is not None else None,
        strategy_options=plain_options(strategy_options),
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
    objects = {k: v for k, v in strategy_options.items() if not is_plain(v)}
    given = executor if isinstance(executor, Executor) else None
    return _start(config, resolved, given, progress, objects, callbacks)


def run_config(
    config: RunConfig,
    *,
    trainable: type[Trainable] | type[VectorisedTrainable] | None = None,
    executor: Executor | None = None,
    progress: bool | Callable[[RunProgress], None] | None = None,
    strategy_objects: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Run a validated config, as ``firepbt run CONFIG`` does.

    Args:
        config: The run's settings (``RunConfig.from_toml(path)``).
        trainable: The trainable class itself, when the config's ``"module:Class"`` path
            cannot import it here.
        executor: An executor to use instead of the one the config names.
        progress: As for :func:`firepbt.run`.
        strategy_objects: Strategy options given as objects (policies), which the config
            cannot hold; the run is then not resumable.
        callbacks: Called after the writers the config's ``[logging]`` names.

    Returns:
        The run's result, as :func:`firepbt.run` returns it.
    """
    if trainable is not None:
        resolved = ResolvedTrainable.of(trainable, config.slots)
    else:
        resolved = resolve_trainable(config.trainable, config.slots)
    return _start(config, resolved, executor, progress, strategy_objects, callbacks)


def _start(
    config: RunConfig,
    resolved: ResolvedTrainable,
    executor: Executor | None,
    progress: bool | Callable[[RunProgress], None] | None,
    strategy_objects: Mapping[str, Any] | None,
    callbacks: Sequence[Callback],
) -> RunResult:
    """Create a run's store and drive it, with the trainable resolved once."""
    cls = resolved.member
    strategy = config.build_strategy(strategy_objects)
    writers = [*build_writers(config.logging), *check_callbacks(callbacks)]
    # e.g. too few GPUs: refused before any file
    executor = executor or make_executor(config, resolved)
    # Absolute and normalised (as the store's root is): a worker on another node (a Ray actor)
    # resolves a relative path elsewhere.
    run_dir = Path(
        os.path.abspath(config.run_dir if config.run_dir else default_run_dir(config.strategy))
    )
    by_value = dumps_by_value(cls) if kept_by_value(cls) else None  # before anything is made
    root = None
    if config.storage:  # checked before anything is made: a storage it cannot reach is refused
        root = storages.run_root(config.storage, run_dir)
        storages.use(root, config.storage_options)
        storages.check(root)
    store = Store.create(run_dir, config.to_dict(), storage=root)
    if by_value is not None:  # resume and replay from the command line load it from here
        write_bytes(run_dir / BY_VALUE_FILE, by_value)
    else:  # left by an earlier run that failed early in this directory
        (run_dir / BY_VALUE_FILE).unlink(missing_ok=True)
    if strategy_objects:
        store.set_meta("unresumable", ", ".join(sorted(strategy_objects)))
    return _drive(config, store, run_dir, strategy, cls, executor, progress, writers, resume=False)


def resume(
    run_dir: str | Path,
    *,
    trainable: type[Trainable] | type[VectorisedTrainable] | None = None,
    executor: Executor | None = None,
    progress: bool | Callable[[RunProgress], None] | None = None,
    callbacks: Sequence[Callback] = (),
    storage: str | None = None,
) -> RunResult:
    """Continue a run that was killed (at any moment) from its store and checkpoints.

    The strategy is rebuilt by replaying the recorded results in order into a fresh strategy
    with the same config and seed; finished segments are not run again, segments that were
    queued or running are. A run directory that another live process is running is refused.
    The writers the run's ``[logging]`` names are built again, and they and ``callbacks`` hear
    of what happens from then on (not of the replayed events).

    Args:
        run_dir: The run's directory (holding ``firepbt.sqlite``).
        trainable: The trainable class, when the stored ``"module:Class"`` path cannot
            import it here (a class kept by value in the run directory is used by itself).
        executor: An executor to use instead of the one the run's config names.
        progress: As for :func:`firepbt.run`.
        callbacks: Further :class:`firepbt.Callback` objects.
        storage: Where the run's storage folder is now, when it was moved (copied to another
            bucket or prefix): its full path or URI (``"s3://other/runs/pbt-…-3f2a9c1e"``). The
            store keeps it from then on; a finished run is only pointed there.

    Returns:
        The finished run's result (at once, for a run that had already finished).

    Raises:
        firepbt.ConfigError: The run was started with policy objects, which its config
            cannot rebuild.
        firepbt.errors.ResumeError: The stored config was changed after the run started.
        firepbt.errors.TrainableError: The trainable cannot be imported.
    """
    run_dir = Path(os.path.abspath(run_dir))
    store = Store.open(run_dir)
    try:
        if storage is not None:
            if store.meta("storage") is None:
                raise ConfigError(
                    f"storage: {run_dir} keeps its checkpoints in the run directory; a moved run "
                    "directory needs no setting"
                )
            moved = storages.absolute(storage)
            storages.use(moved, store.config().get("storage_options"))
            storages.check(moved)  # reachable there, before the store is told
            store.move_storage(moved)
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
        if store.meta("storage") and store.root:
            storages.check(store.root)  # reachable from here, before anything runs again
        writers = [*build_writers(config.logging), *check_callbacks(callbacks)]
    except BaseException:
        store.close()
        raise
    try:
        given = trainable or stored_trainable(run_dir)  # a class kept by value: not imported
        if given is not None:
            resolved = ResolvedTrainable.of(given, config.slots)
        else:
            resolved = resolve_trainable(config.trainable, config.slots)
    except TrainableError:
        store.close()
        raise
    store.set_meta("status", "running")
    strategy = config.build_strategy()
    try:
        executor = executor or make_executor(config, resolved)
    except BaseException:
        store.close()
        raise
    cls = resolved.member
    return _drive(config, store, run_dir, strategy, cls, executor, progress, writers, resume=True)


def _drive(
    config: RunConfig,
    store: Store,
    run_dir: Path,
    strategy: Strategy,
    cls: type[Trainable],
    executor: Executor,
    progress: bool | Callable[[RunProgress], None] | None,
    callbacks: Sequence[Callback],
    resume: bool,
) -> RunResult:
    """Run (or resume) a store's run to the end, holding the run directory's lock."""
    started = time.time()
    display, callback = progress_display(config, progress)
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
