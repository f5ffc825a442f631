"""Where checkpoints live: the run directory by default, or a run's ``storage``: a path (a disk
every node mounts, NFS) or any URI that fsspec opens (``s3://bucket/prefix``, ``gs://…``,
``memory://``), with ``storage_options`` passed to fsspec. The store (SQLite) stays in the run
directory on the controller's disk wherever the checkpoints go.

A location is a plain path or a URI; the functions here read, write and delete one whatever it
is. Options are kept per storage root (``use``); the controller hands its roots and options to
the workers it starts through one environment variable (``worker_variables``). The standard
variables of each storage work as they do for fsspec (for S3: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``).

Writes are atomic where the storage allows: a file is written under a temporary name, synced
and renamed into place; an object store writes an object whole (an S3 PUT is never seen half
done), so a reader sees the old object, the new one or none. A file system that is neither (an
fsspec FTP or SFTP path) may show a partial file to a reader while it is written: the recorded
checksum then refuses it, and the checkpoint is read again or rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from firepbt.errors import ConfigError

OPTIONS_VARIABLE = "FIREPBT_STORAGE_OPTIONS"  # JSON: {root: fsspec options}, for workers
# Credentials are not kept in a run's config (its store): they come from the environment.
SECRET_OPTIONS = frozenset(
    {"key", "secret", "token", "password", "secret_key", "access_key", "session_token"}
)
_roots: dict[str, dict[str, Any]] = {}  # root -> options, in this process


def is_uri(location: str) -> bool:
    """Whether ``location`` names storage by URI (``s3://…``) rather than a local path."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").isalnum() and scheme != "file"


def join(root: str, *parts: str) -> str:
    """``parts`` under ``root``, a path or a URI."""
    if is_uri(root):
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root, *parts))


def relative(root: str, location: str) -> str | None:
    """``location`` relative to ``root`` (``/``-separated), or None when it lies outside."""
    if is_uri(root) or is_uri(location):
        prefix = root.rstrip("/") + "/"
        return location[len(prefix) :] if location.startswith(prefix) else None
    if not os.path.isabs(location):
        return None
    rel = os.path.relpath(location, root)
    return None if rel == ".." or rel.startswith("../") else Path(rel).as_posix()


def check_options(storage: str | None, options: Any) -> None:
    """Refuse bad ``storage`` / ``storage_options`` settings in one line naming them."""
    if storage is not None and (not isinstance(storage, str) or not storage):
        raise ConfigError(
            f"storage: expected a path or a URI such as 's3://bucket/runs', got {storage!r}"
        )
    if options is None:
        return
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ConfigError(f"storage_options: expected a table of fsspec options, got {options!r}")
    if storage is None or not is_uri(storage):
        raise ConfigError(
            "storage_options: only a storage URI (storage = 's3://…') takes options; "
            "leave storage_options out"
        )
    secret = sorted(SECRET_OPTIONS & set(options))
    if secret:
        raise ConfigError(
            f"storage_options.{secret[0]}: credentials are not kept in the run's config (its "
            "store); set them in the environment of the controller and every worker (for S3: "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        )


def absolute(location: str) -> str:
    """``location`` as a store keeps it: an absolute path, or a URI without a trailing ``/``."""
    return location.rstrip("/") if is_uri(location) else os.path.abspath(location)


def run_root(storage: str, run_dir: Path) -> str:
    """A new run's own folder under ``storage``: the run directory's name and a random tag,
    so that runs sharing a storage never write over each other's checkpoints."""
    return join(absolute(storage), f"{run_dir.name}-{secrets.token_hex(4)}")


def use(root: str, options: dict[str, Any] | None) -> None:
    """Reach locations under ``root`` with ``options`` in this process (and in the workers it
    starts after this, through ``worker_variables``)."""
    if is_uri(root):
        _roots[root.rstrip("/")] = dict(options or {})


