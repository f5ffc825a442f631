"""Checkpoints in object storage: an S3 server on 127.0.0.1 speaking the real protocol
(``tests/_s3.py``: moto's server mode, checking signatures), reached through fsspec and s3fs. A
run whose ``storage`` is ``s3://…`` keeps its store in the run directory and every checkpoint in
the bucket; it decides as the same run on local disk does; its best model loads, its schedule
replays and, killed with ``kill -9``, it resumes to the uninterrupted result, each from a fresh
process that knows only the standard AWS variables. Bad credentials and an endpoint that does
not answer are refused in one line before anything is made."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _s3 import BUCKET, S3

import firepbt
from firepbt import ConfigError, Store, Uniform
from firepbt.examples.toy import Toy

SPACE = {"h0": Uniform(0.0, 1.0), "h1": Uniform(0.0, 1.0)}
OPTIONS: dict[str, Any] = {"total_steps": 60, "population": 4, "ready_every": 10, "seed": 3}
RUN = """
import json, sys, firepbt
from firepbt import Uniform
space = {"h0": Uniform(0.0, 1.0), "h1": Uniform(0.0, 1.0)}
firepbt.run("firepbt.examples.toy:Toy", space, run_dir=sys.argv[2], progress=False,
            **json.loads(sys.argv[1]))
