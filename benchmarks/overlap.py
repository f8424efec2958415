"""Overlap: a remux end to end against its phase floor, each overlap on and off.

    python -m benchmarks.overlap [--mib 1024] [--rounds 3] [--link-mbps 800]

One MPEG-TS input of ``--mib`` MiB on the benchmarks' file server and in moto's S3.
Measured in one run, rounds alternating (each figure a median):

- the phases alone: the download (``HttpDownloader``, and ``S3Downloader``, to a local
  file), ffmpeg alone on the local file (``-c copy`` to MPEG-TS), the upload of its output
  (``S3Storage.put``); a route's **phase floor** is the largest of its three;
- ``ffmpeg_tasks`` HTTP → S3 with the phases in turn (the default), with input overlap
  (ffmpeg reads the input through a FIFO while it downloads), with output overlap (parts
  of the output go up while ffmpeg writes it), and with both: wall from ``run()`` to
  COMPLETED, the manager and its S3 client made before the clock starts;
- ``ffmpeg_tasks`` S3 → S3 (``S3Downloader``, parallel ranged GETs), in turn and with
  both overlaps;
- the shell: ``aws s3 cp`` down, ``ffmpeg``, ``aws s3 cp`` up (awscli in a private venv).

``--link-mbps N`` caps the file server's sends, and S3's sends and receives, at N Mbit/s
each (``benchmarks.netshape``: tc on ``lo``; needs root), as a remote origin and a remote
S3 would be. Prints two Markdown tables for docs/performance.md: wall times, and CPU
seconds by process (the host, the file server, moto, the rest: ffmpeg, aws, noise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.netshape import shaped_loopback
from benchmarks.run import machine_cpu, machine_steal
from benchmarks.s3_inputs import awscli
from benchmarks.services import BUCKET, S3_ENV, Services, running, scratch_dir
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


SHELL = "shell: aws s3 cp, ffmpeg, aws s3 cp"
#: name → (input route, overlap_inputs, overlap_outputs)
TASKS = {
    "ffmpeg_tasks HTTP → S3, phases in turn": ("http", False, False),
    "ffmpeg_tasks HTTP → S3, input overlap": ("http", True, False),
    "ffmpeg_tasks HTTP → S3, output overlap": ("http", False, True),
    "ffmpeg_tasks HTTP → S3, both overlaps": ("http", True, True),
    "ffmpeg_tasks S3 → S3, phases in turn": ("s3", False, False),
    "ffmpeg_tasks S3 → S3, both overlaps": ("s3", True, True),
}
CPU_COLUMNS = ("host", "file server", "S3 server", "rest", "machine", "of it steal")


class Meter:
    """Wall time and CPU seconds by process of one measured call."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[dict[str, float]]] = {}

    def _sample(self) -> dict[str, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        servers = self.services.cpu_seconds()
        return {
            "host": own.ru_utime + own.ru_stime,
            "file server": servers["file_server_cpu"],
            "S3 server": servers["s3_server_cpu"],
            "machine": machine_cpu(),
            "of it steal": machine_steal(),
        }

    async def measure(self, name: str, fn: Callable[[], Awaitable[object]]) -> None:
        before = self._sample()
        start = time.perf_counter()
        await fn()
        wall = time.perf_counter() - start
        after = self._sample()
        used = {key: after[key] - before[key] for key in before}
        used["rest"] = used["machine"] - used["host"] - used["file server"] - used["S3 server"]
        used["rest"] -= used["of it steal"]
        self.wall.setdefault(name, []).append(wall)
        self.cpu.setdefault(name, []).append(used)
        print(
            f"{name}: {wall:.2f} s, machine CPU {used['machine']:.1f} s"
            f" (steal {used['of it steal']:.1f} s)",
            file=sys.stderr,
        )


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


async def main(args: argparse.Namespace) -> None:
    scratch, media = scratch_dir("bench-overlap-")
    source = media / "in.ts"
    make_input(source, args.mib)
    size = source.stat().st_size
    aws = awscli()

    with running(media, scratch / "logs", s3=args.s3) as services:
        services.s3_client().upload_file(str(source), BUCKET, "src/in.ts")
        http_url = services.http_base + "in.ts"
        s3_url = f"s3://{BUCKET}/src/in.ts"
        s3_opts = {"endpoint_url": services.s3_endpoint, "region": "us-east-1"}
        env = {**os.environ, **S3_ENV}
        s3_port = _port(services.s3_endpoint)
        meter = Meter(services)
        shaping = shaped_loopback(
            args.link_mbps, from_ports=[_port(http_url), s3_port], to_ports=[s3_port]
        )
        with shaping:
            async with S3Storage(BUCKET, prefix="out", **s3_opts) as storage:
                await storage.warm_up()
                downloader = HttpDownloader(allow_private_networks=True)
                s3_downloader = S3Downloader([BUCKET], client_from=storage)
                for round_ in range(args.rounds):
                    local = scratch / f"dl-{round_}.ts"
                    out = scratch / f"out-{round_}.ts"
                    await meter.measure(
                        "HTTP download alone",
                        lambda dest=local: downloader.fetch(http_url, dest),
                    )
                    local.unlink()
                    await meter.measure(
                        "S3 download alone",
                        lambda dest=local: s3_downloader.fetch(s3_url, dest),
                    )
                    ffmpeg_cmd = [
                        "ffmpeg",
                        "-nostdin",
                        "-loglevel",
                        "error",
                        "-y",
                        "-i",
                        str(local),
                    ]
                    ffmpeg_cmd += ["-map", "0", "-c", "copy", "-f", "mpegts", str(out)]
                    await meter.measure(
                        "ffmpeg alone",
                        lambda cmd=ffmpeg_cmd: asyncio.to_thread(subprocess.run, cmd, check=True),
                    )
                    await meter.measure(
                        "upload alone",
                        lambda o=out, k=f"alone-{round_}.ts": storage.put(
                            o, k, content_type="video/mp2t"
                        ),
                    )
                    for name, (route, over_in, over_out) in TASKS.items():
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
                            overlap_inputs=over_in,
                            overlap_outputs=over_out,
                        ) as tm:
                            inputs = {"in.ts": http_url if route == "http" else s3_url}

                            async def one(
                                tm: TaskManager = tm, inputs: dict[str, str] = inputs
                            ) -> None:
                                task = await tm.run(REMUX, inputs, "out.ts")
                                assert task.status is TaskStatus.COMPLETED, task.error

                            await meter.measure(name, one)
                    if args.shell:
                        down = [str(aws), "--endpoint-url", services.s3_endpoint, "s3", "cp"]
                        up = [*down, "--quiet", str(out), f"s3://{BUCKET}/shell/out-{round_}.ts"]
                        down += ["--quiet", s3_url, str(local)]

                        async def shell(
                            cmds: tuple[list[str], ...] = (down, ffmpeg_cmd, up),
                        ) -> None:
                            for cmd in cmds:
                                await asyncio.to_thread(subprocess.run, cmd, check=True, env=env)

                        await meter.measure(SHELL, shell)
                    local.unlink()
                    out.unlink()
                await downloader.aclose()
    shutil.rmtree(scratch, ignore_errors=True)
    report(meter, args, size)


