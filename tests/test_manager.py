"""TaskManager's public API end to end (register, execute, status, refusals, storage): real
HTTP inputs, real ffmpeg, real S3 (moto) or local disk.  What happens inside a run is
tests/test_pipeline.py; status changes alone are tests/test_transitions.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import aiohttp
import pytest

from ffmpeg_tasks import (
    CommandPolicy,
    HttpDownloader,
    InvalidSpecError,
    InvalidTaskStateError,
    LocalExecutor,
    LocalStorage,
    S3Storage,
    TaskManager,
    TaskNotFoundError,
    TaskStatus,
)

from .helpers import leftovers, make_manager, stored_mp4s
from .servers import MediaServer, MotoS3Server

TRANSCODE = "-i input.mp4 -c:v libx264 -preset ultrafast -crf 30 -c:a aac output.mp4"


def probe(ffprobe: str | None, ffmpeg: str, path: Path) -> dict[str, object]:
    if ffprobe:
        out = subprocess.run(
            [ffprobe, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
        return json.loads(out)  # type: ignore[no-any-return]
    proc = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return {"text": proc.stderr}


async def test_transcode_to_s3_and_download_presigned_url(
    tmp_path: Path,
    media_server: MediaServer,
    s3_server: MotoS3Server,
    s3_bucket: str,
    s3_client: object,
    ffmpeg_bin: str,
    ffprobe_bin: str | None,
) -> None:
    storage = S3Storage(
        s3_bucket, endpoint_url=s3_server.endpoint_url, region="us-east-1", prefix="jobs"
    )
    async with make_manager(tmp_path, storage) as tm:
        task = await tm.register(
            command=TRANSCODE,
            input_files={"input.mp4": media_server.media_url("clip.mp4")},
            output_filename="output.mp4",
        )
        assert task.status is TaskStatus.PENDING
        task = await tm.execute(task.id)
        assert task.status is TaskStatus.COMPLETED, (task.error_code, task.error, task.diagnostics)
        assert task.output_uri == f"s3://{s3_bucket}/jobs/{task.id}/output.mp4"
        assert task.output_url is not None and "X-Amz-Signature" in task.output_url
        assert task.started_at and task.finished_at and task.finished_at >= task.started_at
        assert (await tm.status(task.id)) == task
        async with aiohttp.ClientSession() as s, s.get(task.output_url) as r:
            assert r.status == 200
            body = await r.read()
    path = tmp_path / "fetched.mp4"
    path.write_bytes(body)
    info = probe(ffprobe_bin, ffmpeg_bin, path)
    if "streams" in info:
        codecs = {s["codec_type"]: s["codec_name"] for s in info["streams"]}  # type: ignore[attr-defined]
        assert codecs == {"video": "h264", "audio": "aac"}
        assert 1.5 < float(info["format"]["duration"]) < 2.5  # type: ignore[index]
    else:
        assert "Video: h264" in str(info["text"])
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"jobs/{task.id}/output.mp4")  # type: ignore[attr-defined]
    assert head["ContentType"] == "video/mp4"
    assert task.metadata["output.mp4"]["size"] == len(body)
    assert leftovers(tmp_path) == []


async def test_two_inputs_overlay_to_local_storage(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(
            "-i video.mp4 -i logo.png -filter_complex overlay=10:10 -c:v libx264 -preset ultrafast "
            "-an out.mp4",
            {
                "video.mp4": media_server.media_url("clip.mp4"),
                "logo.png": media_server.media_url("logo.png"),
            },
            "out.mp4",
        )
    assert task.status is TaskStatus.COMPLETED, (task.error_code, task.error, task.diagnostics)
    assert task.output_url is not None and task.output_url.startswith("file://")
    stored = tmp_path / "out" / task.id / "out.mp4"
    assert stored.is_file() and stored.stat().st_size > 1000
    assert task.output == task.outputs[0]
    assert leftovers(tmp_path) == []


async def test_inputs_are_deleted_before_the_upload(
    tmp_path: Path, media_server: MediaServer
) -> None:
    """ffmpeg is done with the inputs: their disk space (and dirty pages) go before the upload."""
    seen: list[list[str]] = []

    class Watching(LocalStorage):
        async def put(self, path: Path, key: str, **kwargs: object) -> object:  # type: ignore[override]
            seen.append(sorted(os.listdir(path.parent)))
            return await super().put(path, key, **kwargs)  # type: ignore[arg-type]

    async with make_manager(tmp_path, Watching(tmp_path / "out")) as tm:
        task = await tm.run(
            "-i video.mp4 -frames:v 1 out.jpg",
            {"video.mp4": media_server.media_url("clip.mp4")},
            "out.jpg",
        )
    assert task.status is TaskStatus.COMPLETED, (task.error_code, task.error, task.diagnostics)
    assert seen == [["out.jpg"]]
    assert leftovers(tmp_path) == []


async def test_backends_warm_up_once_while_the_first_task_downloads(
    tmp_path: Path, media_server: MediaServer
) -> None:
    """The executor warms up as downloads start, the storage as ffmpeg starts; once each."""
    calls: list[str] = []

    class Storage(LocalStorage):
        async def warm_up(self) -> None:
            calls.append("storage")
            raise OSError("only logged: put() reports real problems")

        async def put(self, path: Path, key: str, **kwargs: object) -> object:  # type: ignore[override]
            calls.append("put")
            return await super().put(path, key, **kwargs)  # type: ignore[arg-type]

    class Executor(LocalExecutor):
        async def warm_up(self) -> None:
            calls.append("executor")
            await super().warm_up()

    class Downloader(HttpDownloader):
        async def fetch(self, *args: object, **kwargs: object) -> int:
            calls.append("fetch")
            return await super().fetch(*args, **kwargs)  # type: ignore[arg-type]

    async with TaskManager(
        storage=Storage(tmp_path / "out"),
        downloader=Downloader(allow_private_networks=True),
        executor=Executor(),
        work_dir=tmp_path / "work",
    ) as tm:
        for _ in range(2):
            task = await tm.run(
                "-i video.mp4 -frames:v 1 out.jpg",
                {"video.mp4": media_server.media_url("clip.mp4")},
                "out.jpg",
            )
            assert task.status is TaskStatus.COMPLETED, (task.error_code, task.error)
    assert calls == ["executor", "fetch", "storage", "put", "fetch", "put"]


async def test_close_cancels_a_warm_up_still_running(
    tmp_path: Path, media_server: MediaServer
) -> None:
    cancelled = asyncio.Event()

    class Storage(LocalStorage):
        async def warm_up(self) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()

    tm = make_manager(tmp_path, Storage(tmp_path / "out"))
    async with tm:
        task = await tm.run(
            "-i video.mp4 -frames:v 1 out.jpg",
            {"video.mp4": media_server.media_url("clip.mp4")},
            "out.jpg",
        )
        assert task.status is TaskStatus.COMPLETED, (task.error_code, task.error)
        assert not cancelled.is_set()
    assert cancelled.is_set()


async def test_expectation_failure_leaves_nothing_in_s3(
    tmp_path: Path,
    media_server: MediaServer,
    s3_server: MotoS3Server,
    s3_bucket: str,
    s3_client: object,
) -> None:
    """ffprobe and the expect= check run beside the upload; a failure removes the object."""
    storage = S3Storage(
        s3_bucket, endpoint_url=s3_server.endpoint_url, region="us-east-1", prefix="exp"
    )
    async with make_manager(tmp_path, storage) as tm:
        task = await tm.run(
            TRANSCODE,
            {"input.mp4": media_server.media_url("clip.mp4")},
            "output.mp4",
            expect={"min_duration": 100},
        )
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "expectation_failed"
    assert task.outputs == ()
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="exp/")  # type: ignore[attr-defined]
    assert listed["KeyCount"] == 0
    assert leftovers(tmp_path) == []


async def test_placeholders_and_to_dict(tmp_path: Path, media_server: MediaServer) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(
            "-i {{in.mp4}} -vn -c:a libmp3lame {{sound.mp3}}",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "sound.mp3",
        )
    data = task.to_dict()
    assert task.status is TaskStatus.COMPLETED, task.error
    json.dumps(data)
    assert data["status"] == "completed"
    assert data["output_url"] == task.output_url
    assert "diagnostics" not in data


async def test_status_transitions_observed_while_running(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.register(
            "-i in.mp4 -c:v libx264 -preset ultrafast -an out.mp4",
            {"in.mp4": media_server.media_url("long.mp4")},
            "out.mp4",
        )
        seen = [task.status]
        await tm.submit(task.id)
        while True:
            current = (await tm.status(task.id)).status
            if current is not seen[-1]:
                seen.append(current)
            if current.is_terminal:
                break
            await asyncio.sleep(0.01)
        assert seen == [TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.COMPLETED]
        assert (await tm.wait(task.id, timeout=5)).status is TaskStatus.COMPLETED


@pytest.mark.parametrize(
    ("path", "code"),
    [("status/404", "download_http_error"), ("status/500", "download_http_error")],
)
async def test_bad_input_url_fails_cleanly(
    tmp_path: Path, media_server: MediaServer, path: str, code: str
) -> None:
    async with make_manager(tmp_path) as tm:
        url = media_server.url(path)
        task = await tm.run(TRANSCODE, {"input.mp4": url}, "output.mp4")
    assert task.status is TaskStatus.FAILED
    assert task.error_code == code
    assert url in (task.error or "")
    assert leftovers(tmp_path) == []
    assert not stored_mp4s(tmp_path)


async def test_unreachable_host_fails(tmp_path: Path, dead_endpoint: str) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(TRANSCODE, {"input.mp4": dead_endpoint + "/x.mp4"}, "output.mp4")
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "download_connection_error"
    assert leftovers(tmp_path) == []


async def test_ffmpeg_error_unknown_encoder(tmp_path: Path, media_server: MediaServer) -> None:
    async with make_manager(tmp_path, policy=CommandPolicy.trusted()) as tm:
        task = await tm.run(
            "-i input.mp4 -c:v nosuchcodec output.mp4",
            {"input.mp4": media_server.media_url("clip.mp4")},
            "output.mp4",
        )
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "unknown_encoder"
    assert "nosuchcodec" in (task.error or "")
    assert task.diagnostics and "nosuchcodec" in task.diagnostics
    assert leftovers(tmp_path) == []


async def test_input_that_is_not_media_fails(tmp_path: Path, media_server: MediaServer) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.run(
            TRANSCODE, {"input.mp4": media_server.media_url("subs.srt")}, "output.mp4"
        )
    assert task.status is TaskStatus.FAILED
    assert task.error_code is not None and task.error_code != "internal_error"
    assert "Hello from" not in (task.error or "")  # stderr never reaches the caller
    assert leftovers(tmp_path) == []


async def test_s3_endpoint_down_fails_with_storage_error(
    tmp_path: Path, media_server: MediaServer, dead_endpoint: str
) -> None:
    storage = S3Storage("bucket", endpoint_url=dead_endpoint, region="us-east-1")
    async with make_manager(tmp_path, storage) as tm:
        task = await tm.run(
            TRANSCODE, {"input.mp4": media_server.media_url("clip.mp4")}, "output.mp4"
        )
    assert task.status is TaskStatus.FAILED
    assert task.error_code is not None and task.error_code.startswith("storage")
    assert leftovers(tmp_path) == []


async def test_concurrency_limit_holds(tmp_path: Path, media_server: MediaServer) -> None:
    executor = LocalExecutor(max_concurrency=2)
    peak = 0
    async with make_manager(tmp_path, executor=executor) as tm:
        tasks = [
            await tm.register(
                "-i in.mp4 -t 3 -c:v libx264 -preset ultrafast -an out.mp4",
                {"in.mp4": media_server.media_url("long.mp4")},
                "out.mp4",
            )
            for _ in range(5)
        ]
        for t in tasks:
            await tm.submit(t.id)
        while True:
            peak = max(peak, executor.running)
            if all([(await tm.status(t.id)).is_finished for t in tasks]):
                break
            await asyncio.sleep(0.005)
        results = [await tm.status(t.id) for t in tasks]
    assert all(r.status is TaskStatus.COMPLETED for r in results), [r.error for r in results]
    assert peak == 2


async def test_cancel_during_ffmpeg(tmp_path: Path, media_server: MediaServer) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.register(
            "-re -i in.mp4 -c:v libx264 -preset ultrafast -an out.mp4",
            {"in.mp4": media_server.media_url("long.mp4")},
            "out.mp4",
        )
        await tm.submit(task.id)
        while (await tm.status(task.id)).phase.value != "processing":
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        cancelled = await tm.cancel(task.id)
        assert cancelled.status is TaskStatus.CANCELLED
        assert cancelled.error_code == "cancelled"
        assert await tm.cancel(task.id) == cancelled  # idempotent
    assert leftovers(tmp_path) == []
    assert not stored_mp4s(tmp_path)
    assert not _ffmpeg_children()


async def test_caller_cancellation_cancels_the_task(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.register(
            "-re -i in.mp4 -c:v libx264 -preset ultrafast -an out.mp4",
            {"in.mp4": media_server.media_url("long.mp4")},
            "out.mp4",
        )
        runner = asyncio.create_task(tm.execute(task.id))
        while (await tm.status(task.id)).phase.value != "processing":
            await asyncio.sleep(0.02)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert (await tm.status(task.id)).status is TaskStatus.CANCELLED
    assert leftovers(tmp_path) == []
    assert not _ffmpeg_children()


async def test_timeout(tmp_path: Path, media_server: MediaServer) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.register(
            "-re -i in.mp4 -c:v libx264 -preset ultrafast -an out.mp4",
            {"in.mp4": media_server.media_url("long.mp4")},
            "out.mp4",
            timeout=1.0,
        )
        task = await tm.execute(task.id)
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "timeout"
    assert leftovers(tmp_path) == []
    assert not _ffmpeg_children()


async def test_misuse_raises_typed_errors(tmp_path: Path, media_server: MediaServer) -> None:
    async with make_manager(tmp_path) as tm:
        with pytest.raises(TaskNotFoundError, match="nope"):
            await tm.status("nope")
        with pytest.raises(TaskNotFoundError):
            await tm.execute("nope")
        with pytest.raises(InvalidSpecError) as info:
            await tm.register("-i input.mp4 out.mp4", {"input.mp4": "ftp://x/y.mp4"}, "out.mp4")
        assert info.value.field == "input_files" and "ftp" in str(info.value)
        with pytest.raises(InvalidSpecError) as info:
            await tm.register(
                "-i input.mp4 out.mp4", {"input.mp4": "https://example.com/a"}, "../out.mp4"
            )
        assert "../out.mp4" in str(info.value)
        with pytest.raises(InvalidSpecError):
            await tm.register(
                "-i other.mp4 out.mp4", {"input.mp4": "https://example.com/a"}, "out.mp4"
            )
        task = await tm.run(
            TRANSCODE, {"input.mp4": media_server.media_url("clip.mp4")}, "output.mp4"
        )
        with pytest.raises(InvalidTaskStateError, match="completed"):
            await tm.execute(task.id)
        assert [t.id for t in await tm.list(status="completed")] == [task.id]


async def test_default_manager_and_health(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with TaskManager() as tm:
        health = await tm.health()
        assert health["status"] == "ok", health
        assert health["ffmpeg"]["found"] is True
        assert "version" in health["ffmpeg"]["ffmpeg_version"]
    monkeypatch.setenv("FFMPEG_TASKS_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    async with TaskManager() as broken:
        report = await broken.health()  # never raises, even without ffmpeg
        assert report["status"] == "degraded"
        assert report["ffmpeg"]["found"] is False
        assert "no-such-ffmpeg" in report["ffmpeg"]["error"]


async def test_from_env_uses_s3(
    tmp_path: Path, media_server: MediaServer, s3_server: MotoS3Server, s3_bucket: str
) -> None:
    env = {
        "S3_BUCKET": s3_bucket,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "FFMPEG_TASKS_ALLOW_PRIVATE_NETWORKS": "1",
        "FFMPEG_TASKS_WORK_DIR": str(tmp_path / "work"),
    }
    async with TaskManager.from_env(env) as tm:
        assert isinstance(tm.storage, S3Storage)
        task = await tm.run(
            TRANSCODE, {"input.mp4": media_server.media_url("clip.mp4")}, "output.mp4"
        )
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.output_uri == f"s3://{s3_bucket}/{task.id}/output.mp4"


def test_from_env_reads_nice() -> None:
    from ffmpeg_tasks.config import settings_from_env
    from ffmpeg_tasks.errors import ConfigurationError

    assert settings_from_env({})["executor"].nice == 10
    assert settings_from_env({"FFMPEG_TASKS_NICE": "0"})["executor"].nice == 0
    assert settings_from_env({"FFMPEG_TASKS_NICE": "3"})["executor"].nice == 3
    for bad in ("20", "-1", "low"):
        with pytest.raises(ConfigurationError, match="FFMPEG_TASKS_NICE"):
            settings_from_env({"FFMPEG_TASKS_NICE": bad})


def _ffmpeg_children() -> list[int]:
    """ffmpeg processes that are children of this test process."""
    me = os.getpid()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == me and name in ("ffmpeg", "bwrap", "prlimit"):
            found.append(int(pid))
    return found


async def test_idempotency_key_returns_the_first_task(tmp_path: Path) -> None:
    async with make_manager(tmp_path) as tm:
        first = await tm.register(
            TRANSCODE,
            {"input.mp4": "https://example.com/a.mp4"},
            "output.mp4",
            idempotency_key="order-42",
        )
        again = await tm.register(
            TRANSCODE,
            {"input.mp4": "https://example.com/a.mp4"},
            "output.mp4",
            idempotency_key="order-42",
        )
        other = await tm.register(
            TRANSCODE,
            {"input.mp4": "https://example.com/a.mp4"},
            "output.mp4",
            idempotency_key="order-43",
        )
        assert again.id == first.id
        assert other.id != first.id
        assert len(await tm.list()) == 2


async def test_plan_is_a_dry_run(tmp_path: Path) -> None:
    async with make_manager(tmp_path) as tm:
        plan = await tm.plan(
            "-i in.mp4 -vf scale=640:-2 -c:v libx264 out.mp4",
            {"in.mp4": "https://example.com/a.mp4"},
            "out.mp4",
        )
        assert await tm.list() == []
    argv = plan.argv[0]
    assert os.path.basename(argv[0]).startswith("ffmpeg")
    assert argv[argv.index("-i") + 1] == "in.mp4"
    assert argv[argv.index("-i") - 1] != "-i"
    assert "-protocol_whitelist" in argv
    assert plan.downloads == (("in.mp4", "https://example.com/a.mp4"),)
    assert plan.storage_keys == ("<task_id>/out.mp4",)
    assert plan.to_dict()["notes"]
    assert leftovers(tmp_path) == []
