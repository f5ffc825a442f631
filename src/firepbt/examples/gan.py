"""A small GAN on a ring of 8 Gaussians, scored by a metric its training never optimises.

Data (generated in code): an equal mixture of 8 Gaussians with std ``STD`` = 0.05 centred on a
circle of radius 2 (the ring of Metz et al. 2017, with a wider std so that small networks learn it
in a few thousand steps). The generator (latent 16 → 64 → 64 → 2, ReLU) and the discriminator
(2 → 64 → 64 → 1, ReLU) are trained with the non-saturating GAN loss and one Adam optimizer
each (β₁ = 0.5); PBT tunes the two learning rates ``lr_g`` and ``lr_d``. One ``train`` step is
one discriminator update then one generator update, on a minibatch of 128 real and 128 generated
points.

Q is ``evaluate()["quality"]``, the mode-coverage score of the GAN literature (VEEGAN,
Srivastava et al. 2017; PacGAN, Lin et al. 2018), computed on 2000 samples from a fixed latent
batch (the same for every member, so scores compare directly, and evaluating draws nothing from
a training generator):

* a sample is *high quality* if it lies within 3σ of some mode;
* a mode is *covered* if at least 2 % of the samples (a sixth of its fair share) are high-quality
  samples nearest to it;
* quality = (covered modes / 8) × (share of high-quality samples), in [0, 1].

True samples score ≈ 0.99; a generator collapsed onto one mode ≤ 0.125; noise spread over the
plane ≈ 0. The score is a count over thresholds, not differentiable, and neither network sees it:
PBT optimises the metric one cares about, not the loss. Its parts are recorded as ``modes`` and
``high_quality``.

Measured with one torch thread on a 2-core machine shared with other work (load 2–6, so timings
are noisy, ±2×): one step takes 2.5–5 ms, an evaluation 2–3 ms. Q (range over 2 seeds) after
1000 / 2000 / 4000 steps:

    lr_g = lr_d = 1e-4          0.00       / 0.00      / 0.01
    lr_g = lr_d = 3e-4          0.00       / 0.00      / 0.14–0.36
    lr_g = lr_d = 1e-3          0.00       / 0.18–0.74 / 0.73–0.88
    lr_g = lr_d = 3e-3          0.18–0.61  / 0.66–0.89 / 0.55–0.71
    lr_g = lr_d = 1e-2          0.51–0.53  / 0.29–0.66 / 0.21–0.91  (oscillates)
    lr_g = 3e-3, lr_d = 3e-4    0.00       / 0.00–0.01 / 0.14–0.31
    lr_g = 3e-4, lr_d = 3e-3    0.12 from step 1000 on: collapsed onto one mode

A discriminator much faster than the generator collapses it onto one mode. ``examples/gan_pbt.toml``
(8 members × 3000 steps, 2 workers) took 3 min 46 s at load ≈ 5–6; the best member reached
quality 0.79 by step 1250 and 0.93 (8 modes) at the end.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from firepbt.space import Hyperparameters, LogUniform, Space
from firepbt.trainable import Trainable

N_MODES = 8
RADIUS = 2.0
STD = 0.05
LATENT = 16
HIDDEN = 64
BATCH = 128
BETA1 = 0.5
EVAL_SAMPLES = 2000
EVAL_SEED = 2024  # one fixed latent batch scores every member
MIN_MODE_SHARE = 0.02  # a mode is covered by at least this share of the samples

_KNOWN = {"lr_g", "lr_d", "batch_size", "beta1"}


def ring_modes(n_modes: int = N_MODES, radius: float = RADIUS) -> np.ndarray:
    """The mixture's centres, evenly spaced on a circle: shape (n_modes, 2)."""
    angles = 2 * math.pi * np.arange(n_modes) / n_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def sample_ring(count: int, rng: np.random.Generator, std: float = STD) -> np.ndarray:
    """``count`` points from the true data distribution."""
    centres = ring_modes()[rng.integers(N_MODES, size=count)]
    return centres + std * rng.standard_normal((count, 2))


@dataclass(frozen=True, slots=True)
class RingScore:
    """How well samples cover the ring: modes covered and the share of high-quality samples."""

    modes: int
    high_quality: float

    @property
    def quality(self) -> float:
        return self.modes / N_MODES * self.high_quality


def score_samples(samples: np.ndarray, min_share: float = MIN_MODE_SHARE) -> RingScore:
    """Score 2-D samples against the ring (non-finite samples count as low quality).

    >>> score_samples(sample_ring(2000, np.random.default_rng(0))).modes
    8
    >>> score_samples(np.zeros((100, 2))).quality
    0.0
    """
    points = np.asarray(samples, dtype=np.float64).reshape(-1, 2)
    distances = np.linalg.norm(points[:, None, :] - ring_modes()[None], axis=-1)
    with np.errstate(invalid="ignore"):
        close = np.nan_to_num(distances, nan=np.inf).min(axis=1) <= 3 * STD
    nearest = np.nan_to_num(distances, nan=np.inf).argmin(axis=1)
    counts = np.bincount(nearest[close], minlength=N_MODES)
    modes = int((counts >= min_share * len(points)).sum())
    return RingScore(modes, float(close.mean()) if len(points) else 0.0)


