"""CPU-bound transcode: ffmpeg_tasks HTTP → S3 against ffmpeg alone, in alternating pairs.

    python -m benchmarks.cpu_bound [--seconds 30] [--pairs 5] [--link-mbps 0]

The W1 job (1080p → 720p libx264 ``veryfast``, audio copied) on a 1080p MP4 made by lavfi
(index at the end, so it is downloaded before ffmpeg starts). Each round runs, one after
another: ffmpeg alone on the local file, then ``ffmpeg_tasks`` from the benchmarks' file
server to moto with both overlaps off (the phases in turn), then with both on.
The figure is the median of the per-round ratios (each side ÷ the ffmpeg run of its own
round), which cancels the machine's drift between rounds. Each manager lives for the whole
run, as in a service, and runs one untimed task before the first round. Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.netshape import shaped_loopback
from benchmarks.overlap import CPU_COLUMNS, Meter
from benchmarks.services import BUCKET, running, scratch_dir
from ffmpeg_tasks import HttpDownloader, LocalExecutor, S3Storage, TaskManager, TaskStatus

MiB = 1024 * 1024
ALONE = "ffmpeg alone, local file"
VARIANTS = {
    "ffmpeg_tasks HTTP → S3, phases in turn": False,
    "ffmpeg_tasks HTTP → S3, both overlaps": True,
}


def command(preset: str) -> str:
    return f"-i in.mp4 -vf scale=-2:720 -c:v libx264 -preset {preset} -c:a copy out.mp4"


def make_source(path: Path, seconds: int) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r=30:d={seconds}",
         "-f", "lavfi", "-i", f"sine=f=440:d={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-c:a", "aac",
         "-shortest", str(path)],
        check=True,
    )  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    scratch, media = scratch_dir("bench-cpu-")
    source = media / "in.mp4"
    make_source(source, args.seconds)
    job = command(args.preset)
    alone_argv = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *job.split()]
    alone_argv[alone_argv.index("in.mp4")] = str(source)
    alone_argv[-1] = str(scratch / "alone.mp4")

    with running(media, scratch / "logs", s3=args.s3) as services:
        url = services.http_base + "in.mp4"
        s3_port = urlsplit(services.s3_endpoint).port or 0
        http_port = urlsplit(url).port or 0
        meter = Meter(services)
        managers: dict[str, TaskManager] = {}
        for name, overlap in VARIANTS.items():
            managers[name] = TaskManager(
                storage=S3Storage(
                    BUCKET, prefix="cpu", endpoint_url=services.s3_endpoint, region="us-east-1"
                ),
                downloader=HttpDownloader(allow_private_networks=True),
                executor=LocalExecutor(),
                overlap_inputs=overlap,
                overlap_outputs=overlap,
            )
        try:
            for tm in managers.values():
                await tm.__aenter__()
                warm = await tm.run("-i in.mp4 -frames:v 1 out.jpg", {"in.mp4": url}, "out.jpg")
                assert warm.status is TaskStatus.COMPLETED, warm.error
            with shaped_loopback(args.link_mbps, from_ports=[http_port], to_ports=[s3_port]):
                for _ in range(args.pairs):
                    await meter.measure(
                        ALONE, lambda: asyncio.to_thread(subprocess.run, alone_argv, check=True)
                    )
                    for name, tm in managers.items():

                        async def one(tm: TaskManager = tm) -> None:
                            task = await tm.run(job, {"in.mp4": url}, "out.mp4")
                            assert task.status is TaskStatus.COMPLETED, task.error

                        await meter.measure(name, one)
        finally:
            for tm in managers.values():
                await tm.aclose()
    source_mib = source.stat().st_size / MiB
    shutil.rmtree(scratch, ignore_errors=True)
    report(meter, args, source_mib)


def report(meter: Meter, args: argparse.Namespace, source_mib: float) -> None:
    alone = meter.wall[ALONE]
    link = f"links capped at {args.link_mbps} Mbit/s" if args.link_mbps else "loopback, no cap"
    link = f"S3: {args.s3}, {link}"
    clip = f"{args.seconds} s of 1080p30 ({source_mib:.0f} MiB MP4)"
    print(f"\n`{command(args.preset)}`, {clip}, {link}, {args.pairs} rounds\n")
    print("| variant | wall s (median) | ÷ ffmpeg alone, median of rounds | per round |")
    print("|---|--:|--:|---|")
    for name, walls in meter.wall.items():
        ratios = [w / a for w, a in zip(walls, alone, strict=True)]
        per_round = ", ".join(f"{r:.3f}" for r in ratios)
        print(
            f"| {name} | {statistics.median(walls):.2f} | {statistics.median(ratios):.3f}x "
            f"| {per_round} |"
        )
    cores = os.cpu_count() or 1
    print(f"\nCPU seconds by process (medians), {cores} cores:\n")
    print("| variant | " + " | ".join(CPU_COLUMNS) + " |")
    print("|---|" + "--:|" * len(CPU_COLUMNS))
    for name, samples in meter.cpu.items():
        cells = [statistics.median(s[c] for s in samples) for c in CPU_COLUMNS]
        print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--link-mbps", type=int, default=0, help="cap each link (needs root)")
    parser.add_argument("--s3", choices=("moto", "seaweedfs"), default="moto")
    # SIGTERM ends the run like Ctrl-C: the servers stop and lo is unshaped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main(parser.parse_args()))
