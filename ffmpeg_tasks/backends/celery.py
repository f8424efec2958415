"""``CeleryBackend``: run submitted tasks on Celery workers (RabbitMQ or Redis broker).

    backend = CeleryBackend("amqp://guest:guest@127.0.0.1:5672//", queue="ffmpeg-tasks")
    async with TaskManager(store=RedisTaskStore(...), backend=backend) as manager:
        task = await manager.register(...)
        await manager.submit(task.id)          # sends Celery task "ffmpeg_tasks.run_task"

Workers: ``ffmpeg-tasks worker --engine celery --queue <broker URL> --queue-name <name>
--store …`` or ``celery -A ffmpeg_tasks.backends.celery worker -Q <name>`` with the
settings in environment variables (``FFMPEG_TASKS_QUEUE`` is the broker URL, the rest as
for ``TaskManager.from_env``).  See :mod:`ffmpeg_tasks.backends.celery_worker`.

One message per task, acknowledged late and rejected back to the queue when its worker
is lost, so a worker killed mid-run leaves the message to the broker: RabbitMQ hands it
to another worker as soon as the connection drops; Redis does after its visibility
timeout (``visibility_timeout``, one hour by default here) plus up to 10 s — and hands
a task that runs longer than that to a second worker, which leaves it alone while its
owner's store heartbeat goes on.  The next worker takes the
task over when its owner is gone (a dead process on the same host, or no store
heartbeat for ``takeover_after`` seconds), and does nothing when the owner still runs
it.  ``cancel()`` flags the task in the store, which the running worker reads every
second and stops ffmpeg; a queued message is revoked.  Celery has no pub/sub for
events here: ``events()`` in another process reads the shared store.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..events import Event
from ..models import Task, TaskStatus
from ..store.base import TaskStore
from .base import redact_url

if TYPE_CHECKING:
    import celery

__all__ = [
    "DEFAULT_QUEUE",
    "JOB_NAME",
    "WORKER_MODULE",
    "CeleryBackend",
    "celery_task_id",
    "make_app",
]

log = logging.getLogger("ffmpeg_tasks.celery")

JOB_NAME = "ffmpeg_tasks.run_task"
"""The Celery task name workers register the job under."""

WORKER_MODULE = "ffmpeg_tasks.backends.celery_worker"
"""Imported by Celery workers (``include``): registers the job and the worker's signals."""

DEFAULT_QUEUE = "ffmpeg-tasks"

#: Seconds a Redis broker waits before handing an unacknowledged message to another worker.
DEFAULT_VISIBILITY_TIMEOUT = 3600


def celery_task_id(task_id: str) -> str:
    """The Celery task id of a task's message (stable, so a revoke can name it)."""
    return f"ffmpeg-task-{task_id}"


def _import_celery() -> Any:
    try:
        import celery
    except ImportError as exc:
        raise ConfigurationError(
            f"CeleryBackend needs the celery package ({exc}); install ffmpeg-tasks[celery]"
        ) from None
    return celery


def make_app(
    broker_url: str | None = None,
    *,
    queue: str = DEFAULT_QUEUE,
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
) -> celery.Celery:
    """A Celery app configured for ffmpeg tasks; its workers import the job module.

    Late acknowledgement, reject on a lost worker, one message prefetched per worker
    slot, no result backend (results live in the task store), the threads pool (one
    event loop and one ``TaskManager`` per worker process).
    """
    celery_mod = _import_celery()
    if broker_url is not None and not broker_url.startswith(
        ("amqp://", "amqps://", "pyamqp://", "redis://", "rediss://", "memory://")
    ):
        raise ConfigurationError(
            f"unsupported Celery broker URL {redact_url(broker_url)!r}: use amqp://… or redis://…"
        )
    app = celery_mod.Celery("ffmpeg_tasks", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_default_queue=queue,
        task_ignore_result=True,
        result_backend=None,
        worker_pool="threads",
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # Redis: a message unacknowledged for visibility_timeout goes back to the queue,
        # checked every 10 s at most (kombu's default checks about every 100 s).
        include=[WORKER_MODULE],
        broker_transport_options={
            "confirm_publish": True,  # amqp: send_task returns once the broker has it
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": max(1, min(10, visibility_timeout // 2)),
            "unacked_restore_throttle": 1,
        },
    )
    return app