def report(meter: Meter, args: argparse.Namespace, size: int) -> None:
    wall = {name: statistics.median(v) for name, v in meter.wall.items()}
    phases = (wall["ffmpeg alone"], wall["upload alone"])
    floors = {
        "http": max(wall["HTTP download alone"], *phases),
        "s3": max(wall["S3 download alone"], *phases),
    }
    shell = wall.get(SHELL)
    link = f"links capped at {args.link_mbps} Mbit/s" if args.link_mbps else "loopback, no cap"
    link = f"S3: {args.s3}, {link}"
    print(f"\n{size / MiB:.0f} MiB MPEG-TS, `{REMUX}`, {link}, {args.rounds} rounds, medians\n")
    print(f"Phase floors: HTTP → S3 {floors['http']:.2f} s, S3 → S3 {floors['s3']:.2f} s.\n")
    print("| variant | wall s | ÷ its phase floor | ÷ shell |")
    print("|---|--:|--:|--:|")
    for name, value in wall.items():
        route = "s3" if "S3 →" in name or name == SHELL else "http"
        floor = floors[route] if name in TASKS or name == SHELL else None
        ratio = f"{value / floor:.2f}x" if floor else ""
        vs_shell = f"{value / shell:.2f}x" if shell and route == "s3" and floor else ""
        print(f"| {name} | {value:.2f} | {ratio} | {vs_shell} |")
    cores = os.cpu_count() or 1
    print(f"\nCPU seconds by process (medians) and how busy the {cores} cores were:\n")
    print("| variant | " + " | ".join(CPU_COLUMNS) + " | cores busy |")
    print("|---|" + "--:|" * (len(CPU_COLUMNS) + 1))
    for name, samples in meter.cpu.items():
        cells = [statistics.median(s[c] for s in samples) for c in CPU_COLUMNS]
        busy = cells[CPU_COLUMNS.index("machine")] / (wall[name] * cores)
        print(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {busy:.0%} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--link-mbps", type=int, default=0, help="cap each link (needs root)")
    parser.add_argument("--s3", choices=("moto", "seaweedfs"), default="moto")
    parser.add_argument("--no-shell", dest="shell", action="store_false", help="skip aws s3 cp")
    # SIGTERM ends the run like Ctrl-C: the servers stop and lo is unshaped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main(parser.parse_args()))
