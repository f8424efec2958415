"""Many tasks over one input: TaskManager with and without a ``DownloadCache``.

    python -m benchmarks.shared_input --size 1024 --tasks 8 --concurrency 2 --rounds 3

One MP4 of ``--size`` MiB (1080p, looped with ``-c copy``) on the benchmark file server
(its own process, ``benchmarks.services``).  Each side runs in a fresh process:

- ``baseline``: one ``HttpDownloader.fetch`` of the input, then ``--tasks`` plain ffmpeg
  thumbnail runs, ``--concurrency`` at a time (the floor: the input fetched once);
- ``no cache``: ``--tasks`` thumbnail tasks submitted together to a TaskManager with
  ``max_concurrent_tasks=--concurrency`` (each task downloads its own copy);
- ``cache, cold``: the same with ``CachingDownloader`` over an empty ``DownloadCache``;
- ``cache, warm``: the same again on the cache the cold run filled (304s only);
- ``cache, cold, durable=False``: cold, on another empty cache that skips the fsync.

The baseline's ffmpeg runs are bare (no sandbox, no task machinery), so the table also
prints the download alone and "one download + the warm run", which isolates what the
cache itself costs on a cold run.

Prints a Markdown table for docs/performance.md (median of ``--rounds``; ratio to the
baseline).  Run by hand; never part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.services import S3_ENV, running
from benchmarks.workloads import MEDIA, WORK, _ffmpeg

MiB = 1024 * 1024
SIDES = ("baseline", "no cache", "cache, cold", "cache, warm", "cache, cold, durable=False")


def make_input(size_mib: int) -> Path:
    """A 1080p MP4 of about ``size_mib`` MiB in benchmarks/.work/media (kept for reuse)."""
    MEDIA.mkdir(parents=True, exist_ok=True)
    base = MEDIA / "highrate_base.mp4"
    if not base.exists():  # the same base as benchmarks.workloads
        _ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=30:d=10,noise=alls=12:allf=t",
            "-f", "lavfi", "-i", "sine=f=330:d=10",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "16", "-g", "60",
            "-c:a", "aac", "-shortest", str(base),
        )  # fmt: skip
    path = MEDIA / f"shared_{size_mib}m.mp4"
    if not path.exists():
        _ffmpeg(
            "-stream_loop", "-1", "-i", str(base), "-map", "0", "-c", "copy",
            "-fs", str(size_mib * MiB), str(path),
        )  # fmt: skip
    return path


def thumbnail(i: int) -> str:
    """Task ``i``'s command: the first frame, scaled (cheap: the input's fetch dominates)."""
    return "-i in.mp4 -frames:v 1 -vf scale=320:-2 thumb.jpg"


async def _baseline(cfg: dict[str, Any]) -> float:
    """One download, then plain ffmpeg runs; returns the download's seconds."""
    from ffmpeg_tasks import HttpDownloader

    scratch = Path(cfg["scratch"])
    start = time.perf_counter()
    async with HttpDownloader(allow_private_networks=True) as dl:
        await dl.fetch(cfg["url"], scratch / "in.mp4")
    download = time.perf_counter() - start
    slots = asyncio.Semaphore(cfg["concurrency"])

    async def one(i: int) -> None:
        async with slots:
            args = thumbnail(i).replace("thumb.jpg", f"thumb{i}.jpg").split()
            proc = await asyncio.create_subprocess_exec(
                "ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args, cwd=scratch
            )
            assert await proc.wait() == 0

    await asyncio.gather(*(one(i) for i in range(cfg["tasks"])))
    return download


async def _tasks(cfg: dict[str, Any]) -> float:
    from ffmpeg_tasks import (
        CachingDownloader,
        DownloadCache,
        HttpDownloader,
        LocalExecutor,
        LocalStorage,
        TaskManager,
        TaskStatus,
    )
    from ffmpeg_tasks.downloader.base import Downloader

    scratch = Path(cfg["scratch"])
    inner = HttpDownloader(allow_private_networks=True)
    downloader: Downloader = inner
    if cfg["cache"]:
        cache = DownloadCache(cfg["cache"], max_bytes=cfg["cap"], durable=cfg["durable"])
        downloader = CachingDownloader(inner, cache)
    async with TaskManager(
        downloader=downloader,
        storage=LocalStorage(scratch / "out"),
        executor=LocalExecutor(max_concurrency=cfg["concurrency"]),
        max_concurrent_tasks=cfg["concurrency"],
        work_dir=scratch / "work",
    ) as tm:
        tasks = await asyncio.gather(
            *(
                tm.run(thumbnail(i), {"in.mp4": cfg["url"]}, "thumb.jpg")
                for i in range(cfg["tasks"])
            )
        )
    failed = [t.error for t in tasks if t.status is not TaskStatus.COMPLETED]
    assert not failed, failed
    return 0.0


def child(cfg: dict[str, Any]) -> None:
    """In a fresh process: one side, timed from submission to the last task's end."""
    start = time.perf_counter()
    download = asyncio.run(_baseline(cfg) if cfg["side"] == "baseline" else _tasks(cfg))
    print(json.dumps({"seconds": time.perf_counter() - start, "download": download}))


def run_side(cfg: dict[str, Any]) -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix="shared-input-", dir=WORK))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.shared_input", "--child",
             json.dumps({**cfg, "scratch": str(scratch)})],
            env={**os.environ, **S3_ENV},
            capture_output=True,
            text=True,
        )  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"{cfg['side']} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024, help="input size in MiB")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    source = make_input(args.size)
    WORK.mkdir(exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="shared-input-logs-", dir=WORK))
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    downloads: list[float] = []
    try:
        with running(source.parent, logs) as services:
            url = services.http_base + source.name
            base = {"url": url, "tasks": args.tasks, "concurrency": args.concurrency}
            for _ in range(args.rounds):
                cache = Path(tempfile.mkdtemp(prefix="shared-input-cache-", dir=WORK))
                try:
                    for side in SIDES:
                        cfg = {**base, "side": side, "cap": 4 * args.size * MiB}
                        cfg["cache"] = str(cache) if side.startswith("cache") else None
                        cfg["durable"] = "durable=False" not in side
                        if not cfg["durable"]:
                            cfg["cache"] = str(cache / "not-durable")
                        result = run_side(cfg)
                        times[side].append(result["seconds"])
                        if side == "baseline":
                            downloads.append(result["download"])
                        print(f"{side}: {result}", file=sys.stderr)
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    floor = statistics.median(times["baseline"])
    print(
        f"\n{args.tasks} thumbnail tasks over one {args.size} MiB input, concurrency "
        f"{args.concurrency}, median of {args.rounds}\n"
    )
    print("| side | seconds | vs. one download + ffmpeg runs |")
    print("|---|---:|---:|")
    for side in SIDES:
        median = statistics.median(times[side])
        print(f"| {side} | {median:.2f} | {median / floor:.2f}x |")
    download = statistics.median(downloads)
    ideal = download + statistics.median(times["cache, warm"])
    cold = statistics.median(times["cache, cold"])
    print(f"\nthe download alone: {download:.2f} s; one download + the warm run: {ideal:.2f} s;")
    print(f"cache, cold against that: {cold / ideal:.2f}x")


if __name__ == "__main__":
    main()
