"""Celery worker side: one event loop thread and one ``TaskManager`` per worker process.

Celery tasks are plain functions run by its pool threads; the job ``ffmpeg_tasks.run_task``
hands ``TaskManager.execute(task_id, takeover=True)`` to the process's loop thread and
waits for it.  The manager comes from :func:`set_manager_factory`, else from
``TaskManager.from_env`` (the variables of ``docs/configuration.md``).

Shutdown: on SIGTERM (Celery's warm shutdown) running tasks get ``FFMPEG_TASKS_SHUTDOWN_GRACE``
seconds (default 60), then go back to PENDING and their messages back to the queue, so
another worker runs them; on a cold shutdown at once.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import InvalidTaskStateError, TaskNotFoundError
from ..models import Task, TaskStatus
from ..transitions import worker_is_dead, worker_is_local
from .celery import JOB_NAME, make_app

if TYPE_CHECKING:
    from ..manager import TaskManager

__all__ = [
    "WorkerRuntime",
    "celery_main",
    "connect_signals",
    "register_job",
    "run_job",
    "runtime",
    "set_manager_factory",
]

log = logging.getLogger("ffmpeg_tasks.worker")

T = TypeVar("T")


#: A task RUNNING on another host is taken over when its store record has not
#: changed for this many seconds (a running task's record changes every few seconds).
TAKEOVER_AFTER = 15.0

_factory: Callable[[], TaskManager] | None = None
_runtime: WorkerRuntime | None = None
_lock = threading.Lock()


def set_manager_factory(factory: Callable[[], TaskManager] | None) -> None:
    """Use ``factory()`` to make each worker process's manager (None: ``from_env``)."""
    global _factory
    _factory = factory


def _default_manager() -> TaskManager:
    from ..manager import TaskManager

    return TaskManager.from_env(os.environ)


