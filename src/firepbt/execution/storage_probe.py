"""A worker proves, before its first segment, that it reaches the checkpoints' root the
controller uses (the run directory, or the run's folder in its ``storage``): it reads a token
the controller wrote there and writes one back, which the controller reads. A Ray node that
mounts another disk at the run directory's path (or none), or cannot reach the storage, then
stops the run at once, in one line naming the worker and the place, instead of training members
whose checkpoints no other machine can read."""

from __future__ import annotations

import secrets

from firepbt import storage

PROBE_DIR = ".firepbt-probe"


def place_probe(root: str) -> tuple[str, str]:
    """On the controller: write a fresh token under ``root``; (the probe folder, the token)."""
    folder = storage.join(root, PROBE_DIR)
    token = secrets.token_hex(8)
    storage.write(storage.join(folder, "controller"), token.encode())
    return folder, token


def answer_probe(folder: str, token: str, worker: str) -> str:
    """On a worker: read the controller's token and write it back under the worker's name;
    ``""``, or why it could not."""
    where = storage.join(folder, "controller")
    try:
        seen = storage.read(where).decode()
    except OSError as e:
        return f"cannot read {where} ({_why(e)})"
    if seen != token:
        return f"reads another run's token in {folder}: a different disk at the same path"
    try:
        storage.write(storage.join(folder, _reply(worker)), token.encode())
    except OSError as e:
        return f"cannot write in {folder} ({_why(e)})"
    return ""


def check_reply(folder: str, token: str, worker: str) -> str:
    """On the controller: ``""`` if the worker's reply reached this machine, or why not."""
    path = storage.join(folder, _reply(worker))
    try:
        ok = storage.read(path).decode() == token
    except OSError:
        ok = False
    storage.delete(path)
    return "" if ok else f"what it wrote in {folder} does not reach the controller's machine"


def remove_probe(folder: str) -> None:
    storage.delete_tree(folder)


def refusal(worker: str, root: str, run_dir: str, why: str) -> str:
    """The one line that stops a run whose worker cannot reach the checkpoints' ``root``."""
    then = f"Nothing was trained: firepbt resume {run_dir} starts it then"
    if root == run_dir:
        return (
            f"run_dir: Ray worker {worker} cannot use the run directory {root}: {why}. Every "
            "Ray node must see it at the same path (a shared disk such as NFS), or give the run "
            f"a storage (storage = 's3://…'). {then}"
        )
    need = (
        "the storage's credentials and endpoint in its environment (for S3: AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)"
        if storage.is_uri(root)
        else "to see it at the same path (a shared disk such as NFS)"
    )
    return (
        f"storage: Ray worker {worker} cannot reach the run's storage {root}: {why}. Every "
        f"node needs {need}. {then}"
    )


def _why(e: OSError) -> str:
    return e.strerror or storage.describe(e)


def _reply(worker: str) -> str:
    return "worker-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in worker)
