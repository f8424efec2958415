"""HttpDownloader against the real aiohttp media server; FakeDownloader."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from ffmpeg_tasks.downloader import FakeDownloader, HttpDownloader
from ffmpeg_tasks.downloader.http import retry_after_seconds
from ffmpeg_tasks.errors import (
    DownloadConnectionError,
    DownloadError,
    DownloadHTTPError,
    DownloadTimeoutError,
    DownloadTooLargeError,
)
from tests.conftest import Route
from tests.servers import Handler, MediaServer, free_port


@pytest.fixture
async def dl() -> AsyncIterator[HttpDownloader]:
    async with HttpDownloader(allow_private_networks=True, read_timeout=10) as d:
        yield d


def paths_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_download_is_byte_identical(
    dl: HttpDownloader, media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    seen: list[tuple[int, int | None]] = []
    size = await dl.fetch(
        media_server.media_url("long.mp4"),
        tmp_path / "in.mp4",
        progress=lambda done, total: seen.append((done, total)),
    )
    expected = (media_dir / "long.mp4").read_bytes()
    assert size == len(expected)
    assert (tmp_path / "in.mp4").read_bytes() == expected
    assert paths_in(tmp_path) == ["in.mp4"]
    assert seen, "progress was never called"
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (len(expected), len(expected))


async def test_404_names_url(dl: HttpDownloader, media_server: MediaServer, tmp_path: Path) -> None:
    url = media_server.url("status/404")
    with pytest.raises(DownloadHTTPError) as info:
        await dl.fetch(url, tmp_path / "x")
    assert info.value.status == 404
    assert info.value.url == url
    assert url in str(info.value)
    assert not info.value.transient
    assert paths_in(tmp_path) == []


async def test_503_with_retry_after_is_transient(
    dl: HttpDownloader, route: Route, tmp_path: Path
) -> None:
    async def busy(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, headers={"Retry-After": "7"}, text="busy")

    with pytest.raises(DownloadHTTPError) as info:
        await dl.fetch(route(busy), tmp_path / "x")
    assert info.value.status == 503
    assert info.value.transient
    assert info.value.retry_after == 7.0


def test_retry_after_parsing() -> None:
    now = time.time()
    date = email.utils.formatdate(now + 120, usegmt=True)
    parsed = retry_after_seconds(date, now=now)
    assert parsed is not None
    assert 118 <= parsed <= 121
    assert retry_after_seconds("0") == 0.0
    assert retry_after_seconds(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


async def test_unreachable_host_is_connection_error(
    dl: HttpDownloader, dead_endpoint: str, tmp_path: Path
) -> None:
    url = dead_endpoint + "/in.mp4"
    with pytest.raises(DownloadConnectionError) as info:
        await dl.fetch(url, tmp_path / "x")
    assert info.value.transient
    assert url in str(info.value)


async def test_unresolvable_host_is_connection_error(dl: HttpDownloader, tmp_path: Path) -> None:
    url = "http://no-such-host.invalid/in.mp4"
    # NXDOMAIN -> connection error; a resolver that cannot answer in time -> timeout
    with pytest.raises((DownloadConnectionError, DownloadTimeoutError)) as info:
        await dl.fetch(url, tmp_path / "x")
    assert info.value.transient
    assert "no-such-host.invalid" in str(info.value)


def _redirect_chain(media_server: MediaServer, target: str, hops: int) -> str:
    url = target
    for _ in range(hops):
        url = str(URL(media_server.url("redirect")).with_query(to=url))
    return url


async def test_redirect_chain_followed(
    media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    url = _redirect_chain(media_server, media_server.media_url("clip.mp4"), 3)
    async with HttpDownloader(allow_private_networks=True, max_redirects=3) as d:
        await d.fetch(url, tmp_path / "clip.mp4")
    assert (tmp_path / "clip.mp4").read_bytes() == (media_dir / "clip.mp4").read_bytes()


async def test_relative_location(
    dl: HttpDownloader, route: Route, media_dir: Path, tmp_path: Path
) -> None:
    async def rel(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("../media/logo.png?sig=secret")

    await dl.fetch(route(rel), tmp_path / "logo.png")
    assert (tmp_path / "logo.png").read_bytes() == (media_dir / "logo.png").read_bytes()


async def test_too_many_redirects(media_server: MediaServer, tmp_path: Path) -> None:
    url = _redirect_chain(media_server, media_server.media_url("clip.mp4"), 3)
    async with HttpDownloader(allow_private_networks=True, max_redirects=2) as d:
        with pytest.raises(DownloadError) as info:
            await d.fetch(url, tmp_path / "clip.mp4")
    assert info.value.code == "too_many_redirects"
    assert info.value.url == url
    assert paths_in(tmp_path) == []


async def test_redirect_without_location(dl: HttpDownloader, route: Route, tmp_path: Path) -> None:
    async def bad(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302)

    with pytest.raises(DownloadError) as info:
        await dl.fetch(route(bad), tmp_path / "x")
    assert info.value.code == "bad_redirect"


def test_https_to_http_downgrade_refused() -> None:
    d = HttpDownloader(allow_private_networks=True)
    with pytest.raises(DownloadError) as info:
        d.check_url(
            "https://a.example/x",
            URL("http://b.example/y?token=s3cr3t"),
            URL("https://a.example/x"),
        )
    assert info.value.code == "url_not_allowed"
    assert "https to http" in str(info.value)
    assert "s3cr3t" not in str(info.value)
    # http -> https and https -> https are fine
    d.check_url("http://a.example/x", URL("https://b.example/y"), URL("http://a.example/x"))
    d.check_url("https://a.example/x", URL("https://b.example/y"), URL("https://a.example/x"))


async def test_redirect_to_other_scheme_refused(
    dl: HttpDownloader, route: Route, tmp_path: Path
) -> None:
    async def to_file(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "file:///etc/passwd"})

    with pytest.raises(DownloadError) as info:
        await dl.fetch(route(to_file), tmp_path / "x")
    assert info.value.code == "url_not_allowed"
    assert "file" in str(info.value)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/a.mp4", "url_not_allowed"),
        ("file:///etc/passwd", "url_not_allowed"),
        ("http://user:pass@example.com/a.mp4", "url_not_allowed"),
    ],
)
async def test_bad_urls_refused(dl: HttpDownloader, tmp_path: Path, url: str, code: str) -> None:
    with pytest.raises(DownloadError) as info:
        await dl.fetch(url, tmp_path / "x")
    assert info.value.code == code


async def test_allowed_ports(media_server: MediaServer, tmp_path: Path) -> None:
    async with HttpDownloader(allow_private_networks=True, allowed_ports={80, 443}) as d:
        with pytest.raises(DownloadError) as info:
            await d.fetch(media_server.media_url("logo.png"), tmp_path / "x")
    assert info.value.code == "url_not_allowed"
    assert str(media_server.port) in str(info.value)


async def test_no_automatic_decompression(dl: HttpDownloader, route: Route, tmp_path: Path) -> None:
    raw = gzip.compress(b"not a video, " * 1000)

    async def gz(request: web.Request) -> web.StreamResponse:
        return web.Response(body=raw, headers={"Content-Encoding": "gzip"})

    size = await dl.fetch(route(gz), tmp_path / "x.gz")
    assert size == len(raw)
    assert (tmp_path / "x.gz").read_bytes() == raw


async def test_proxy_env_ignored(
    media_server: MediaServer, media_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with HttpDownloader(allow_private_networks=True) as d:
        await d.fetch(media_server.media_url("logo.png"), tmp_path / "logo.png")
    assert (tmp_path / "logo.png").read_bytes() == (media_dir / "logo.png").read_bytes()


async def test_no_cookies_kept(dl: HttpDownloader, route: Route, tmp_path: Path) -> None:
    got: list[str | None] = []

    async def jar(request: web.Request) -> web.StreamResponse:
        got.append(request.headers.get("Cookie"))
        resp = web.Response(body=b"ok")
        resp.set_cookie("session", "abc")
        return resp

    url = route(jar)
    await dl.fetch(url, tmp_path / "a")
    await dl.fetch(url, tmp_path / "b")
    assert got == [None, None]


async def test_user_agent_and_headers(route: Route, tmp_path: Path) -> None:
    got: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        got.append(dict(request.headers))
        return web.Response(body=b"ok")

    async with HttpDownloader(
        allow_private_networks=True, user_agent="probe/1", headers={"X-Token": "t"}
    ) as d:
        await d.fetch(route(echo), tmp_path / "a")
    assert got[0]["User-Agent"] == "probe/1"
    assert got[0]["X-Token"] == "t"
    assert got[0]["Accept-Encoding"] == "identity"


def _half_then_close(data: bytes, state: dict[str, int]) -> Handler:
    """First request: full Content-Length, half the body, then the connection drops.

    Later requests honour ``Range: bytes=N-`` with a 206.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        state["requests"] = state.get("requests", 0) + 1
        rng = request.headers.get("Range")
        if state["requests"] == 1:
            resp = web.StreamResponse(
                headers={"Content-Length": str(len(data)), "Accept-Ranges": "bytes"}
            )
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            await asyncio.sleep(0.2)
            assert request.transport is not None
            request.transport.close()
            return resp
        if rng:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            state["range_start"] = start
            return web.Response(
                status=206,
                body=data[start:],
                headers={
                    "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                    "Accept-Ranges": "bytes",
                },
            )
        return web.Response(body=data)

    return handler


