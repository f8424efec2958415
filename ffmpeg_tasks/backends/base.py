"""The backend protocol: where submitted tasks run when not in this process.

Without a backend, ``TaskManager.submit`` runs the task as an asyncio task of the
host's loop.  With one (``SaqBackend``), ``submit`` enqueues a job on an existing
job engine and worker processes run the same pipeline against a shared task store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..events import Event
from ..models import Task

if TYPE_CHECKING:
    from ..manager import TaskManager

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """A job engine adapter.  Small on purpose, so that arq or Celery can follow."""

    async def start(self, manager: TaskManager) -> None:
        """Connect; called once when the manager starts."""
        ...

    async def enqueue(self, task: Task) -> None:
        """Queue a PENDING task for a worker.  Enqueueing the same id twice is harmless."""
        ...

    async def abort(self, task: Task) -> None:
        """Ask whichever worker holds the task to cancel it (best effort)."""
        ...

    async def publish(self, event: Event) -> None:
        """Worker side: make an event visible to every process."""
        ...

    def events(self, task_id: str) -> AsyncIterator[Event] | None:
        """Events of ``task_id`` from any process, or None if the backend cannot."""
        ...

    async def aclose(self) -> None: ...