def worker_variables() -> dict[str, str]:
    """The environment a worker needs to reach the storage roots this process uses."""
    return {OPTIONS_VARIABLE: json.dumps(_roots, sort_keys=True)} if _roots else {}


def _options(location: str) -> dict[str, Any]:
    if not _roots and OPTIONS_VARIABLE in os.environ:  # a worker, as the controller started it
        _roots.update(json.loads(os.environ[OPTIONS_VARIABLE]))
    found = [r for r in _roots if location == r or location.startswith(r + "/")]
    return _roots[max(found, key=len)] if found else {}


def _filesystem(location: str) -> tuple[Any, str]:
    """(the fsspec file system of a URI, the path inside it)."""
    try:
        import fsspec
    except ImportError:
        raise ConfigError(
            f"storage {location!r} needs fsspec and the package for its scheme (for S3: "
            "pip install 'firepbt[s3]')"
        ) from None
    protocol = location.partition("://")[0]
    try:  # fsspec keeps one instance per (protocol, options) and process
        fs = fsspec.filesystem(protocol, **_options(location))
    except (ImportError, ValueError) as e:
        raise ConfigError(f"storage {location!r}: {e}") from None
    return fs, fs._strip_protocol(location)


@contextlib.contextmanager
def _as_os_errors() -> Iterator[None]:
    """A storage's own errors (botocore's, aiohttp's, ...) as ``OSError``, as a file's are."""
    try:
        yield
    except (OSError, ConfigError):
        raise
    except Exception as e:
        raise OSError(describe(e)) from e


def write(location: str, data: bytes) -> None:
    """Write ``data`` whole to ``location`` (see the module's note on atomicity)."""
    if not is_uri(location):
        _write_file(Path(location), data)
        return
    fs, path = _filesystem(location)
    with _as_os_errors():
        fs.pipe_file(path, data)


def _write_file(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(location: str) -> bytes:
    """The bytes at ``location``; ``FileNotFoundError`` when there are none."""
    if not is_uri(location):
        return Path(location).read_bytes()
    fs, path = _filesystem(location)
    with _as_os_errors():
        data: bytes = fs.cat_file(path)
    return data


def exists(location: str) -> bool:
    if not is_uri(location):
        return os.path.exists(location)
    fs, path = _filesystem(location)
    fs.invalidate_cache(path)  # another process may have written or deleted it
    with _as_os_errors():
        return bool(fs.exists(path))


def delete(location: str) -> None:
    """Remove ``location`` if it is there."""
    if not is_uri(location):
        Path(location).unlink(missing_ok=True)
        return
    fs, path = _filesystem(location)
    with contextlib.suppress(FileNotFoundError), _as_os_errors():
        fs.rm_file(path)


def delete_tree(location: str) -> None:
    """Remove the folder ``location`` and all it holds, if it is there."""
    if not is_uri(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    fs, path = _filesystem(location)
    with contextlib.suppress(OSError), _as_os_errors():
        fs.rm(path, recursive=True)


def check(root: str) -> None:
    """On the controller, before anything is trained: write, read back and delete a token
    under ``root``. A storage it cannot reach (bad credentials, an endpoint that does not
    answer, a missing bucket) is refused in one line."""
    location = join(root, ".firepbt-check", secrets.token_hex(8))
    token = secrets.token_bytes(16)
    try:
        write(location, token)
        if read(location) != token:
            raise OSError("what was written there reads back differently")
        delete(location)
    except ConfigError:
        raise
    except Exception as e:  # each storage raises its own errors (botocore's, aiohttp's, ...)
        raise ConfigError(
            f"storage: cannot write and read back checkpoints at {root} ({describe(e)}); "
            f"check the credentials, the endpoint and that the place exists. Nothing was trained"
        ) from None


def describe(e: BaseException) -> str:
    """An error of a storage in one line: its type and first line (a storage's own error that
    ``_as_os_errors`` wrapped is named itself)."""
    if type(e) is OSError and e.__cause__ is not None and not e.errno:
        return describe(e.__cause__)
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
