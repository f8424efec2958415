"""Distributed workers: an API side that submits tasks, worker processes that run them.

Needs Redis (queue + task store) and the saq extra: ``pip install 'ffmpeg-tasks[saq]'``.

    # on each worker machine (N of them):
    python examples/distributed_worker.py worker --storage-dir /srv/out   # or --s3-bucket B
    # on the API side:
    python examples/distributed_worker.py submit https://example.com/in.mp4
    # everything on this machine: a test clip served locally, two worker processes
    python examples/distributed_worker.py demo

``--redis`` (default ``redis://127.0.0.1:6379/0``) is both the saq queue and the task
store; every process must use the same one, and the same storage (a shared S3 bucket
across machines; a local directory only works on one machine).

With Celery instead of saq, the API side passes ``backend=CeleryBackend("amqp://…")``
and workers run ``ffmpeg-tasks worker --engine celery --queue amqp://… --store redis://…``;
docs/scaling.md shows both side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

from aiohttp import web

from ffmpeg_tasks import HttpDownloader, LocalStorage, S3Storage, Storage, TaskManager, find_ffmpeg
from ffmpeg_tasks.backends import SaqBackend
from ffmpeg_tasks.backends.saq_worker import run_worker
from ffmpeg_tasks.store import RedisTaskStore

QUEUE = "ffmpeg_tasks_demo"
COMMAND = "-i input.mp4 -vf scale=320:-2 -c:v libx264 -preset veryfast -c:a aac output.mp4"


def storage_from(args: argparse.Namespace) -> Storage:
    if args.s3_bucket:
        return S3Storage(args.s3_bucket, endpoint_url=args.endpoint_url, region=args.region)
    return LocalStorage(args.storage_dir)


async def worker(args: argparse.Namespace) -> None:
    """Run tasks from the queue until SIGTERM / Ctrl-C."""

    def factory() -> TaskManager:
        return TaskManager(
            store=RedisTaskStore(args.redis, prefix=QUEUE),
            storage=storage_from(args),
            downloader=HttpDownloader(allow_private_networks=args.allow_private_networks),
        )

    print(f"worker {os.getpid()} waiting for tasks on {args.redis} ({QUEUE})", flush=True)
    await run_worker(factory, args.redis, name=QUEUE, concurrency=args.concurrency)


def api_manager(args: argparse.Namespace) -> TaskManager:
    """The API side: same store and queue, no ffmpeg needed here."""
    return TaskManager(
        store=RedisTaskStore(args.redis, prefix=QUEUE),
        storage=storage_from(args),
        backend=SaqBackend(args.redis, name=QUEUE, heartbeat=10),
    )


async def submit(args: argparse.Namespace, urls: list[str]) -> None:
    """Submit one task per URL, follow the first one's events, wait for all."""
    async with api_manager(args) as manager:
        ids = []
        for url in urls:
            task = await manager.register(COMMAND, {"input.mp4": url}, "output.mp4")
            await manager.submit(task.id)
            ids.append(task.id)
            print(f"submitted {task.id}")
        async for event in manager.events(ids[0]):
            if event.percent is not None:
                print(f"  {ids[0][:8]} {event.type.value:<11} {event.percent:5.1f}%")
            else:
                print(f"  {ids[0][:8]} {event.type.value}")
        ran_on: Counter[str] = Counter()
        for task_id in ids:
            task = await manager.wait(task_id)
            ran_on[task.worker or "?"] += 1
            print(f"{task_id} {task.status.value} {task.output_url or task.error}")
        for who, n in ran_on.items():
            print(f"worker {who} ran {n} task(s)")


async def demo(args: argparse.Namespace) -> None:
    """A clip served from this machine, two worker processes, four tasks."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make = await asyncio.create_subprocess_exec(
            find_ffmpeg().path, "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=4",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", str(clip),
        )  # fmt: skip
        if await make.wait() != 0:
            raise SystemExit("ffmpeg could not make the test clip")
        app = web.Application()
        app.router.add_static("/", tmp)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        out = args.storage_dir or str(Path(tmp) / "out")
        cmd = [sys.executable, __file__, "--redis", args.redis, "worker"]
        cmd += ["--storage-dir", out, "--allow-private-networks", "--concurrency", "1"]
        workers = [await asyncio.create_subprocess_exec(*cmd) for _ in range(2)]
        try:
            args.storage_dir = out
            await asyncio.sleep(2)  # let the workers connect
            await submit(args, [f"http://127.0.0.1:{port}/clip.mp4"] * 4)
        finally:
            for proc in workers:
                proc.send_signal(signal.SIGTERM)
            for proc in workers:
                await proc.wait()
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--storage-dir", default="ffmpeg-tasks-output")
    parser.add_argument("--s3-bucket")
    parser.add_argument("--endpoint-url")
    parser.add_argument("--region")
    sub = parser.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("worker", help="run tasks from the queue")
    w.add_argument("--concurrency", type=int, default=2)
    w.add_argument("--allow-private-networks", action="store_true")
    w.add_argument("--storage-dir", dest="storage_dir", default=argparse.SUPPRESS)
    s = sub.add_parser("submit", help="submit one task per URL and wait")
    s.add_argument("urls", nargs="+")
    sub.add_parser("demo", help="everything on this machine")
    args = parser.parse_args()
    if args.mode == "worker":
        asyncio.run(worker(args))
    elif args.mode == "submit":
        asyncio.run(submit(args, args.urls))
    else:
        asyncio.run(demo(args))


if __name__ == "__main__":
    main()
