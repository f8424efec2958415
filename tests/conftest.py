"""Session fixtures: real ffmpeg, generated media on a real HTTP server, a real S3 server."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import boto3
import pytest

from ffmpeg_tasks.ffmpeg import find_ffmpeg, find_ffprobe

from .servers import Handler, MediaServer, MotoS3Server, SeaweedS3Server, free_port

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)

REGION = "us-east-1"


@pytest.fixture(autouse=True)
async def _report_hung_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Shortly before pytest-timeout fires, print the stack of every asyncio task.

    pytest-timeout shows threads only; a test stuck in an ``await`` is a coroutine.
    """
    limit = float(request.config.getini("timeout") or 0)
    marker = request.node.get_closest_marker("timeout")
    if marker is not None and marker.args:
        limit = float(marker.args[0])
    if limit <= 10:
        yield
        return
    loop = asyncio.get_running_loop()

    def dump() -> None:
        out = io.StringIO()
        print(f"--- asyncio tasks still pending after {limit - 10:g}s ---", file=out)
        for task in asyncio.all_tasks(loop):
            print(f"{task.get_name()}:", file=out)
            aw: object = task.get_coro()
            while aw is not None:
                frame = getattr(aw, "cr_frame", None) or getattr(aw, "gi_frame", None)
                if frame is None:
                    print(f"    awaiting {aw!r}"[:300], file=out)
                    break
                code = frame.f_code
                print(f"    {code.co_filename}:{frame.f_lineno} {code.co_name}", file=out)
                aw = getattr(aw, "cr_await", None) or getattr(aw, "gi_yieldfrom", None)
        sys.stderr.write(out.getvalue())

    handle = loop.call_later(limit - 10, dump)
    yield
    handle.cancel()


@pytest.fixture(scope="session")
def ffmpeg_bin() -> str:
    return find_ffmpeg().path


@pytest.fixture(scope="session")
def ffprobe_bin(ffmpeg_bin: str) -> str | None:
    return find_ffprobe()


def _ffmpeg(ffmpeg_bin: str, *args: str) -> None:
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory, ffmpeg_bin: str) -> Path:
    """Media made by ffmpeg's lavfi sources at session start."""
    d = tmp_path_factory.mktemp("media")
    _ffmpeg(
        ffmpeg_bin,
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest", str(d / "clip.mp4"),
    )  # fmt: skip
    _ffmpeg(
        ffmpeg_bin,
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=10",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(d / "long.mp4"),
    )  # fmt: skip
    _ffmpeg(
        ffmpeg_bin,
        "-f",
        "lavfi",
        "-i",
        "color=c=red:size=64x64",
        "-frames:v",
        "1",
        str(d / "logo.png"),
    )
    _ffmpeg(ffmpeg_bin, "-f", "lavfi", "-i", "sine=frequency=880:duration=1", str(d / "tone.wav"))
    (d / "subs.srt").write_text("1\n00:00:00,000 --> 00:00:01,500\nHello from ffmpeg_tasks\n\n")
    return d


@pytest.fixture(scope="session")
def media_server(media_dir: Path) -> Iterator[MediaServer]:
    server = MediaServer(media_dir)
    server.start()
    yield server
    server.stop()


#: What ``s3_server`` can be: moto (the default) or a real SeaweedFS.
S3Server = MotoS3Server | SeaweedS3Server
S3_SERVERS = ("moto", "seaweedfs")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "s3_servers: run each test that uses s3_server against moto and SeaweedFS",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.s3_servers`` (or a module's ``pytestmark``) runs the test per server.

    ``@pytest.mark.s3_servers("moto")`` on a test narrows a module's marker to those servers.
    """
    marker = metafunc.definition.get_closest_marker("s3_servers")
    if "s3_server" in metafunc.fixturenames and marker is not None:
        servers = list(marker.args) or S3_SERVERS
        metafunc.parametrize("s3_server", servers, indirect=True, scope="session")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoS3Server]:
    server = MotoS3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3Server]:
    """``weed mini`` on free loopback ports; fails (never skips) if it cannot start."""
    server = SeaweedS3Server(
        tmp_path_factory.mktemp("seaweedfs"),
        os.environ["AWS_ACCESS_KEY_ID"],
        os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """moto, or the server named by the ``s3_servers`` parametrization."""
    name = getattr(request, "param", "moto")
    server: S3Server = request.getfixturevalue(
        "seaweed_server" if name == "seaweedfs" else "moto_server"
    )
    return server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on the S3 server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name=REGION)
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def s3_client(s3_server: S3Server):  # type: ignore[no-untyped-def]
    """A plain boto3 client for assertions about what landed in S3."""
    return boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name=REGION)


#: ``route(handler)`` registers a one-off handler on the media server and returns its URL.
Route = Callable[[Handler], str]


@pytest.fixture
def route(media_server: MediaServer) -> Iterator[Route]:
    """Register one-off handlers on the media server; removed after the test."""
    names: list[str] = []

    def add(handler: Handler) -> str:
        name = uuid.uuid4().hex
        media_server.handlers[name] = handler
        names.append(name)
        return media_server.url(f"x/{name}")

    yield add
    for name in names:
        media_server.handlers.pop(name, None)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty work dir for executor tests."""
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture
def dead_endpoint() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"
