"""The token a worker reads from the run directory and writes back before its first segment
(``firepbt.execution.storage_probe``); the two-node test is tests/test_ray_cluster.py."""

from __future__ import annotations

from pathlib import Path

from firepbt.execution.storage_probe import answer_probe, check_reply, place_probe, remove_probe


def test_a_worker_that_sees_the_run_directory_answers(tmp_path: Path) -> None:
    folder, token = place_probe(str(tmp_path))
    assert answer_probe(folder, token, "host/node-ab/pid-7") == ""
    assert check_reply(folder, token, "host/node-ab/pid-7") == ""
    # the reply is read once: a second check finds nothing
    assert "does not reach" in check_reply(folder, token, "host/node-ab/pid-7")
    remove_probe(folder)
    assert not Path(folder).exists()


def test_a_worker_with_another_disk_at_the_path_cannot(tmp_path: Path) -> None:
    folder, token = place_probe(str(tmp_path / "run"))
    elsewhere = str(tmp_path / "other" / Path(folder).name)
    assert answer_probe(elsewhere, token, "w").startswith(f"cannot read {elsewhere}/controller")
    other_folder, other_token = place_probe(str(tmp_path / "other"))
    assert "another run's token" in answer_probe(other_folder, token, "w")
    # a reply written on the worker's own disk never reaches the controller
    assert answer_probe(other_folder, other_token, "w") == ""
    assert "does not reach the controller" in check_reply(folder, token, "w")
