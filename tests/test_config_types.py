"""Every scalar setting is type-checked with its name in the message: a bool is not an int, a
string is not a number, and nothing is converted silently."""

from __future__ import annotations

from typing import Any

import pytest

from firepbt.config import RunConfig
from firepbt.errors import ConfigError

BASE: dict[str, Any] = dict(trainable="firepbt.examples.toy:Toy", space={"h0": 0.5}, total_steps=4)
FIRE: dict[str, Any] = dict(strategy="fire", population=4)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(seed="abc"), "seed: expected an integer >= 0, got 'abc'"),
        (dict(seed=-1), "seed: expected an integer >= 0, got -1"),
        (dict(seed=1.5), "seed: expected an integer >= 0"),
        (dict(seed=True), "seed: expected an integer >= 0"),
        (dict(max_retries="2"), "max_retries: expected an integer >= 0"),
        (dict(max_retries=1.5), "max_retries: expected an integer >= 0"),
        (dict(eval_every=True), "eval_every: expected a positive integer"),
        (dict(segment_timeout=True), "segment_timeout: expected a positive number"),
        (dict(metric=5), "metric: expected a string"),
        (dict(**FIRE, strategy_options={"evaluators": "2"}), "strategy.evaluators: expected a"),
        (dict(**FIRE, strategy_options={"keep_curves": "yes"}), "strategy.keep_curves: expected"),
        (dict(**FIRE, strategy_options={"p_stat": "0.01"}), "strategy.p_stat: expected a number"),
        (
            dict(**FIRE, strategy_options={"min_steps_before_eval": [0, "x"]}),
            r"strategy.min_steps_before_eval\[1\]: expected an integer >= 0",
        ),
        (dict(strategy_options={"explore": 5}), "strategy.explore: expected the name of an"),
        (dict(strategy_options={"explore": [5]}), r"strategy.explore\[0\]: expected the name"),
        (
            dict(strategy_options={"exploit": {"name": "truncation", "fraction": "x"}}),
            "strategy.exploit.fraction: expected a number, got 'x'",
        ),
        (
            dict(strategy_options={"exploit": {"name": "truncation", "window": True}}),
            "strategy.exploit.window: expected a number, got True",
        ),
    ],
)
def test_a_wrong_type_is_one_line_naming_the_setting(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        RunConfig(**{**BASE, **settings})
    assert "\n" not in str(error.value)


def test_right_types_pass() -> None:
    RunConfig(**BASE, seed=0, max_retries=0, eval_every=1, segment_timeout=2, metric="q")
    RunConfig(**BASE, **FIRE, strategy_options={"keep_curves": True, "p_stat": 0.05, "thin": 2})
