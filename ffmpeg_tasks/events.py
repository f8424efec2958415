"""Typed task events and the in-process bus that fans them out.

``TaskManager.events(task_id)`` yields :class:`Event` values until the task ends;
``TaskManager(on_event=...)`` receives every event of every task.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import attrs

from .models import Phase, Task, TaskStatus, utcnow

__all__ = ["Event", "EventBus", "EventHandler", "EventType", "poll_store"]

log = logging.getLogger(__name__)


class EventType(enum.StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    DOWNLOADING = "downloading"
    RUNNING = "running"
    UPLOADING = "uploading"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED)


@attrs.frozen
class Event:
    """Something that happened to a task.

    Progress fields are filled where they apply: ``bytes_done``/``bytes_total`` while
    downloading or uploading (``name`` is the file), ``percent``/``fps``/``speed``/
    ``eta`` while ffmpeg runs.  Terminal events carry the final ``task``.
    """

    type: EventType
    task_id: str
    time: datetime = attrs.field(factory=utcnow)
    name: str | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    percent: float | None = None
    fps: float | None = None
    speed: float | None = None
    eta: float | None = None
    out_time: float | None = None
    step: int | None = None
    message: str | None = None
    task: Task | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type.value,
            "task_id": self.task_id,
            "time": self.time.isoformat(),
        }
        for field in (
            "name",
            "bytes_done",
            "bytes_total",
            "percent",
            "fps",
            "speed",
            "eta",
            "out_time",
            "step",
            "message",
        ):
            value = getattr(self, field)
            if value is not None:
                data[field] = value
        if self.task is not None:
            data["task"] = self.task.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Inverse of :meth:`to_dict` (for events that crossed a process boundary)."""
        kwargs: dict[str, Any] = {
            k: v for k, v in data.items() if k not in ("type", "time", "task")
        }
        return cls(
            type=EventType(data["type"]),
            time=datetime.fromisoformat(data["time"]),
            task=Task.from_dict(data["task"]) if data.get("task") else None,
            **kwargs,
        )


EventHandler = Callable[[Event], Awaitable[None] | None]

_PROGRESS = (EventType.DOWNLOADING, EventType.RUNNING, EventType.UPLOADING)


class _Subscription:
    """A bounded queue; when full, progress events are dropped, never phase changes."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            if event.type in _PROGRESS:
                return
            # Make room for a phase change by dropping the oldest event.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(event)


class EventBus:
    """Delivers events to per-task subscribers and global handlers."""

    def __init__(self, *, queue_size: int = 256) -> None:
        self._subs: dict[str, set[_Subscription]] = {}
        self._handlers: list[EventHandler] = []
        self._queue_size = queue_size
        self._pending: set[asyncio.Task[None]] = set()

    def add_handler(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def remove_handler(self, handler: EventHandler) -> None:
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` without blocking the publisher."""
        for sub in self._subs.get(event.task_id, ()):
            sub.offer(event)
        for handler in self._handlers:
            try:
                result = handler(event)
            except Exception:
                log.exception("event handler %r failed", handler)
                continue
            if result is not None:
                task = asyncio.ensure_future(self._guard(handler, result))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

    @staticmethod
    async def _guard(handler: EventHandler, result: Awaitable[None]) -> None:
        try:
            await result
        except Exception:
            log.exception("event handler %r failed", handler)

    @contextlib.contextmanager
    def subscribe(self, task_id: str) -> Any:
        sub = _Subscription(self._queue_size)
        self._subs.setdefault(task_id, set()).add(sub)
        try:
            yield sub.queue
        finally:
            subs = self._subs.get(task_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[task_id]

    async def stream(
        self, task_id: str, snapshot: Callable[[], Awaitable[Task]]
    ) -> AsyncIterator[Event]:
        """Yield events of ``task_id`` until a terminal one.

        ``snapshot`` is read after subscribing so that a task that already ended
        (or ends in between) still yields its terminal event.
        """
        with self.subscribe(task_id) as queue:
            task = await snapshot()
            if task.status.is_terminal:
                yield Event(EventType(task.status.value), task.id, task=task)
                return
            while True:
                event = await queue.get()
                yield event
                if event.type.is_terminal:
                    return

    async def aclose(self) -> None:
        """Wait for handlers still running."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


#: One line per change of a task's status; ``extra`` carries ``task_id``, ``event``,
#: ``status`` and (on failure) ``error_code`` for structured log handlers.
transition_log = logging.getLogger("ffmpeg_tasks.tasks")

_LOGGED = {
    EventType.QUEUED: logging.INFO,
    EventType.STARTED: logging.INFO,
    EventType.RETRYING: logging.WARNING,
    EventType.COMPLETED: logging.INFO,
    EventType.FAILED: logging.WARNING,
    EventType.CANCELLED: logging.INFO,
}


def log_transition(event: Event) -> None:
    """Log ``event`` if it changes a task's status (an event handler every manager has)."""
    level = _LOGGED.get(event.type)
    if level is None or not transition_log.isEnabledFor(level):
        return
    task = event.task
    extra: dict[str, Any] = {"task_id": event.task_id, "event": event.type.value}
    text = f"task {event.task_id} {event.type.value}"
    if task is not None:
        extra["status"] = task.status.value
        if task.error_code:
            extra["error_code"] = task.error_code
            text += f": {task.error_code}: {task.error}"
        elif task.finished_at is not None and task.started_at is not None:
            seconds = (task.finished_at - task.started_at).total_seconds()
            text += f" in {seconds:.1f}s ({len(task.outputs)} objects stored)"
    elif event.message:
        text += f": {event.message}"
    transition_log.log(level, text, extra=extra)


_PHASE_EVENTS = {
    Phase.QUEUED: EventType.QUEUED,
    Phase.DOWNLOADING: EventType.DOWNLOADING,
    Phase.PROCESSING: EventType.RUNNING,
    Phase.UPLOADING: EventType.UPLOADING,
}


async def poll_store(
    snapshot: Callable[[], Awaitable[Task]], *, interval: float = 0.2, max_interval: float = 1.0
) -> AsyncIterator[Event]:
    """Events of a task another process runs, read from the shared store until it ends.

    For backends without a cross-process event channel: yields an event when the
    task's phase or progress changes (``percent`` set while ffmpeg runs) and its
    terminal event, with the final task, as the last one.
    """
    seen: tuple[object, ...] | None = None
    delay = interval
    while True:
        task = await snapshot()
        if task.status.is_terminal:
            yield Event(EventType(task.status.value), task.id, task=task)
            return
        state = (task.status, task.phase, task.progress)
        if state != seen:
            seen = state
            delay = interval
            kind = _PHASE_EVENTS.get(task.phase)
            if task.status is TaskStatus.RUNNING and kind is None:
                kind = EventType.STARTED
            if kind is not None:
                percent = task.progress if kind is EventType.RUNNING else None
                yield Event(kind, task.id, percent=percent)
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, max_interval)
