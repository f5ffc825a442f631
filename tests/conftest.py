from __future__ import annotations

from collections.abc import Iterator

import pytest

from firepbt import Uniform


@pytest.fixture
def quad_space() -> dict[str, Uniform]:
    return {"h0": Uniform(0.0, 1.0, bounds=(0.0, 2.0)), "h1": Uniform(0.0, 1.0, bounds=(0.0, 2.0))}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """An S3 server on 127.0.0.1 for a test module (``tests/_s3.py``)."""
    from _s3 import start_s3

    server = start_s3(tmp_path_factory.mktemp("s3") / "server.log")
    try:
        yield server
    finally:
        server.stop()
