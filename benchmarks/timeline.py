"""Where the time of one overlapped task goes: its events on a clock, by hand.

    python -m benchmarks.timeline [--mib 1024] [--link-mbps 800] [--s3 seaweedfs] [--route s3]

One ``-c copy`` remux of an MPEG-TS input with both overlaps on, then prints, in seconds
from ``run()``: the first and last download event, the first and last ffmpeg progress
event, the first and last upload event, and COMPLETED.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import time
from urllib.parse import urlsplit

from benchmarks.netshape import shaped_loopback
from benchmarks.overlap import REMUX, make_input
from benchmarks.services import BUCKET, running, scratch_dir
from ffmpeg_tasks import (
    Event,
    HttpDownloader,
    LocalExecutor,
    S3Downloader,
    S3Storage,
    TaskManager,
    TaskStatus,
)


async def main(args: argparse.Namespace) -> None:
    scratch, media = scratch_dir("bench-timeline-")
    source = media / "in.ts"
    make_input(source, args.mib)
    seen: list[tuple[float, Event]] = []
    try:
        with running(media, scratch / "logs", s3=args.s3) as services:
            services.s3_client().upload_file(str(source), BUCKET, "src/in.ts")
            url = (
                services.http_base + "in.ts" if args.route == "http" else f"s3://{BUCKET}/src/in.ts"
            )
            s3_port = urlsplit(services.s3_endpoint).port or 0
            http_port = urlsplit(services.http_base).port or 0
            storage = S3Storage(
                BUCKET, prefix="out", endpoint_url=services.s3_endpoint, region="us-east-1"
            )
            await storage.warm_up()
            routes = {
                "http": HttpDownloader(allow_private_networks=True),
                "s3": S3Downloader([BUCKET], client_from=storage),
            }
            start = 0.0

            def on_event(event: Event) -> None:
                seen.append((time.perf_counter() - start, event))

            shaping = shaped_loopback(
                args.link_mbps, from_ports=[http_port, s3_port], to_ports=[s3_port]
            )
            with shaping:
                async with TaskManager(
                    storage=storage,
                    downloader=routes,
                    executor=LocalExecutor(),
                    overlap_inputs=True,
                    overlap_outputs=True,
                    on_event=on_event,
                ) as tm:
                    start = time.perf_counter()
                    task = await tm.run(REMUX, {"in.ts": url}, "out.ts")
                    assert task.status is TaskStatus.COMPLETED, task.error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    by_type: dict[str, list[float]] = {}
    for at, event in seen:
        by_type.setdefault(event.type.value, []).append(at)
    for name, times in by_type.items():
        print(f"{name:12} first {times[0]:6.2f} s  last {times[-1]:6.2f} s  ({len(times)} events)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--link-mbps", type=int, default=800)
    parser.add_argument("--s3", choices=("moto", "seaweedfs"), default="seaweedfs")
    parser.add_argument("--route", choices=("http", "s3"), default="s3")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main(parser.parse_args()))
