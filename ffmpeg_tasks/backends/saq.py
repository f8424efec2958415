"""``SaqBackend``: run submitted tasks on saq worker processes (Redis or PostgreSQL queue).

    backend = SaqBackend("redis://127.0.0.1:6379/0", name="ffmpeg")
    async with TaskManager(store=RedisTaskStore(...), backend=backend) as manager:
        task = await manager.register(...)
        await manager.submit(task.id)          # enqueues job "ffmpeg_tasks.run_task"

Workers run :func:`ffmpeg_tasks.backends.saq_worker.run_worker` on the same queue and store.

One saq job per task, keyed ``ffmpeg-task:<task id>`` so enqueueing twice is
harmless.  The job function beats the job's heartbeat while the task runs; when a
worker dies, saq's sweep (on any live worker) aborts the stale job and retries it,
and the next worker takes the task over.  ``cancel()`` marks the task
``cancel_requested`` in the store, then ``abort`` aborts the saq job, which cancels
the job coroutine on the worker (which records CANCELLED and stops ffmpeg).  A job
saq stops for its own reasons (its sweep can race with a worker that just took the
job) puts the task back to PENDING, and saq's retry runs it again.  Events cross
processes over Redis pub/sub on ``<prefix>:events:<task id>``; with a PostgreSQL
queue ``events()`` returns None and the manager polls the store instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .. import transitions
from .._lifecycle import AsyncResource, cancel_and_wait
from ..errors import ConfigurationError, InvalidTaskStateError
from ..events import Event, EventType
from ..models import Phase, Task, TaskStatus
from ..store.base import TaskStore
from .base import redact_url

if TYPE_CHECKING:
    import saq
    from redis.asyncio import Redis


__all__ = ["JOB_FUNCTION", "SaqBackend", "job_key", "make_queue"]

log = logging.getLogger("ffmpeg_tasks.saq")

JOB_FUNCTION = "ffmpeg_tasks.run_task"
"""The name workers register the job function under."""


_PROGRESS = (EventType.DOWNLOADING, EventType.RUNNING, EventType.UPLOADING)
_OUTBOX_SIZE = 1024


def job_key(task_id: str) -> str:
    """The saq job key of a task (one job per task)."""
    return f"ffmpeg-task:{task_id}"


def _import_saq() -> Any:
    try:
        import saq
        import saq.job
    except ImportError as exc:
        raise ConfigurationError(
            f"SaqBackend needs the saq package ({exc}); install ffmpeg-tasks[saq]"
        ) from None
    return saq


def make_queue(url: str, *, name: str = "ffmpeg_tasks") -> saq.Queue:
    """A saq queue from ``redis://…`` or ``postgresql://…``; the error names a bad URL."""
    saq_mod = _import_saq()
    if not url.startswith(("redis://", "rediss://", "unix://", "postgres://", "postgresql://")):
        raise ConfigurationError(
            f"unsupported saq queue URL {redact_url(url)!r}: use redis://… or postgresql://…"
        )
    if url.startswith("unix://"):
        from saq.queue.redis import RedisQueue

        return RedisQueue.from_url(url, name=name)
    try:
        return saq_mod.Queue.from_url(url, name=name)  # type: ignore[no-any-return]
    except ImportError as exc:  # saq's MissingDependencyError is an ImportError
        extra = "psycopg[binary,pool]" if url.startswith("postgres") else "redis"
        raise ConfigurationError(f"saq queue {redact_url(url)!r} needs {extra}: {exc}") from None


