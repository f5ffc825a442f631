from __future__ import annotations

import pytest

from firepbt import Uniform


@pytest.fixture
def quad_space() -> dict[str, Uniform]:
    return {"h0": Uniform(0.0, 1.0, bounds=(0.0, 2.0)), "h1": Uniform(0.0, 1.0, bounds=(0.0, 2.0))}
