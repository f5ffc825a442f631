"""An S3 server on 127.0.0.1 speaking the real HTTP protocol: moto's server mode, as s3fs's own
tests use, started as a process of its own. It checks signatures: the first few requests make an
IAM user with an access key that may do anything, and a bucket; from then on a request signed
with another key is refused, as AWS refuses it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "runs"
_SETUP_REQUESTS = 4  # create user, create key, attach policy, create bucket: unsigned-checked


@dataclass(frozen=True)
class S3:
    url: str
    key: str
    secret: str
    process: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        """The standard variables a controller and its workers read (no firepbt setting)."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def objects(self, prefix: str) -> list[str]:
        """The keys under ``prefix`` (``bucket/...``), listed afresh."""
        import s3fs

        fs = s3fs.S3FileSystem(
            key=self.key, secret=self.secret, endpoint_url=self.url, skip_instance_cache=True
        )
        return sorted(fs.find(prefix))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


def start_s3(log: Path) -> S3:
    """Start the server; its requests are logged to ``log``."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_REQUESTS)}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"moto's server did not start: {tail}") from None
            time.sleep(0.2)
    unsigned = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", **unsigned)
    iam.create_user(UserName="firepbt")
    made = iam.create_access_key(UserName="firepbt")["AccessKey"]
    everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [everything]})
    iam.put_user_policy(UserName="firepbt", PolicyName="all", PolicyDocument=policy)
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **unsigned)
    s3.create_bucket(Bucket=BUCKET)
    return S3(url, made["AccessKeyId"], made["SecretAccessKey"], process)
