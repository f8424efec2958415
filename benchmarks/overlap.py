"""Input overlap: a remux end to end against its phase floor, with and without overlap.

    python -m benchmarks.overlap [--mib 1024] [--rounds 3]

One MPEG-TS input of ``--mib`` MiB on the benchmarks' file server and in moto's S3.
Measured in one run, rounds alternating (each figure a median):

- the three phases alone: the download (``HttpDownloader`` to a local file), ffmpeg alone
  on the local file (``-c copy`` to MPEG-TS), the upload of its output (``S3Storage.put``);
  the **phase floor** is the largest of the three;
- ``ffmpeg_tasks`` HTTP → S3 overlapped (``overlap_inputs=True, overlap_outputs=True``:
  ffmpeg reads the input while it downloads, parts of the output go up while it is
  written) and with the phases in turn (the default): wall from ``run()`` to COMPLETED;
- ``ffmpeg_tasks`` S3 → S3 (``S3Downloader``, parallel ranged GETs; the defaults);
- the shell: ``aws s3 cp`` down, ``ffmpeg``, ``aws s3 cp`` up (awscli in a private venv).

Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.s3_inputs import awscli
from benchmarks.services import BUCKET, S3_ENV, running
from ffmpeg_tasks import (
    HttpDownloader,
    LocalExecutor,
    S3Downloader,
    S3Storage,
    TaskManager,
    TaskStatus,
)

MiB = 1024 * 1024
REMUX = "-i in.ts -map 0 -c copy -f mpegts out.ts"


def make_input(path: Path, mib: int) -> None:
    clip = path.with_name("clip.ts")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=1280x720:rate=30:duration=20", "-f", "lavfi", "-i",
         "sine=frequency=440:duration=20", "-c:v", "libx264", "-preset", "ultrafast",
         "-b:v", "40M", "-c:a", "aac", "-f", "mpegts", str(clip)],
        check=True,
    )  # fmt: skip
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i",
         str(clip), "-map", "0", "-c", "copy", "-fs", str(mib * MiB), "-f", "mpegts", str(path)],
        check=True,
    )  # fmt: skip
    clip.unlink()


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def main(args: argparse.Namespace) -> None:
    os.environ.update(S3_ENV)
    scratch = Path(tempfile.mkdtemp(prefix="bench-overlap-"))
    media = scratch / "media"
    media.mkdir()
    source = media / "in.ts"
    make_input(source, args.mib)
    size = source.stat().st_size
    aws = awscli()
    results: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)
        print(f"{name}: {seconds:.2f} s", file=sys.stderr, flush=True)

    with running(media, scratch / "logs") as services:
        services.s3_client().upload_file(str(source), BUCKET, "src/in.ts")
        http_url = services.http_base + "in.ts"
        s3_url = f"s3://{BUCKET}/src/in.ts"
        s3_opts = {"endpoint_url": services.s3_endpoint, "region": "us-east-1"}
        env = {**os.environ, **S3_ENV}
        async with S3Storage(BUCKET, prefix="out", **s3_opts) as storage:
            await storage.warm_up()
            downloader = HttpDownloader(allow_private_networks=True)
            for round_ in range(args.rounds):
                local = scratch / f"dl-{round_}.ts"
                out = scratch / f"out-{round_}.ts"
                record(
                    "download alone",
                    await timed(lambda dest=local: downloader.fetch(http_url, dest)),
                )
                ffmpeg_cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(local),
                              "-map", "0", "-c", "copy", "-f", "mpegts", str(out)]  # fmt: skip
                start = time.perf_counter()
                await asyncio.to_thread(subprocess.run, ffmpeg_cmd, check=True)
                record("ffmpeg alone", time.perf_counter() - start)
                record(
                    "upload alone",
                    await timed(
                        lambda o=out, k=f"alone-{round_}.ts": storage.put(
                            o, k, content_type="video/mp2t"
                        )
                    ),
                )
                for name, inputs, overlap in (
                    ("ffmpeg_tasks HTTP → S3, overlapped", {"in.ts": http_url}, True),
                    ("ffmpeg_tasks HTTP → S3, phases in turn", {"in.ts": http_url}, False),
                    ("ffmpeg_tasks S3 → S3", {"in.ts": s3_url}, False),
                ):
                    # A manager closes what it is given: fresh backends, warmed up untimed.
                    task_storage = S3Storage(BUCKET, prefix="out", **s3_opts)
                    await task_storage.warm_up()
                    routes = {
                        "http": HttpDownloader(allow_private_networks=True),
                        "s3": S3Downloader([BUCKET], client_from=task_storage),
                    }
                    async with TaskManager(
                        storage=task_storage,
                        downloader=routes,
                        executor=LocalExecutor(),
                        overlap_inputs=overlap,
                        overlap_outputs=overlap,
                    ) as tm:
                        start = time.perf_counter()
                        task = await tm.run(REMUX, inputs, "out.ts")
                        record(name, time.perf_counter() - start)
                        assert task.status is TaskStatus.COMPLETED, task.error
                start = time.perf_counter()
                for cmd in (
                    [str(aws), "--endpoint-url", services.s3_endpoint, "s3", "cp", "--quiet",
                     f"s3://{BUCKET}/src/in.ts", str(local)],
                    ffmpeg_cmd,
                    [str(aws), "--endpoint-url", services.s3_endpoint, "s3", "cp", "--quiet",
                     str(out), f"s3://{BUCKET}/shell/out-{round_}.ts"],
                ):  # fmt: skip
                    await asyncio.to_thread(subprocess.run, cmd, check=True, env=env)
                record("shell: aws s3 cp, ffmpeg, aws s3 cp", time.perf_counter() - start)
                local.unlink()
                out.unlink()
            await downloader.aclose()
    shutil.rmtree(scratch, ignore_errors=True)

    median = {name: statistics.median(v) for name, v in results.items()}
    floor = max(median["download alone"], median["ffmpeg alone"], median["upload alone"])
    shell = median["shell: aws s3 cp, ffmpeg, aws s3 cp"]
    print(f"\n{size / MiB:.0f} MiB MPEG-TS, `{REMUX}`, {args.rounds} rounds, medians\n")
    print("| variant | wall s | ÷ phase floor | ÷ shell |")
    print("|---|--:|--:|--:|")
    for name, value in median.items():
        print(f"| {name} | {value:.2f} | {value / floor:.2f}x | {value / shell:.2f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
