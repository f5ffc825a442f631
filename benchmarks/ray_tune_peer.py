"""Peer comparison: run any firepbt Trainable under Ray Tune's PopulationBasedTraining.

``tune_pbt`` wraps a firepbt ``Trainable`` in a ``ray.tune.Trainable`` and runs it with Ray
Tune's PBT scheduler as Tune's docs recommend it (``time_attr="training_iteration"``,
``reuse_actors=True``, checkpoints every perturbation interval), so that the same trainable and
search space can be run side by side under firepbt and under Tune.

How the adapter maps our contract onto Tune's:

- one Tune iteration trains ``eval_every`` steps (default ``ready_every``; the last one may be
  shorter) and reports every metric ``evaluate()`` returned; Tune's ``perturbation_interval`` is
  ``ready_every // eval_every`` iterations, and the run stops once ``total_steps`` are trained;
- ``save_checkpoint(dir)`` pickles ``save()`` (with the step count and the lineage's schedule)
  into ``dir``; ``load_checkpoint(dir)`` calls ``load()`` and then ``set_hyperparameters()``;
- ``reset_config`` calls ``set_hyperparameters`` and returns True, so actors are reused. Tune
  also reuses an actor for another trial that has no checkpoint yet; the adapter then rebuilds
  the trainable from config and seed before it trains, so no state leaks between trials;
- the space becomes Tune's ``param_space`` (initial draws) and ``hyperparam_mutations``:
  ``LogUniform``/``Uniform``/``IntUniform`` → ``tune.loguniform``/``uniform``/``randint``,
  ``Choice`` → a list (Tune shifts to a neighbour or resamples; it has no unordered choices),
  ``Fixed`` → a constant. Tune does not bound its perturbations; our hard ``bounds`` are applied
  through Tune's ``custom_explore_fn`` hook, as firepbt applies them.

Seeds: trial *i* gets the *i*-th seed of ``numpy.random.SeedSequence(seed)`` (one trial per value
of a ``grid_search``); initial hyperparameters come from Tune's variant generator seeded with
``seed``. Tune's PBT draws its exploit and explore choices from Python's global ``random`` and its
resamples from numpy's global generator, so both are seeded with ``seed`` too (a side effect on
the caller). Asynchronous PBT still depends on the order results arrive in, so two runs with the
same seed need not match.

``benchmarks/ray_tune_overhead.py`` runs the overhead workload through it, and
``benchmarks/table1.py`` the MNIST-1D and CartPole comparison.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firepbt.execution.worker import extract_score
from firepbt.lineage import ScheduleEntry
from firepbt.space import (
    Choice,
    Distribution,
    Fixed,
    Hyperparameters,
    IntUniform,
    LogUniform,
    Space,
    Uniform,
)
from firepbt.trainable import Trainable

SEED_KEY = "firepbt_seed"  # the trial's seed, in Tune's config
STEP_KEY = "firepbt_step"  # steps this trial's lineage has trained, in each result
TRAINED_KEY = "firepbt_trained_steps"  # steps trained by this iteration, in each result
FINAL_KEY = "firepbt_final"  # JSON of final metrics, hyperparameters and schedule
CHECKPOINT_FILE = "firepbt_member.pkl"


@dataclass(frozen=True, slots=True)
class PeerResult:
    """What one Ray Tune PBT run produced.

    ``schedule`` is the best trial's lineage: which trial trained which steps with which
    hyperparameters (``member`` is the trial's index). ``wall_seconds`` is measured around
    ``Tuner.fit()``; ``ray_start_seconds`` is the ``ray.init`` time (0 when Ray was already up).
    ``worker_steps`` counts every step actually trained: asynchronous PBT can copy a donor that
    is behind (steps trained again) or ahead (steps skipped), so it need not be
    ``population × total_steps``. ``exploits`` counts the lines of Tune's
    ``pbt_global.txt``.
    """

    metric: str
    mode: str
    best_metrics: dict[str, float]
    best_hyperparameters: Hyperparameters
    schedule: tuple[ScheduleEntry, ...]
    trial_metrics: tuple[dict[str, float], ...]
    wall_seconds: float
    ray_start_seconds: float
    worker_steps: int
    exploits: int

    @property
    def best_score(self) -> float:
        return self.best_metrics[self.metric]


# --- the search space -------------------------------------------------------------------------


def tune_space(space: Space) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Tune ``param_space`` entries for the initial draws, Tune ``hyperparam_mutations``)."""
    from ray import tune

    params: dict[str, Any] = {}
    mutations: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, Fixed):
            params[name] = dist.value
            continue
        if isinstance(dist, LogUniform):
            domain: Any = tune.loguniform(dist.low, dist.high)
        elif isinstance(dist, IntUniform):
            domain = tune.randint(int(dist.low), int(dist.high) + 1)  # Tune's upper is exclusive
        elif isinstance(dist, Uniform):
            domain = tune.uniform(dist.low, dist.high)
        elif isinstance(dist, Choice):
            params[name] = tune.choice(list(dist.options))
            mutations[name] = list(dist.options)
            continue
        else:
            raise ValueError(
                f"space.{name}: {type(dist).__name__} has no Ray Tune equivalent here; "
                "use LogUniform, Uniform, IntUniform, Choice or Fixed"
            )
        params[name] = domain
        mutations[name] = domain
    return params, mutations


