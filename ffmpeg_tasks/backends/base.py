"""The backend protocol: where submitted tasks run when not in this process.

Without a backend, ``TaskManager.submit`` runs the task as an asyncio task of the
host's loop.  With one (``SaqBackend``), ``submit`` enqueues a job on an existing
job engine and worker processes run the same pipeline against a shared task store.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from ..events import Event
from ..models import Task
from ..store.base import TaskStore

__all__ = ["Backend", "engine_name", "redact_url"]


@runtime_checkable
class Backend(Protocol):
    """A job engine adapter.  Small on purpose, so that arq or Celery can follow.

    It never sees the manager: it gets the shared task store at ``start``, and its
    workers run tasks through a manager of their own (see ``backends/saq_worker.py``).
    A backend may name itself in a class attribute ``engine`` (``"saq"``, ``"celery"``;
    else its class name is used): ``submit`` records it as ``Task.engine``, and
    ``recover()`` leaves such tasks to the engine's retries.
    """

    async def start(self, store: TaskStore) -> None:
        """Connect; called once when the manager starts, with the task store it shares.

        A backend changes a stored task only through :mod:`ffmpeg_tasks.transitions`
        and the store's compare-and-set ``replace``.
        """
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


def engine_name(backend: object) -> str:
    """``backend.engine``, or its class name for a backend written before that attribute."""
    name = getattr(backend, "engine", None)
    return name if isinstance(name, str) and name else type(backend).__name__


def redact_url(url: str) -> str:
    """``url`` with the password of its user part replaced, for messages and logs."""
    return re.sub(r"(?<=://)([^:/@]*):[^@/]*@", r"\1:***@", url)
