"""saq and Celery side by side: recovery after kill -9, cancel latency, throughput, host CPU.

    python -m benchmarks.engines [--tasks 200] [--rounds 3] [--engines saq-redis celery-rabbitmq …]

For each engine, on this machine, with the same media and the same store (Redis):
- throughput: ``--tasks`` one-frame tasks submitted at once to 2 worker processes
  (concurrency 2 each), wall time from the first submit to the last COMPLETED;
- host CPU per task on the submitting side: the benchmark process's own CPU
  (``getrusage``) for ``register`` + ``submit``, and for the whole run (waiting included);
- recovery: a 4 s task, its worker killed with kill -9 mid-run, time from the kill to
  COMPLETED on the other worker (``--rounds`` times);
- cancel: ``cancel()`` of a running task from the submitting process, time until it
  returns CANCELLED and until no ffmpeg runs under the worker.
Engine settings are each engine's defaults as documented (saq: heartbeat 10 s, sweep
10 s; Celery: late acks; Redis broker visibility timeout 30 s here, 1 h by default).
Needs Redis, PostgreSQL and RabbitMQ on 127.0.0.1 (as the tests do).  Prints Markdown.
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
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.services import free_port
from ffmpeg_tasks import TaskStatus
from ffmpeg_tasks.backends import CeleryBackend, SaqBackend
from ffmpeg_tasks.store import RedisTaskStore
from ffmpeg_tasks.testing import Conformance, EngineSetup, WorkerProcesses
from ffmpeg_tasks.testing.conformance import SLOW, ffmpeg_under, worker_pid

REDIS = "redis://127.0.0.1:6379/0"
CELERY_REDIS = "redis://127.0.0.1:6379/1"
PG = "postgresql://postgres@127.0.0.1:5432/test"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"
ONE_FRAME = "-i in.mp4 -frames:v 1 -update 1 out.png"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cli(engine: str, queue: str, name: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ffmpeg_tasks", "worker", "--engine", engine, "--queue", queue,
        "--queue-name", name, "--store", REDIS, "--store-prefix", name,
        "--storage-dir", str(out), "--allow-private-networks", "--shutdown-grace", "5",
        "--concurrency", "2", "-v", *extra,
    ]  # fmt: skip


def engines(name: str, out: Path) -> dict[str, EngineSetup]:
    store = lambda: RedisTaskStore(REDIS, prefix=name)  # noqa: E731
    return {
        "saq-redis": EngineSetup(
            name="saq-redis",
            backend=lambda: SaqBackend(REDIS, name=name),
            store=store,
            worker_argv=cli("saq", REDIS, name, out),
        ),
        "saq-postgres": EngineSetup(
            name="saq-postgres",
            backend=lambda: SaqBackend(PG, name=name),
            store=store,
            worker_argv=cli("saq", PG, name, out),
        ),
        "celery-rabbitmq": EngineSetup(
            name="celery-rabbitmq",
            backend=lambda: CeleryBackend(AMQP, queue=name),
            store=store,
            worker_argv=cli("celery", AMQP, name, out),
        ),
        "celery-redis": EngineSetup(
            name="celery-redis",
            backend=lambda: CeleryBackend(CELERY_REDIS, queue=name, visibility_timeout=30),
            store=store,
            worker_argv=cli("celery", CELERY_REDIS, name, out),
            worker_env={"FFMPEG_TASKS_VISIBILITY_TIMEOUT": "30"},
        ),
    }


async def measure(setup: EngineSetup, kit: Conformance, tasks: int, rounds: int) -> dict[str, Any]:
    manager = kit.manager
    result: dict[str, Any] = {}
    workers = WorkerProcesses(setup, kit.log_dir)
    try:
        for _ in range(2):
            await workers.spawn()
        # throughput and host CPU
        inputs = {"in.mp4": kit.input_url}
        c0, t0 = cpu(), time.perf_counter()
        ids = []
        for _ in range(tasks):
            task = await manager.register(ONE_FRAME, inputs, "out.png")
            await manager.submit(task.id)
            ids.append(task.id)
        c1 = cpu()
        finals = [await manager.wait(i, timeout=600) for i in ids]
        t2, c2 = time.perf_counter(), cpu()
        bad = [f for f in finals if f.status is not TaskStatus.COMPLETED]
        if bad:
            raise RuntimeError(f"{setup.name}: {len(bad)} tasks did not complete: {bad[0]!r}")
        result["throughput"] = tasks / (t2 - t0)
        result["wall"] = t2 - t0
        result["submit_cpu_ms"] = (c1 - c0) / tasks * 1000
        result["total_cpu_ms"] = (c2 - c0) / tasks * 1000
        # cancel latency
        cancels, stops = [], []
        for _ in range(rounds):
            task = await manager.register(SLOW.format(t=10), inputs, "out.mp4")
            await manager.submit(task.id)
            running = await kit.wait_running(task.id)
            pid = worker_pid(running)
            start = time.perf_counter()
            done = await manager.cancel(task.id)
            cancels.append(time.perf_counter() - start)
            while ffmpeg_under(pid):
                await asyncio.sleep(0.02)
            stops.append(time.perf_counter() - start)
            assert done.status is TaskStatus.CANCELLED, done
        result["cancel"] = statistics.median(cancels)
        result["cancel_ffmpeg_gone"] = statistics.median(stops)
        # recovery after kill -9 (a new worker replaces the killed one each round)
        recoveries = []
        for _ in range(rounds):
            task = await manager.register(SLOW.format(t=4), inputs, "out.mp4")
            await manager.submit(task.id)
            running = await kit.wait_running(task.id)
            victim = worker_pid(running)
            os.kill(victim, signal.SIGKILL)
            killed = time.perf_counter()
            final = await kit.wait_finished(task.id, timeout=600)
            recoveries.append(time.perf_counter() - killed)
            assert final.status is TaskStatus.COMPLETED, final
            await workers.spawn()
        result["recovery"] = statistics.median(recoveries)
        result["recovery_range"] = (min(recoveries), max(recoveries))
    finally:
        await workers.stop_all()
    return result


async def main(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    media = scratch / "media"
    media.mkdir()
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=320x240:rate=25:duration=10", "-c:v", "libx264", "-preset",
         "ultrafast", "-pix_fmt", "yuv420p", str(media / "clip.mp4")],
        check=True,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fileserver", str(media), str(port)],
        start_new_session=True,
    )
    await asyncio.sleep(1.0)
    rows = []
    try:
        for engine in args.engines:
            name = f"bench{uuid.uuid4().hex[:8]}"
            out = scratch / name
            setup = engines(name, out)[engine]
            kit = Conformance(
                setup,
                input_url=f"http://127.0.0.1:{port}/media/clip.mp4",
                storage_dir=out,
                log_dir=scratch,
            )
            async with kit:
                rows.append((engine, await measure(setup, kit, args.tasks, args.rounds)))
            print(f"{engine}: {rows[-1][1]}", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"| engine | {args.tasks} one-frame tasks, 2 workers | tasks/s | submit CPU/task "
        "| host CPU/task incl. waiting | cancel() returns | ffmpeg gone | kill -9 → completed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for engine, r in rows:
        lo, hi = r["recovery_range"]
        print(
            f"| {engine} | {r['wall']:.1f} s | {r['throughput']:.1f} | {r['submit_cpu_ms']:.1f} ms "
            f"| {r['total_cpu_ms']:.1f} ms | {r['cancel']:.2f} s | {r['cancel_ffmpeg_gone']:.2f} s "
            f"| {r['recovery']:.1f} s ({lo:.1f} to {hi:.1f}) |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["saq-redis", "saq-postgres", "celery-rabbitmq", "celery-redis"],
    )
    asyncio.run(main(parser.parse_args()))
