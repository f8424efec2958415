"""A server that drips its response headers cannot hold a download (issue 13, finding 4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ffmpeg_tasks import (
    ConfigurationError,
    DownloadTimeoutError,
    HttpDownloader,
    MemoryStorage,
    RetryPolicy,
    TaskManager,
    TaskStatus,
)

HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 4\r\n\r\n"


@pytest.fixture
async def dripping_server() -> AsyncIterator[str]:
    """Answers every request with its headers one byte every 0.1 s (about 7 s in all)."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            for byte in HEADERS:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
            writer.write(b"data")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/video.mp4"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_dripped_headers_time_out(dripping_server: str, tmp_path: Path) -> None:
    async with HttpDownloader(
        allow_private_networks=True, headers_timeout=1.0, read_timeout=3.0
    ) as dl:
        started = time.monotonic()
        with pytest.raises(DownloadTimeoutError) as info:
            await dl.fetch(dripping_server, tmp_path / "in.mp4")
        elapsed = time.monotonic() - started
    assert str(info.value) == (
        f"{dripping_server}: no complete response headers within headers_timeout=1.0s"
    )
    assert elapsed < 5  # not the ~7 s the drip takes; read_timeout never fires on it
    assert not list(tmp_path.iterdir())


async def test_a_task_fails_with_download_timeout(dripping_server: str, tmp_path: Path) -> None:
    async with TaskManager(
        downloader=HttpDownloader(allow_private_networks=True, headers_timeout=0.5),
        storage=MemoryStorage(),
        retry=RetryPolicy.none(),
        work_dir=tmp_path / "work",
    ) as tm:
        task = await tm.run("-i in.mp4 -c copy out.mp4", {"in.mp4": dripping_server}, "out.mp4")
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "download_timeout"
    assert "headers_timeout=0.5s" in (task.error or "")


def test_headers_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="headers_timeout"):
        HttpDownloader(headers_timeout=0)
