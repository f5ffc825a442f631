"""The ring GAN: the quality score on hand-made sample sets, a run end to end, exact save → load."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import firepbt  # noqa: E402
import firepbt.examples.gan as gan  # noqa: E402
from firepbt.config import RunConfig  # noqa: E402
from firepbt.examples.gan import (  # noqa: E402
    N_MODES,
    STD,
    RingGAN,
    gan_space,
    ring_modes,
    sample_ring,
    score_samples,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny networks: several threads only add contention (these tests run in this process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_true_samples_score_high(rng: np.random.Generator) -> None:
    score = score_samples(sample_ring(2000, rng))
    assert score.modes == N_MODES
    # In 2-D, a Gaussian sample lies within 3σ of its centre with probability 1 − e^(−4.5) ≈ 0.989.
    assert score.high_quality == pytest.approx(1 - np.exp(-4.5), abs=0.01)
    assert score.quality > 0.97


def test_a_collapsed_generator_scores_low(rng: np.random.Generator) -> None:
    one_mode = ring_modes()[3] + STD * rng.standard_normal((2000, 2))
    score = score_samples(one_mode)
    assert score.modes == 1 and score.high_quality > 0.97
    assert score.quality <= 1 / N_MODES


def test_half_the_modes_score_half(rng: np.random.Generator) -> None:
    samples = sample_ring(2000, rng)
    even = samples[
        np.linalg.norm(samples - ring_modes()[[0, 2, 4, 6]][:, None], axis=-1).min(0) < 1
    ]
    assert score_samples(even).modes == 4
    assert score_samples(even).quality == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    "noise",
    [
        lambda r: r.uniform(-3, 3, (2000, 2)),  # spread over the plane
        lambda r: r.standard_normal((2000, 2)),  # a blob in the middle
        lambda r: np.full((2000, 2), np.nan),  # a diverged generator
    ],
)
def test_noise_scores_low(rng: np.random.Generator, noise: Any) -> None:
    score = score_samples(noise(rng))
    assert score.modes == 0
    assert score.quality < 0.05


def test_a_smeared_ring_scores_low(rng: np.random.Generator) -> None:
    """Samples on the whole circle cover every mode a little but are mostly between modes."""
    angle = rng.uniform(0, 2 * np.pi, 2000)
    score = score_samples(2 * np.stack([np.cos(angle), np.sin(angle)], axis=1))
    assert score.high_quality < 0.25
    assert score.quality < 0.25


def test_a_mode_needs_its_share_of_samples(rng: np.random.Generator) -> None:
    samples = np.concatenate([ring_modes()[[0]] + STD * rng.standard_normal((985, 2)),
                              ring_modes()[[1]] + STD * rng.standard_normal((15, 2))])  # fmt: skip
    assert score_samples(samples).modes == 1  # 1.5 % < the 2 % a mode needs
    assert score_samples(samples, min_share=0.01).modes == 2


def test_pbt_run_in_process(tmp_path: Path) -> None:
    result = firepbt.run(
        RingGAN,
        gan_space(),
        total_steps=40,
        population=2,
        ready_every=20,
        metric="quality",
        executor="inprocess",
        run_dir=tmp_path / "run",
    )
    assert result.best_step == 40
    assert 0.0 <= result.best_score <= 1.0
    assert set(result.metrics) == {"quality", "modes", "high_quality"}


def _tensors(model: RingGAN) -> list[Any]:
    weights = [*model.generator.parameters(), *model.discriminator.parameters()]
    moments = [
        s[k]
        for opt in (model.opt_g, model.opt_d)
        for s in opt.state_dict()["state"].values()
        for k in ("exp_avg", "exp_avg_sq")
    ]
    return [t.detach().clone() for t in weights + moments]


def test_save_load_reproduces_training_straight_through() -> None:
    h = {"lr_g": 1e-3, "lr_d": 2e-3}
    straight = RingGAN(h, seed=5)
    straight.train(30)
    first = RingGAN(h, seed=5)
    first.train(20)
    state = first.save()
    first.train(3)  # moving on must not touch the saved state
    resumed = RingGAN(h, seed=77)  # another seed: the state carries the generator
    resumed.load(state)
    resumed.train(10)
    for a, b in zip(_tensors(resumed), _tensors(straight), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.evaluate() == straight.evaluate()


def test_same_seed_same_weights_and_no_global_rng_use() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a, b = RingGAN({"lr_g": 1e-3, "lr_d": 1e-3}, 4), RingGAN({"lr_g": 1e-3, "lr_d": 1e-3}, 4)
    a.train(5)
    b.train(5)
    assert torch.equal(torch.get_rng_state(), before)
    for x, y in zip(_tensors(a), _tensors(b), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_exploit_keeps_own_learning_rates() -> None:
    donor = RingGAN({"lr_g": 1e-2, "lr_d": 1e-2}, 0)
    donor.train(3)
    child = RingGAN({"lr_g": 1e-4, "lr_d": 3e-4}, 1)
    child.load(donor.save())
    assert child.opt_g.param_groups[0]["lr"] == 1e-4
    assert child.opt_d.param_groups[0]["lr"] == 3e-4
    child.set_hyperparameters({"lr_g": 2e-4, "lr_d": 5e-4})
    assert (child.opt_g.param_groups[0]["lr"], child.opt_d.param_groups[0]["lr"]) == (2e-4, 5e-4)


@pytest.mark.parametrize(
    ("h", "field"), [({"lr_g": 1e-3}, "lr_d"), ({"lr_g": 1, "lr_d": 1, "lr": 1}, "lr")]
)
def test_bad_hyperparameters_are_named(h: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RingGAN(h, seed=0)


def test_shipped_config_is_valid() -> None:
    config = RunConfig.from_toml(EXAMPLES / "gan_pbt.toml")
    assert config.trainable == "firepbt.examples.gan:RingGAN"
    assert config.metric == "quality" and config.mode == "max"
    assert set(config.build_space().tunable()) == {"lr_g", "lr_d"}


def test_doctests_pass() -> None:
    result = doctest.testmod(gan)
    assert result.failed == 0 and result.attempted > 0