class CeleryBackend:
    """Submit tasks as Celery messages on ``queue``; the host's loop never blocks on the broker.

    ``app`` is a broker URL (the backend makes and closes its app) or a Celery app
    of yours (its workers must import ``ffmpeg_tasks.backends.celery_worker``, e.g.
    ``include=[WORKER_MODULE]``, and use the threads pool; ``visibility_timeout`` then
    is your app's setting).  ``abort_wait``:
    seconds ``cancel()`` waits for a running task to end.
    """

    engine = "celery"

    def __init__(
        self,
        app: celery.Celery | str,
        *,
        queue: str = DEFAULT_QUEUE,
        visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
        abort_wait: float = 30.0,
    ) -> None:
        self._owns_app = isinstance(app, str)
        self.app: celery.Celery = (
            make_app(app, queue=queue, visibility_timeout=visibility_timeout)
            if isinstance(app, str)
            else app
        )
        self.queue = queue
        self.abort_wait = abort_wait
        self._store: TaskStore | None = None
        # kombu blocks: its calls get threads of their own, not the loop's default pool
        self._broker = ThreadPoolExecutor(2, thread_name_prefix="ffmpeg-tasks-celery")

    def __repr__(self) -> str:
        return f"CeleryBackend(queue={self.queue!r})"

    async def start(self, store: TaskStore) -> None:
        """Remember the shared store; the broker connection opens with the first message."""
        self._store = store

    async def enqueue(self, task: Task) -> None:
        """Send the task's message (in a thread: kombu's client blocks)."""
        send = functools.partial(
            self.app.send_task,
            JOB_NAME,
            kwargs={"task_id": task.id},
            queue=self.queue,
            task_id=celery_task_id(task.id),
        )
        await asyncio.get_running_loop().run_in_executor(self._broker, send)

    async def abort(self, task: Task) -> None:
        """Revoke a queued message; wait (up to ``abort_wait`` s) until the task is finished.

        A running task was flagged ``cancel_requested`` by the manager: its worker
        reads the flag within a second and stops ffmpeg.
        """
        if task.status is TaskStatus.PENDING:  # a running task's message must survive
            revoke = functools.partial(self.app.control.revoke, celery_task_id(task.id))
            await asyncio.get_running_loop().run_in_executor(self._broker, revoke)
        if self._store is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.abort_wait
        while loop.time() < deadline:
            current = await self._store.get(task.id)
            if current is None or current.status.is_terminal:
                return
            await asyncio.sleep(0.25)

    async def publish(self, event: Event) -> None:
        """Events do not cross processes through Celery; other processes read the store."""

    def events(self, task_id: str) -> AsyncIterator[Event] | None:
        """None: the manager reads the shared store for events of remote tasks."""
        return None

    async def aclose(self) -> None:
        """Close the broker connections of an app the backend made."""
        try:
            if self._owns_app:
                await asyncio.get_running_loop().run_in_executor(self._broker, self.app.close)
        finally:
            self._broker.shutdown(wait=False)


def _app_from_env(env: Mapping[str, str]) -> celery.Celery:
    broker = env.get("FFMPEG_TASKS_QUEUE") or env.get("CELERY_BROKER_URL")
    queue = env.get("FFMPEG_TASKS_QUEUE_NAME", DEFAULT_QUEUE)
    visibility = int(env.get("FFMPEG_TASKS_VISIBILITY_TIMEOUT") or DEFAULT_VISIBILITY_TIMEOUT)
    return make_app(broker, queue=queue, visibility_timeout=visibility)


def __getattr__(name: str) -> Any:
    # ``celery -A ffmpeg_tasks.backends.celery worker`` reads ``app``: made on first use,
    # so importing this module never needs a broker setting or celery itself.
    if name == "app":
        made = _app_from_env(os.environ)
        globals()["app"] = made
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
