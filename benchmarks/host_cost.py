"""Host CPU per operation: the least code that does it against ffmpeg_tasks' backend.

One fresh process measures its own user+system time (``RUSAGE_SELF``: children such
as ffmpeg are not in it) over ``count`` operations after a warm-up, for the three
things every W3 task does: run ffmpeg on a one-frame job (two at a time), fetch its
input over HTTP, store its output in S3.  Wall time in W3 is noisy on a shared VM;
these figures are steady, and they are the host's part of W3's cost.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import services
from .workloads import MEDIA, WORK

FRAME = ["-i", "in.mp4", "-frames:v", "1", "out.jpg"]
PIPED = ["-progress", "pipe:1", "-nostats", *FRAME]  # as the manager runs it


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _per_op(count: int, op: Callable[[int], Awaitable[None]], concurrency: int = 1) -> float:
    """Host CPU milliseconds per call of ``op`` (after one warm-up call)."""
    await op(-1)
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            await op(i)

    start = _cpu()
    await asyncio.gather(*(one(i) for i in range(count)))
    return (_cpu() - start) / count * 1000


async def measure(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    import aiohttp
    from aiobotocore.session import get_session

    from ffmpeg_tasks.downloader.http import HttpDownloader
    from ffmpeg_tasks.executor.local import LocalExecutor
    from ffmpeg_tasks.storage.s3 import S3Storage

    n = cfg["count"]
    ffmpeg = cfg["ffmpeg"]
    root = Path(tempfile.mkdtemp(prefix="host-cost-", dir=cfg["scratch"]))
    tiny = Path(cfg["media_dir"]) / "tiny.mp4"
    url = cfg["http_base"] + "tiny.mp4"
    frame = root / "frame.jpg"
    frame.write_bytes(os.urandom(9000))  # the size of W3's JPEG

    dirs: list[Path] = []

    def prepare() -> None:
        """``n + 1`` work dirs holding a copy of the input, made before the clock starts."""
        dirs.clear()
        for _ in range(n + 1):
            d = root / f"w{uuid.uuid4().hex}"
            d.mkdir()
            shutil.copy(tiny, d / "in.mp4")  # a copy: the sandbox sees only the work dir
            dirs.append(d)

    def work_dir(i: int) -> Path:
        return dirs[i + 1]  # i = -1 is the warm-up

    async def bare_devnull(i: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            ffmpeg, "-nostdin", "-y", "-loglevel", "error", *FRAME,
            cwd=work_dir(i), stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()

    async def bare_piped(i: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            ffmpeg, "-nostdin", "-y", *PIPED, cwd=work_dir(i),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await proc.communicate()

    rows: list[dict[str, Any]] = []

    def row(what: str, least: str, least_ms: float, ours: str, ours_ms: float) -> None:
        rows.append(
            {"what": what, "least": least, "least_ms": least_ms, "ours": ours, "ours_ms": ours_ms}
        )

    prepare()
    devnull = await _per_op(n, bare_devnull, 2)
    prepare()
    piped = await _per_op(n, bare_piped, 2)
    for sandbox in ("auto", "off"):
        async with LocalExecutor(max_concurrency=2, sandbox=sandbox) as ex:

            async def run(i: int, ex: LocalExecutor = ex) -> None:
                lines: list[str] = []
                result = await ex.run(
                    PIPED, work_dir(i), progress=lambda b: None, on_stderr=lines.append
                )
                assert result.returncode == 0, result.stderr_tail

            prepare()
            ours = await _per_op(n, run, 2)
            label = "bubblewrap" if await ex.sandboxed() else "no sandbox"
        row(
            "ffmpeg one-frame run, 2 at a time",
            "`create_subprocess_exec` + `communicate()` (both pipes read)",
            piped,
            f"`LocalExecutor.run` ({label}, progress and stderr lines parsed)",
            ours,
        )
    rows.append({"what": "(for scale) same run, output to /dev/null, nothing read",
                 "least": "`create_subprocess_exec` + `wait()`", "least_ms": devnull})  # fmt: skip

    async with aiohttp.ClientSession() as http:

        async def get(i: int) -> None:
            async with http.get(url) as resp:
                resp.raise_for_status()
                (root / f"g{i}").write_bytes(await resp.read())

        bare_get = await _per_op(n, get)
    async with HttpDownloader(allow_private_networks=True) as dl:

        async def fetch(i: int) -> None:
            await dl.fetch(url, root / f"f{i}")

        ours_get = await _per_op(n, fetch)
    row(
        f"download {tiny.stat().st_size // 1024} KiB over HTTP",
        "aiohttp `get` + `read()` + `write_bytes`",
        bare_get,
        "`HttpDownloader.fetch` (address checks, part file, rename)",
        ours_get,
    )

    s3_cm = get_session().create_client(
        "s3", endpoint_url=cfg["s3_endpoint"], region_name="us-east-1"
    )
    async with s3_cm as s3:
        body = frame.read_bytes()

        async def put(i: int) -> None:
            await s3.put_object(Bucket=cfg["bucket"], Key=f"{cfg['run_id']}/raw/{i}", Body=body)

        bare_put = await _per_op(n, put)
    async with S3Storage(
        cfg["bucket"], prefix=cfg["run_id"], endpoint_url=cfg["s3_endpoint"], region="us-east-1"
    ) as storage:

        async def store(i: int) -> None:
            await storage.put(frame, f"lib/{i}", content_type="image/jpeg")

        ours_put = await _per_op(n, store)
    row(
        "store a 9 KB JPEG in S3",
        "aiobotocore `put_object(Body=bytes)`",
        bare_put,
        "`S3Storage.put` (CRC32, content type, presigned URL)",
        ours_put,
    )
    shutil.rmtree(root, ignore_errors=True)
    return rows


def run(svc: services.Services, count: int = 100) -> list[dict[str, Any]]:
    """Measure in a fresh process; return the rows."""
    run_id = f"host-cost-{uuid.uuid4().hex[:8]}"
    scratch = WORK / "scratch" / run_id
    scratch.mkdir(parents=True, exist_ok=True)
    cfg = {
        "count": count,
        "ffmpeg": shutil.which("ffmpeg") or "ffmpeg",
        "scratch": str(scratch),
        "media_dir": str(MEDIA),
        "http_base": svc.http_base,
        "s3_endpoint": svc.s3_endpoint,
        "bucket": svc.bucket,
        "run_id": run_id,
    }
    rows: list[dict[str, Any]] = services.run_module("benchmarks.host_cost", cfg, "host cost probe")
    svc.check_and_clear(run_id, 2 * (count + 1))
    return rows


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(json.loads(sys.argv[1])))))
