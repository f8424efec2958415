"""The run pipeline (pipeline.py) through the TaskManager: events, progress, cancel in every
phase, retries, multiple outputs, chains, metadata and expectations, retention.  Real
ffmpeg, HTTP and S3.  The public API itself (register, execute, status, spec refusals,
storage) is tests/test_manager.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ffmpeg_tasks import (
    Event,
    EventType,
    FakeDownloader,
    FakeExecutor,
    MemoryStorage,
    Phase,
    RetryPolicy,
    S3Storage,
    TaskManager,
    TaskNotFoundError,
    TaskStatus,
    fake_media,
)

from .helpers import leftovers, make_manager, stored_mp4s
from .servers import MediaServer, MotoS3Server


async def wait_phase(tm: TaskManager, task_id: str, phase: Phase) -> None:
    for _ in range(2000):
        task = await tm.status(task_id)
        if task.phase is phase:
            return
        assert not task.is_finished, (task.status, task.error)
        await asyncio.sleep(0.005)
    raise AssertionError(f"phase {phase} never reached")


# -- events and progress -------------------------------------------------------------


async def test_event_stream_covers_every_phase_and_percent_accounts_for_trim(
    tmp_path: Path, media_server: MediaServer
) -> None:
    seen: list[Event] = []
    async with make_manager(tmp_path, on_event=seen.append) as tm:
        task = await tm.register(
            "-re -i in.mp4 -t 2 -c:v libx264 -preset ultrafast out.mp4",
            {"in.mp4": media_server.media_url("long.mp4")},
            "out.mp4",
        )
        events: list[Event] = []

        async def collect() -> None:
            async for ev in tm.events(task.id):
                events.append(ev)

        collector = asyncio.create_task(collect())
        await asyncio.sleep(0)
        await tm.submit(task.id)
        await asyncio.wait_for(collector, 30)
    types = [e.type for e in events]
    assert types[-1] is EventType.COMPLETED
    assert events[-1].task is not None and events[-1].task.status is TaskStatus.COMPLETED
    for expected in (
        EventType.STARTED,
        EventType.DOWNLOADING,
        EventType.RUNNING,
        EventType.UPLOADING,
    ):
        assert expected in types, types
    assert (
        types.index(EventType.DOWNLOADING)
        < types.index(EventType.RUNNING)
        < types.index(EventType.UPLOADING)
        < types.index(EventType.COMPLETED)
    )
    percents = [e.percent for e in events if e.type is EventType.RUNNING and e.percent is not None]
    # The input lasts 10 s but -t 2 trims it: mid-run percents are relative to 2 s.
    assert percents == sorted(percents)
    assert any(30 <= p < 100 for p in percents), percents
    assert percents[-1] == 100.0
    downloads = [e for e in events if e.type is EventType.DOWNLOADING]
    assert downloads[-1].bytes_done == downloads[-1].bytes_total
    assert [e.type for e in seen if e.task_id == task.id][-1] is EventType.COMPLETED


async def test_events_of_a_finished_task_end_at_once(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4"
        )
        events = [e async for e in tm.events(task.id)]
    assert [e.type for e in events] == [EventType.COMPLETED]


# -- cancellation in every phase -------------------------------------------------------


async def test_cancel_while_queued(tmp_path: Path, media_server: MediaServer) -> None:
    async with make_manager(tmp_path, max_concurrent_tasks=1) as tm:
        slow = await tm.register(
            "-re -i in.mp4 -c:v libx264 -preset ultrafast out.mp4",
            {"in.mp4": media_server.media_url("long.mp4")},
            "out.mp4",
        )
        queued = await tm.register(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4"
        )
        await tm.submit(slow.id)
        await tm.submit(queued.id)
        await wait_phase(tm, queued.id, Phase.QUEUED)
        cancelled = await tm.cancel(queued.id)
        assert cancelled.status is TaskStatus.CANCELLED
        assert (await tm.cancel(slow.id)).status is TaskStatus.CANCELLED
    assert not leftovers(tmp_path)


async def test_cancel_while_downloading(tmp_path: Path, media_server: MediaServer) -> None:
    url = media_server.url("slow/long.mp4?chunk=2048&delay=0.05")
    async with make_manager(tmp_path) as tm:
        task = await tm.register("-i in.mp4 -c copy out.mp4", {"in.mp4": url}, "out.mp4")
        await tm.submit(task.id)
        await wait_phase(tm, task.id, Phase.DOWNLOADING)
        await asyncio.sleep(0.2)
        task = await tm.cancel(task.id)
    assert task.status is TaskStatus.CANCELLED
    assert task.error_code == "cancelled"
    assert not leftovers(tmp_path)


async def test_cancel_while_uploading_aborts_multipart(
    tmp_path: Path,
    media_server: MediaServer,
    s3_server: MotoS3Server,
    s3_bucket: str,
    s3_client: Any,
) -> None:
    storage = S3Storage(
        s3_bucket,
        endpoint_url=s3_server.endpoint_url,
        region="us-east-1",
        multipart_threshold=5 * 2**20,
        part_size=5 * 2**20,
        max_concurrency=1,
    )
    async with make_manager(tmp_path, storage=storage) as tm:
        # ~29 MB of raw video: several multipart parts.
        task = await tm.register(
            "-i in.mp4 -t 10 -c:v rawvideo -pix_fmt yuv420p -an out.mkv",
            {"in.mp4": media_server.media_url("long.mp4")},
            "out.mkv",
        )
        await tm.submit(task.id)
        await wait_phase(tm, task.id, Phase.UPLOADING)
        task = await tm.cancel(task.id)
    assert task.status is TaskStatus.CANCELLED
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0
    assert not s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert not leftovers(tmp_path)


# -- retries ----------------------------------------------------------------------------


async def test_transient_download_failures_are_retried_and_counted(
    tmp_path: Path, media_server: MediaServer, media_dir: Path
) -> None:
    calls = {"n": 0}

    async def flaky(request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] <= 2:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.FileResponse(media_dir / "clip.mp4")

    media_server.handlers["flaky"] = flaky
    async with make_manager(tmp_path, retry=RetryPolicy(attempts=3, base_delay=0.01)) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.url("x/flaky")}, "out.mp4"
        )
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.attempts["download:in.mp4"] == 3
    assert calls["n"] == 3


async def test_permanent_failures_are_not_retried(
    tmp_path: Path, media_server: MediaServer
) -> None:
    before = len(media_server.requests)
    async with make_manager(tmp_path, retry=RetryPolicy(attempts=5, base_delay=0.01)) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.url("status/404")}, "out.mp4"
        )
    assert task.error_code == "download_http_error"
    assert len([r for r in media_server.requests[before:] if "/status/404" in r[1]]) == 1


async def test_interrupted_download_resumes_with_range(
    tmp_path: Path, media_server: MediaServer, media_dir: Path
) -> None:
    data = (media_dir / "long.mp4").read_bytes()
    ranges: list[str | None] = []

    async def cut_once(request: web.Request) -> web.StreamResponse:
        ranges.append(request.headers.get("Range"))
        if len(ranges) == 1:
            resp = web.StreamResponse(
                headers={"Content-Length": str(len(data)), "Accept-Ranges": "bytes"}
            )
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            await asyncio.sleep(0.2)  # let the half reach the client before the cut
            assert request.transport is not None
            request.transport.close()
            return resp
        return web.FileResponse(media_dir / "long.mp4")

    media_server.handlers["cut-once"] = cut_once
    async with make_manager(tmp_path, retry=RetryPolicy(attempts=3, base_delay=0.01)) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.url("x/cut-once")}, "out.mp4"
        )
    assert task.status is TaskStatus.COMPLETED, task.error
    assert ranges[0] is None
    assert ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1].removeprefix("bytes=").rstrip("-")) > 0


# -- several outputs, HLS, chains ------------------------------------------------------------


async def test_hls_stores_playlist_and_every_segment(
    tmp_path: Path,
    media_server: MediaServer,
    s3_server: MotoS3Server,
    s3_bucket: str,
    s3_client: Any,
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=s3_server.endpoint_url, region="us-east-1")
    async with make_manager(tmp_path, storage=storage) as tm:
        task = await tm.run(
            "-i in.mp4 -c:v libx264 -preset ultrafast -g 25 -an -f hls -hls_time 1 "
            "-hls_playlist_type vod -hls_segment_filename seg_%03d.ts out.m3u8",
            {"in.mp4": media_server.media_url("long.mp4")},
            output_files=["out.m3u8"],
        )
    assert task.status is TaskStatus.COMPLETED, (task.error, task.diagnostics)
    names = [o.name for o in task.outputs]
    assert names[0] == "out.m3u8"
    segments = [n for n in names if n.startswith("seg_")]
    assert len(segments) >= 5
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert keys == {f"{task.id}/{n}" for n in names}
    playlist = s3_client.get_object(Bucket=s3_bucket, Key=f"{task.id}/out.m3u8")
    assert playlist["ContentType"] == "application/vnd.apple.mpegurl"
    listed = [
        line for line in playlist["Body"].read().decode().splitlines() if line.endswith(".ts")
    ]
    assert sorted(listed) == sorted(segments)
    ts = next(o for o in task.outputs if o.name == segments[0])
    assert ts.content_type == "video/mp2t"


async def test_thumbnails_and_transcode_from_one_download(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(
            "-i in.mp4 -map 0:v -vf fps=1 thumb_%03d.jpg "
            "-map 0 -c:v libx264 -preset ultrafast -c:a aac out.mp4",
            {"in.mp4": media_server.media_url("clip.mp4")},
            output_files=["out.mp4", "thumb_%03d.jpg"],
        )
    assert task.status is TaskStatus.COMPLETED, (task.error, task.diagnostics)
    names = sorted(o.name for o in task.outputs)
    assert "out.mp4" in names
    assert [n for n in names if n.startswith("thumb_")] == ["thumb_001.jpg", "thumb_002.jpg"]
    assert all(o.content_type == "image/jpeg" for o in task.outputs if o.name.endswith(".jpg"))
    assert task.output_filename == "out.mp4"


async def test_two_pass_encode_chained_in_one_work_dir(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(
            [
                "-i in.mp4 -c:v libx264 -preset ultrafast -b:v 300k -pass 1 -an -f null -",
                "-i in.mp4 -c:v libx264 -preset ultrafast -b:v 300k -pass 2 -an out.mp4",
            ],
            {"in.mp4": media_server.media_url("clip.mp4")},
            "out.mp4",
        )
    assert task.status is TaskStatus.COMPLETED, (task.error, task.diagnostics)
    assert [o.name for o in task.outputs] == ["out.mp4"]  # the pass log is not stored
    assert len(task.commands) == 2


async def test_output_of_one_step_is_input_of_the_next(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(
            [
                "-i in.mp4 -t 1 -vf scale=160:-2 -c:v libx264 -preset ultrafast -an small.mp4",
                "-i small.mp4 -vf fps=5 anim.gif",
            ],
            {"in.mp4": media_server.media_url("clip.mp4")},
            output_files=["anim.gif", "small.mp4"],
        )
    assert task.status is TaskStatus.COMPLETED, (task.error, task.diagnostics)
    assert {o.name for o in task.outputs} == {"anim.gif", "small.mp4"}
    assert task.outputs[0].content_type == "image/gif"


# -- metadata and expectations -------------------------------------------------------------


async def test_output_metadata(
    tmp_path: Path, media_server: MediaServer, ffprobe_bin: str | None
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(
            "-i in.mp4 -vf scale=160:120 -c:v libx264 -preset ultrafast -c:a aac out.mp4",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "out.mp4",
        )
    meta = task.metadata["out.mp4"]
    assert meta["size"] == task.outputs[0].size
    assert 1.5 < meta["duration"] < 2.5
    video = next(s for s in meta["streams"] if s["type"] == "video")
    assert (video["codec"], video["width"], video["height"]) == ("h264", 160, 120)
    assert {s["type"] for s in meta["streams"]} == {"video", "audio"}
    assert meta["format"] == "mp4"  # the muxer's name, with or without ffprobe
    assert meta["bit_rate"] > 0
    audio = next(s for s in meta["streams"] if s["type"] == "audio")
    assert audio["sample_rate"] and audio["channels"]
    assert video["fps"] and video["duration"]


async def test_output_metadata_without_ffprobe(tmp_path: Path, media_server: MediaServer) -> None:
    async with make_manager(tmp_path, ffprobe=False) as tm:
        task = await tm.run(
            "-i in.mp4 -vf scale=160:120 -c:v libx264 -preset ultrafast -an out.mp4",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "out.mp4",
        )
    meta = task.metadata["out.mp4"]
    [video] = meta["streams"]
    assert video == {
        "type": "video",
        "codec": "h264",
        "width": 160,
        "height": 120,
        "fps": video["fps"],
        "sample_rate": None,
        "channels": None,
        "duration": meta["duration"],
    }
    assert video["fps"] > 0
    assert 1.5 < meta["duration"] < 2.5
    assert meta["format"] == "mp4"


@pytest.mark.parametrize(
    ("expect", "ok"),
    [
        ({"min_duration": 1.5, "streams": ["video"]}, True),
        ({"min_duration": 5}, False),
        ({"streams": ["audio"]}, False),
        ({"width": 320, "height": 240}, True),
        ({"out.mp4": {"max_size": 10}}, False),
    ],
)
async def test_expectations(
    tmp_path: Path, media_server: MediaServer, expect: dict[str, Any], ok: bool
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(
            "-i in.mp4 -c:v libx264 -preset ultrafast -an out.mp4",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "out.mp4",
            expect=expect,
        )
    if ok:
        assert task.status is TaskStatus.COMPLETED, task.error
    else:
        assert task.status is TaskStatus.FAILED
        assert task.error_code == "expectation_failed"
        assert task.outputs == ()
        assert not stored_mp4s(tmp_path)


# -- retention ---------------------------------------------------------------------------------


async def test_finished_tasks_expire(tmp_path: Path, media_server: MediaServer) -> None:
    async with make_manager(tmp_path, retention=0.2) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4"
        )
        pending = await tm.register(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4"
        )
        for _ in range(100):
            try:
                await tm.status(task.id)
            except TaskNotFoundError:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("finished task never expired")
        assert (await tm.status(pending.id)).status is TaskStatus.PENDING


# -- the fakes, as a host app would use them ---------------------------------------------------


async def test_fakes_let_host_apps_test_without_network_or_ffmpeg() -> None:
    storage = MemoryStorage()
    async with TaskManager(
        downloader=FakeDownloader({"https://example.com/in.mp4": b"input bytes"}),
        executor=FakeExecutor(outputs={"out.mp4": fake_media("out.mp4", b"fake video")}),
        storage=storage,
        ffprobe=False,
    ) as tm:
        task = await tm.run(
            "-i in.mp4 -c:v libx264 out.mp4", {"in.mp4": "https://example.com/in.mp4"}, "out.mp4"
        )
    assert task.status is TaskStatus.COMPLETED, task.error
    assert storage.objects[f"{task.id}/out.mp4"] == fake_media("out.mp4", b"fake video")


async def test_shutdown_with_release_puts_running_tasks_back_to_pending(
    tmp_path: Path, media_server: MediaServer
) -> None:
    from ffmpeg_tasks import SQLiteTaskStore

    db = tmp_path / "tasks.db"
    tm = make_manager(tmp_path, store=SQLiteTaskStore(db))
    await tm.__aenter__()
    task = await tm.register(
        "-re -i in.mp4 -c:v libx264 -preset ultrafast out.mp4",
        {"in.mp4": media_server.media_url("long.mp4")},
        "out.mp4",
    )
    await tm.submit(task.id)
    await wait_phase(tm, task.id, Phase.PROCESSING)
    await tm.aclose(release=True)
    async with SQLiteTaskStore(db) as store:
        released = await store.get(task.id)
    assert released is not None
    assert released.status is TaskStatus.PENDING
    assert released.phase is Phase.QUEUED
    assert released.worker is None
    assert released.attempts["run"] == 1
    assert not leftovers(tmp_path)
    async with make_manager(tmp_path, store=SQLiteTaskStore(db)) as again:  # runs again later
        done = await again.execute(task.id)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.attempts["run"] == 2


async def test_release_puts_a_running_task_back_and_it_runs_again(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.register(
            "-re -i in.mp4 -t 3 -c:v libx264 -preset ultrafast out.mp4",
            {"in.mp4": media_server.media_url("long.mp4")},
            "out.mp4",
        )
        await tm.submit(task.id)
        await wait_phase(tm, task.id, Phase.PROCESSING)

        released = await tm.release(task.id)

        assert released.status is TaskStatus.PENDING
        assert released.phase is Phase.QUEUED
        assert released.worker is None
        assert released.error_code is None
        assert not leftovers(tmp_path)
        assert not stored_mp4s(tmp_path)
        done = await tm.execute(task.id)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.attempts["run"] == 2


async def test_a_task_marked_cancel_requested_is_cancelled_instead_of_run(
    tmp_path: Path, media_server: MediaServer
) -> None:
    """cancel() from another process marks the task; whoever picks it up next obeys."""
    async with make_manager(tmp_path) as tm:
        task = await tm.register(
            "-i in.mp4 -frames:v 1 out.jpg",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "out.jpg",
        )
        assert await tm.store.replace(task, task.evolve(cancel_requested=True))

        done = await tm.execute(task.id)

    assert done.status is TaskStatus.CANCELLED
    assert done.error_code == "cancelled"
    assert done.attempts.get("run", 0) == 0
    assert done.to_dict()["cancel_requested"] is True


async def test_still_image_metadata_comes_from_ffmpeg_itself(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(
            "-i in.mp4 -frames:v 1 -vf scale=160:120 out.jpg",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "out.jpg",
        )
    assert task.status is TaskStatus.COMPLETED, task.error
    meta = task.metadata["out.jpg"]
    [video] = meta["streams"]
    assert (video["type"], video["codec"], video["width"], video["height"]) == (
        "video",
        "mjpeg",
        160,
        120,
    )
    assert meta["format"] == "image2"
    assert meta["size"] == task.outputs[0].size
