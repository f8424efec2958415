"""The task store protocol: durable records of ``Task`` values.

Also the helpers every store shares: the JSON record format and the UTC sort keys
used for the ``created_at`` / ``finished_at`` index columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidSpecError
from ..models import Task, TaskStatus

__all__ = ["TERMINAL_STATUSES", "Outbox", "TaskStore"]

#: Statuses ``purge`` may delete, as their string values.
TERMINAL_STATUSES: tuple[str, ...] = tuple(s.value for s in TaskStatus if s.is_terminal)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@runtime_checkable
class Outbox(Protocol):
    """Optional store capability: durable work to do later (webhook deliveries).

    Entries are JSON-ready dicts under a ``topic`` and an id; ``outbox_claim`` hands
    out entries due by ``now`` and pushes their due time ``lease`` seconds on, so a
    process that dies while handling one leaves it to be claimed again (at least
    once).  All four stores of the package implement it.
    """

    async def outbox_put(
        self, topic: str, entry_id: str, data: Mapping[str, Any], due: float
    ) -> None:
        """Insert or overwrite an entry, due at unix time ``due``."""
        ...

    async def outbox_claim(
        self, topic: str, now: float, lease: float, limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """Entries of ``topic`` due by ``now`` (oldest first), each now due at ``now + lease``."""
        ...

    async def outbox_done(self, topic: str, entry_id: str) -> None:
        """Remove an entry (missing: no error)."""
        ...


@runtime_checkable
class TaskStore(Protocol):
    """Keeps tasks.  Every write of an existing task is a compare-and-set on ``version``.

    Stores do not interpret tasks beyond ``id``, ``status``, ``version``,
    ``idempotency_key``, ``created_at`` and ``finished_at``; the manager owns the
    state machine.  ``list`` orders by ``(created_at, id)`` in every store.
    """

    async def create(self, task: Task) -> Task:
        """Insert ``task``.  When another task has the same non-null
        ``idempotency_key``, return that one instead and insert nothing.
        A duplicate ``id`` raises ``ValueError``."""
        ...

    async def get(self, task_id: str) -> Task | None: ...

    async def replace(self, old: Task, new: Task) -> bool:
        """Write ``new`` only if the stored task still has ``old.version``.
        Return whether it was written.  ``new.version`` must be greater, and
        ``id`` / ``idempotency_key`` must not change (``ValueError``)."""
        ...

    async def list(self, status: TaskStatus | None = None, limit: int | None = None) -> list[Task]:
        """Tasks, oldest first, optionally only those with ``status``."""
        ...

    async def delete(self, task_id: str) -> None:
        """Remove a task; a missing task is not an error."""
        ...

    async def purge(self, finished_before: datetime) -> int:
        """Delete terminal tasks whose ``finished_at`` is before ``finished_before``.

        Tasks without ``finished_at`` are kept.  Return how many were deleted."""
        ...

    async def aclose(self) -> None: ...


# --- shared helpers (not part of the protocol) --------------------------------


def encode_task(task: Task) -> str:
    """The stored record: ``task.to_dict(include_diagnostics=True)`` as compact JSON."""
    try:
        return json.dumps(
            task.to_dict(include_diagnostics=True), separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(
            f"task {task.id!r} cannot be stored as JSON: {exc}", field="metadata"
        ) from exc


def decode_task(data: str | bytes) -> Task:
    """Inverse of :func:`encode_task`."""
    return Task.from_dict(json.loads(data))


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_text(value: datetime | None) -> str | None:
    """Fixed-width UTC text (``2024-01-02T03:04:05.000006Z``) that sorts like time."""
    if value is None:
        return None
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_micros(value: datetime) -> int:
    """Whole microseconds since the Unix epoch (exact in a float score)."""
    return (as_utc(value) - _EPOCH) // timedelta(microseconds=1)


def check_replace(old: Task, new: Task) -> None:
    """Reject a ``replace`` that no store may perform."""
    if new.id != old.id:
        raise ValueError(f"replace cannot change the task id ({old.id!r} -> {new.id!r})")
    if new.version <= old.version:
        raise ValueError(
            f"replace of task {old.id!r} needs a greater version "
            f"(old {old.version}, new {new.version})"
        )
    if new.idempotency_key != old.idempotency_key:
        raise ValueError(f"replace cannot change the idempotency_key of task {old.id!r}")


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit!r}")
