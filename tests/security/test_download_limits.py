"""Download limits against a real server: size caps, truncation, slow bodies, memory."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest
from aiohttp import web

from ffmpeg_tasks.downloader import HttpDownloader
from ffmpeg_tasks.downloader.http import AddressFilteringResolver
from ffmpeg_tasks.errors import (
    ConfigurationError,
    DownloadConnectionError,
    DownloadTimeoutError,
    DownloadTooLargeError,
)
from tests.conftest import Route
from tests.servers import Handler, MediaServer

KiB = 1024
MiB = 1024 * KiB


def chunked(size: int, piece: int = 64 * KiB, *, ranges: bool = False) -> Handler:
    """A body of ``size`` bytes sent with chunked encoding (no Content-Length)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Accept-Ranges": "bytes"} if ranges else {})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = b"z" * piece
        sent = 0
        while sent < size:
            n = min(piece, size - sent)
            await resp.write(block[:n])
            sent += n
        await resp.write_eof()
        return resp

    return handler


async def test_content_length_over_cap_refused_before_reading(
    media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    url = media_server.media_url("long.mp4")
    calls: list[int] = []
    async with HttpDownloader(allow_private_networks=True) as dl:
        with pytest.raises(DownloadTooLargeError) as info:
            await dl.fetch(
                url, tmp_path / "x", max_bytes=1000, progress=lambda d, t: calls.append(d)
            )
    size = (media_dir / "long.mp4").stat().st_size
    assert info.value.url == url
    assert url in str(info.value)
    assert f"{size} bytes" in str(info.value)
    assert "1000" in str(info.value)
    assert not info.value.transient
    assert calls == []  # nothing was read
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ranges", [False, True])
async def test_chunked_body_capped_while_streaming(
    route: Route, tmp_path: Path, ranges: bool
) -> None:
    done: list[int] = []
    async with HttpDownloader(allow_private_networks=True) as dl:
        with pytest.raises(DownloadTooLargeError, match="over the limit of 102400"):
            await dl.fetch(
                route(chunked(5 * MiB, ranges=ranges)),
                tmp_path / "x",
                max_bytes=100 * KiB,
                progress=lambda d, t: done.append(d),
            )
    assert max(done, default=0) <= 100 * KiB
    assert list(tmp_path.iterdir()) == []  # neither dest nor .part


async def test_body_exactly_at_cap_is_fine(route: Route, tmp_path: Path) -> None:
    async with HttpDownloader(allow_private_networks=True) as dl:
        assert await dl.fetch(route(chunked(100 * KiB)), tmp_path / "x", max_bytes=100 * KiB) == (
            100 * KiB
        )
    assert (tmp_path / "x").stat().st_size == 100 * KiB


async def test_lying_content_length(route: Route, tmp_path: Path) -> None:
    async def liar(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "50000"})
        await resp.prepare(request)
        await resp.write(b"q" * 20000)
        await asyncio.sleep(0.1)
        assert request.transport is not None
        request.transport.close()
        return resp

    url = route(liar)
    async with HttpDownloader(allow_private_networks=True) as dl:
        with pytest.raises(DownloadConnectionError) as info:
            await dl.fetch(url, tmp_path / "x")
    assert info.value.transient
    assert url in str(info.value)
    assert list(tmp_path.iterdir()) == []


async def test_slow_body_under_min_rate(media_server: MediaServer, tmp_path: Path) -> None:
    # ~2 KB/s against a 50 KB/s minimum averaged over 0.5 s
    url = media_server.url("slow/long.mp4?chunk=200&delay=0.1")
    async with HttpDownloader(
        allow_private_networks=True, min_rate_bytes=50_000, min_rate_window=0.5
    ) as dl:
        with pytest.raises(DownloadTimeoutError, match="below the minimum") as info:
            await dl.fetch(url, tmp_path / "x")
    assert info.value.transient
    assert info.value.url == url
    assert list(tmp_path.iterdir()) == []


async def test_read_timeout_between_chunks(route: Route, tmp_path: Path) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "100000"})
        await resp.prepare(request)
        await resp.write(b"s" * 1000)
        await asyncio.sleep(5)
        return resp

    async with HttpDownloader(
        allow_private_networks=True, read_timeout=0.5, min_rate_bytes=0
    ) as dl:
        with pytest.raises(DownloadTimeoutError, match="read_timeout=0.5"):
            await dl.fetch(route(stall), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


async def test_headers_never_sent_is_read_timeout(route: Route, tmp_path: Path) -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response(body=b"late")

    async with HttpDownloader(allow_private_networks=True, read_timeout=0.5) as dl:
        with pytest.raises(DownloadTimeoutError):
            await dl.fetch(route(silent), tmp_path / "x")


async def test_total_timeout(media_server: MediaServer, tmp_path: Path) -> None:
    url = media_server.url("slow/long.mp4?chunk=1000&delay=0.05")
    async with HttpDownloader(
        allow_private_networks=True, total_timeout=0.5, min_rate_bytes=0
    ) as dl:
        with pytest.raises(DownloadTimeoutError, match="total_timeout=0.5") as info:
            await dl.fetch(url, tmp_path / "x")
    assert info.value.url == url
    assert list(tmp_path.iterdir()) == []


async def test_trickled_body_above_min_rate_passes(
    media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    # many small chunks with pauses, but well above the minimum rate: no false alarm
    url = media_server.url("slow/tone.wav?chunk=4096&delay=0.01")
    async with HttpDownloader(
        allow_private_networks=True, min_rate_bytes=1000, min_rate_window=0.05
    ) as dl:
        await dl.fetch(url, tmp_path / "tone.wav")
    assert (tmp_path / "tone.wav").read_bytes() == (media_dir / "tone.wav").read_bytes()


async def test_dns_lookup_bounded() -> None:
    class Slow:
        async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[object]:
            await asyncio.sleep(10)
            return []

        async def close(self) -> None:
            pass

    resolver = AddressFilteringResolver(timeout=0.2, inner=Slow())  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        await resolver.resolve("slow.example", 80)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connect_timeout": 0},
        {"read_timeout": -1},
        {"chunk_size": 0},
        {"max_bytes": -1},
        {"total_timeout": 0},
        {"min_rate_bytes": -5},
        {"max_redirects": -1},
    ],
)
def test_bad_configuration(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        HttpDownloader(**kwargs)  # type: ignore[arg-type]


async def test_memory_bounded_on_large_body(route: Route, tmp_path: Path) -> None:
    """A 64 MiB body is streamed with a peak of traced Python memory far below its size."""
    size = 64 * MiB
    url = route(chunked(size, piece=256 * KiB))
    async with HttpDownloader(allow_private_networks=True) as dl:
        tracemalloc.start()
        try:
            assert await dl.fetch(url, tmp_path / "big") == size
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (tmp_path / "big").stat().st_size == size
    assert peak < 16 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"