class SaqBackend(AsyncResource):
    """Submit tasks as saq jobs; share their events between processes.

    ``queue`` is a ``saq.Queue`` (not closed by the backend) or a URL (the backend
    creates the queue named ``name`` and closes it).  ``job_timeout`` is saq's hard
    limit in seconds (None: none; prefer the manager's ``timeout``).  ``heartbeat``:
    a job not touched for that many seconds is considered dead and swept.
    ``retries``: how many times saq runs the job at most, the first run included.
    ``events=False`` turns off cross-process events.  ``requeue_on_start``: on
    start, enqueue PENDING tasks that should have a job (see :meth:`start`); API
    processes want it, workers do not need it (saq's sweep retries their jobs).
    """

    engine = "saq"

    def __init__(
        self,
        queue: saq.Queue | str,
        *,
        job_timeout: int | None = None,
        heartbeat: int = 10,
        retries: int = 3,
        events: bool = True,
        name: str = "ffmpeg_tasks",
        channel_prefix: str | None = None,
        ttl: int = 600,
        progress_interval: float = 0.25,
        poll_interval: float = 2.0,
        abort_wait: float = 30.0,
        requeue_on_start: bool = True,
    ) -> None:
        if job_timeout is not None and job_timeout <= 0:
            raise ConfigurationError(f"job_timeout must be a positive int, got {job_timeout!r}")
        if heartbeat < 0:
            raise ConfigurationError(f"heartbeat must be >= 0 seconds, got {heartbeat!r}")
        if retries < 1:
            raise ConfigurationError(f"retries must be >= 1, got {retries!r}")
        self._owns_queue = isinstance(queue, str)
        self.queue: saq.Queue = make_queue(queue, name=name) if isinstance(queue, str) else queue
        _import_saq()
        self.job_timeout = job_timeout
        self.heartbeat = heartbeat
        self.retries = retries
        self.ttl = ttl
        self.events_enabled = events
        self.channel_prefix = channel_prefix or f"ffmpeg_tasks:{self.queue.name}"
        self.progress_interval = progress_interval
        self.poll_interval = poll_interval
        self.abort_wait = abort_wait
        self.requeue_on_start = requeue_on_start
        self._store: TaskStore | None = None
        self._redis: Redis | None = getattr(self.queue, "redis", None)
        self._outbox: asyncio.Queue[Event] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._last_progress: dict[tuple[str, str, str | None], float] = {}
        self._connected = False
        self._closed = False

    def __repr__(self) -> str:
        return f"SaqBackend(queue={self.queue.name!r}, redis={self._redis is not None})"

    def channel(self, task_id: str) -> str:
        """The Redis pub/sub channel of a task's events."""
        return f"{self.channel_prefix}:events:{task_id}"

    # -- Backend protocol -------------------------------------------------------

    async def start(self, store: TaskStore) -> None:
        """Connect the queue, then enqueue tasks that should be queued but may have no job.

        Those are PENDING tasks in phase QUEUED (an enqueue lost to a crash) and
        PENDING tasks that already ran (put back by ``recover()`` with
        ``on_interrupted="requeue"``).  Enqueueing is idempotent, so this is safe.
        """
        self._store = store
        await self.connect()
        if not self.requeue_on_start:
            return
        for task in await store.list(TaskStatus.PENDING):
            if task.phase is Phase.QUEUED:
                await self.enqueue(task)
            elif task.attempts.get("run", 0) > 0:
                queued = transitions.queue(task)
                if await store.replace(task, queued):
                    log.info("re-enqueueing interrupted task %s", task.id)
                    await self.enqueue(queued)

    async def connect(self) -> None:
        """Connect the queue (idempotent); called by ``start``."""
        if self._connected:
            return
        await self.queue.connect()
        self._connected = True

    async def enqueue(self, task: Task) -> None:
        """Enqueue the task's job; a job already queued or running for it is kept."""
        saq_mod = _import_saq()
        key = job_key(task.id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while True:
            job = await self.queue.enqueue(
                JOB_FUNCTION,
                task_id=task.id,
                key=key,
                timeout=self.job_timeout or 0,
                heartbeat=self.heartbeat,
                retries=self.retries,
                ttl=self.ttl,
            )
            if job is not None:
                return
            existing = await self.queue.job(key)
            active = (saq_mod.job.Status.NEW, saq_mod.job.Status.QUEUED, saq_mod.job.Status.ACTIVE)
            if existing is not None and existing.status in active:
                return  # deduplicated: that job will run the task
            if loop.time() > deadline:  # an abort of the previous job is still settling
                raise InvalidTaskStateError(
                    f"task {task.id!r}: saq job {key!r} is being aborted; submit again later"
                )
            await asyncio.sleep(0.5)

    async def abort(self, task: Task) -> None:
        """Abort the task's job; wait (up to ``abort_wait`` s) until the task is finished.

        A queued job is dropped at once.  A running one is marked aborting and the
        worker's abort poll cancels the job coroutine.  Because a heartbeat write can
        race with the abort mark, the mark is re-applied while the task still runs.
        """
        saq_mod = _import_saq()
        terminal = (
            saq_mod.job.Status.COMPLETE,
            saq_mod.job.Status.FAILED,
            saq_mod.job.Status.ABORTED,
        )
        key = job_key(task.id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.abort_wait
        while True:
            job = await self.queue.job(key)
            if job is None or job.status in terminal:
                return
            if job.status is not saq_mod.job.Status.ABORTING:
                await self.queue.abort(job, error="cancelled")
            current = await self._task(task.id)
            if current is None or current.status.is_terminal or loop.time() > deadline:
                return
            await asyncio.sleep(0.5)

    async def publish(self, event: Event) -> None:
        """Queue ``event`` for Redis pub/sub; progress events are thinned, never phase changes."""
        if self._outbox is None:
            if not self.events_enabled or self._redis is None or self._closed:
                return
            self._outbox = asyncio.Queue(_OUTBOX_SIZE)
            self._sender = asyncio.create_task(self._send_loop(), name="ffmpeg-tasks-saq-events")
        if event.type in _PROGRESS:
            now = asyncio.get_running_loop().time()
            slot = (event.task_id, event.type.value, event.name)
            if now - self._last_progress.get(slot, -1e9) < self.progress_interval:
                return
            self._last_progress[slot] = now
            if self._outbox.full():
                return
        elif event.type.is_terminal:
            for slot in [s for s in self._last_progress if s[0] == event.task_id]:
                del self._last_progress[slot]
        try:
            self._outbox.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("event outbox full; dropped %s of task %s", event.type, event.task_id)

    def events(self, task_id: str) -> AsyncIterator[Event] | None:
        """Events of ``task_id`` published by any worker (Redis queues only, else None)."""
        if not self.events_enabled or self._redis is None:
            return None
        return self._subscribe(task_id)

    async def aclose(self) -> None:
        """Send events still queued, then close the queue if the backend made it."""
        if self._closed:
            return
        self._closed = True
        if self._sender is not None and self._outbox is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._outbox.join()
            await cancel_and_wait(self._sender)
        if self._owns_queue and self._connected:
            await self.queue.disconnect()
        self._connected = False

    # -- internals ----------------------------------------------------------------

    async def _task(self, task_id: str) -> Task | None:
        if self._store is None:
            return None
        return await self._store.get(task_id)

    async def _send_loop(self) -> None:
        assert self._outbox is not None
        assert self._redis is not None
        while True:
            event = await self._outbox.get()
            try:
                data = json.dumps(event.to_dict(), default=str)
                await self._redis.publish(self.channel(event.task_id), data)
            except Exception:
                log.warning("could not publish %s of task %s", event.type, event.task_id)
            finally:
                self._outbox.task_done()

    async def _subscribe(self, task_id: str) -> AsyncIterator[Event]:
        assert self._redis is not None
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self.channel(task_id))
        try:
            # Read the store after subscribing: a task that ended before (or while)
            # we subscribed still yields its terminal event.
            task = await self._task(task_id)
            if task is not None and task.status.is_terminal:
                yield Event(EventType(task.status.value), task_id, task=task)
                return
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self.poll_interval
                )
                if message is None or message.get("type") != "message":
                    task = await self._task(task_id)  # a missed terminal event, a dead worker
                    if task is None or task.status.is_terminal:
                        if task is not None:
                            yield Event(EventType(task.status.value), task_id, task=task)
                        return
                    continue
                event = Event.from_dict(json.loads(message["data"]))
                yield event
                if event.type.is_terminal:
                    return
        finally:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe()
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed in newer redis
