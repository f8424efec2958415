"""DownloadCache + CachingDownloader against the real aiohttp server and moto: keys,
revalidation, single flight, cancellation, eviction, read-only hand-over, a real task."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ffmpeg_tasks import (
    CachingDownloader,
    ConfigurationError,
    DownloadCache,
    DownloadError,
    DownloadHTTPError,
    DownloadTooLargeError,
    HttpDownloader,
    S3Downloader,
    TaskStatus,
)
from ffmpeg_tasks.downloader.cache import boot_id

from .conftest import Route
from .helpers import leftovers, make_manager

KiB = 1024
MiB = 1024 * KiB


class Versioned:
    """A body behind an ETag and/or Last-Modified, answering conditional GETs with 304.

    ``full`` counts 200 answers, ``not_modified`` 304s; ``delay`` trickles the body in
    16 KiB chunks so that fetches can join while it is under way.
    """

    def __init__(
        self,
        body: bytes,
        etag: str | None = '"v1"',
        last_modified: str | None = None,
        delay: float = 0.0,
        status: int = 200,
    ) -> None:
        self.body, self.etag, self.last_modified = body, etag, last_modified
        self.delay, self.status = delay, status
        self.full = 0
        self.not_modified = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        headers = {}
        if self.etag:
            headers["ETag"] = self.etag
        if self.last_modified:
            headers["Last-Modified"] = self.last_modified
        if self.status != 200:
            return web.Response(status=self.status, text="nope")
        match = request.headers.get("If-None-Match")
        since = request.headers.get("If-Modified-Since")
        if (match and match == self.etag) or (not match and since and since == self.last_modified):
            self.not_modified += 1
            return web.Response(status=304, headers=headers)
        self.full += 1
        if not self.delay:
            return web.Response(body=self.body, headers=headers)
        headers["Content-Length"] = str(len(self.body))
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        for i in range(0, len(self.body), 16 * KiB):
            await resp.write(self.body[i : i + 16 * KiB])
            await asyncio.sleep(self.delay)
        await resp.write_eof()
        return resp


def caching(tmp_path: Path, max_bytes: int = 100 * MiB, **kwargs: Any) -> CachingDownloader:
    cache = DownloadCache(tmp_path / "cache", max_bytes=max_bytes)
    return CachingDownloader(HttpDownloader(allow_private_networks=True, **kwargs), cache)


def entries(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / "cache" / "entries"))


def temps(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / "cache" / "tmp"))


async def until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.01)


async def idle(dl: CachingDownloader) -> None:
    """Until the flights have ended (a new entry is indexed after its hand-over; a
    fetch arriving before that shares the flight, with no request)."""
    await until(lambda: not dl._flights)


async def test_a_miss_downloads_a_hit_revalidates_and_links(route: Route, tmp_path: Path) -> None:
    body = os.urandom(200 * KiB)
    server = Versioned(body)
    url = route(server)
    seen: list[tuple[int, int | None]] = []
    async with caching(tmp_path) as dl:
        assert await dl.fetch(url, tmp_path / "a.bin") == len(body)
        await idle(dl)
        size = await dl.fetch(url, tmp_path / "b.bin", progress=lambda d, t: seen.append((d, t)))
        assert dl.stats.downloads == 1 and dl.stats.hits == 1
    assert size == len(body)
    assert (server.full, server.not_modified) == (1, 1)
    assert seen == [(len(body), len(body))]  # a hit reports the whole file once
    (entry,) = entries(tmp_path)
    for name in ("a.bin", "b.bin"):
        path = tmp_path / name
        assert path.read_bytes() == body
        assert path.stat().st_mode & 0o777 == 0o444
        assert path.samefile(tmp_path / "cache" / "entries" / entry)  # a hard link
    assert dl.cache.handovers["link"] == 2
    assert temps(tmp_path) == []


async def test_a_changed_etag_is_fetched_again_and_old_links_keep_their_bytes(
    route: Route, tmp_path: Path
) -> None:
    server = Versioned(b"one" * 1000, etag='"v1"')
    url = route(server)
    async with caching(tmp_path) as dl:
        await dl.fetch(url, tmp_path / "old.bin")
        await idle(dl)
        server.body, server.etag = b"two" * 1000, '"v2"'
        await dl.fetch(url, tmp_path / "new.bin")
        await idle(dl)
        await dl.fetch(url, tmp_path / "again.bin")
    assert (server.full, server.not_modified) == (2, 1)
    assert (tmp_path / "old.bin").read_bytes() == b"one" * 1000
    assert (tmp_path / "new.bin").read_bytes() == b"two" * 1000
    assert (tmp_path / "again.bin").samefile(tmp_path / "new.bin")
    assert len(entries(tmp_path)) == 2  # one entry per validator, never shared


async def test_last_modified_alone_is_a_validator(route: Route, tmp_path: Path) -> None:
    server = Versioned(b"x" * 5000, etag=None, last_modified="Wed, 21 Oct 2026 07:28:00 GMT")
    url = route(server)
    async with caching(tmp_path) as dl:
        await dl.fetch(url, tmp_path / "a")
        await idle(dl)
        await dl.fetch(url, tmp_path / "b")
    assert (server.full, server.not_modified) == (1, 1)


@pytest.mark.parametrize("etag", [None, 'W/"weak"'])
async def test_a_body_without_a_strong_validator_is_not_cached(
    route: Route, tmp_path: Path, etag: str | None
) -> None:
    server = Versioned(b"y" * 5000, etag=etag)
    url = route(server)
    async with caching(tmp_path) as dl:
        await dl.fetch(url, tmp_path / "a")
        await dl.fetch(url, tmp_path / "b")
        assert dl.stats.uncacheable == 2
    assert server.full == 2
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == b"y" * 5000
    assert entries(tmp_path) == [] and temps(tmp_path) == []


async def test_concurrent_fetches_share_one_download(route: Route, tmp_path: Path) -> None:
    body = os.urandom(256 * KiB)
    server = Versioned(body, delay=0.01)
    url = route(server)
    async with caching(tmp_path) as dl:
        sizes = await asyncio.gather(*(dl.fetch(url, tmp_path / f"d{i}") for i in range(6)))
        assert dl.stats.shared == 5 and dl.stats.downloads == 1
    assert sizes == [len(body)] * 6
    assert server.full == 1
    assert all((tmp_path / f"d{i}").read_bytes() == body for i in range(6))
    assert temps(tmp_path) == []


async def test_a_cancelled_waiter_leaves_the_others_their_download(
    route: Route, tmp_path: Path
) -> None:
    body = os.urandom(256 * KiB)
    server = Versioned(body, delay=0.02)
    url = route(server)
    progress: list[list[int]] = [[], [], []]
    async with caching(tmp_path) as dl:
        fetches = [
            asyncio.create_task(
                dl.fetch(url, tmp_path / f"d{i}", progress=lambda d, t, i=i: progress[i].append(d))
            )
            for i in range(3)
        ]
        await until(lambda: all(progress))  # all three are in the flight
        fetches[0].cancel()
        done = await asyncio.gather(*fetches, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError)
    assert done[1:] == [len(body), len(body)]
    assert server.full == 1
    assert (tmp_path / "d2").read_bytes() == body
    assert not (tmp_path / "d0").exists()


async def test_the_last_party_cancelling_stops_the_download(route: Route, tmp_path: Path) -> None:
    body = os.urandom(512 * KiB)
    server = Versioned(body, delay=0.05)
    url = route(server)
    progress: list[list[int]] = [[], []]
    async with caching(tmp_path) as dl:
        fetches = [
            asyncio.create_task(
                dl.fetch(url, tmp_path / f"d{i}", progress=lambda d, t, i=i: progress[i].append(d))
            )
            for i in range(2)
        ]
        await until(lambda: all(progress))
        for fetch in fetches:
            fetch.cancel()
        await asyncio.wait(fetches)
        await until(lambda: not dl._flights)
        await until(lambda: temps(tmp_path) == [])  # the flight's temp file is gone
        assert entries(tmp_path) == []
        assert all(f.cancelled() for f in fetches)
        server.delay = 0
        assert await dl.fetch(url, tmp_path / "later") == len(body)  # a fresh flight
    assert server.full == 2
    assert max(progress[0]) < len(body)  # it really was stopped midway


async def test_a_failed_flight_fails_every_party_and_caches_nothing(
    route: Route, tmp_path: Path
) -> None:
    server = Versioned(b"", status=503)
    url = route(server)
    async with caching(tmp_path) as dl:
        results = await asyncio.gather(
            *(dl.fetch(url, tmp_path / f"d{i}") for i in range(3)), return_exceptions=True
        )
    assert all(isinstance(r, DownloadHTTPError) and r.status == 503 for r in results)
    assert entries(tmp_path) == [] and temps(tmp_path) == []


async def test_least_recently_used_entries_are_evicted(route: Route, tmp_path: Path) -> None:
    size = 100 * KiB
    servers = {name: Versioned(os.urandom(size)) for name in "abc"}
    urls = {name: route(s) for name, s in servers.items()}
    async with caching(tmp_path, max_bytes=int(2.5 * size)) as dl:
        for name, dest in (("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1")):
            await dl.fetch(urls[name], tmp_path / dest)  # a2: a hit, a is newer than b now
            await idle(dl)
        await until(lambda: len(entries(tmp_path)) == 2)  # eviction runs after hand-over
        await dl.fetch(urls["a"], tmp_path / "a3")
        await dl.fetch(urls["b"], tmp_path / "b2")
    assert servers["a"].full == 1  # kept
    assert servers["b"].full == 2  # evicted, fetched again
    assert (tmp_path / "b1").read_bytes() == servers["b"].body  # its old link still whole
    assert dl.cache.usage() <= 2.5 * size


async def test_an_entry_bigger_than_the_cache_is_used_once(route: Route, tmp_path: Path) -> None:
    server = Versioned(os.urandom(300 * KiB))
    url = route(server)
    async with caching(tmp_path, max_bytes=100 * KiB) as dl:
        await asyncio.gather(*(dl.fetch(url, tmp_path / f"d{i}") for i in range(3)))
        await idle(dl)
        await until(lambda: entries(tmp_path) == [])
        await dl.fetch(url, tmp_path / "later")
    assert server.full == 2
    assert all((tmp_path / f"d{i}").read_bytes() == server.body for i in range(3))


async def test_the_work_dir_copy_is_read_only_and_a_write_through_it_is_caught(
    route: Route, tmp_path: Path
) -> None:
    body = b"pristine" * 1000
    server = Versioned(body)
    url = route(server)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    async with caching(tmp_path) as dl:
        await dl.fetch(url, shared / "in.bin")
        await idle(dl)
        as_nobody = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "sh", "-c", f"echo x >> {shared / 'in.bin'}"],
            capture_output=True,
        )  # fmt: skip
        assert as_nobody.returncode != 0  # 0o444: an unprivileged task cannot write it
        with open(shared / "in.bin", "r+b") as f:  # root (CAP_DAC_OVERRIDE) can
            f.write(b"TAMPERED")
        await dl.fetch(url, tmp_path / "next.bin")
    assert server.full == 2  # the changed entry was dropped, not handed out
    assert (tmp_path / "next.bin").read_bytes() == body


async def test_a_cache_on_another_filesystem_copies(route: Route, tmp_path: Path) -> None:
    other = Path("/dev/shm")
    assert other.stat().st_dev != tmp_path.stat().st_dev, "needs /dev/shm on its own fs"
    server = Versioned(os.urandom(50 * KiB))
    url = route(server)
    cache = DownloadCache(other / f"ffmpeg-tasks-cache-test-{os.getpid()}", max_bytes=MiB)
    try:
        async with CachingDownloader(HttpDownloader(allow_private_networks=True), cache) as dl:
            await dl.fetch(url, tmp_path / "a")
            await dl.fetch(url, tmp_path / "b")
        assert cache.handovers["copy"] == 2
        assert (tmp_path / "b").read_bytes() == server.body
        assert (tmp_path / "b").stat().st_mode & 0o777 == 0o444
    finally:
        subprocess.run(["rm", "-rf", str(cache.directory)], check=True)


async def test_a_smaller_cap_refuses_a_hit_and_a_larger_one_flies_alone(
    route: Route, tmp_path: Path
) -> None:
    server = Versioned(os.urandom(64 * KiB), delay=0.01)
    url = route(server)
    async with caching(tmp_path) as dl:
        small = asyncio.create_task(dl.fetch(url, tmp_path / "s", max_bytes=10 * KiB))
        await asyncio.sleep(0)
        big = asyncio.create_task(dl.fetch(url, tmp_path / "b", max_bytes=MiB))
        with pytest.raises(DownloadTooLargeError):
            await small
        assert await big == 64 * KiB
        with pytest.raises(DownloadTooLargeError):
            await dl.fetch(url, tmp_path / "s2", max_bytes=10 * KiB)  # a hit, too big


async def test_two_caches_on_one_directory_do_not_corrupt_each_other(
    route: Route, tmp_path: Path
) -> None:
    body = os.urandom(200 * KiB)
    server = Versioned(body, delay=0.005)
    url = route(server)
    async with caching(tmp_path) as one, caching(tmp_path) as two:
        await asyncio.gather(
            *(dl.fetch(url, tmp_path / f"{n}{i}") for i in range(3) for n, dl in
              (("one", one), ("two", two)))
        )  # fmt: skip
    assert server.full == 2  # single flight is per process (per CachingDownloader)
    assert len(entries(tmp_path)) == 1 and temps(tmp_path) == []
    assert all(p.read_bytes() == body for p in tmp_path.glob("[ot]*[0-9]"))


async def test_s3_inputs_are_keyed_by_etag(
    tmp_path: Path, s3_server: Any, s3_bucket: str, s3_client: Any
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="in/a.bin", Body=b"first" * 1000)
    url = f"s3://{s3_bucket}/in/a.bin"
    inner = S3Downloader([s3_bucket], endpoint_url=s3_server.endpoint_url, region="us-east-1")
    cache = DownloadCache(tmp_path / "cache", max_bytes=MiB)
    async with CachingDownloader({"s3": inner}, cache) as dl:
        await asyncio.gather(*(dl.fetch(url, tmp_path / f"d{i}") for i in range(3)))
        await idle(dl)
        await dl.fetch(url, tmp_path / "hit")
        assert (dl.stats.downloads, dl.stats.hits, dl.stats.shared) == (1, 1, 2)
        await idle(dl)
        s3_client.put_object(Bucket=s3_bucket, Key="in/a.bin", Body=b"second" * 1000)
        await dl.fetch(url, tmp_path / "changed")
        assert dl.stats.downloads == 2
        with pytest.raises(DownloadError) as info:
            dl.check_input(f"s3://{s3_bucket}-other/x")
        assert info.value.code == "url_not_allowed"
    assert (tmp_path / "hit").read_bytes() == b"first" * 1000
    assert (tmp_path / "changed").read_bytes() == b"second" * 1000


async def test_thumbnail_tasks_through_the_manager_fetch_the_input_once(
    media_server: Any, tmp_path: Path
) -> None:
    url = media_server.media_url("long.mp4")
    cache = DownloadCache(tmp_path / "cache", max_bytes=100 * MiB)
    dl = CachingDownloader({"http": HttpDownloader(allow_private_networks=True)}, cache)
    before = len(media_server.requests)
    async with make_manager(tmp_path, downloader=dl, max_concurrent_tasks=2) as tm:
        tasks = await asyncio.gather(
            *(
                tm.run(
                    f"-ss {i} -i in.mp4 -frames:v 1 -vf scale=64:-2 thumb.jpg",
                    {"in.mp4": url},
                    "thumb.jpg",
                )
                for i in range(4)
            )
        )
        with pytest.raises(Exception) as info:  # the router's schemes still apply
            await tm.register("-i in.mp4 -c copy o.mp4", {"in.mp4": "s3://b/k.mp4"}, "o.mp4")
    assert all(t.status is TaskStatus.COMPLETED for t in tasks), [t.error for t in tasks]
    gets = [r for r in media_server.requests[before:] if r[1] == "/media/long.mp4"]
    assert sum("If-None-Match" not in headers for _, _, headers in gets) == 1
    assert dl.stats.downloads == 1
    assert getattr(info.value, "code", None) == "url_not_allowed"
    assert leftovers(tmp_path) == []


async def test_a_cache_that_skips_the_fsync_still_indexes_its_entries(
    route: Route, tmp_path: Path
) -> None:
    server = Versioned(os.urandom(64 * KiB))
    url = route(server)
    cache = DownloadCache(tmp_path / "cache", max_bytes=MiB, durable=False)
    async with CachingDownloader(HttpDownloader(allow_private_networks=True), cache) as dl:
        await dl.fetch(url, tmp_path / "a")
        await idle(dl)
        await dl.fetch(url, tmp_path / "b")
    assert (server.full, server.not_modified) == (1, 1)
    assert (tmp_path / "b").read_bytes() == server.body


async def test_cancelling_one_task_leaves_the_shared_download_to_the_other(
    route: Route, media_dir: Path, tmp_path: Path
) -> None:
    body = (media_dir / "clip.mp4").read_bytes()
    server = Versioned(body, delay=1.0 / (len(body) // (16 * KiB) + 1))  # about 1 s
    url = route(server)
    cache = DownloadCache(tmp_path / "cache", max_bytes=100 * MiB)
    dl = CachingDownloader({"http": HttpDownloader(allow_private_networks=True)}, cache)
    async with make_manager(tmp_path, downloader=dl, max_concurrent_tasks=2) as tm:
        ids = [
            (await tm.register("-i in.mp4 -frames:v 1 thumb.jpg", {"in.mp4": url}, "thumb.jpg")).id
            for _ in range(2)
        ]
        for task_id in ids:
            await tm.submit(task_id)
        await until(lambda: dl.stats.shared == 1)  # both wait on one flight
        assert dl.stats.downloads == 0  # still under way
        assert (await tm.cancel(ids[0])).status is TaskStatus.CANCELLED
        other = await tm.wait(ids[1])
    assert other.status is TaskStatus.COMPLETED, other.error
    assert server.full == 1
    assert leftovers(tmp_path) == [] and temps(tmp_path) == []


async def test_an_input_behind_the_cache_is_whole_before_ffmpeg_starts(tmp_path: Path) -> None:
    dl = caching(tmp_path)
    async with make_manager(tmp_path, downloader=dl) as tm:
        plan = await tm.plan("-i in.ts -c copy out.mkv", {"in.ts": "http://a.test/x.ts"}, "out.mkv")
    assert "in.ts: downloaded before ffmpeg starts" in " ".join(plan.notes)


def index_record(tmp_path: Path) -> dict[str, Any]:
    (name,) = os.listdir(tmp_path / "cache" / "index")
    record: dict[str, Any] = json.loads((tmp_path / "cache" / "index" / name).read_text())
    return record


def rewrite_record(tmp_path: Path, **changes: Any) -> None:
    (name,) = os.listdir(tmp_path / "cache" / "index")
    path = tmp_path / "cache" / "index" / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


async def test_a_new_entry_serves_at_once_and_is_fsyncd_later(route: Route, tmp_path: Path) -> None:
    server = Versioned(os.urandom(64 * KiB))
    url = route(server)
    cache = DownloadCache(tmp_path / "cache", max_bytes=MiB, sync_after=0.3)
    async with CachingDownloader(HttpDownloader(allow_private_networks=True), cache) as dl:
        await dl.fetch(url, tmp_path / "a")
        await idle(dl)
        record = index_record(tmp_path)
        assert (record["synced"], record["boot"]) == (False, boot_id())
        await dl.fetch(url, tmp_path / "b")  # trusted in this boot before its fsync
        await until(lambda: bool(index_record(tmp_path)["synced"]))
    assert (server.full, server.not_modified) == (1, 1)


@pytest.mark.parametrize("synced", [False, True])
async def test_after_a_reboot_only_fsyncd_entries_are_trusted(
    route: Route, tmp_path: Path, synced: bool
) -> None:
    server = Versioned(os.urandom(64 * KiB))
    url = route(server)
    cache = DownloadCache(tmp_path / "cache", max_bytes=MiB, durable=False)
    async with CachingDownloader(HttpDownloader(allow_private_networks=True), cache) as dl:
        await dl.fetch(url, tmp_path / "a")
        await idle(dl)
        assert index_record(tmp_path)["synced"] is False  # durable=False: never fsync'd
        rewrite_record(tmp_path, boot="a-boot-before-a-power-loss", synced=synced)
        await dl.fetch(url, tmp_path / "b")
    # Not fsync'd before the reboot: maybe garbage on disk, so it is downloaded again.
    assert (server.full, server.not_modified) == ((1, 1) if synced else (2, 0))
    assert (tmp_path / "b").read_bytes() == server.body


async def test_a_record_from_before_boot_ids_counts_as_fsyncd(route: Route, tmp_path: Path) -> None:
    server = Versioned(os.urandom(64 * KiB))
    url = route(server)
    async with caching(tmp_path) as dl:
        await dl.fetch(url, tmp_path / "a")
        await idle(dl)
        (name,) = os.listdir(tmp_path / "cache" / "index")
        path = tmp_path / "cache" / "index" / name
        old = json.loads(path.read_text())
        del old["synced"], old["boot"]
        path.write_text(json.dumps(old))
        await dl.fetch(url, tmp_path / "b")
    assert (server.full, server.not_modified) == (1, 1)


async def test_closing_drops_a_pending_fsync_at_once(route: Route, tmp_path: Path) -> None:
    server = Versioned(os.urandom(64 * KiB))
    url = route(server)
    cache = DownloadCache(tmp_path / "cache", max_bytes=MiB, sync_after=3600)
    dl = CachingDownloader(HttpDownloader(allow_private_networks=True), cache)
    async with dl:
        await dl.fetch(url, tmp_path / "a")
        await idle(dl)
        assert len(dl._syncs) == 1
    assert not dl._syncs  # aclose did not wait an hour
    assert index_record(tmp_path)["synced"] is False


def test_a_negative_sync_delay_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="sync_after"):
        DownloadCache(tmp_path, max_bytes=MiB, sync_after=-1)
