"""The noisy quadratic model, vectorised: k members of :class:`~firepbt.examples.nqm.NQM` in one
numpy population.

Each slot is exactly an ``NQM`` member: θ starts at ``THETA0``, the gradient noise comes from
the member's own ``PCG64`` generator, drawn in the same chunks, and one step is
``θ ← θ − lr·(h θ + σ ε)`` computed elementwise on a ``(slots, dim)`` array, so every slot's θ
is bit for bit the ordinary member's (numpy's elementwise float64 arithmetic does not depend on
the array's shape). The tracked second moment follows ``NQM``'s closed form per ``train`` call.
A slot's state loads into ``NQM`` and the reverse. What batching saves is Python's per-step
overhead: one update of k rows instead of k updates of one.

What differs: ``dim`` is the population's (from its first member, see ``build_population``);
a member whose hyperparameters ask for another is refused.

>>> population = NQMVectorised(slots=2, dim=10)
>>> population.assign(0, {"lr": 0.5, "dim": 10}, seed=0)
>>> population.assign(1, {"lr": 0.1, "dim": 10}, seed=1)
>>> population.train(100)
>>> member = NQM({"lr": 0.5, "dim": 10}, seed=0)
>>> member.train(100)
>>> population.evaluate()[0] == member.evaluate()
True
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from firepbt.examples.nqm import (
    _NOISE_CHUNK,
    DEFAULT_BATCH,
    DEFAULT_DIM,
    NQM,
    THETA0,
    _advance_constant,
    nqm_curvatures,
)
from firepbt.space import Hyperparameters
from firepbt.vectorised import Metrics, VectorisedTrainable


class NQMVectorised(VectorisedTrainable):
    """``slots`` NQM members of dimension ``dim``, each with its own ``lr`` and
    ``batch_size``."""

    member = NQM

    @classmethod
    def build_population(cls, slots: int, hyperparameters: Hyperparameters) -> NQMVectorised:
        """The population for members of this ``dim`` (default ``DEFAULT_DIM``)."""
        return cls(slots, dim=int(hyperparameters.get("dim", DEFAULT_DIM)))

    def __init__(self, slots: int, *, dim: int = DEFAULT_DIM) -> None:
        super().__init__(slots)
        self.dim = dim
        self.curvatures = nqm_curvatures(dim)
        self.theta = np.full((slots, dim), THETA0)
        self.second_moment = np.full((slots, dim), THETA0**2)
        self.rngs: list[np.random.Generator | None] = [None] * slots
        self.steps_trained = [0] * slots

    def _check(self, hyperparameters: Hyperparameters) -> None:
        if "lr" not in hyperparameters:
            raise ValueError("lr: missing; every NQM member needs a learning rate 'lr'")
        dim = hyperparameters.get("dim", DEFAULT_DIM)
        if not isinstance(dim, (int, float)) or int(dim) != self.dim:
            raise ValueError(
                f"dim: every slot of this population has dim {self.dim}, got {dim!r}; build "
                f"NQMVectorised(dim={dim!r}) for those"
            )

    def _rng(self, slot: int) -> np.random.Generator:
        rng = self.rngs[slot]
        assert rng is not None
        return rng

    def build_slot(self, slot: int, hyperparameters: Hyperparameters, seed: int) -> None:
        self._check(hyperparameters)
        self.theta[slot] = THETA0
        self.second_moment[slot] = THETA0**2
        self.rngs[slot] = np.random.Generator(np.random.PCG64(seed))
        self.steps_trained[slot] = 0

    def apply_hyperparameters(self, slot: int, hyperparameters: Hyperparameters) -> None:
        self._check(hyperparameters)

    def train_slots(self, slots: tuple[int, ...], steps: int) -> None:
        h = self.curvatures
        settings = [self.hyperparameters_of(s) for s in slots]
        lrs = [float(x["lr"]) for x in settings]
        batches = [float(x.get("batch_size", DEFAULT_BATCH)) for x in settings]
        lr = np.array(lrs)[:, None]
        noise_std = np.stack([np.sqrt(h / b) for b in batches])
        index = list(slots)
        theta = self.theta[index]
        done = 0
        while done < steps:
            n = min(_NOISE_CHUNK, steps - done)
            eps = np.stack([self._rng(s).standard_normal((n, self.dim)) for s in slots], axis=1)
            for t in range(n):
                theta -= lr * (h * theta + noise_std * eps[t])
            done += n
        self.theta[index] = theta
        for s, step_lr, batch in zip(slots, lrs, batches, strict=True):
            moment = self.second_moment[s]
            self.second_moment[s] = _advance_constant(moment, h, step_lr, steps, batch)
            self.steps_trained[s] += steps

    def evaluate_slots(self, slots: tuple[int, ...]) -> dict[int, Metrics]:
        h = self.curvatures
        return {
            s: {
                "loss": float(0.5 * (h @ self.theta[s] ** 2)),
                "expected_loss": float(0.5 * (h @ self.second_moment[s])),
            }
            for s in slots
        }

    def save_slot(self, slot: int) -> dict[str, Any]:
        """The state ``NQM.save`` returns."""
        return {
            "theta": self.theta[slot].copy(),
            "second_moment": self.second_moment[slot].copy(),
            "rng": copy.deepcopy(self._rng(slot).bit_generator.state),
            "steps_trained": self.steps_trained[slot],
        }

    def load_slot(self, slot: int, state: Any) -> None:
        theta = np.array(state["theta"], dtype=np.float64)
        if theta.shape != (self.dim,):
            raise ValueError(
                f"NQMVectorised.load: state has dim {theta.shape[0]}, this population has dim "
                f"{self.dim}"
            )
        self.theta[slot] = theta
        self.second_moment[slot] = np.array(state["second_moment"], dtype=np.float64)
        self._rng(slot).bit_generator.state = copy.deepcopy(state["rng"])
        self.steps_trained[slot] = int(state["steps_trained"])

    def copy_slot(self, src: int, dst: int) -> None:
        self.theta[dst] = self.theta[src]
        self.second_moment[dst] = self.second_moment[src]
        self._rng(dst).bit_generator.state = copy.deepcopy(self._rng(src).bit_generator.state)
        self.steps_trained[dst] = self.steps_trained[src]
