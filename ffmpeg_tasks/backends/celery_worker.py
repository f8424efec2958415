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
import enum
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
#: Seconds before a message whose task another worker runs is looked at again.
RECHECK_AFTER = 30
#: Runs of one task (each ended by its worker's death) before it fails as ``interrupted``.
MAX_RUNS = 5

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
        try:
            self.manager: TaskManager = self.call(self._open(factory))
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            raise
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
        await asyncio.sleep(grace)
        try:
            await self.manager.aclose(release=True)  # runs here go back; new ones refused
        except Exception:
            log.exception("releasing running tasks at shutdown failed")

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


class _Outcome(enum.Enum):
    DONE = "done"  # ran here, or nothing is left to do: acknowledge
    LATER = "later"  # another worker runs it: look again later, never forget it
    AGAIN = "again"  # put the message back at once (a shutdown, a release)


def run_job(job: Any, task_id: str) -> dict[str, Any]:
    """The body of the Celery task: run (or take over) one task, or put its message back.

    A message is acknowledged only when the task is finished or was run here: one
    whose task another live worker runs is sent again after ``RECHECK_AFTER`` s (so a
    crash of that worker later is still recovered); anything unexpected (the store
    unreachable, a broken manager) puts it back too, after a pause.
    """
    from celery.exceptions import Reject

    try:
        rt = runtime()
        if rt.closing:
            raise Reject("the worker is shutting down", requeue=True)
        outcome, detail = rt.call(_job(rt.manager, task_id))
        if outcome is _Outcome.DONE:
            return {"task_id": task_id, **detail}
        if outcome is _Outcome.AGAIN or rt.closing:
            raise Reject(f"task {task_id}: {detail.get('reason', 'put back')}", requeue=True)
        log.info("task %s: %s; looking again in %ss", task_id, detail["reason"], RECHECK_AFTER)
        raise job.retry(countdown=RECHECK_AFTER, max_retries=None)
    except Exception as exc:
        if type(exc).__module__.startswith("celery."):  # Reject, Retry: Celery's signals
            raise
        log.error("task %s: the worker could not handle it (%r); retrying", task_id, exc)
        raise job.retry(countdown=RECHECK_AFTER, max_retries=None) from exc


async def _job(manager: TaskManager, task_id: str) -> tuple[_Outcome, dict[str, Any]]:
    try:
        task = await manager.status(task_id)
    except TaskNotFoundError:
        return _Outcome.DONE, {"skipped": "no such task (purged?)"}
    if task.status.is_terminal:
        return _Outcome.DONE, {"skipped": f"already {task.status.value}"}
    takeover: str | bool = False
    if task.status is TaskStatus.RUNNING:
        if task.worker == manager.worker_id or not await owner_gone(manager, task):
            return _Outcome.LATER, {"reason": f"running on {task.worker}"}
        if task.attempts.get("run", 0) >= MAX_RUNS:
            failed = await manager.fail_interrupted(task_id, runs=MAX_RUNS)
            return _Outcome.DONE, {"status": failed.status.value, "error_code": "interrupted"}
        log.info("task %s: its worker %s is gone; taking it over", task_id, task.worker)
        takeover = task.worker or False  # from that run only, not a newer one
    try:
        final = await manager.execute(task_id, takeover=takeover)
    except InvalidTaskStateError as exc:
        if manager.closed:
            return _Outcome.AGAIN, {"reason": "the worker is shutting down"}
        return _Outcome.LATER, {"reason": str(exc)}  # started elsewhere meanwhile
    if final.status is TaskStatus.PENDING:  # released by a shutdown: run it elsewhere
        return _Outcome.AGAIN, {"reason": "released by a shutdown"}
    return _Outcome.DONE, {"status": final.status.value, "error_code": final.error_code}


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
    visibility = os.environ.get("FFMPEG_TASKS_VISIBILITY_TIMEOUT")
    app = make_app(
        args.queue,
        queue=args.queue_name,
        **({"visibility_timeout": int(visibility)} if visibility else {}),
    )
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