"""


def _env(s3: S3, **changed: str) -> dict[str, str]:
    return {**os.environ, **s3.env, **changed}


def _python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300
    )


def _start(s3: S3, run_dir: Path, env: dict[str, str] | None = None, **extra: Any) -> Any:
    options = {**OPTIONS, "executor": "process", "workers": 2, **extra}
    return subprocess.Popen(
        [sys.executable, "-c", RUN, json.dumps(options), str(run_dir)],
        env=env or _env(s3),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _recorded(run_dir: Path) -> tuple[list[Any], list[Any]]:
    """(decisions, points) as the store has them, for comparing runs."""
    store = Store.open(run_dir)
    try:
        decisions = [
            (d.member, d.step, d.kind, d.donor, json.dumps(d.hyperparameters, sort_keys=True))
            for d in store.decisions()
        ]
        points = sorted((m, p.step, p.score) for m, p in store.points())
        return decisions, points
    finally:
        store.close()


def _local(tmp_path: Path) -> Path:
    run_dir = tmp_path / "local"
    firepbt.run(Toy, SPACE, run_dir=run_dir, executor="inprocess", progress=False, **OPTIONS)
    return run_dir


def test_checkpoints_live_in_the_bucket_and_the_run_decides_as_on_disk(
    s3: S3, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    proc = _start(s3, run_dir, storage=f"s3://{BUCKET}/experiments")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert _recorded(run_dir) == _recorded(_local(tmp_path))
    assert (run_dir / "firepbt.sqlite").exists() and not (run_dir / "checkpoints").exists()
    store = Store.open(run_dir)
    try:
        root = store.meta("storage")
        assert root is not None and root.startswith(f"s3://{BUCKET}/experiments/run-")
        live = sorted(p for p, *_ in store.live_checkpoints())
        with sqlite3.connect(run_dir / "firepbt.sqlite") as c:
            stored = [p for (p,) in c.execute("SELECT path FROM checkpoints")]
        assert store.failures() == []
    finally:
        store.close()
    # relative to the run's folder in the bucket: the runner's names, which a row keeps as NULL
    assert stored and all(p is None for p in stored)
    assert live and all(p.startswith(root + "/checkpoints/member-") for p in live)
    # exactly the live checkpoints are in the bucket: the released ones were deleted there
    objects = s3.objects(root.removeprefix("s3://") + "/checkpoints")
    assert ["s3://" + o for o in objects] == live
    status = _python(
        "import sys; from firepbt.cli import main; main(['status', sys.argv[1]])",
        str(run_dir),
        env=_env(s3),
    )
    assert status.returncode == 0, status.stderr
    assert f"checkpoints: {len(live)} in {root}" in status.stdout
    # a fresh process with only the standard variables: the best model loads, the schedule
    # replays from scratch
    load = (
        "import sys, json, firepbt\n"
        "from firepbt.examples.toy import Toy\n"
        "r = firepbt.resume(sys.argv[1], progress=False)\n"
        "best = r.load_best(Toy)\n"
        "print(json.dumps([r.best_member, r.best_score, best.evaluate()]))\n"
        "replayed = firepbt.replay(sys.argv[1], seeds=1)\n"
        "print(json.dumps([replayed.member, len(replayed.runs)]))\n"
    )
    done = _python(load, str(run_dir), env=_env(s3))
    assert done.returncode == 0, done.stderr[-3000:]
    (member, score, evaluated), (replayed, runs) = map(json.loads, done.stdout.splitlines()[-2:])
    assert evaluated == pytest.approx(score) and (replayed, runs) == (member, 1)


def test_a_run_killed_with_kill_9_resumes_from_the_bucket(s3: S3, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    options = {"storage": f"s3://{BUCKET}/killed", "storage_options": {"endpoint_url": s3.url}}
    # the endpoint from the run's config alone: the variable is not set
    env = {k: v for k, v in _env(s3).items() if k != "AWS_ENDPOINT_URL"}
    proc = _start(s3, run_dir, env=env, total_steps=200, **options)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            # read-only: connecting would otherwise make the file before the run makes its store
            uri = f"file:{run_dir / 'firepbt.sqlite'}?mode=ro"
            with sqlite3.connect(uri, uri=True) as c:
                if c.execute("SELECT COUNT(*) FROM points").fetchone()[0] >= 30:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    resumed = _python(
        "import sys, firepbt; firepbt.resume(sys.argv[1], progress=False)",
        str(run_dir),
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = tmp_path / "reference"
    firepbt.run(
        Toy, SPACE, run_dir=reference, executor="inprocess", progress=False,
        **{**OPTIONS, "total_steps": 200},
    )  # fmt: skip
    assert _recorded(run_dir) == _recorded(reference)
    store = Store.open(run_dir)
    try:
        assert store.failures() == [] and store.meta("status") == "finished"
    finally:
        store.close()


def test_a_moved_storage_folder_is_followed_by_resume(s3: S3, tmp_path: Path) -> None:
    import s3fs

    run_dir = tmp_path / "run"
    proc = _start(s3, run_dir, storage=f"s3://{BUCKET}/before", total_steps=20)
    assert proc.communicate(timeout=300)[0] is not None and proc.returncode == 0
    root = Store.open(run_dir).meta("storage")
    assert root is not None
    moved = root.replace(f"{BUCKET}/before/", f"{BUCKET}/after/")
    fs = s3fs.S3FileSystem(key=s3.key, secret=s3.secret, endpoint_url=s3.url)
    fs.copy(root.removeprefix("s3://"), moved.removeprefix("s3://"), recursive=True)
    fs.rm(root.removeprefix("s3://"), recursive=True)
    code = (
        "import sys, json, firepbt\n"
        "from firepbt.cli import main\n"
        "from firepbt.examples.toy import Toy\n"
        "if main(['resume', sys.argv[1], '--quiet', '--storage', sys.argv[2]]):\n"
        "    sys.exit(2)\n"
        "r = firepbt.resume(sys.argv[1], progress=False)\n"
        "print(json.dumps([r.best_score, r.load_best(Toy).evaluate()]))\n"
    )
    done = _python(code, str(run_dir), moved + "/", env=_env(s3))
    assert done.returncode == 0, done.stderr[-3000:]
    score, evaluated = json.loads(done.stdout.splitlines()[-1])
    assert evaluated == pytest.approx(score)
    assert Store.open(run_dir).meta("storage") == moved  # kept, without the trailing /
    # a place that does not exist is refused in one line, and the store keeps its storage
    nowhere = moved.replace(f"s3://{BUCKET}/", "s3://no-such-bucket/")
    gone = _python(code, str(run_dir), nowhere, env=_env(s3))
    assert gone.returncode != 0
    assert "storage: cannot write and read back checkpoints at s3://no-such-bucket/" in (
        gone.stderr
    )
    assert Store.open(run_dir).meta("storage") == moved


def _refused(s3: S3, tmp_path: Path, env: dict[str, str], **extra: Any) -> str:
    run_dir = tmp_path / "refused"
    proc = _start(s3, run_dir, env=env, **extra)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert not run_dir.exists()  # refused before anything was made
    return err.strip().splitlines()[-1]


def test_bad_credentials_are_refused_in_one_line_before_anything_is_made(
    s3: S3, tmp_path: Path
) -> None:
    env = _env(s3, AWS_SECRET_ACCESS_KEY="not-the-secret")
    last = _refused(s3, tmp_path, env, storage=f"s3://{BUCKET}/bad")
    assert last.startswith("firepbt.errors.ConfigError: storage: cannot write and read back")
    assert f"s3://{BUCKET}/bad/refused-" in last and "PermissionError" in last
    assert last.endswith("Nothing was trained")


def test_an_endpoint_that_does_not_answer_is_refused_in_one_line(s3: S3, tmp_path: Path) -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once it is closed
    last = _refused(s3, tmp_path, _env(s3, AWS_ENDPOINT_URL=closed), storage=f"s3://{BUCKET}/x")
    assert last.startswith("firepbt.errors.ConfigError: storage: cannot write and read back")
    assert "Could not connect to the endpoint URL" in last, last


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"storage": "s3://b/p", "storage_options": {"secret": "x"}},
            "storage_options.secret: credentials are not kept in the run's config",
        ),
        (
            {"storage_options": {"endpoint_url": "http://x"}},
            "storage_options: only a storage URI (storage = 's3://…') takes options",
        ),
        ({"storage": ""}, "storage: expected a path or a URI such as 's3://bucket/runs'"),
    ],
)
def test_bad_storage_settings_are_refused_in_one_line(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        firepbt.run(Toy, SPACE, run_dir=tmp_path / "r", executor="inprocess", **OPTIONS, **settings)
    assert not (tmp_path / "r").exists()
