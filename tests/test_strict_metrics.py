"""Only real numbers count as scores: a string or a bool from ``evaluate()`` is a recorded
``bad_metric`` naming the type, never a number taken by conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _runs import every_member_fails
from _trainables import Quad

from firepbt.errors import MetricError
from firepbt.execution.worker import extract_score


@pytest.mark.parametrize(
    "value",
    [0.5, 3, np.float32(0.5), np.int64(3), np.array(0.5), torch.tensor(0.5), torch.tensor(3)],
    ids=repr,
)
def test_real_numbers_count(value: Any) -> None:
    score, metrics = extract_score(value, None)
    assert score == float(value) and metrics == {"score": score}
    score, metrics = extract_score({"loss": value, "acc": 1}, "loss")
    assert score == float(value) and metrics == {"loss": score, "acc": 1.0}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("0.5", "str"),
        (True, "bool"),
        (np.bool_(False), "bool"),
        (torch.tensor(True), "Tensor"),
        (torch.tensor([0.5]), "Tensor"),
        (np.array([0.5]), "ndarray"),
        (None, "NoneType"),
        ([0.5], "list"),
    ],
    ids=repr,
)
def test_anything_else_is_a_metric_error_naming_its_type(value: Any, kind: str) -> None:
    with pytest.raises(MetricError, match=f"{kind} .* is not a number"):
        extract_score(value, None)
    with pytest.raises(MetricError, match=f"metric 'loss': {kind} .* is not a number"):
        extract_score({"loss": value}, "loss")


class StringScore(Quad):
    def evaluate(self) -> Any:
        return {"score": "0.5"}


class BoolScore(Quad):
    def evaluate(self) -> Any:
        return True


@pytest.mark.parametrize(("trainable", "kind"), [(StringScore, "str"), (BoolScore, "bool")])
def test_a_run_records_the_bad_metric_with_its_type(
    tmp_path: Path, quad_space, trainable: type, kind: str
) -> None:
    _, failures = every_member_fails(tmp_path / "r", quad_space, trainable)
    assert {f[2] for f in failures} == {"bad_metric"}
    assert all(f"{kind} " in f[3] and "is not a number" in f[3] for f in failures)


@pytest.mark.parametrize("strategy", ["pbt", "fire"])
def test_a_metric_the_trainable_never_returns_ends_the_run_with_that_cause(
    tmp_path: Path, strategy: str
) -> None:
    # FIRE's evaluators are workers, not members: a run whose every member failed is a failed
    # run, not one that finished without a finite score.
    import firepbt
    from firepbt.errors import RunFailed
    from firepbt.examples.nqm import NQM, nqm_space

    options: dict[str, Any] = {"subpopulations": 2} if strategy == "fire" else {}
    with pytest.raises(RunFailed, match=r"every member failed.*selects on 'accuracy'"):
        firepbt.run(
            NQM, nqm_space(), total_steps=20, population=4, ready_every=10, metric="accuracy",
            strategy=strategy, executor="inprocess", run_dir=tmp_path / "run", **options,
        )  # fmt: skip
