"""Event-loop responsiveness of a host running ffmpeg_tasks under load.

In one process: a TaskManager runs two W1 transcodes while its S3Storage uploads the
big remux file (1 GiB in a full run); a probe calls ``tm.status()`` every 10 ms and
records how long each call took, and how late each 10 ms sleep woke up (loop lag).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from . import services
from .variants import make_manager
from .workloads import MEDIA, WORK, Sizes, upload_file_name, workloads


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": ordered[-1] * 1000}


async def baseline(cfg: dict[str, Any], *, upload: bool) -> dict[str, float]:
    """Loop lag of a bare asyncio process while two plain ffmpeg transcodes run.

    With ``upload``, ``aws s3 cp`` sends the same big file to the same moto meanwhile:
    the machine carries the load of the measured run (moto's CPU included), but the
    bare process does no work of its own.  Separates CPU starvation from loop work.
    """
    media = Path(cfg["media_dir"])
    job = cfg["jobs"][0]
    lags: list[float] = []
    procs = []
    for i in range(2):
        work = Path(cfg["scratch"]) / f"baseline{i}-{int(upload)}"
        work.mkdir(parents=True)
        for name, src in job["inputs"].items():
            (work / name).symlink_to(media / src)
        argv = ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *job["command"].split()]
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=work, stdin=asyncio.subprocess.DEVNULL
        )
        procs.append(proc)
    if upload:
        target = f"s3://{cfg['bucket']}/{cfg['run_id']}/baseline.mp4"
        argv = [cfg["aws"], "s3", "cp", "--quiet", "--endpoint-url", cfg["s3_endpoint"]]
        proc = await asyncio.create_subprocess_exec(
            *argv, cfg["upload"], target, stdin=asyncio.subprocess.DEVNULL
        )
        procs.append(proc)
    waiting = asyncio.gather(*(p.wait() for p in procs))
    while not waiting.done():
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - before - 0.01)
    await waiting
    return _percentiles(lags)


async def probe_under_load(cfg: dict[str, Any]) -> dict[str, Any]:
    from ffmpeg_tasks import TaskStatus

    Path(cfg["scratch"]).mkdir(parents=True, exist_ok=True)
    job = cfg["jobs"][0]
    inputs = {n: cfg["http_base"] + src for n, src in job["inputs"].items()}
    status_times: list[float] = []
    lags: list[float] = []
    async with make_manager(cfg, 2) as tm:
        ids = [(await tm.register(job["command"], inputs, job["output"])).id for _ in range(2)]
        done = asyncio.Event()

        async def probe() -> None:
            while not done.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                woke = time.perf_counter()
                lags.append(woke - before - 0.01)
                await tm.status(ids[0])
                status_times.append(time.perf_counter() - woke)

        async def load() -> dict[str, float]:
            t0 = time.perf_counter()
            for task_id in ids:
                await tm.submit(task_id)
            upload = asyncio.create_task(
                tm.storage.put(Path(cfg["upload"]), "latency/big.mp4", content_type="video/mp4")
            )
            stored = await upload
            t_upload = time.perf_counter() - t0
            for task_id in ids:
                task = await tm.wait(task_id)
                if task.status is not TaskStatus.COMPLETED:
                    raise RuntimeError(f"transcode {task_id} {task.status.value}: {task.error}")
            t_all = time.perf_counter() - t0
            done.set()
            return {"upload_s": t_upload, "all_s": t_all, "uploaded_bytes": stored.size}

        probing = asyncio.create_task(probe())
        figures = await load()
        await probing
    return {
        **figures,
        "baseline_lag": await baseline(cfg, upload=False),
        "baseline_upload_lag": await baseline(cfg, upload=True),
        "samples": len(status_times),
        "status": _percentiles(status_times),
        "loop_lag": _percentiles(lags),
    }


def run(svc: services.Services, sizes: Sizes, aws: str) -> dict[str, Any]:
    """Run the probe in a fresh process; return its figures."""
    run_id = f"latency-{uuid.uuid4().hex[:8]}"
    scratch = WORK / "scratch" / run_id
    cfg = {
        **workloads(sizes)["W1"].as_dict(),
        "run_id": run_id,
        "scratch": str(scratch),
        "http_base": svc.http_base,
        "s3_endpoint": svc.s3_endpoint,
        "bucket": svc.bucket,
        "upload": str(MEDIA / upload_file_name(sizes)),
        "media_dir": str(MEDIA),
        "aws": aws,
        "options": {},
    }
    result: dict[str, Any] = services.run_module("benchmarks.latency", cfg, "latency probe")
    svc.check_and_clear(run_id, 4)
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe_under_load(json.loads(sys.argv[1])))))
