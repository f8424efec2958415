"""SaqBackend + worker processes against the real Redis (and saq on PostgreSQL).

Workers are real subprocesses (``tests/worker_proc.py``) running real ffmpeg on inputs
from the ``media_server`` fixture.  A missing Redis or PostgreSQL fails these tests.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from ffmpeg_tasks import (
    ConfigurationError,
    EventType,
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
from ffmpeg_tasks.store import PostgresTaskStore, RedisTaskStore

from .servers import MediaServer, MotoS3Server
from .worker_proc import descendants, spawn_helper, stop, wait_all_gone

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
async def test_kill_9_mid_job_reruns_on_the_other_worker_exactly_once(
    env: dict[str, Any], media_server: MediaServer
) -> None:
    manager: TaskManager = env["manager"]
    workers: Workers = env["workers"]
    a = workers.spawn()
    await wait_workers(env["backend"], 1)
    task = await submit(manager, media_server, t=4, src="long.mp4")
    await wait_for(task.id, manager, lambda t: t.phase is Phase.PROCESSING and t.progress)
    ffmpeg = ffmpeg_children(a.pid)
    assert ffmpeg, descendants(a.pid)

    a.send_signal(signal.SIGKILL)
    await asyncio.to_thread(a.wait, 10)
    assert await asyncio.to_thread(wait_all_gone, ffmpeg) == []  # no orphan ffmpeg

    b = workers.spawn()  # saq's sweep on b notices the stale heartbeat and retries the job
    final = await manager.wait(task.id, timeout=45)

    assert final.status is TaskStatus.COMPLETED, (final.error, workers.logs())
    assert final.attempts["run"] == 2
    assert worker_pid(final) == b.pid
    assert stored_files(env["out"]) == [f"{task.id}/out.mp4"]
    assert final.output is not None
    assert final.output.size == (env["out"] / task.id / "out.mp4").stat().st_size


@pytest.mark.redis
async def test_cancel_from_the_api_process_stops_ffmpeg_on_the_worker(
    env: dict[str, Any], media_server: MediaServer
) -> None:
    manager: TaskManager = env["manager"]
    a = env["workers"].spawn()
    await wait_workers(env["backend"], 1)
    task = await submit(manager, media_server, t=8, src="long.mp4")
    await wait_for(task.id, manager, lambda t: t.phase is Phase.PROCESSING and t.progress)
    ffmpeg = ffmpeg_children(a.pid)
    assert ffmpeg

    cancelled = await manager.cancel(task.id)

    assert cancelled.status is TaskStatus.CANCELLED
    assert cancelled.error_code == "cancelled"
    assert await asyncio.to_thread(wait_all_gone, ffmpeg) == []
    assert stored_files(env["out"]) == []
    job = await env["backend"].queue.job(job_key(task.id))
    assert job is not None
    assert job.status.value == "aborted"
    # the worker is fine and runs the next task
    assert a.poll() is None
    nxt = await submit(manager, media_server, t=0.5, src="clip.mp4")
    assert (await manager.wait(nxt.id, timeout=30)).status is TaskStatus.COMPLETED


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
async def test_progress_events_reach_the_api_process(
    env: dict[str, Any], media_server: MediaServer
) -> None:
    manager: TaskManager = env["manager"]
    env["workers"].spawn()
    await wait_workers(env["backend"], 1)
    task = await submit(manager, media_server, t=2, src="clip.mp4")

    events = [e async for e in manager.events(task.id)]

    types = [e.type for e in events]
    assert types[-1] is EventType.COMPLETED
    assert events[-1].task is not None
    assert events[-1].task.status is TaskStatus.COMPLETED
    running = [e for e in events if e.type is EventType.RUNNING and e.percent is not None]
    assert running, types  # only pub/sub carries these; the store fallback yields the end
    assert all(0 <= e.percent <= 100 for e in running if e.percent is not None)
    assert all(e.task_id == task.id for e in events)


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


@pytest.mark.postgres
async def test_saq_on_postgresql(ns: str, tmp_path: Path, media_server: MediaServer) -> None:
    import psycopg

    out = tmp_path / "out"
    backend = SaqBackend(PG_URL, name=ns, heartbeat=2)
    manager = TaskManager(
        store=PostgresTaskStore(PG_URL, table=ns),
        storage=LocalStorage(out),
        backend=backend,
    )
    args = ["saq", "--queue", PG_URL, "--queue-name", ns, "--store", PG_URL]
    args += ["--store-prefix", ns, "--storage-dir", str(out)]
    proc = None
    try:
        async with manager:
            assert backend.events(ns) is None  # no pub/sub: the manager polls the store
            proc = spawn_helper(args, tmp_path / "worker.log")
            task = await submit(manager, media_server, t=1, src="clip.mp4")
            final = await manager.wait(task.id, timeout=45)
            assert final.status is TaskStatus.COMPLETED, (tmp_path / "worker.log").read_text()
            assert worker_pid(final) == proc.pid
            assert stored_files(out) == [f"{task.id}/out.mp4"]
            events = [e async for e in manager.events(task.id)]
            assert [e.type for e in events] == [EventType.COMPLETED]
    finally:
        if proc is not None:
            await asyncio.to_thread(stop, proc)
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
            await conn.execute("DELETE FROM saq_jobs WHERE queue = %s", (ns,))
            await conn.execute(f'DROP TABLE IF EXISTS "{ns}"')


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


@pytest.mark.redis
async def test_sigterm_releases_a_running_task_and_another_worker_completes_it(
    env: dict[str, Any], media_server: MediaServer
) -> None:
    manager: TaskManager = env["manager"]
    workers: Workers = env["workers"]
    a = workers.spawn()
    await wait_workers(env["backend"], 1)
    task = await submit(manager, media_server, t=10, src="long.mp4")
    await wait_for(task.id, manager, lambda t: t.phase is Phase.PROCESSING and t.progress)

    a.send_signal(signal.SIGTERM)  # shutdown_grace=5 s < the 10 s job: it gets released
    await asyncio.to_thread(a.wait, 30)
    released = await manager.status(task.id)
    assert released.status is TaskStatus.PENDING, (released.status, workers.logs())
    assert released.worker is None

    workers.spawn()
    final = await manager.wait(task.id, timeout=60)
    assert final.status is TaskStatus.COMPLETED, (final.error, workers.logs())
    assert final.attempts["run"] == 2
    assert stored_files(env["out"]) == [f"{task.id}/out.mp4"]
