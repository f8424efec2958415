"""Worker processes: a saq ``Worker`` whose job runs ``TaskManager.execute``.

    async def main() -> None:
        await run_worker(lambda: TaskManager(store=RedisTaskStore(URL), storage=...),
                         "redis://127.0.0.1:6379/0", concurrency=2)

or from the command line::

    ffmpeg-tasks worker --queue redis://… --store redis://… --s3-bucket B

Each worker process opens ONE ``TaskManager`` (in saq's startup hook) and closes it
on shutdown.  The job function ``ffmpeg_tasks.run_task(ctx, *, task_id)`` beats the
saq heartbeat while ``execute(task_id, takeover=True)`` runs; a task that is already
finished (cancelled while queued, completed by an earlier run) is "nothing to do".
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._lifecycle import cancel_and_wait, run_to_end
from ..errors import ConfigurationError, FFmpegTasksError, InvalidTaskStateError, TaskNotFoundError
from .saq import JOB_FUNCTION, SaqBackend, make_queue

if TYPE_CHECKING:
    import saq

    from ..manager import TaskManager

__all__ = ["add_worker_parser", "run_task", "run_worker", "worker_main"]

log = logging.getLogger("ffmpeg_tasks.worker")  # the name operators already filter on

MANAGER_KEY = "ffmpeg_tasks_manager"
"""Where the worker's TaskManager lives in saq's context dict."""


async def run_task(ctx: Mapping[str, Any], *, task_id: str) -> dict[str, Any]:
    """The saq job: run (or take over) one task with the worker's manager.

    Returns a small summary stored as the job result.  Never raises for a task that
    failed (that is a result); raises only if the manager itself cannot work, so saq
    retries the job.
    """
    manager: TaskManager = ctx[MANAGER_KEY]
    job = ctx.get("job")
    beat = asyncio.create_task(_heartbeat(job)) if job is not None else None
    run = asyncio.ensure_future(manager.execute(task_id, takeover=True))
    try:
        task = await asyncio.shield(run)
    except (InvalidTaskStateError, TaskNotFoundError) as exc:
        log.info("task %s: nothing to do (%s)", task_id, exc)
        return {"task_id": task_id, "skipped": str(exc)}
    except asyncio.CancelledError:
        # saq stopped the job: a caller's cancel(), or saq's own reasons (sweep,
        # shutdown), after which the job runs again and the task must be PENDING.
        if beat is not None:
            beat.cancel()  # a heartbeat write must not race with the abort mark
        if not run.done():
            await _settle(_stop(manager, task_id))
        elif not run.cancelled():
            run.exception()  # retrieved: the job is cancelled either way
        raise
    finally:
        if beat is not None:
            await cancel_and_wait(beat)
    return {"task_id": task_id, "status": task.status.value, "error_code": task.error_code}


async def _stop(manager: TaskManager, task_id: str) -> None:
    """The job was stopped: record CANCELLED if a caller asked, else put the task back.

    saq also stops jobs for its own reasons (its sweep, a job timeout, a shutdown);
    the job then runs again, so the task must be PENDING, not CANCELLED.
    """
    try:
        requested = (await manager.status(task_id)).cancel_requested
    except Exception:  # cannot tell: keep the task rather than lose it
        log.warning("task %s: cannot read it; putting it back", task_id, exc_info=True)
        requested = False
    if requested:
        await manager.cancel(task_id)
    else:
        log.info("task %s: job stopped by saq, not cancelled; the task goes back", task_id)
        await manager.release(task_id)


async def _settle(aw: Awaitable[Any]) -> None:
    """Run ``aw`` to the end even if the job is cancelled again meanwhile."""
    done = await run_to_end(aw)
    if not done.cancelled() and (error := done.exception()) is not None:
        log.warning("stopping a stopped job's task failed", exc_info=error)


async def _heartbeat(job: Any) -> None:
    """Touch the saq job a few times per heartbeat period so the sweep leaves it alone."""
    period = int(getattr(job, "heartbeat", 0) or 0)
    if period <= 0:
        return
    while True:
        await asyncio.sleep(max(period / 3, 0.2))
        try:
            await job.update()
        except Exception:
            log.warning("heartbeat of job %s failed", getattr(job, "key", "?"), exc_info=True)


async def run_worker(
    manager_factory: Callable[[], TaskManager],
    queue: saq.Queue | str,
    *,
    concurrency: int = 2,
    name: str = "ffmpeg_tasks",
    sweep_interval: int = 10,
    abort_interval: int = 1,
    shutdown_grace: int = 60,
    burst: bool = False,
) -> None:
    """Run a saq worker until SIGINT/SIGTERM (or, with ``burst``, until the queue is empty).

    ``queue`` is a ``saq.Queue`` or a URL (``redis://…`` / ``postgresql://…``; the
    queue is named ``name``).  ``manager_factory`` is called once, inside the worker's
    event loop; a manager without a backend gets a ``SaqBackend`` on this queue, so
    its events reach the API processes.  Worker managers requeue interrupted tasks
    (``on_interrupted="requeue"``): the queue's retries decide what runs again.
    ``sweep_interval``: seconds between sweeps for jobs whose heartbeat stopped.
    ``shutdown_grace``: seconds running tasks get to finish on SIGTERM; tasks still
    running then are stopped and go back to PENDING (the queue runs them again).
    """
    saq_mod = _saq()
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be >= 1, got {concurrency!r}")
    owns_queue = isinstance(queue, str)
    q: saq.Queue = make_queue(queue, name=name) if isinstance(queue, str) else queue

    async def startup(ctx: dict[str, Any]) -> None:
        manager = manager_factory()
        if manager.backend is None:
            manager.backend = SaqBackend(q, requeue_on_start=False)
        manager.on_interrupted = "requeue"
        await manager.__aenter__()
        ctx[MANAGER_KEY] = manager
        log.info("worker %s ready on queue %r", manager.worker_id, q.name)

    async def shutdown(ctx: dict[str, Any]) -> None:
        manager = ctx.pop(MANAGER_KEY, None)
        if manager is not None:
            await manager.aclose(release=True)

    worker = _worker_class(saq_mod)(
        q,
        functions=[(JOB_FUNCTION, run_task)],
        concurrency=concurrency,
        startup=startup,
        shutdown=shutdown,
        timers={"sweep": sweep_interval, "abort": abort_interval},
        dequeue_timeout=1.0,
        burst=burst,
        shutdown_grace_period_s=shutdown_grace,
    )
    await q.connect()
    try:
        await worker.start()
    finally:
        if owns_queue:
            await q.disconnect()


def _worker_class(saq_mod: Any) -> Any:
    """saq's Worker, stopping its upkeep loops at once on shutdown.

    saq's ``stop`` waits ``shutdown_grace`` for every task, including upkeep loops
    that sleep up to 10 s, so an idle worker would always take the whole grace
    period to stop.  Running jobs still get the grace period.
    """

    class Worker(saq_mod.Worker):  # type: ignore[misc]
        async def stop(self) -> None:
            manager = self.context.get(MANAGER_KEY)
            if manager is not None:
                manager.release_on_cancel()  # jobs cancelled by the shutdown run again later
            self.event.set()
            for task in list(self.tasks):
                if task.get_name() != "process":
                    task.cancel()
            await super().stop()

    return Worker


def _saq() -> Any:
    try:
        import saq
    except ImportError as exc:
        raise ConfigurationError(
            f"the worker needs saq ({exc}); install ffmpeg-tasks[saq]"
        ) from None
    return saq


# -- command line -----------------------------------------------------------------


def add_worker_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``worker`` subcommand to an argparse subparsers object; returns its parser.

    The parser's default ``func`` is :func:`worker_main`.
    """
    env = os.environ
    p: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="run a worker that executes submitted tasks (saq or Celery)",
        description="Run tasks submitted with a SaqBackend or a CeleryBackend.  "
        "Stop with SIGTERM or Ctrl-C.",
    )
    p.add_argument(
        "--engine",
        choices=("saq", "celery"),
        default=env.get("FFMPEG_TASKS_ENGINE", "saq"),
        help="the job engine: saq (default) or celery (env FFMPEG_TASKS_ENGINE)",
    )
    p.add_argument(
        "--queue",
        default=env.get("FFMPEG_TASKS_QUEUE"),
        help="saq: redis://… or postgresql://…; celery: the broker, amqp://… or redis://… "
        "(env FFMPEG_TASKS_QUEUE)",
    )
    p.add_argument(
        "--queue-name",
        default=env.get("FFMPEG_TASKS_QUEUE_NAME"),
        help="queue name (default: ffmpeg_tasks for saq, ffmpeg-tasks for celery; "
        "env FFMPEG_TASKS_QUEUE_NAME)",
    )
    p.add_argument(
        "--store",
        default=env.get("FFMPEG_TASKS_STORE"),
        help="shared task store: redis://…, postgresql://… or a SQLite path "
        "(env FFMPEG_TASKS_STORE)",
    )
    p.add_argument(
        "--store-prefix",
        default=env.get("FFMPEG_TASKS_STORE_PREFIX"),
        help="Redis key prefix or PostgreSQL table of the store (env FFMPEG_TASKS_STORE_PREFIX)",
    )
    p.add_argument("--concurrency", type=int, default=2, help="tasks at once (default 2)")
    p.add_argument("--s3-bucket", help="store outputs in this S3 bucket")
    p.add_argument("--s3-prefix", default="", help="key prefix inside the bucket")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (MinIO, R2 …)")
    p.add_argument("--region", help="the bucket's region")
    p.add_argument("--storage-dir", help="store outputs in this local directory")
    p.add_argument(
        "--allow-private-networks",
        action="store_true",
        help="let inputs come from private / loopback addresses",
    )
    p.add_argument("--sweep-interval", type=int, default=10, help="seconds between sweeps")
    p.add_argument(
        "--shutdown-grace",
        type=int,
        default=60,
        help="seconds running tasks get to finish on SIGTERM before they go back to the "
        "queue (default 60)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    p.set_defaults(func=worker_main)
    return p


def worker_settings(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """The environment ``TaskManager.from_env`` reads, with the command line applied on top."""
    if not args.queue:
        raise ConfigurationError("--queue (or FFMPEG_TASKS_QUEUE) is required")
    if not args.store or args.store == "memory":
        raise ConfigurationError(
            "a worker needs a shared task store: --store redis://…, postgresql://… or a "
            f"SQLite path (got {args.store!r})"
        )
    if args.concurrency < 1:
        raise ConfigurationError(f"--concurrency must be >= 1, got {args.concurrency!r}")
    if getattr(args, "shutdown_grace", 0) < 0:
        raise ConfigurationError(f"--shutdown-grace must be >= 0, got {args.shutdown_grace!r}")
    if args.s3_bucket and args.storage_dir:
        raise ConfigurationError("use either --s3-bucket or --storage-dir, not both")
    merged = dict(env)
    merged["FFMPEG_TASKS_STORE"] = args.store
    if getattr(args, "store_prefix", None):
        merged["FFMPEG_TASKS_STORE_PREFIX"] = args.store_prefix
    merged["FFMPEG_TASKS_MAX_CONCURRENCY"] = str(args.concurrency)
    if args.s3_bucket:
        merged["S3_BUCKET"] = args.s3_bucket
        merged["S3_PREFIX"] = args.s3_prefix
        if args.endpoint_url:
            merged["AWS_ENDPOINT_URL"] = args.endpoint_url
        if args.region:
            merged["AWS_REGION"] = args.region
    elif args.storage_dir:
        merged.pop("S3_BUCKET", None)
        merged["FFMPEG_TASKS_STORAGE_DIR"] = args.storage_dir
    if args.allow_private_networks:
        merged["FFMPEG_TASKS_ALLOW_PRIVATE_NETWORKS"] = "1"
    return merged


def worker_main(args: argparse.Namespace) -> int:
    """Run the worker the parsed ``args`` describe; 0 after a clean stop, 2 on bad settings."""
    from ..manager import TaskManager

    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    engine = getattr(args, "engine", "saq")
    if not args.queue_name:
        args.queue_name = "ffmpeg-tasks" if engine == "celery" else "ffmpeg_tasks"
    try:
        env = worker_settings(args, os.environ)
        if engine == "celery":
            from .celery_worker import celery_main

            return celery_main(args, env)
    except FFmpegTasksError as exc:
        print(f"ffmpeg-tasks worker: {exc}", file=sys.stderr)
        return 2

    def factory() -> TaskManager:
        return TaskManager.from_env(env)

    try:
        asyncio.run(
            run_worker(
                factory,
                args.queue,
                concurrency=args.concurrency,
                name=args.queue_name,
                sweep_interval=args.sweep_interval,
                shutdown_grace=args.shutdown_grace,
            )
        )
    except FFmpegTasksError as exc:
        print(f"ffmpeg-tasks worker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
