"""The PBT paper's toy: hand-checked gradient steps, state copies, and why exploit helps."""

from __future__ import annotations

import numpy as np
import pytest

from firepbt.examples.toy import Toy, toy_space
from firepbt.trainable import import_trainable


def test_start_and_true_objective() -> None:
    toy = Toy({"h0": 1.0, "h1": 1.0}, seed=0)
    assert toy.theta == [0.9, 0.9]
    assert toy.evaluate() == pytest.approx(1.2 - 2 * 0.81)


def test_one_step_by_hand() -> None:
    # dQ̂/dθ0 = -2·h0·θ0 = -1.8; ascent with η = 0.01: θ0 = 0.9 - 0.018 = 0.882.
    # θ1 is untouched (h1 = 0).
    toy = Toy({"h0": 1.0, "h1": 0.0}, seed=0)
    toy.train(1)
    assert toy.theta == pytest.approx([0.882, 0.9], abs=1e-15)
    assert toy.evaluate() == pytest.approx(1.2 - (0.882**2 + 0.81), abs=1e-15)


def test_step_size_hyperparameter_and_several_steps() -> None:
    # θi ← θi·(1 − 2·η·hi): with η = 0.1, h = (0.5, 2): factors 0.9 and 0.6 per step.
    toy = Toy({"h0": 0.5, "h1": 2.0, "step_size": 0.1}, seed=0)
    toy.train(2)
    assert toy.theta == pytest.approx([0.9 * 0.81, 0.9 * 0.36], abs=1e-15)


def test_set_hyperparameters_keeps_weights() -> None:
    toy = Toy({"h0": 1.0, "h1": 0.0}, seed=0)
    toy.train(3)
    theta = list(toy.theta)
    toy.set_hyperparameters({"h0": 0.0, "h1": 1.0})
    toy.train(1)
    assert toy.theta == pytest.approx([theta[0], theta[1] * 0.98], abs=1e-15)


def test_save_is_a_copy_and_load_restores() -> None:
    a = Toy({"h0": 1.0, "h1": 0.0}, seed=0)
    a.train(5)
    state = a.save()
    a.train(5)
    assert state["theta"][0] == pytest.approx(0.9 * 0.98**5)
    b = Toy({"h0": 0.0, "h1": 1.0}, seed=1)
    b.load(state)
    b.train(1)
    assert state["theta"] == pytest.approx([0.9 * 0.98**5, 0.9])  # b's training left it alone
    assert b.theta == pytest.approx([0.9 * 0.98**5, 0.9 * 0.98])


def test_exploit_between_the_two_paper_members_beats_either_alone() -> None:
    """The paper's Figure 2 in miniature: copying θ from the better member every few steps lets
    two one-sided members (h = (1, 0) and (0, 1)) approach the optimum Q = 1.2."""
    members = [Toy({"h0": 1.0, "h1": 0.0}, 0), Toy({"h0": 0.0, "h1": 1.0}, 1)]
    for _ in range(50):
        for m in members:
            m.train(4)
        scores = [m.evaluate() for m in members]
        best = int(np.argmax(scores))  # on a tie member 0 wins, so someone always copies
        members[1 - best].load(members[best].save())
    alone = Toy({"h0": 1.0, "h1": 0.0}, 0)
    alone.train(200)
    assert alone.evaluate() < 0.4  # θ1 stuck at 0.9: Q ≤ 1.2 − 0.81
    assert max(m.evaluate() for m in members) > 1.1


def test_space_and_import_path() -> None:
    space = toy_space()
    assert sorted(space) == ["h0", "h1"]
    h = space.sample(np.random.default_rng(0))
    assert all(0.0 <= v <= 1.0 for v in h.values())
    assert space["h0"].perturb(1.9, 1.2, np.random.default_rng(0)) == 2.0  # clipped to the bound
    assert import_trainable("firepbt.examples.toy:Toy") is Toy
