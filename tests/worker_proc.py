"""Subprocess helper for the scale-out tests: a saq worker, or one manager executing a task.

    python -m tests.worker_proc saq --queue redis://… --queue-name Q --store redis://… \
        --store-prefix P --storage-dir D [--sandbox off]
    python -m tests.worker_proc execute --store /tmp/tasks.db --task-id ID --storage-dir D

Stops cleanly on SIGTERM.  The tests kill it with SIGKILL to play a crashed host.
The functions above ``main`` are for the tests: spawn the helper, wait for pids to end
(the process tree: ``ffmpeg_tasks.testing.conformance.descendants``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal, cast

from ffmpeg_tasks import HttpDownloader, LocalExecutor, LocalStorage, S3Storage, TaskManager
from ffmpeg_tasks.backends.saq import SaqBackend, make_queue
from ffmpeg_tasks.backends.saq_worker import run_worker
from ffmpeg_tasks.store import PostgresTaskStore, RedisTaskStore, SQLiteTaskStore

ROOT = Path(__file__).resolve().parent.parent

# -- used by the tests ----------------------------------------------------------------


def spawn_helper(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m tests.worker_proc ARGS`` with stdout/stderr into ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.worker_proc", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[1])


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def wait_all_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    """Wait until none of ``pids`` is alive; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# -- the helper process -----------------------------------------------------------------


def _store(args: argparse.Namespace) -> Any:
    if args.store.startswith("redis://"):
        return RedisTaskStore(args.store, prefix=args.store_prefix)
    if args.store.startswith("postgresql://"):
        return PostgresTaskStore(args.store, table=args.store_prefix)
    return SQLiteTaskStore(args.store)


def _manager(args: argparse.Namespace, **kwargs: Any) -> TaskManager:
    storage: Any
    if args.s3_bucket:
        storage = S3Storage(args.s3_bucket, endpoint_url=args.s3_endpoint, region="us-east-1")
    else:
        storage = LocalStorage(args.storage_dir)
    sandbox = cast(Literal["auto", "require", "off"], args.sandbox)
    return TaskManager(
        store=_store(args),
        storage=storage,
        downloader=HttpDownloader(allow_private_networks=True),
        executor=LocalExecutor(max_concurrency=2, sandbox=sandbox),
        **kwargs,
    )


async def _saq(args: argparse.Namespace) -> None:
    queue = make_queue(args.queue, name=args.queue_name)

    def factory() -> TaskManager:
        return _manager(args, backend=SaqBackend(queue, requeue_on_start=False))

    await run_worker(
        factory,
        queue,
        concurrency=args.concurrency,
        sweep_interval=args.sweep,
        shutdown_grace=5,
    )
    await queue.disconnect()


async def _execute(args: argparse.Namespace) -> None:
    async with _manager(args) as manager:
        task = await manager.execute(args.task_id)
        print(task.status.value, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["saq", "execute"])
    parser.add_argument("--queue")
    parser.add_argument("--queue-name", default="ffmpeg_tasks")
    parser.add_argument("--store", required=True)
    parser.add_argument("--store-prefix", default="ffmpeg_tasks")
    parser.add_argument("--storage-dir")
    parser.add_argument("--s3-bucket")
    parser.add_argument("--s3-endpoint")
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--sweep", type=int, default=1)
    parser.add_argument("--task-id")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(_saq(args) if args.mode == "saq" else _execute(args))


if __name__ == "__main__":
    main()
