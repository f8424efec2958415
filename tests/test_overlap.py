"""Input overlap with real ffmpeg: a streamable input is read while it still downloads.

The media server trickles an MPEG-TS file; ffmpeg's progress must begin before the
last byte arrives.  Failures mid-overlap (a download that dies, a cancel, a download
that starts over) leave no work dir and no ffmpeg behind.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ffmpeg_tasks import Event, EventType, LocalStorage, S3Downloader, TaskStatus
from ffmpeg_tasks.overlap import PIPE_SIZE, Feed

from .conftest import Route
from .helpers import leftovers, make_manager
from .s3_proxy import ProviderProxy
from .servers import MediaServer

REMUX = "-i in.ts -c copy out.mkv"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def ts_file(tmp_path_factory: pytest.TempPathFactory, ffmpeg_bin: str) -> Path:
    """10 s of 640x360 video as MPEG-TS (about 2.4 MB: past the 1 MiB first window)."""
    path = tmp_path_factory.mktemp("ts") / "clip.ts"
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=640x360:rate=25:duration=10", "-c:v", "libx264", "-preset",
         "ultrafast", "-crf", "23", "-g", "25", "-f", "mpegts", str(path)],
        check=True,
    )  # fmt: skip
    return path


def trickle(
    data: bytes, *, chunk: int = 64 * 1024, delay: float = 0.05, stop_at: int = 0
) -> object:
    """A handler sending ``data`` slowly; with ``stop_at``, the connection dies there."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await resp.prepare(request)
        for i in range(0, len(data), chunk):
            if stop_at and i >= stop_at:
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(data[i : i + chunk])
            await asyncio.sleep(delay)
        await resp.write_eof()
        return resp

    return handler


async def test_ffmpeg_reads_a_ts_input_while_it_downloads(
    tmp_path: Path, ts_file: Path, route: Route
) -> None:
    events: list[Event] = []
    url = route(trickle(ts_file.read_bytes()))  # type: ignore[arg-type]
    async with make_manager(tmp_path, on_event=events.append, overlap_inputs=True) as manager:
        plan = await manager.plan(REMUX, {"in.ts": url}, "out.mkv")
        assert "in.ts: ffmpeg reads it while it downloads" in plan.notes
        task = await manager.run(REMUX, {"in.ts": url}, "out.mkv")
    assert task.status is TaskStatus.COMPLETED, task.error
    downloads = [e for e in events if e.type is EventType.DOWNLOADING]
    first_run = next(e for e in events if e.type is EventType.RUNNING)
    assert downloads[-1].bytes_done == ts_file.stat().st_size
    assert first_run.time < downloads[-1].time  # ffmpeg ran before the last byte came
    assert task.metadata["out.mkv"]["duration"] == pytest.approx(10, abs=0.5)
    assert not leftovers(tmp_path)
    # MPEG-TS on a FIFO has no duration: the percent is how much of the input ffmpeg read.
    percents = [e.percent for e in events if e.type is EventType.RUNNING and e.percent]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(0 < p < 100 for p in percents)


async def test_the_plan_says_why_an_input_is_downloaded_first(
    tmp_path: Path, media_server: MediaServer
) -> None:
    url = media_server.media_url("long.mp4")
    async with make_manager(tmp_path, overlap_inputs=True) as manager:
        plan = await manager.plan("-i in.mp4 -c copy out.mkv", {"in.mp4": url}, "out.mkv")
        assert any(
            n.startswith("in.mp4: downloaded before ffmpeg starts (.mp4 may") for n in plan.notes
        )
        twice = await manager.plan(
            "-i in.ts -i in.ts -map 0:v -map 1:v -c copy out.mkv", {"in.ts": url}, "out.mkv"
        )
        assert any("more than once" in n for n in twice.notes)
        looped = await manager.plan(
            "-stream_loop 2 -i in.ts -c copy out.mkv", {"in.ts": url}, "out.mkv"
        )
        assert any("seeks" in n for n in looped.notes)
        # -ss before -i seeks the input; on a FIFO ffmpeg cannot, and -c copy would then
        # copy from the start (seen with ffmpeg 5.1): such an input is downloaded first.
        clipped = await manager.plan("-ss 5 -i in.ts -c copy out.mkv", {"in.ts": url}, "out.mkv")
        assert any("seeks" in n for n in clipped.notes)
        after = await manager.plan("-i in.ts -ss 5 -c copy out.mkv", {"in.ts": url}, "out.mkv")
        assert "in.ts: ffmpeg reads it while it downloads" in after.notes
        subtitled = await manager.plan(
            "-i in.mkv -vf subtitles=in.mkv out.mp4", {"in.mkv": url}, "out.mp4"
        )
        assert any("another argument names it" in n for n in subtitled.notes)
    async with make_manager(tmp_path) as manager:  # off by default
        off = await manager.plan(REMUX, {"in.ts": url}, "out.mkv")
        assert any("overlap is off" in n for n in off.notes)


