"""One measured run of one variant on one workload, in a fresh process.

``python -m benchmarks.variants '<json>'`` runs the jobs and prints one JSON line:
wall time, the host's own CPU time, its children's CPU time (ffmpeg, curl, aws …),
the host's peak RSS and the largest child's peak RSS; for ``d`` also the summed
duration of its ``LocalExecutor.run`` calls (for a one-job workload: spawn to exit of
its ffmpeg; with more jobs than slots it includes the wait for a slot).

Variants:

* ``a`` (floor): ffmpeg alone on local files, ``concurrency`` at a time under an
  asyncio semaphore (for W3 this is the "bare asyncio loop").
* ``a-io`` (bare loop with the same I/O, W3 only): ``a`` plus what every job must
  also do: each input fetched with one shared aiohttp session, the output stored with
  one shared aiobotocore client (``put_object``), no checks, no sandbox, no records.
  It is the least code that does the job; ``d`` against it is the library's overhead.
* ``b`` (shell): per job one ``bash`` script: ``curl`` each input one after another,
  ``ffmpeg``, ``aws s3 cp``; ``concurrency`` scripts at a time.
* ``c`` (replica of the original service): a global queue and dict, ``concurrency``
  worker coroutines; each input read whole into memory (aiohttp ``read()``) one after
  another and written with a blocking ``write``; ffmpeg via asyncio; a new boto3
  client per task and a blocking ``upload_file`` in the coroutine.
* ``d`` (ffmpeg_tasks): ``TaskManager`` with ``S3Storage``, ``HttpDownloader`` and
  ``LocalExecutor(max_concurrency=concurrency)``; every job registered and submitted,
  then waited for.  Options: ``ffprobe`` (bool), ``sandbox`` ("auto"/"off"), ``nice``,
  ``slots`` (``max_concurrent_tasks``).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

Config = dict[str, Any]


def _job_dir(cfg: Config, index: int) -> Path:
    root = Path(cfg["scratch"])
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{cfg['variant']}-{index}-", dir=root))


def _key(cfg: Config, index: int, output: str) -> str:
    return f"{cfg['run_id']}/{index}/{output}"


# -- (a) ffmpeg alone -----------------------------------------------------------


async def run_floor(cfg: Config) -> None:
    slots = asyncio.Semaphore(cfg["concurrency"])
    media = Path(cfg["media_dir"])

    async def one(index: int, job: Config) -> None:
        async with slots:
            work = _job_dir(cfg, index)
            for name, source in job["inputs"].items():
                (work / name).symlink_to(media / source)
            proc = await asyncio.create_subprocess_exec(
                cfg["ffmpeg"],
                "-nostdin",
                "-y",
                "-loglevel",
                "error",
                *shlex.split(job["command"]),
                cwd=work,
                stdin=asyncio.subprocess.DEVNULL,
            )
            if await proc.wait() != 0:
                raise RuntimeError(f"ffmpeg failed on job {index}")
            shutil.rmtree(work)

    async with asyncio.TaskGroup() as group:
        for index, job in enumerate(cfg["jobs"]):
            group.create_task(one(index, job))


async def run_bare_io(cfg: Config) -> None:
    import aiohttp
    from aiobotocore.session import get_session

    slots = asyncio.Semaphore(cfg["concurrency"])
    s3_cm = get_session().create_client(
        "s3", endpoint_url=cfg["s3_endpoint"], region_name="us-east-1"
    )
    async with aiohttp.ClientSession() as http, s3_cm as s3:

        async def one(index: int, job: Config) -> None:
            async with slots:
                work = _job_dir(cfg, index)
                for name, source in job["inputs"].items():
                    async with http.get(cfg["http_base"] + source) as resp:
                        resp.raise_for_status()
                        (work / name).write_bytes(await resp.read())  # tiny files only
                proc = await asyncio.create_subprocess_exec(
                    cfg["ffmpeg"], "-nostdin", "-y", "-loglevel", "error",
                    *shlex.split(job["command"]),
                    cwd=work,
                    stdin=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                if await proc.wait() != 0:
                    raise RuntimeError(f"ffmpeg failed on job {index}")
                body = (work / job["output"]).read_bytes()
                await s3.put_object(
                    Bucket=cfg["bucket"], Key=_key(cfg, index, job["output"]), Body=body
                )
                shutil.rmtree(work)

        async with asyncio.TaskGroup() as group:
            for index, job in enumerate(cfg["jobs"]):
                group.create_task(one(index, job))


# -- (b) the shell pipeline -----------------------------------------------------


def shell_script(cfg: Config, index: int, job: Config) -> str:
    q = shlex.quote
    lines = [
        "set -eu",
        f"d=$(mktemp -d -p {q(cfg['scratch'])})",
        'cd "$d"',
    ]
    for name, source in job["inputs"].items():
        lines.append(f"curl -sSf -o {q(name)} {q(cfg['http_base'] + source)}")
    lines.append(f"{q(cfg['ffmpeg'])} -nostdin -y -loglevel error {job['command']}")
    lines.append(
        f"{q(cfg['aws'])} s3 cp --quiet --endpoint-url {q(cfg['s3_endpoint'])} "
        f"{q(job['output'])} {q('s3://' + cfg['bucket'] + '/' + _key(cfg, index, job['output']))}"
    )
    lines.append('cd / && rm -rf "$d"')
    return "\n".join(lines)


async def run_shell(cfg: Config) -> None:
    slots = asyncio.Semaphore(cfg["concurrency"])
    Path(cfg["scratch"]).mkdir(parents=True, exist_ok=True)

    async def one(index: int, job: Config) -> None:
        async with slots:
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", shell_script(cfg, index, job), stdin=asyncio.subprocess.DEVNULL
            )
            if await proc.wait() != 0:
                raise RuntimeError(f"shell pipeline failed on job {index}")

    async with asyncio.TaskGroup() as group:
        for index, job in enumerate(cfg["jobs"]):
            group.create_task(one(index, job))


# -- (c) replica of the original service ----------------------------------------

TASKS: dict[int, dict[str, Any]] = {}  # the original kept every task in one global dict


async def run_replica(cfg: Config) -> None:
    import aiohttp
    import boto3

    queue: asyncio.Queue[int] = asyncio.Queue()
    for index, job in enumerate(cfg["jobs"]):
        TASKS[index] = {"status": "queued", **job}
        queue.put_nowait(index)

    async def worker() -> None:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            task = TASKS[index]
            task["status"] = "downloading"
            work = _job_dir(cfg, index)
            async with aiohttp.ClientSession() as session:
                for name, source in task["inputs"].items():  # one after another
                    async with session.get(cfg["http_base"] + source) as resp:
                        resp.raise_for_status()
                        data = await resp.read()  # the whole file in memory
                    with open(work / name, "wb") as f:  # blocking write on the loop
                        f.write(data)
                    del data
            task["status"] = "processing"
            proc = await asyncio.create_subprocess_exec(
                cfg["ffmpeg"], "-y", *shlex.split(task["command"]), cwd=work,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"ffmpeg failed on job {index}: {err[-500:]!r}")
            task["status"] = "uploading"
            s3 = boto3.client("s3", endpoint_url=cfg["s3_endpoint"], region_name="us-east-1")
            s3.upload_file(  # blocking, in the coroutine
                str(work / task["output"]), cfg["bucket"], _key(cfg, index, task["output"])
            )
            shutil.rmtree(work)
            task["status"] = "done"

    async with asyncio.TaskGroup() as group:
        for _ in range(cfg["concurrency"]):
            group.create_task(worker())


# -- (d) ffmpeg_tasks -------------------------------------------------------------


FFMPEG_RUNS: list[float] = []  # seconds of each LocalExecutor.run() of the (d) variants


def _timed_executor_class() -> Any:
    from ffmpeg_tasks.executor.local import LocalExecutor

    class TimedExecutor(LocalExecutor):
        """LocalExecutor that records how long each ``run()`` took (slot wait included)."""

        async def run(self, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await super().run(*args, **kwargs)
            finally:
                FFMPEG_RUNS.append(time.perf_counter() - t0)

    return TimedExecutor


def make_manager(cfg: Config, concurrency: int) -> Any:
    from ffmpeg_tasks import TaskManager
    from ffmpeg_tasks.downloader.http import HttpDownloader
    from ffmpeg_tasks.storage.s3 import S3Storage

    timed_executor = _timed_executor_class()

    opts = cfg.get("options", {})
    storage = S3Storage(
        cfg["bucket"], prefix=cfg["run_id"], endpoint_url=cfg["s3_endpoint"], region="us-east-1"
    )
    executor = timed_executor(
        max_concurrency=concurrency, sandbox=opts.get("sandbox", "auto"), nice=opts.get("nice", 10)
    )
    return TaskManager(
        storage=storage,
        downloader=HttpDownloader(allow_private_networks=True),
        executor=executor,
        work_dir=cfg["scratch"],
        ffprobe=opts.get("ffprobe", True),
        max_concurrent_tasks=opts.get("slots"),
    )


async def run_library(cfg: Config) -> None:
    from ffmpeg_tasks import TaskStatus

    Path(cfg["scratch"]).mkdir(parents=True, exist_ok=True)
    async with make_manager(cfg, cfg["concurrency"]) as tm:
        ids = []
        for job in cfg["jobs"]:
            inputs = {name: cfg["http_base"] + source for name, source in job["inputs"].items()}
            task = await tm.register(job["command"], inputs, job["output"])
            ids.append(task.id)
        for task_id in ids:
            await tm.submit(task_id)
        for task_id in ids:
            task = await tm.wait(task_id)
            if task.status is not TaskStatus.COMPLETED:
                raise RuntimeError(f"task {task_id} {task.status.value}: {task.error}")


VARIANTS = {
    "a": run_floor,
    "a-io": run_bare_io,
    "b": run_shell,
    "c": run_replica,
    "d": run_library,
}


def measure(cfg: Config) -> dict[str, Any]:
    """Run ``cfg`` once and return its figures (CPU in seconds, RSS in MiB)."""
    runner = VARIANTS.get(cfg["variant"]) or VARIANTS[cfg["variant"][0]]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    asyncio.run(runner(cfg))
    wall = time.perf_counter() - t0
    s1 = resource.getrusage(resource.RUSAGE_SELF)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    host_cpu = (s1.ru_utime - s0.ru_utime) + (s1.ru_stime - s0.ru_stime)
    child_cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    figures = {"ffmpeg_runs_s": sum(FFMPEG_RUNS)} if FFMPEG_RUNS else {}
    return figures | {
        "wall": wall,
        "host_cpu": host_cpu,
        "host_process_cpu": s1.ru_utime + s1.ru_stime,  # its whole life, imports included
        "child_cpu": child_cpu,
        "cpu": host_cpu + child_cpu,
        "rss_mib": s1.ru_maxrss / 1024,
        "rss_start_mib": rss_before,
        "child_rss_mib": c1.ru_maxrss / 1024,
    }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    if cfg["variant"][0] == "d":
        # imported before the clock starts, as a host app does at startup (and as the
        # other variants import aiohttp, aiobotocore or boto3)
        import ffmpeg_tasks
        import ffmpeg_tasks.storage.s3  # noqa: F401 - aiobotocore: ~0.15 s on first import
    elif cfg["variant"] == "a-io":
        import aiobotocore.session  # noqa: F401
        import aiohttp
    elif cfg["variant"][0] == "c":
        import aiohttp  # noqa: F401
        import boto3  # noqa: F401
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    print(json.dumps(measure(cfg)))


if __name__ == "__main__":
    main()