class WorkerRuntime:
    """The loop thread and the manager of one worker process."""

    def __init__(self, factory: Callable[[], TaskManager], *, shutdown_grace: float) -> None:
        self.pid = os.getpid()
        self.shutdown_grace = shutdown_grace
        self.closing = False
        self._releasing: concurrent.futures.Future[None] | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="ffmpeg-tasks-loop", daemon=True
        )
        self._thread.start()
        self.manager: TaskManager = self.call(self._open(factory))
        log.info("worker %s ready", self.manager.worker_id)

    @staticmethod
    async def _open(factory: Callable[[], TaskManager]) -> TaskManager:
        manager = factory()
        manager.on_interrupted = "requeue"
        await manager.__aenter__()
        return manager

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and wait for its result (from a pool thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def shutting_down(self, warm: bool) -> None:
        """Celery stops: after the grace period (none when cold), running tasks go back."""
        if self.closing:
            return
        self.closing = True
        grace = self.shutdown_grace if warm else 0.0
        self._releasing = asyncio.run_coroutine_threadsafe(self._release_after(grace), self.loop)

    async def _release_after(self, grace: float) -> None:
        manager = self.manager
        await asyncio.sleep(grace)
        manager.release_on_cancel()
        for task in await manager.list(TaskStatus.RUNNING):
            if task.worker == manager.worker_id:
                await manager.release(task.id)

    def stop(self) -> None:
        """Close the manager (running tasks go back to PENDING) and the loop thread."""
        self.closing = True
        if self._releasing is not None:
            self._releasing.cancel()
        try:
            self.call(self.manager.aclose(release=True))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


def runtime() -> WorkerRuntime:
    """This process's runtime, made on first use (after a fork: a new one)."""
    global _runtime
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid():
            grace = float(os.environ.get("FFMPEG_TASKS_SHUTDOWN_GRACE", "60"))
            _runtime = WorkerRuntime(_factory or _default_manager, shutdown_grace=grace)
        return _runtime


def run_job(job: Any, task_id: str) -> dict[str, Any]:
    """The body of the Celery task: run (or take over) one task, or put its message back."""
    from celery.exceptions import Reject

    rt = runtime()
    if rt.closing:
        raise Reject("the worker is shutting down", requeue=True)
    outcome = rt.call(_job(rt.manager, task_id))
    if isinstance(outcome, str):
        log.info("task %s: nothing to do (%s)", task_id, outcome)
        return {"task_id": task_id, "skipped": outcome}
    if outcome.status is TaskStatus.PENDING:  # released by a shutdown: run it elsewhere
        raise Reject(f"task {task_id} released", requeue=True)
    return {
        "task_id": task_id,
        "status": outcome.status.value,
        "error_code": outcome.error_code,
    }


async def _job(manager: TaskManager, task_id: str) -> Task | str:
    try:
        task = await manager.status(task_id)
        if task.status.is_terminal:
            return f"already {task.status.value}"
        if task.status is TaskStatus.RUNNING and task.worker != manager.worker_id:
            if not await owner_gone(manager, task):
                return f"running on {task.worker}"
            log.info("task %s: its worker %s is gone; taking it over", task_id, task.worker)
        return await manager.execute(task_id, takeover=True)
    except (InvalidTaskStateError, TaskNotFoundError) as exc:
        return str(exc)


async def owner_gone(
    manager: TaskManager, task: Task, *, quiet_for: float = TAKEOVER_AFTER
) -> bool:
    """True when the process running ``task`` is gone.

    On this host: its pid.  Elsewhere: its store record, which a live run rewrites
    every few seconds (progress, heartbeat), stays unchanged for ``quiet_for`` s.
    """
    if task.worker is None:
        return True
    if worker_is_local(task.worker):
        return worker_is_dead(task.worker)
    loop = asyncio.get_running_loop()
    until = loop.time() + quiet_for
    while loop.time() < until:
        await asyncio.sleep(1.0)
        current = await manager.status(task.id)
        if current.version != task.version:
            return False  # it moved on: alive, or finished by its owner
    return True


def register_job(app: Any) -> Any:
    """Register the job ``ffmpeg_tasks.run_task`` on your own Celery ``app``."""

    @app.task(name=JOB_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def run_task(self: Any, task_id: str) -> dict[str, Any]:
        return run_job(self, task_id)

    connect_signals()
    return run_task


# -- Celery signals -----------------------------------------------------------------


def connect_signals() -> None:
    """Start the runtime when the worker is ready; release tasks when it stops (idempotent)."""
    from celery import signals

    signals.worker_ready.connect(_on_ready, weak=False, dispatch_uid="ffmpeg_tasks.ready")
    signals.worker_shutting_down.connect(
        _on_shutting_down, weak=False, dispatch_uid="ffmpeg_tasks.shutting_down"
    )
    signals.worker_shutdown.connect(_on_shutdown, weak=False, dispatch_uid="ffmpeg_tasks.shutdown")


def _on_ready(sender: Any = None, **_: Any) -> None:
    rt = runtime()
    queues = getattr(getattr(sender, "app", None), "amqp", None)
    names = sorted(queues.queues) if queues is not None else []
    log.info("worker %s ready on queue %s", rt.manager.worker_id, ", ".join(names) or "?")


def _on_shutting_down(how: str = "Warm", **_: Any) -> None:
    if _runtime is not None and _runtime.pid == os.getpid():
        _runtime.shutting_down(warm=how != "Cold")


def _on_shutdown(**_: Any) -> None:
    global _runtime
    if _runtime is not None and _runtime.pid == os.getpid():
        try:
            _runtime.stop()
        finally:
            _runtime = None


# -- registration: Celery imports this module in its workers ----------------------


def _register_shared() -> None:
    try:
        from celery import shared_task
    except ImportError:  # imported for its helpers without celery installed
        return

    @shared_task(name=JOB_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def run_task(self: Any, task_id: str) -> dict[str, Any]:
        return run_job(self, task_id)

    connect_signals()


_register_shared()


# -- command line -------------------------------------------------------------------


def celery_main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``ffmpeg-tasks worker --engine celery``: a Celery worker (threads pool) on the queue."""
    os.environ.update(env)
    os.environ["FFMPEG_TASKS_SHUTDOWN_GRACE"] = str(args.shutdown_grace)
    app = make_app(args.queue, queue=args.queue_name)
    argv = [
        "worker",
        "-Q",
        args.queue_name,
        "-c",
        str(args.concurrency),
        "--pool",
        "threads",
        "--loglevel",
        "INFO" if args.verbose else "WARNING",
        "-n",
        f"ffmpeg-tasks-{os.getpid()}@{socket.gethostname()}",
        "--without-gossip",
        "--without-mingle",
    ]
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