async def test_a_download_that_dies_after_ffmpeg_started_fails_the_task(
    tmp_path: Path, ts_file: Path, route: Route
) -> None:
    data = ts_file.read_bytes()
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise web.HTTPNotFound()  # the retry finds it gone: a permanent failure
        dying = trickle(data, chunk=128 * 1024, delay=0.2, stop_at=len(data) * 3 // 4)
        return await dying(request)  # type: ignore[operator]

    events: list[Event] = []
    async with make_manager(tmp_path, on_event=events.append, overlap_inputs=True) as manager:
        task = await manager.run(REMUX, {"in.ts": route(handler)}, "out.mkv")
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "download_http_error", task.error
    assert any(e.type is EventType.RUNNING for e in events)  # ffmpeg had started
    assert not leftovers(tmp_path)
    assert not list((tmp_path / "out").rglob("*.mkv"))


async def test_cancel_mid_overlap(tmp_path: Path, ts_file: Path, route: Route) -> None:
    url = route(trickle(ts_file.read_bytes(), delay=0.2))  # type: ignore[arg-type]
    async with make_manager(tmp_path, overlap_inputs=True) as manager:
        task = await manager.register(REMUX, {"in.ts": url}, "out.mkv")
        run = asyncio.create_task(manager.execute(task.id))
        async with asyncio.timeout(30):
            while (await manager.status(task.id)).phase.value != "processing":
                await asyncio.sleep(0.02)
        done = await manager.cancel(task.id)
        assert done.status is TaskStatus.CANCELLED
        assert (await run).status is TaskStatus.CANCELLED
    assert not leftovers(tmp_path)


async def test_a_download_that_starts_over_reruns_ffmpeg_on_the_whole_file(
    tmp_path: Path, ts_file: Path, route: Route
) -> None:
    data = ts_file.read_bytes()
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1  # no Accept-Ranges: the retry downloads from byte 0 again
        return await trickle(data, stop_at=len(data) // 2 if calls == 1 else 0)(request)  # type: ignore[operator]

    uploads: list[Growing] = []

    class Storage(LocalStorage):
        def begin(self, path: Path, key: str, *, content_type: str) -> Growing:
            uploads.append(Growing())
            return uploads[-1]

    async with make_manager(tmp_path, Storage(tmp_path / "out"), overlap_inputs=True) as manager:
        task = await manager.run(REMUX, {"in.ts": route(handler)}, "out.mkv")
    assert task.status is TaskStatus.COMPLETED, task.error
    assert calls == 2
    assert task.metadata["out.mkv"]["duration"] == pytest.approx(10, abs=0.5)
    assert not leftovers(tmp_path)
    # The first run's output upload was aborted, not left open; the rerun's was finished.
    assert [(u.aborted, u.finished) for u in uploads] == [(True, False), (False, True)]


class Growing:
    """Records what the run does with an output upload begun while ffmpeg writes."""

    def __init__(self) -> None:
        self.aborted = self.finished = False

    async def grow(self) -> None:
        await asyncio.Event().wait()  # until ffmpeg exits (cancelled)

    async def finish(self, progress: object = None) -> None:
        self.finished = True  # None: the caller stores the file the plain way

    async def abort(self) -> None:
        self.aborted = True


async def test_an_s3_download_reports_only_complete_front_bytes(
    tmp_path: Path, s3_server: Any, s3_bucket: str, s3_client: Any
) -> None:
    data = os.urandom(5 * MiB + 12345)
    s3_client.put_object(Bucket=s3_bucket, Key="in/big.bin", Body=data)
    dest = tmp_path / "big.bin"
    part = dest.with_name("big.bin.part")
    marks: list[int] = []

    def contiguous(n: int) -> None:
        marks.append(n)
        if n:  # what is reported complete is the object's bytes, never a sparse hole
            with open(part, "rb") as f:
                assert f.read(n) == data[:n]

    async with S3Downloader(
        [s3_bucket], endpoint_url=s3_server.endpoint_url, region="us-east-1",
        part_size=1 * MiB, concurrency=3,
    ) as dl:  # fmt: skip
        with dl.watching(dest, contiguous):
            await dl.fetch(f"s3://{s3_bucket}/in/big.bin", dest)
        await dl.fetch(f"s3://{s3_bucket}/in/big.bin", tmp_path / "unwatched")
    assert marks[0] == 0 and marks[-1] == len(data)
    assert marks == sorted(marks)
    assert len(marks) > 6  # reported as ranges land, not once at the end
    assert not dl._watchers


@pytest.fixture
def slow_front(s3_server: Any) -> Iterator[ProviderProxy]:
    """A proxy to the S3 server that answers the first range of an object late."""
    proxy = ProviderProxy(s3_server.endpoint_url)
    proxy.start()
    proxy.slow_front = 1.0
    yield proxy
    proxy.stop()


async def test_ffmpeg_reads_an_s3_input_while_its_ranges_arrive(
    tmp_path: Path, ts_file: Path, ffmpeg_bin: str, slow_front: ProviderProxy, s3_bucket: str,
    s3_client: Any,
) -> None:  # fmt: skip
    s3_client.upload_file(str(ts_file), s3_bucket, "in/clip.ts")
    url = f"s3://{s3_bucket}/in/clip.ts"
    command = "-i in.ts -map 0 -c copy -f mpegts out.ts"
    dl = S3Downloader(
        [s3_bucket], endpoint_url=slow_front.base_url, region="us-east-1",
        part_size=1 * MiB, concurrency=3,
    )  # fmt: skip
    async with make_manager(tmp_path, downloader={"s3": dl}, overlap_inputs=True) as manager:
        plan = await manager.plan(command, {"in.ts": url}, "out.ts")
        assert "in.ts: ffmpeg reads it while it downloads" in plan.notes
        task = await manager.run(command, {"in.ts": url}, "out.ts")
    assert task.status is TaskStatus.COMPLETED, task.error
    local = tmp_path / "local.ts"
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-loglevel", "error", "-i", str(ts_file),
         *command.split()[2:-1], str(local)],
        check=True,
    )  # fmt: skip
    (stored,) = (tmp_path / "out").rglob("out.ts")
    # The later ranges landed first (a sparse file of full size): ffmpeg was fed only the
    # complete front, in order, with no hole and no repeat.
    assert stored.read_bytes() == local.read_bytes()
    assert not leftovers(tmp_path)