def _mlp(inputs: int, outputs: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, outputs),
    )


class RingGAN(Trainable):
    """A GAN with two optimizers; ``lr_g`` and ``lr_d`` are written into them, as TorchTrainable
    does for one. All randomness of training comes from this member's own ``torch.Generator``
    (saved with the state); weights are initialised from ``seed`` without touching torch's
    global generator.

    >>> gan = RingGAN({"lr_g": 1e-3, "lr_d": 1e-3}, seed=0)
    >>> gan.train(5)
    >>> sorted(gan.evaluate())
    ['high_quality', 'modes', 'quality']
    """

    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        _check(hyperparameters)
        super().__init__(hyperparameters, seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = _mlp(LATENT, 2)
            self.discriminator = _mlp(2, 1)
        beta1 = float(self.hyperparameters.get("beta1", BETA1))
        self.opt_g = torch.optim.Adam(self.generator.parameters(), betas=(beta1, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), betas=(beta1, 0.999))
        self.rng = torch.Generator().manual_seed(seed)
        self.modes = torch.as_tensor(ring_modes(), dtype=torch.float32)
        self.eval_latent = torch.randn(
            EVAL_SAMPLES, LATENT, generator=torch.Generator().manual_seed(EVAL_SEED)
        )
        self.steps_trained = 0
        self._apply_learning_rates()

    def set_hyperparameters(self, hyperparameters: Hyperparameters) -> None:
        _check(hyperparameters)
        super().set_hyperparameters(hyperparameters)
        self._apply_learning_rates()

    def _apply_learning_rates(self) -> None:
        h = self.hyperparameters
        for optimizer, lr in ((self.opt_g, h["lr_g"]), (self.opt_d, h["lr_d"])):
            for group in optimizer.param_groups:
                group["lr"] = float(lr)

    def _real_batch(self, count: int) -> torch.Tensor:
        which = torch.randint(N_MODES, (count,), generator=self.rng)
        return self.modes[which] + STD * torch.randn(count, 2, generator=self.rng)

    def train(self, steps: int) -> None:
        batch = int(self.hyperparameters.get("batch_size", BATCH))
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)
        for _ in range(steps):
            real = self._real_batch(batch)
            fake = self.generator(torch.randn(batch, LATENT, generator=self.rng))
            d_loss = bce(self.discriminator(real), ones) + bce(
                self.discriminator(fake.detach()), zeros
            )
            self.opt_d.zero_grad()
            d_loss.backward()  # type: ignore[no-untyped-call]
            self.opt_d.step()
            # Non-saturating generator loss: make the (just updated) discriminator call fakes real.
            g_loss = bce(self.discriminator(fake), ones)
            self.opt_g.zero_grad()
            g_loss.backward()  # type: ignore[no-untyped-call]
            self.opt_g.step()
            self.steps_trained += 1

    @torch.no_grad()
    def samples(self) -> np.ndarray:
        """The generator's output on the fixed evaluation latent batch."""
        return np.asarray(self.generator(self.eval_latent).numpy(), dtype=np.float64)

    def evaluate(self) -> dict[str, float]:
        score = score_samples(self.samples())
        return {
            "quality": score.quality,
            "modes": float(score.modes),
            "high_quality": score.high_quality,
        }

    def save(self) -> dict[str, Any]:
        """Deep copies (optimizer state dicts hold references to live tensors)."""
        return copy.deepcopy(
            {
                "generator": self.generator.state_dict(),
                "discriminator": self.discriminator.state_dict(),
                "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(),
                "rng": self.rng.get_state(),
                "steps_trained": self.steps_trained,
            }
        )

    def load(self, state: Any) -> None:
        """Restore a saved state, then re-apply this member's own learning rates (an exploit
        copies the donor's weights, not its hyperparameters)."""
        state = copy.deepcopy(state)
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng"])
        self.steps_trained = int(state["steps_trained"])
        self._apply_learning_rates()


def _check(h: Hyperparameters) -> None:
    unknown = sorted(set(h) - _KNOWN)
    if unknown:
        raise ValueError(f"RingGAN: unknown hyperparameter(s) {unknown}; known: {sorted(_KNOWN)}")
    missing = sorted({"lr_g", "lr_d"} - set(h))
    if missing:
        raise ValueError(f"RingGAN: hyperparameter(s) {missing} required")


def gan_space() -> Space:
    """``lr_g`` and ``lr_d`` log-uniform on [1e-4, 1e-2]; perturbation may reach [1e-5, 3e-2]."""
    return Space(
        {
            "lr_g": LogUniform(1e-4, 1e-2, bounds=(1e-5, 3e-2)),
            "lr_d": LogUniform(1e-4, 1e-2, bounds=(1e-5, 3e-2)),
        }
    )
