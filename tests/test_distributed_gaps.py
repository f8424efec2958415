"""What a shared store needs beyond one process: recovery that defers to the engine,
work dirs of killed processes swept, events read from the store, a cancel flag read
by the running worker, and the worker command line's settings."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ffmpeg_tasks import ConfigurationError, Event, LocalStorage, Task, TaskManager, TaskStatus
from ffmpeg_tasks.backends.celery import make_app
from ffmpeg_tasks.backends.saq_worker import add_worker_parser, worker_main
from ffmpeg_tasks.models import Phase, new_task_id
from ffmpeg_tasks.store.base import TaskStore
from ffmpeg_tasks.store.memory import MemoryTaskStore
from ffmpeg_tasks.transitions import new_worker_id, request_cancel, worker_is_dead
from ffmpeg_tasks.workdirs import make_work_dir, sweep_work_dirs, work_dir_path

from .servers import MediaServer


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def stored_task(**changes: object) -> Task:
    return Task(
        id=new_task_id(),
        commands=("-i in.mp4 out.mp4",),
        input_files={"in.mp4": "https://example.com/in.mp4"},
        output_files=("out.mp4",),
    ).evolve(**changes)


class NoEventsBackend:
    """A backend without a cross-process event channel (like saq on PostgreSQL)."""

    engine = "test"

    async def start(self, store: TaskStore) -> None: ...
    async def enqueue(self, task: Task) -> None: ...
    async def abort(self, task: Task) -> None: ...
    async def publish(self, event: Event) -> None: ...

    def events(self, task_id: str) -> AsyncIterator[Event] | None:
        return None

    async def aclose(self) -> None: ...


# -- recovery ---------------------------------------------------------------------


async def test_recover_leaves_engine_tasks_to_the_engine(tmp_path: Path) -> None:
    worker = f"{socket.gethostname()}:{dead_pid()}:abcdef"
    store = MemoryTaskStore()
    engine_task = await store.create(
        stored_task(status=TaskStatus.RUNNING, worker=worker, engine="saq")
    )
    local_task = await store.create(stored_task(status=TaskStatus.RUNNING, worker=worker))
    async with TaskManager(store=store, storage=LocalStorage(tmp_path)) as manager:
        assert (await manager.status(engine_task.id)).status is TaskStatus.RUNNING
        failed = await manager.status(local_task.id)
        assert (failed.status, failed.error_code) == (TaskStatus.FAILED, "interrupted")


def test_a_zombie_worker_is_dead() -> None:
    proc = subprocess.Popen(["true"])
    try:
        for _ in range(100):  # until it has exited, not reaped
            if Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
                break
            os.sched_yield()
        assert worker_is_dead(f"{socket.gethostname()}:{proc.pid}:abcdef")
    finally:
        proc.wait()


async def test_submit_records_the_engine(tmp_path: Path) -> None:
    async with TaskManager(storage=LocalStorage(tmp_path), backend=NoEventsBackend()) as tm:
        task = await tm.register(
            "-i in.mp4 out.mp4", {"in.mp4": "https://example.com/a"}, "out.mp4"
        )
        queued = await tm.submit(task.id)
        assert (queued.engine, queued.phase) == ("test", Phase.QUEUED)
        assert Task.from_dict(queued.to_dict(include_diagnostics=True)) == queued


# -- work dirs ----------------------------------------------------------------------


async def test_work_dirs_nobody_holds_are_swept_and_nothing_else(tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    root = tmp_path / "work"
    root.mkdir()
    live = work_dir_path(root, "a" * 32)
    held = make_work_dir(live)  # a live run (here, or in another container) holds its lock
    dead = work_dir_path(root, "b" * 32)
    os.close(make_work_dir(dead))  # its process is gone: so is its lock
    young = work_dir_path(root, "c" * 32)
    os.close(make_work_dir(young))
    unrelated = root / "ffmpeg-tasks-notours"
    unrelated.mkdir()
    try:
        for d in (live, dead, young, unrelated):
            (d / "out.mp4").write_bytes(b"x")
        (dead / "link").symlink_to(outside)
        (dead / "sub").mkdir()
        old = time.time() - 3600
        for d in (live, dead, unrelated):
            os.utime(d, (old, old))
        assert sweep_work_dirs(root) == [dead.name]
        assert outside.read_text() == "keep"
        assert sorted(p.name for p in root.iterdir()) == sorted(
            p.name for p in (live, young, unrelated)
        )
        # A manager sweeps its work_dir when it starts.
        os.utime(young, (old, old))
        async with TaskManager(storage=LocalStorage(tmp_path / "out"), work_dir=root):
            async with asyncio.timeout(10):
                while young.exists():
                    await asyncio.sleep(0.05)
        assert live.exists()
    finally:
        os.close(held)


# -- events and cancel through the store ------------------------------------------


async def test_events_of_a_remote_task_are_read_from_the_store(tmp_path: Path) -> None:
    store = MemoryTaskStore()
    task = await store.create(stored_task(status=TaskStatus.RUNNING, worker="elsewhere:1:x"))
    async with TaskManager(
        store=store, storage=LocalStorage(tmp_path), backend=NoEventsBackend()
    ) as manager:

        async def remote_worker() -> None:
            current = await store.get(task.id)
            assert current is not None
            for changes in (
                {"phase": Phase.PROCESSING, "progress": 40.0},
                {"phase": Phase.UPLOADING, "progress": 100.0},
                {"status": TaskStatus.COMPLETED, "phase": Phase.DONE},
            ):
                await asyncio.sleep(1.0)
                new = current.evolve(**changes)
                assert await store.replace(current, new)
                current = new

        worker = asyncio.create_task(remote_worker())
        async with asyncio.timeout(20):
            events = [e async for e in manager.events(task.id)]
        await worker
    kinds = [e.type.value for e in events]
    assert kinds[-1] == "completed" and events[-1].task is not None
    assert "running" in kinds  # polling may miss a short phase, never the end
    assert next(e for e in events if e.type.value == "running").percent == 40.0


async def test_a_cancel_flag_set_by_another_process_stops_the_run(
    tmp_path: Path, media_server: MediaServer
) -> None:
    from ffmpeg_tasks import HttpDownloader

    store = MemoryTaskStore()
    async with TaskManager(
        store=store,
        storage=LocalStorage(tmp_path),
        downloader=HttpDownloader(allow_private_networks=True),
    ) as manager:
        task = await manager.register(
            "-re -i in.mp4 -t 10 -c:v libx264 -preset ultrafast out.mp4",
            {"in.mp4": media_server.media_url("long.mp4")},
            "out.mp4",
        )
        run = asyncio.create_task(manager.execute(task.id))
        async with asyncio.timeout(30):
            while (await manager.status(task.id)).phase is not Phase.PROCESSING:
                await asyncio.sleep(0.05)
            current = await manager.status(task.id)  # what another process would do:
            assert await store.replace(current, request_cancel(current))
            final = await run
    assert final.status is TaskStatus.CANCELLED
    assert not (tmp_path / task.id).exists()


# -- settings -------------------------------------------------------------------------


def worker_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_worker_parser(parser.add_subparsers())
    return parser.parse_args(["worker", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shutdown-grace", "-1"], "--shutdown-grace must be >= 0"),
        (["--engine", "celery", "--queue", "http://broker"], "'http://broker'"),
    ],
)
def test_worker_settings_are_checked(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("FFMPEG_TASKS_QUEUE", raising=False)
    base = ["--queue", "redis://127.0.0.1:6379/0", "--store", str(tmp_path / "t.db")]
    args = worker_args(*base, *argv)
    assert worker_main(args) == 2
    assert message in capsys.readouterr().err


def test_worker_options() -> None:
    args = worker_args("--engine", "celery", "--shutdown-grace", "5", "--store-prefix", "p")
    assert (args.engine, args.shutdown_grace, args.store_prefix) == ("celery", 5, "p")


def test_celery_app_settings() -> None:
    with pytest.raises(ConfigurationError, match="'http://x'"):
        make_app("http://x")
    app = make_app("amqp://guest:guest@127.0.0.1:5672//", queue="q")
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.task_default_queue == "q"
    assert conf.include == ["ffmpeg_tasks.backends.celery_worker"]  # workers import the job
    import ffmpeg_tasks.backends.celery_worker  # noqa: F401

    assert "ffmpeg_tasks.run_task" in app.tasks


def test_a_reused_pid_is_a_dead_worker() -> None:
    me = new_worker_id()
    host, pid, rand, ticks = me.split(":")
    assert (host, pid) == (socket.gethostname(), str(os.getpid()))
    assert not worker_is_dead(me)  # this process
    assert not worker_is_dead(f"{host}:{pid}:{rand}")  # an id without a start time
    assert worker_is_dead(f"{host}:{pid}:{rand}:{int(ticks) - 100}")  # an earlier process
