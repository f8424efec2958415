"""Every task has a finite deadline across fetch, run and store (issue 13, finding 4)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ffmpeg_tasks import (
    ConfigurationError,
    HttpDownloader,
    InvalidSpecError,
    LocalExecutor,
    MemoryStorage,
    RetryPolicy,
    SQLiteTaskStore,
    TaskManager,
    TaskStatus,
)
from ffmpeg_tasks.storage.base import StoredFile, UploadProgress

from .servers import MediaServer

SLOW_ENCODE = "-f lavfi -i testsrc2=s=1280x720:d=3600 -c:v libx264 -preset veryslow out.mp4"


class SlowStorage(MemoryStorage):
    async def put(
        self, path: Path, key: str, *, content_type: str, progress: UploadProgress | None = None
    ) -> StoredFile:
        await asyncio.sleep(30)
        return await super().put(path, key, content_type=content_type, progress=progress)


def manager(tmp_path: Path, **kwargs: Any) -> TaskManager:
    kwargs.setdefault("storage", MemoryStorage())
    return TaskManager(
        downloader=HttpDownloader(allow_private_networks=True),
        retry=RetryPolicy.none(),
        work_dir=tmp_path / "work",
        **kwargs,
    )


def dripping(server: MediaServer) -> str:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(10**6)})
        await resp.prepare(request)
        for _ in range(600):
            await resp.write(b"\x00" * 1000)  # fast enough for min_rate_bytes: only slow
            await asyncio.sleep(0.05)
        return resp

    server.handlers["drip"] = handler
    return server.url("x/drip")


def assert_timed_out(task: Any, deadline: str, phase: str, tmp_path: Path) -> None:
    assert task.status is TaskStatus.FAILED, task
    assert task.error_code == "timeout"
    assert task.error == f"the task's deadline of {deadline}s passed while {phase}"
    assert not list((tmp_path / "work").iterdir())


async def test_a_slow_fetch_meets_the_deadline(tmp_path: Path, media_server: MediaServer) -> None:
    async with manager(tmp_path) as tm:
        task = await tm.register(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": dripping(media_server)}, "out.mp4",
            deadline=1.5,
        )  # fmt: skip
        task = await tm.execute(task.id)
    assert_timed_out(task, "1.5", "fetching inputs", tmp_path)


async def test_a_long_run_meets_the_manager_deadline(tmp_path: Path) -> None:
    async with manager(tmp_path, deadline=2, executor=LocalExecutor(sandbox="off")) as tm:
        task = await tm.run(SLOW_ENCODE, {}, "out.mp4")
    assert_timed_out(task, "2", "running ffmpeg", tmp_path)


async def test_a_slow_store_meets_the_deadline(tmp_path: Path, media_server: MediaServer) -> None:
    storage = SlowStorage()
    async with manager(tmp_path, deadline=3, storage=storage) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4"
        )
    assert_timed_out(task, "3", "storing outputs", tmp_path)
    assert storage.objects == {}


async def test_defaults_and_refusals(tmp_path: Path) -> None:
    assert TaskManager().deadline == 6 * 3600
    assert TaskManager(deadline=None).deadline is None
    with pytest.raises(ConfigurationError, match="deadline"):
        TaskManager(deadline=0)
    assert TaskManager.from_env({"FFMPEG_TASKS_DEADLINE": "30"}).deadline == 30
    assert TaskManager.from_env({"FFMPEG_TASKS_DEADLINE": "none"}).deadline is None
    assert TaskManager.from_env({}).deadline == 6 * 3600
    with pytest.raises(ConfigurationError, match="FFMPEG_TASKS_DEADLINE"):
        TaskManager.from_env({"FFMPEG_TASKS_DEADLINE": "-1"})
    async with manager(tmp_path) as tm:
        with pytest.raises(InvalidSpecError, match="deadline"):
            await tm.register("-f lavfi -i testsrc=d=1 out.mp4", {}, "out.mp4", deadline=-5)


async def test_the_deadline_travels_with_the_task(tmp_path: Path) -> None:
    """A worker elsewhere honours the deadline given at register, not its own default."""
    store = tmp_path / "tasks.db"
    async with manager(tmp_path, store=SQLiteTaskStore(store)) as api:
        task = await api.register(SLOW_ENCODE, {}, "out.mp4", deadline=1.5)
    assert task.options["deadline"] == 1.5
    async with manager(
        tmp_path, store=SQLiteTaskStore(store), executor=LocalExecutor(sandbox="off")
    ) as worker:
        done = await worker.execute(task.id)
    assert_timed_out(done, "1.5", "running ffmpeg", tmp_path)


async def test_a_work_dir_that_cannot_be_made_fails_the_task_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    async with TaskManager(
        storage=MemoryStorage(), work_dir=blocker / "work", executor=LocalExecutor(sandbox="off")
    ) as tm:
        task = await tm.run("-f lavfi -i testsrc=d=1 -c:v libx264 out.mp4", {}, "out.mp4")
    assert task.status is TaskStatus.FAILED  # not left RUNNING
    assert task.error_code == "failed"
    assert task.error == "cannot create the task's work dir: Not a directory"
    assert str(tmp_path) not in (task.error or "")
