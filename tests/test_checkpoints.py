from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firepbt.checkpoints import read_checkpoint, write_checkpoint
from firepbt.errors import CheckpointError


def test_round_trip_is_a_deep_copy(tmp_path: Path) -> None:
    state = {"w": np.arange(5.0), "step": 3}
    sha, nbytes = write_checkpoint(tmp_path / "a" / "c.ckpt", state)
    assert nbytes == (tmp_path / "a" / "c.ckpt").stat().st_size
    loaded = read_checkpoint(tmp_path / "a" / "c.ckpt", sha)
    assert loaded["step"] == 3 and np.array_equal(loaded["w"], state["w"])
    loaded["w"][0] = 99.0
    assert state["w"][0] == 0.0
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["c.ckpt"]  # no temp file left


def test_corruption_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "c.ckpt"
    sha, _ = write_checkpoint(path, {"w": [1.0, 2.0]})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        read_checkpoint(path, sha)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing"):
        read_checkpoint(tmp_path / "nope.ckpt", "0" * 64)


def test_unpicklable_state_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot be pickled"):
        write_checkpoint(tmp_path / "c.ckpt", {"f": lambda: 1})
    assert list(tmp_path.iterdir()) == []