def _within_bounds(dist: Distribution, value: Any) -> Any:
    """Bring a value Tune's explore step produced back into our distribution's hard bounds."""
    if isinstance(dist, Fixed):
        return dist.value
    if isinstance(dist, IntUniform):
        lo, hi = dist.bounds
        v = int(round(float(value)))
        return min(max(v, math.ceil(max(lo, -sys.maxsize))), math.floor(min(hi, sys.maxsize)))
    if isinstance(dist, (Uniform, LogUniform)):
        lo, hi = dist.bounds
        return float(min(max(float(value), lo), hi))
    if isinstance(dist, Choice):
        return dist.validate(value)  # canonical option (Tune may hand back numpy scalars)
    return value


class _BoundedExplore:
    """Tune's ``custom_explore_fn``: runs after Tune's own perturbation, clips to our bounds."""

    def __init__(self, space: Space) -> None:
        self.space = space

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for name, dist in self.space.items():
            if name in config:
                config[name] = _within_bounds(dist, config[name])
        return config


def trial_seeds(seed: int, population: int) -> list[int]:
    """One seed per trial index, derived from ``seed``."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(population)]


# --- the adapter --------------------------------------------------------------------------------


def member_class(
    trainable_cls: type[Trainable],
    space: Space,
    *,
    metric: str,
    total_steps: int,
    eval_every: int,
    trainable_kwargs: Mapping[str, Any] | None = None,
) -> type:
    """A ``ray.tune.Trainable`` class that drives ``trainable_cls`` (see the module docstring)."""
    from ray import cloudpickle, tune

    if __name__ != "__main__":
        # Workers cannot import this file (benchmarks/ is not a package): ship it by value.
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    kwargs = dict(trainable_kwargs or {})

    class FirepbtMember(tune.Trainable):  # type: ignore[misc]
        def setup(self, config: dict[str, Any]) -> None:
            self._take_config(config)
            self._build()

        def _take_config(self, config: Mapping[str, Any]) -> None:
            self._h = space.validate({k: config[k] for k in space})
            self._seed = int(config[SEED_KEY])

        def _build(self) -> None:
            self._member = trainable_cls(dict(self._h), self._seed, **kwargs)
            self._step = 0
            # [from_step, trial_id, hyperparameters], oldest first; travels in checkpoints
            self._schedule: list[list[Any]] = [[0, self.trial_id, dict(self._h)]]
            self._stale = False

        def _note_hyperparameters(self) -> None:
            last = self._schedule[-1]
            if last[1] == self.trial_id and last[2] == self._h:
                return
            entry = [self._step, self.trial_id, dict(self._h)]
            if self._schedule[-1][0] == self._step:
                self._schedule[-1] = entry
            else:
                self._schedule.append(entry)

        def _current(self) -> Trainable:
            if self._stale:  # a reused actor now hosts a trial that has no checkpoint yet
                self._build()
            return self._member

        def step(self) -> dict[str, Any]:
            member = self._current()
            self._note_hyperparameters()
            k = min(eval_every, total_steps - self._step)
            if k > 0:
                member.train(k)
                self._step += k
            _, metrics = extract_score(member.evaluate(), metric)
            result: dict[str, Any] = {**metrics, STEP_KEY: self._step, TRAINED_KEY: k}
            if self._step >= total_steps:
                final = {"metrics": metrics, "hyperparameters": self._h, "schedule": self._schedule}
                result[FINAL_KEY] = json.dumps(final, default=_plain)
            return result

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            state = {
                "state": self._current().save(),
                "step": self._step,
                "schedule": self._schedule,
            }
            with open(Path(checkpoint_dir) / CHECKPOINT_FILE, "wb") as f:
                pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)

        def load_checkpoint(self, checkpoint: str | dict[str, Any]) -> None:
            with open(Path(str(checkpoint)) / CHECKPOINT_FILE, "rb") as f:
                state = pickle.load(f)
            self._member.load(state["state"])
            self._member.set_hyperparameters(dict(self._h))
            self._step = int(state["step"])
            self._schedule = [list(e) for e in state["schedule"]]
            self._stale = False

        def reset_config(self, new_config: dict[str, Any]) -> bool:
            self._take_config(new_config)
            self._member.set_hyperparameters(dict(self._h))
            self._stale = True  # until a checkpoint is loaded (an exploit or a resumed trial)
            return True

    FirepbtMember.__name__ = f"Tune{trainable_cls.__name__}"  # Tune names trials after it
    return FirepbtMember


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars in metrics and hyperparameters."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {value!r} as JSON")


# --- running it ---------------------------------------------------------------------------------


def start_ray(workers: int) -> float:
    """Start a local Ray instance with ``workers`` CPUs unless one is up; seconds it took."""
    import ray

    if ray.is_initialized():
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus != workers:
            raise ValueError(
                f"workers: Ray is already running with {cpus} CPUs but workers={workers}; "
                "call ray.shutdown() first or pass the same number of workers"
            )
        return 0.0
    started = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=workers,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    return time.perf_counter() - started


def _step_counter() -> Any:
    from ray import tune

    class StepCounter(tune.Callback):  # type: ignore[misc]
        """Adds up the steps every reported iteration trained (runs in the driver)."""

        def __init__(self) -> None:
            self.steps = 0

        def on_trial_result(
            self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
        ) -> None:
            self.steps += int(result.get(TRAINED_KEY, 0))

    return StepCounter()


def tune_pbt(
    trainable_cls: type[Trainable],
    space: Mapping[str, Any],
    *,
    population: int,
    total_steps: int,
    ready_every: int,
    eval_every: int | None = None,
    metric: str,
    mode: str,
    seed: int,
    workers: int = 2,
    exploit_fraction: float = 0.25,
    resample_probability: float = 0.25,
    perturbation_factors: tuple[float, float] = (0.8, 1.2),
    synch: bool = False,
    reuse_actors: bool = True,
    trainable_kwargs: Mapping[str, Any] | None = None,
    storage_path: str | Path | None = None,
    time_budget_s: float | None = None,
) -> PeerResult:
    """Run ``trainable_cls`` over ``space`` with Ray Tune's PopulationBasedTraining.

    ``time_budget_s`` stops Tune after that many seconds (its synchronous PBT can hang, with a
    trial paused for a peer that has ended; the tests bound it so).

    Starts Ray with ``workers`` CPUs (1 per trial) unless it is running; leaves it running (call
    ``ray.shutdown()`` when done). Tune's files go to ``storage_path``, by default a temporary
    directory removed afterwards.

    >>> from firepbt.examples.toy import Toy, toy_space
    >>> r = tune_pbt(Toy, toy_space(), population=2, total_steps=8, ready_every=4,
    ...              metric="score", mode="max", seed=0)  # doctest: +SKIP
    >>> r.worker_steps  # doctest: +SKIP
    16
    """
    space = space if isinstance(space, Space) else Space(space)
    eval_every = eval_every or ready_every
    _check(population, total_steps, ready_every, eval_every, mode, space)
    if storage_path is None:
        with tempfile.TemporaryDirectory(prefix="ray-tune-peer-") as tmp:
            return tune_pbt(
                trainable_cls, space, population=population, total_steps=total_steps,
                ready_every=ready_every, eval_every=eval_every, metric=metric, mode=mode,
                seed=seed, workers=workers, exploit_fraction=exploit_fraction,
                resample_probability=resample_probability,
                perturbation_factors=perturbation_factors, synch=synch,
                reuse_actors=reuse_actors, trainable_kwargs=trainable_kwargs, storage_path=tmp,
                time_budget_s=time_budget_s,
            )  # fmt: skip

    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search import BasicVariantGenerator

    ray_start = start_ray(workers)
    params, mutations = tune_space(space)
    params[SEED_KEY] = tune.grid_search(trial_seeds(seed, population))  # one trial per seed
    interval = ready_every // eval_every
    random.seed(seed)  # Tune's PBT: exploit/explore choices
    np.random.seed(seed)  # Tune's PBT: resampling from tune.* domains
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        metric=metric,
        mode=mode,
        perturbation_interval=interval,
        hyperparam_mutations=mutations,
        quantile_fraction=exploit_fraction,
        resample_probability=resample_probability,
        perturbation_factors=tuple(perturbation_factors),
        custom_explore_fn=_BoundedExplore(space),
        synch=synch,
    )
    counter = _step_counter()
    tuner = tune.Tuner(
        member_class(
            trainable_cls,
            space,
            metric=metric,
            total_steps=total_steps,
            eval_every=eval_every,
            trainable_kwargs=trainable_kwargs,
        ),
        param_space=params,
        tune_config=tune.TuneConfig(
            scheduler=scheduler,
            search_alg=BasicVariantGenerator(random_state=seed),
            num_samples=1,  # × a grid of `population` seeds = `population` trials
            reuse_actors=reuse_actors,
            time_budget_s=time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=f"pbt-{trainable_cls.__name__}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(Path(storage_path).resolve()),
            stop={STEP_KEY: total_steps},
            verbose=0,
            callbacks=[counter, CSVLoggerCallback(), JsonLoggerCallback()],
            # Tune's PBT examples checkpoint on the perturbation steps. All checkpoints are kept
            # (in storage_path): with num_to_keep set, Tune forces an experiment-state snapshot
            # every num_to_keep checkpoints, which slows it down for no benefit here.
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=interval),
        ),
    )
    started = time.perf_counter()
    with _csv_and_json_logs_only():
        grid = tuner.fit()
    wall = time.perf_counter() - started
    return _collect(grid, metric, mode, total_steps, wall, ray_start, counter.steps)


@contextlib.contextmanager
def _csv_and_json_logs_only() -> Iterator[None]:
    """Tune's own CSV and JSON logs, without the TensorBoard logger it adds whenever tensorboardX
    is installed (firepbt's logging extra brings it): its per-result writes changed Tune's
    timing enough for its synchronous PBT to hang (a trial paused for a peer that had ended)."""
    previous = os.environ.get(NO_AUTO_LOGGERS)
    os.environ[NO_AUTO_LOGGERS] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[NO_AUTO_LOGGERS]
        else:
            os.environ[NO_AUTO_LOGGERS] = previous


NO_AUTO_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def _check(
    population: int, total_steps: int, ready_every: int, eval_every: int, mode: str, space: Space
) -> None:
    for name, value in [
        ("population", population),
        ("total_steps", total_steps),
        ("ready_every", ready_every),
        ("eval_every", eval_every),
    ]:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if population < 2:
        raise ValueError(f"population: PBT needs at least 2 trials, got {population}")
    if ready_every % eval_every:
        raise ValueError(
            f"ready_every: must be a multiple of eval_every ({eval_every}) because Tune perturbs "
            f"on whole iterations, got {ready_every}"
        )
    if mode not in ("min", "max"):
        raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
    if SEED_KEY in space:
        raise ValueError(f"space.{SEED_KEY}: the name is reserved for the trial seed; rename it")


def _collect(
    grid: Any, metric: str, mode: str, total_steps: int, wall: float, ray_start: float, steps: int
) -> PeerResult:
    failed = [r for r in grid if r.error is not None]
    if failed:
        raise RuntimeError(
            f"{len(failed)} Ray Tune trial(s) failed; first error: {failed[0].error}"
        )
    results = sorted(grid, key=lambda r: r.metrics["trial_id"])
    index = {r.metrics["trial_id"]: i for i, r in enumerate(results)}
    finals = []
    for r in results:
        if FINAL_KEY not in r.metrics:
            raise RuntimeError(
                f"trial {r.metrics['trial_id']} stopped at step {r.metrics.get(STEP_KEY)} "
                f"before total_steps={total_steps}"
            )
        finals.append(json.loads(r.metrics[FINAL_KEY]))
    sign = 1.0 if mode == "max" else -1.0
    best = max(finals, key=lambda f: _score_key(sign * f["metrics"][metric]))
    entries = best["schedule"]
    schedule = tuple(
        ScheduleEntry(
            from_step=int(start),
            to_step=int(entries[i + 1][0]) if i + 1 < len(entries) else total_steps,
            member=index.get(trial_id, -1),
            hyperparameters=dict(h),
        )
        for i, (start, trial_id, h) in enumerate(entries)
    )
    exploits = 0
    global_log = Path(grid.experiment_path) / "pbt_global.txt"
    if global_log.exists():
        exploits = sum(1 for line in global_log.read_text().splitlines() if line.strip())
    return PeerResult(
        metric=metric,
        mode=mode,
        best_metrics=dict(best["metrics"]),
        best_hyperparameters=dict(best["hyperparameters"]),
        schedule=schedule,
        trial_metrics=tuple(dict(f["metrics"]) for f in finals),
        wall_seconds=wall,
        ray_start_seconds=ray_start,
        worker_steps=steps,
        exploits=exploits,
    )


def _score_key(x: float) -> float:
    return -math.inf if math.isnan(x) else x