async def test_resume_after_mid_body_failure(
    dl: HttpDownloader, route: Route, media_dir: Path, tmp_path: Path
) -> None:
    data = (media_dir / "long.mp4").read_bytes()
    state: dict[str, int] = {}
    url = route(_half_then_close(data, state))
    dest = tmp_path / "long.mp4"
    with pytest.raises(DownloadConnectionError) as info:
        await dl.fetch(url, dest)
    assert info.value.transient
    part = tmp_path / "long.mp4.part"
    assert not dest.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(data)
    assert part.read_bytes() == data[:kept]

    seen: list[tuple[int, int | None]] = []
    size = await dl.fetch(url, dest, resume=True, progress=lambda d, t: seen.append((d, t)))
    assert state["range_start"] == kept
    assert size == len(data)
    assert dest.read_bytes() == data
    assert not part.exists()
    assert seen[-1] == (len(data), len(data))
    assert seen[0][0] > kept  # progress counts the resumed bytes too


async def test_resume_against_file_server(
    dl: HttpDownloader, media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    data = (media_dir / "long.mp4").read_bytes()
    (tmp_path / "long.mp4.part").write_bytes(data[:5000])
    before = len(media_server.requests)
    await dl.fetch(media_server.media_url("long.mp4"), tmp_path / "long.mp4", resume=True)
    assert (tmp_path / "long.mp4").read_bytes() == data
    sent = [h.get("Range") for _, _, h in media_server.requests[before:]]
    assert "bytes=5000-" in sent


async def test_resume_server_ignores_range_restarts(
    dl: HttpDownloader, route: Route, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 100

    async def no_ranges(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data)

    (tmp_path / "f.part").write_bytes(b"garbage" * 10)
    size = await dl.fetch(route(no_ranges), tmp_path / "f", resume=True)
    assert size == len(data)
    assert (tmp_path / "f").read_bytes() == data


async def test_without_resume_stale_part_is_ignored(
    dl: HttpDownloader, media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "clip.mp4.part").write_bytes(b"stale")
    before = len(media_server.requests)
    await dl.fetch(media_server.media_url("clip.mp4"), tmp_path / "clip.mp4")
    assert (tmp_path / "clip.mp4").read_bytes() == (media_dir / "clip.mp4").read_bytes()
    assert all("Range" not in h for _, _, h in media_server.requests[before:])


async def test_failure_without_range_support_leaves_nothing(
    dl: HttpDownloader, route: Route, tmp_path: Path
) -> None:
    async def short(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "100000"})
        await resp.prepare(request)
        await resp.write(b"x" * 30000)
        await asyncio.sleep(0.2)
        assert request.transport is not None
        request.transport.close()
        return resp

    with pytest.raises(DownloadConnectionError):
        await dl.fetch(route(short), tmp_path / "x")
    assert paths_in(tmp_path) == []


async def test_cap_from_fetch_and_downloader(
    media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    size = (media_dir / "clip.mp4").stat().st_size
    async with HttpDownloader(allow_private_networks=True, max_bytes=size - 1) as d:
        with pytest.raises(DownloadTooLargeError):
            # a larger per-fetch cap cannot raise the downloader's own cap
            await d.fetch(media_server.media_url("clip.mp4"), tmp_path / "x", max_bytes=size * 2)
    async with HttpDownloader(allow_private_networks=True, max_bytes=None) as d:
        assert await d.fetch(media_server.media_url("clip.mp4"), tmp_path / "x") == size


async def test_lazy_session_and_aclose(media_server: MediaServer, tmp_path: Path) -> None:
    d = HttpDownloader(allow_private_networks=True)
    assert d._session is None  # nothing opened before first use
    await d.fetch(media_server.media_url("logo.png"), tmp_path / "a")
    session = d._session
    assert session is not None
    await d.aclose()
    assert session.closed
    await d.aclose()  # twice is fine


async def test_passed_in_session_not_closed(
    media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        d = HttpDownloader(allow_private_networks=True, session=session)
        await d.fetch(media_server.media_url("logo.png"), tmp_path / "a")
        await d.aclose()
        assert not session.closed
    assert (tmp_path / "a").read_bytes() == (media_dir / "logo.png").read_bytes()


async def test_parallel_downloads(
    dl: HttpDownloader, media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    names = ["clip.mp4", "long.mp4", "logo.png", "tone.wav", "subs.srt"]
    sizes = await asyncio.gather(
        *(dl.fetch(media_server.media_url(n), tmp_path / n) for n in names)
    )
    for name, size in zip(names, sizes, strict=True):
        assert (tmp_path / name).read_bytes() == (media_dir / name).read_bytes()
        assert size == (media_dir / name).stat().st_size


async def test_cancel_removes_part(route: Route, tmp_path: Path) -> None:
    started = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Accept-Ranges": "bytes"})
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"y" * 65536)
            await asyncio.sleep(0.05)
        return resp

    async with HttpDownloader(allow_private_networks=True, min_rate_bytes=0) as d:
        url = route(endless)
        task = asyncio.create_task(
            d.fetch(url, tmp_path / "x", progress=lambda done, total: started.set())
        )
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert paths_in(tmp_path) == []


# --- FakeDownloader ----------------------------------------------------------


async def test_fake_downloader(media_dir: Path, tmp_path: Path) -> None:
    boom = DownloadConnectionError("reset", url="https://e.x/boom")
    fake = FakeDownloader(
        {
            "https://e.x/a.bin": b"abc",
            "https://e.x/clip.mp4": media_dir / "clip.mp4",
            "https://e.x/boom": boom,
        }
    )
    seen: list[tuple[int, int | None]] = []
    assert (
        await fake.fetch(
            "https://e.x/a.bin", tmp_path / "a", progress=lambda d, t: seen.append((d, t))
        )
        == 3
    )
    assert (tmp_path / "a").read_bytes() == b"abc"
    assert seen == [(3, 3)]
    await fake.fetch("https://e.x/clip.mp4", tmp_path / "clip.mp4")
    assert (tmp_path / "clip.mp4").read_bytes() == (media_dir / "clip.mp4").read_bytes()
    with pytest.raises(DownloadConnectionError) as info:
        await fake.fetch("https://e.x/boom", tmp_path / "b")
    assert info.value is boom
    with pytest.raises(DownloadHTTPError) as missing:
        await fake.fetch("https://e.x/nope", tmp_path / "c")
    assert missing.value.status == 404
    with pytest.raises(DownloadTooLargeError):
        await fake.fetch("https://e.x/a.bin", tmp_path / "d", max_bytes=2)
    assert not (tmp_path / "d").exists()
    assert fake.calls == [
        "https://e.x/a.bin",
        "https://e.x/clip.mp4",
        "https://e.x/boom",
        "https://e.x/nope",
        "https://e.x/a.bin",
    ]


async def test_fake_downloader_callable(tmp_path: Path) -> None:
    attempts: list[str] = []

    def flaky(url: str) -> bytes | BaseException:
        attempts.append(url)
        if len(attempts) == 1:
            return DownloadConnectionError("reset", url=url)
        return url.encode()

    async with FakeDownloader(flaky) as fake:
        with pytest.raises(DownloadConnectionError):
            await fake.fetch("https://e.x/1", tmp_path / "1")
        await fake.fetch("https://e.x/1", tmp_path / "1", resume=True)
    assert (tmp_path / "1").read_bytes() == b"https://e.x/1"
    assert fake.closed


async def test_custom_headers_not_sent_to_other_origin(
    media_server: MediaServer, route: Route, tmp_path: Path
) -> None:
    got: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        got.append(dict(request.headers))
        return web.Response(body=b"ok")

    same_origin = route(echo)
    # 127.0.0.1 and localhost are different origins on the same server
    other_origin = same_origin.replace("127.0.0.1", "localhost")
    async with HttpDownloader(
        allow_private_networks=True, headers={"Authorization": "Bearer s3cr3t"}
    ) as d:
        await d.fetch(media_server.url("redirect") + "?to=" + same_origin, tmp_path / "a")
        await d.fetch(media_server.url("redirect") + "?to=" + other_origin, tmp_path / "b")
    assert got[0]["Authorization"] == "Bearer s3cr3t"
    assert "Authorization" not in got[1]
    assert got[1]["User-Agent"].startswith("ffmpeg-tasks/")


async def test_part_kept_when_resume_attempt_fails_to_connect(
    dead_endpoint: str, tmp_path: Path
) -> None:
    part = tmp_path / "x.part"
    part.write_bytes(b"first half")
    async with HttpDownloader(allow_private_networks=True) as d:
        with pytest.raises(DownloadConnectionError):
            await d.fetch(dead_endpoint + "/x", tmp_path / "x", resume=True)
    assert part.read_bytes() == b"first half"  # still there for the next attempt


async def test_wrong_content_range_drops_part(
    dl: HttpDownloader, route: Route, tmp_path: Path
) -> None:
    async def wrong(request: web.Request) -> web.StreamResponse:
        return web.Response(status=206, body=b"abc", headers={"Content-Range": "bytes 0-2/3"})

    (tmp_path / "x.part").write_bytes(b"12345")
    with pytest.raises(DownloadError) as info:
        await dl.fetch(route(wrong), tmp_path / "x", resume=True)
    assert info.value.code == "bad_range"
    assert paths_in(tmp_path) == []


async def test_range_not_satisfiable_when_part_complete(
    dl: HttpDownloader, route: Route, tmp_path: Path
) -> None:
    async def done(request: web.Request) -> web.StreamResponse:
        assert request.headers["Range"] == "bytes=5-"
        return web.Response(status=416, headers={"Content-Range": "bytes */5"})

    (tmp_path / "x.part").write_bytes(b"12345")
    assert await dl.fetch(route(done), tmp_path / "x", resume=True) == 5
    assert (tmp_path / "x").read_bytes() == b"12345"
    assert paths_in(tmp_path) == ["x"]


def test_content_range_parsing() -> None:
    from ffmpeg_tasks.downloader.http import _content_range

    assert _content_range("bytes 100-199/200") == (100, 200)
    assert _content_range("bytes 100-199/*") == (100, None)
    assert _content_range("bytes */5") == (None, 5)
    assert _content_range("items 1-2/3") is None
    assert _content_range("bytes x-y/z") is None
    assert _content_range(None) is None


async def test_missing_dest_dir_is_write_failed(
    dl: HttpDownloader, media_server: MediaServer, tmp_path: Path
) -> None:
    url = media_server.media_url("logo.png")
    with pytest.raises(DownloadError) as info:
        await dl.fetch(url, tmp_path / "no" / "such" / "dir" / "logo.png")
    assert info.value.code == "write_failed"
    assert not info.value.transient
    assert url in str(info.value)
    assert "'logo.png'" in str(info.value)
    assert str(tmp_path) not in str(info.value)  # no host path reaches the task's caller
    assert str(tmp_path) in str(info.value.__cause__.__cause__)  # the host still has it


# --- HTTPS: certificate checks and the downgrade rule end to end -----------------


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def https_server(
    tls_cert: tuple[Path, Path], media_server: MediaServer
) -> AsyncIterator[str]:
    """An HTTPS aiohttp server on this test's loop: /file and /to-http (302 to plain http)."""
    cert, key = tls_cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def file(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"over tls")

    async def to_http(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(media_server.media_url("logo.png") + "?m=" + request.query["m"])

    app = web.Application()
    app.router.add_get("/file", file)
    app.router.add_get("/to-http", to_http)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}"
    await runner.cleanup()


async def test_untrusted_certificate_refused(https_server: str, tmp_path: Path) -> None:
    url = https_server + "/file"
    async with HttpDownloader(allow_private_networks=True) as d:
        with pytest.raises(DownloadConnectionError) as info:
            await d.fetch(url, tmp_path / "x")
    assert not info.value.transient  # retrying will not fix a bad certificate
    assert url in str(info.value)
    assert list(tmp_path.iterdir()) == []


async def test_https_download_and_downgrade_refused(
    https_server: str, tls_cert: tuple[Path, Path], media_server: MediaServer, tmp_path: Path
) -> None:
    trusting = ssl.create_default_context(cafile=str(tls_cert[0]))
    connector = aiohttp.TCPConnector(ssl=trusting)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        d = HttpDownloader(allow_private_networks=True, session=session)
        assert await d.fetch(https_server + "/file", tmp_path / "a") == len(b"over tls")
        marker = uuid.uuid4().hex
        with pytest.raises(DownloadError) as info:
            await d.fetch(https_server + f"/to-http?m={marker}", tmp_path / "b")
    assert info.value.code == "url_not_allowed"
    assert "https to http" in str(info.value)
    assert not any(marker in path for _, path, _ in media_server.requests)
    assert (tmp_path / "a").read_bytes() == b"over tls"
