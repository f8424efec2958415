"""A process running a task is killed; a new manager on the same SQLite store settles it.

The killed process is a real subprocess (``tests/worker_proc.py execute``) running real
ffmpeg on an input from ``media_server``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from ffmpeg_tasks import (
    HttpDownloader,
    LocalExecutor,
    LocalStorage,
    Phase,
    SQLiteTaskStore,
    Task,
    TaskManager,
    TaskStatus,
)
from ffmpeg_tasks.backends import SaqBackend, job_key
from ffmpeg_tasks.testing.conformance import descendants

from .servers import MediaServer
from .worker_proc import spawn_helper, stop, wait_all_gone

REDIS_URL = "redis://127.0.0.1:6379/0"
SLOW = "-re -i in.mp4 -t 6 -c:v libx264 -preset ultrafast -an out.mp4"


def manager_for(db: Path, out: Path, **kwargs: Any) -> TaskManager:
    return TaskManager(
        store=SQLiteTaskStore(db),
        storage=LocalStorage(out),
        downloader=HttpDownloader(allow_private_networks=True),
        executor=LocalExecutor(max_concurrency=1),
        **kwargs,
    )


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def kill_mid_task(
    tmp_path: Path, media_server: MediaServer, *, sandbox: str = "auto"
) -> Task:
    """Register a task, run it in a helper process, SIGKILL that process mid-ffmpeg.

    Asserts that ffmpeg died with it (no orphan).
    """
    db, out = tmp_path / "tasks.db", tmp_path / "out"
    async with manager_for(db, out) as manager:
        task = await manager.register(
            SLOW, {"in.mp4": media_server.media_url("long.mp4")}, "out.mp4"
        )
        args = ["execute", "--store", str(db), "--task-id", task.id, "--storage-dir", str(out)]
        proc = spawn_helper([*args, "--sandbox", sandbox], tmp_path / "runner.log")
        try:
            async with asyncio.timeout(30):
                while True:
                    current = await manager.status(task.id)
                    if current.phase is Phase.PROCESSING and current.progress:
                        break
                    await asyncio.sleep(0.1)
            ffmpeg = [p for p, cmd in descendants(proc.pid).items() if "ffmpeg" in cmd]
            assert ffmpeg
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)
            orphans = await asyncio.to_thread(wait_all_gone, ffmpeg, 5.0)
            for pid in orphans:
                os.kill(pid, signal.SIGKILL)
            assert orphans == [], "ffmpeg outlived its killed parent"
        finally:
            await asyncio.to_thread(stop, proc)
        running = await manager.status(task.id)
    assert running.status is TaskStatus.RUNNING
    assert running.worker is not None
    assert f":{proc.pid}:" in running.worker
    return running


async def test_killed_task_is_recovered_as_interrupted(
    tmp_path: Path, media_server: MediaServer
) -> None:
    task = await kill_mid_task(tmp_path, media_server)

    async with manager_for(tmp_path / "tasks.db", tmp_path / "out") as manager:
        recovered = await manager.status(task.id)

    assert recovered.status is TaskStatus.FAILED
    assert recovered.error_code == "interrupted"
    assert task.worker is not None
    assert task.worker in (recovered.error or "")
    assert stored_files(tmp_path / "out") == []


async def test_killed_task_is_requeued_and_completes_once(
    tmp_path: Path, media_server: MediaServer
) -> None:
    task = await kill_mid_task(tmp_path, media_server)

    out = tmp_path / "out"
    async with manager_for(tmp_path / "tasks.db", out, on_interrupted="requeue") as manager:
        assert (await manager.status(task.id)).status is TaskStatus.PENDING
        final = await manager.execute(task.id)

    assert final.status is TaskStatus.COMPLETED, final.error
    assert final.attempts["run"] == 2
    assert stored_files(out) == [f"{task.id}/out.mp4"]


async def test_unsandboxed_ffmpeg_dies_with_its_killed_parent(
    tmp_path: Path, media_server: MediaServer
) -> None:
    await kill_mid_task(tmp_path, media_server, sandbox="off")


@pytest.fixture
async def queue_name() -> AsyncIterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}"
    client = aioredis.from_url(REDIS_URL)
    await client.ping()  # no Redis: the test fails here
    yield name
    keys = [k async for k in client.scan_iter(match=f"saq*{name}:*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.mark.redis
async def test_requeue_with_a_saq_backend_enqueues_it_for_a_worker(
    tmp_path: Path, media_server: MediaServer, queue_name: str
) -> None:
    task = await kill_mid_task(tmp_path, media_server)
    db, out = tmp_path / "tasks.db", tmp_path / "out"
    backend = SaqBackend(REDIS_URL, name=queue_name, heartbeat=2)
    worker = None
    try:
        async with manager_for(db, out, on_interrupted="requeue", backend=backend) as manager:
            queued = await manager.status(task.id)
            assert queued.status is TaskStatus.PENDING
            assert queued.phase is Phase.QUEUED  # backend.start enqueued it again
            assert await backend.queue.job(job_key(task.id)) is not None
            args = ["saq", "--queue", REDIS_URL, "--queue-name", queue_name, "--store", str(db)]
            worker = spawn_helper([*args, "--storage-dir", str(out)], tmp_path / "worker.log")
            final = await manager.wait(task.id, timeout=40)
    finally:
        if worker is not None:
            await asyncio.to_thread(stop, worker)

    assert final.status is TaskStatus.COMPLETED, (tmp_path / "worker.log").read_text()
    # 2, or 3 when saq's sweep raced with the worker taking the job (the task is
    # then put back and run again, never cancelled)
    assert final.attempts["run"] >= 2
    assert worker is not None
    assert final.worker is not None
    assert f":{worker.pid}:" in final.worker
    assert stored_files(out) == [f"{task.id}/out.mp4"]
