"""SaqBackend + worker processes against the real Redis: what is particular to saq.

The guarantees every engine gives (kill -9, remote cancel, SIGTERM, events, saq on
PostgreSQL) are checked by the conformance kit in tests/test_backend_conformance.py.

Workers are real subprocesses (``tests/worker_proc.py``) running real ffmpeg on inputs
from the ``media_server`` fixture.  A missing Redis or PostgreSQL fails these tests.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from ffmpeg_tasks import (
    ConfigurationError,
    HttpDownloader,
    LocalExecutor,
    LocalStorage,
    Phase,
    Task,
    TaskManager,
    TaskStatus,
)
from ffmpeg_tasks.backends import SaqBackend, job_key
from ffmpeg_tasks.backends.saq_worker import MANAGER_KEY, add_worker_parser, run_task, worker_main
from ffmpeg_tasks.store import RedisTaskStore
from ffmpeg_tasks.testing.conformance import descendants

from .servers import MediaServer, MotoS3Server
from .worker_proc import spawn_helper, stop

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

# -re makes ffmpeg read at native speed, so a job is reliably "mid-run" for seconds.
SLOW = "-re -i in.mp4 -t {t} -c:v libx264 -preset ultrafast -an out.mp4"


def worker_pid(task: Task) -> int:
    assert task.worker is not None
    return int(task.worker.split(":")[1])


async def wait_for(task_id: str, manager: TaskManager, predicate: Any, timeout: float = 30) -> Task:
    """Poll the store until ``predicate(task)``."""
    async with asyncio.timeout(timeout):
        while True:
            task = await manager.status(task_id)
            if predicate(task):
                return task
            await asyncio.sleep(0.1)


async def wait_workers(backend: SaqBackend, n: int, timeout: float = 30) -> None:
    """Wait until ``n`` saq workers report on the queue (their manager has started)."""
    async with asyncio.timeout(timeout):
        while len((await backend.queue.info())["workers"]) < n:
            await asyncio.sleep(0.2)


def ffmpeg_children(pid: int) -> list[int]:
    return [p for p, cmd in descendants(pid).items() if "ffmpeg" in cmd or "bwrap" in cmd]


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_client(ns: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS_URL)
    await client.ping()  # no Redis: the test fails here
    yield client
    for pattern in (f"{ns}:*", f"saq:{ns}:*", f"saq:job:{ns}:*", f"ffmpeg_tasks:{ns}:*"):
        keys = [k async for k in client.scan_iter(match=pattern, count=500)]
        if keys:
            await client.delete(*keys)
    await client.aclose()


class Workers:
    """Worker subprocesses of one test; all stopped at teardown."""

    def __init__(self, tmp: Path, base: list[str]) -> None:
        self.tmp = tmp
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, *extra: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"worker-{len(self.procs)}.log"
        proc = spawn_helper([*self.base, *extra], log)
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp.glob("worker-*.log")))


@pytest.fixture
async def env(
    ns: str,
    tmp_path: Path,
    redis_client: aioredis.Redis,
    media_server: MediaServer,
) -> AsyncIterator[dict[str, Any]]:
    """An API-side manager (Redis store + SaqBackend) and a worker spawner on the same queue."""
    out = tmp_path / "out"
    backend = SaqBackend(REDIS_URL, name=ns, heartbeat=2, retries=3)
    manager = TaskManager(
        store=RedisTaskStore(REDIS_URL, prefix=ns),
        storage=LocalStorage(out),
        downloader=HttpDownloader(allow_private_networks=True),
        executor=LocalExecutor(max_concurrency=1),
        backend=backend,
    )
    base = ["saq", "--queue", REDIS_URL, "--queue-name", ns, "--store", REDIS_URL]
    base += ["--store-prefix", ns, "--storage-dir", str(out)]
    workers = Workers(tmp_path, base)
    async with manager:
        try:
            yield {"manager": manager, "backend": backend, "workers": workers, "out": out}
        finally:
            for proc in workers.procs:
                await asyncio.to_thread(stop, proc)
            if any(p.returncode not in (0, -9) for p in workers.procs):
                print(workers.logs())


async def submit(manager: TaskManager, media_server: MediaServer, *, t: float, src: str) -> Task:
    task = await manager.register(
        SLOW.format(t=t), {"in.mp4": media_server.media_url(src)}, "out.mp4"
    )
    return await manager.submit(task.id)


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- the scenarios ------------------------------------------------------------------------


@pytest.mark.redis
async def test_two_worker_processes_share_the_work(
    env: dict[str, Any],
    media_server: MediaServer,
    s3_server: MotoS3Server,
    s3_bucket: str,
    s3_client: Any,
) -> None:
    manager: TaskManager = env["manager"]
    workers: Workers = env["workers"]
    s3 = ["--s3-bucket", s3_bucket, "--s3-endpoint", s3_server.endpoint_url]
    a, b = workers.spawn(*s3), workers.spawn(*s3)
    await wait_workers(env["backend"], 2)

    tasks = [await submit(manager, media_server, t=1, src="clip.mp4") for _ in range(6)]
    done = [await manager.wait(t.id, timeout=45) for t in tasks]

    assert [t.status for t in done] == [TaskStatus.COMPLETED] * 6, [t.error for t in done]
    assert all(t.attempts["run"] == 1 for t in done)
    assert {worker_pid(t) for t in done} == {a.pid, b.pid}  # both did some
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == sorted(f"{t.id}/out.mp4" for t in done)  # each ran and stored once
    assert all(t.output_uri == f"s3://{s3_bucket}/{t.id}/out.mp4" for t in done)


@pytest.mark.redis
async def test_a_job_saq_itself_aborts_goes_back_to_pending_and_runs_again(
    env: dict[str, Any], media_server: MediaServer
) -> None:
    """saq's sweep can abort a job a worker just took; that is not a user's cancel."""
    manager: TaskManager = env["manager"]
    queue = env["backend"].queue
    env["workers"].spawn()
    await wait_workers(env["backend"], 1)
    task = await submit(manager, media_server, t=3, src="long.mp4")
    await wait_for(task.id, manager, lambda t: t.phase is Phase.PROCESSING)
    job = await queue.job(job_key(task.id))
    assert job is not None

    # what saq's sweep does with a job it thinks is stuck: abort, wait, retry
    await queue.abort(job, error=queue.swept_error_message)
    await job.refresh(10.0)
    released = await manager.status(task.id)
    await queue.retry(job, error=queue.swept_error_message)
    final = await manager.wait(task.id, timeout=40)

    assert released.status is TaskStatus.PENDING, released
    assert released.error_code is None
    assert final.status is TaskStatus.COMPLETED, env["workers"].logs()
    assert final.attempts["run"] == 2
    assert stored_files(env["out"]) == [f"{task.id}/out.mp4"]


@pytest.mark.redis
async def test_enqueue_is_deduplicated_and_a_queued_cancel_aborts_the_job(
    env: dict[str, Any], media_server: MediaServer
) -> None:
    manager: TaskManager = env["manager"]
    backend: SaqBackend = env["backend"]
    task = await submit(manager, media_server, t=1, src="clip.mp4")  # no worker yet
    await backend.enqueue(task)  # a second enqueue of the same task
    assert await backend.queue.count("queued") == 1

    cancelled = await manager.cancel(task.id)

    assert cancelled.status is TaskStatus.CANCELLED
    job = await backend.queue.job(job_key(task.id))
    assert job is not None
    assert job.status.value == "aborted"
    assert await backend.queue.count("queued") == 0


@pytest.mark.redis
async def test_run_task_treats_a_finished_task_as_nothing_to_do(
    env: dict[str, Any], media_server: MediaServer
) -> None:
    manager: TaskManager = env["manager"]
    task = await submit(manager, media_server, t=1, src="clip.mp4")
    await manager.cancel(task.id)

    result = await run_task({MANAGER_KEY: manager}, task_id=task.id)

    assert "skipped" in result
    assert "cancelled" in result["skipped"]
    assert (await manager.status(task.id)).status is TaskStatus.CANCELLED


# -- configuration -------------------------------------------------------------------------


def test_bad_queue_url_is_named() -> None:
    with pytest.raises(ConfigurationError, match="amqp://x"):
        SaqBackend("amqp://x")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["worker", "--queue", REDIS_URL], "shared task store"),
        (["worker", "--queue", REDIS_URL, "--store", "memory"], "'memory'"),
        (["worker", "--store", REDIS_URL, "--queue", ""], "--queue"),
        (
            ["worker", "--queue", REDIS_URL, "--store", REDIS_URL, "--concurrency", "0"],
            "--concurrency",
        ),
    ],
)
def test_worker_cli_refuses_bad_settings(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argparse

    monkeypatch.delenv("FFMPEG_TASKS_STORE", raising=False)
    monkeypatch.delenv("FFMPEG_TASKS_QUEUE", raising=False)
    parser = argparse.ArgumentParser()
    add_worker_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    assert args.func is worker_main
    assert worker_main(args) == 2
    assert message in capsys.readouterr().err
