"""What it costs to move a checkpoint from the worker that made it to a worker on another node,
by each path a firepbt run on Ray can take, for states of 1 MB, 100 MB and 1 GB.

A Ray cluster of two nodes on this machine (``ray start``): the head runs this script (the
controller) and worker A, node B runs worker B. An exploit that moves a member's weights from A
to B costs, by path:

- *shared disk*: A writes the checkpoint (firepbt's atomic write: temporary file, fsync,
  rename) and B reads it and checks its checksum (``firepbt.checkpoints``);
- *S3*: the same through ``firepbt.storage`` to an S3 server (moto's, on 127.0.0.1, as the
  tests use: its own costs count too);
- *relay through the controller* (a run with no storage on nodes that share no disk): the
  controller fetches the bytes A holds, writes them into the run directory (the durable copy),
  reads them back with their checksum and hands them to B through Ray's object store, as
  ``RayExecutor.flush`` and ``submit`` do.

*Bytes through the head* counts what passes through the controller's machine on a real cluster,
where the disk, the S3 server and worker A are elsewhere: a relayed checkpoint comes in once and
goes out once. (Here A shares the head's object store, so its fetch is local; a third node on
this machine crashed Ray's raylet.) Each cell is the median of ``--repeats`` moves.

    python benchmarks/checkpoint_transfer.py [--sizes 1,100,1000] [--repeats 3]

Writes ``benchmarks/results/checkpoint_transfer.md``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _s3 import BUCKET, start_s3  # noqa: E402

from firepbt import storage  # noqa: E402
from firepbt.checkpoints import read_verified, write_bytes  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "checkpoint_transfer.md"
RAY = str(Path(sys.executable).with_name("ray"))


class Worker:
    """A worker actor: it makes a state, writes it, reads one, holds one for the controller."""

    def __init__(self) -> None:
        self.held = b""

    def make(self, size: int) -> str:
        import hashlib

        self.held = os.urandom(size)
        return hashlib.sha256(self.held).hexdigest()

    def write(self, location: str) -> str:
        return write_bytes(location, self.held)

    def read(self, location: str, sha: str) -> int:
        return len(read_verified(location, sha))

    def fetch(self) -> bytes:
        return self.held

    def take(self, data: bytes) -> int:
        return len(data)


def _node(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [RAY, "start", "--block", "--node-ip-address=127.0.0.1", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _move(ray: Any, path: str, a: Any, b: Any, sha: str, where: str) -> float:
    """Seconds to move the state A holds to B by ``path``."""
    location = storage.join(where, f"ckpt-{secrets.token_hex(4)}")
    started = time.perf_counter()
    if path == "relay":
        data = ray.get(a.fetch.remote())
        write_bytes(location, data)  # the durable copy, in the run directory
        del data
        ref = ray.put(read_verified(location, sha))
        ray.get(b.take.remote(ref))
        del ref
    else:
        assert ray.get(a.write.remote(location)) == sha
        ray.get(b.read.remote(location, sha))
    seconds = time.perf_counter() - started
    storage.delete(location)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000", help="state sizes in MB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="firepbt-transfer-"))
    s3 = start_s3(work / "s3.log")
    env = {
        **os.environ,
        **s3.env,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    os.environ.update({k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", *s3.env)})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nodes = [
        _node(env, "--head", f"--port={port}", "--num-cpus=1", '--resources={"one": 1}',
              "--include-dashboard=false")
    ]  # fmt: skip
    time.sleep(5)
    join = f"--address=127.0.0.1:{port}"
    nodes.append(_node(env, join, "--num-cpus=1", '--resources={"two": 1}'))
    import ray  # after RAY_AUTH_MODE is set: Ray reads it when imported

    rows = []
    try:
        deadline = time.monotonic() + 120
        while True:  # the head takes a few seconds to come up
            try:
                ray.init(address=f"127.0.0.1:{port}", logging_level="ERROR")
                break
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            time.sleep(0.5)
        actor = ray.remote(Worker)
        a = actor.options(num_cpus=1, resources={"one": 1}).remote()
        b = actor.options(num_cpus=1, resources={"two": 1}).remote()
        places = {
            "shared disk": str(work / "shared"),
            "S3": f"s3://{BUCKET}/transfer",
            "relay": str(work / "run-dir"),
        }
        sha = ray.get(a.make.remote(1024))
        for path, where in places.items():  # warm up: each path's modules and connections
            _move(ray, "relay" if path == "relay" else "direct", a, b, sha, where)
        for mb in sizes:
            sha = ray.get(a.make.remote(mb * 2**20))
            for path, where in places.items():
                kind = "relay" if path == "relay" else "direct"
                times = [_move(ray, kind, a, b, sha, where) for _ in range(args.repeats)]
                through = 2 * mb if path == "relay" else 0
                rows.append((mb, path, statistics.median(times), times, through))
                print(f"{mb:>5} MB  {path:<12} {statistics.median(times):8.3f} s", flush=True)
    finally:
        ray.shutdown()
        for node in reversed(nodes):
            if node.poll() is None:
                os.killpg(node.pid, 9)
            node.wait()
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    _write(rows, args.repeats)


def _write(rows: list[tuple[int, str, float, list[float], int]], repeats: int) -> None:
    lines = [
        "# Checkpoint transfer between nodes",
        "",
        f"`python benchmarks/checkpoint_transfer.py` ({time.strftime('%Y-%m-%d')}; a two-node "
        "Ray cluster on one 2-core machine: the controller and worker A on the head, worker B on "
        f"node B). Seconds to move a state from A to B, median of {repeats}; the S3 server is "
        "moto's, on the same machine. MB through the head: on a real cluster, where A, the disk "
        "and the S3 server are elsewhere.",
        "",
        "| state | path | seconds per exploit (median) | each | MB through the head |",
        "|---|---|---|---|---|",
    ]
    for mb, path, median, times, through in rows:
        each = ", ".join(f"{t:.3f}" for t in times)
        lines.append(f"| {mb} MB | {path} | {median:.3f} | {each} | {through} |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