def test_a_front_that_goes_back_marks_the_feed_restarted_for_good(tmp_path: Path) -> None:
    feed = Feed(tmp_path, "in.ts")
    feed.contiguous(0)
    feed.contiguous(4 * MiB)
    assert not feed.restarted
    feed.contiguous(0)  # a new attempt: a new file, whatever the front reaches next
    feed.contiguous(8 * MiB)
    assert feed.restarted


def test_the_fifo_buffer_is_as_large_as_the_system_allows(tmp_path: Path) -> None:
    """ffmpeg and the feeder trade 1 MiB at a time, not Linux's default 64 KiB."""
    feed = Feed(tmp_path, "in.ts")
    feed.make()
    reader = os.open(feed.fifo, os.O_RDONLY | os.O_NONBLOCK)  # ffmpeg's end
    writer = feed._open_fifo()
    assert writer is not None
    try:
        size = fcntl.fcntl(writer, fcntl.F_GETPIPE_SZ)
        most = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        # 64 KiB where the system refuses (a lower cap, or the user's pipe quota is used up)
        assert size == PIPE_SIZE if most >= PIPE_SIZE else size in (64 * 1024, PIPE_SIZE)
    finally:
        os.close(writer)
        os.close(reader)


def test_discard_deletes_the_download_and_its_dir(tmp_path: Path) -> None:
    feed = Feed(tmp_path, "in.ts")
    feed.make()
    feed.download.write_bytes(b"x" * 1024)
    feed.part.write_bytes(b"y")
    feed.discard()
    assert not feed.download.parent.exists()
    other = Feed(tmp_path, "b.ts")  # another input's download still there: the dir stays
    other.make()
    other.download.write_bytes(b"x")
    Feed(tmp_path, "a.ts").discard()
    assert other.download.exists()
