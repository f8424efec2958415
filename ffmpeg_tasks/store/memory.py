"""``MemoryTaskStore``: tasks in dicts, for tests and single-process hosts."""

from __future__ import annotations

import bisect
import builtins
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from .._lifecycle import AsyncResource
from ..models import Task, TaskStatus
from .base import as_utc, check_limit, check_replace, decode_task, encode_task, utc_micros

__all__ = ["MemoryTaskStore"]


@attrs.frozen
class _Record:
    data: str
    status: TaskStatus
    version: int
    order: tuple[int, str]
    idempotency_key: str | None
    finished_at: datetime | None


class MemoryTaskStore(AsyncResource):
    """Keeps tasks in this process.  Nothing survives a restart.

    Records are kept as the same JSON the other stores write, so a task read back
    is an independent copy and a task that another store would refuse (metadata
    that is not JSON) is refused here too.  Every method runs without awaiting,
    so each call is atomic on the event loop.
    """

    #: Nothing survives the process (a webhook does not keep its outbox here).
    durable = False

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._order: list[tuple[int, str]] = []  # sorted (created_at µs, id)
        self._by_key: dict[str, str] = {}  # idempotency_key -> id
        self._outbox: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    @staticmethod
    def _record(task: Task) -> _Record:
        return _Record(
            data=encode_task(task),
            status=task.status,
            version=task.version,
            order=(utc_micros(task.created_at), task.id),
            idempotency_key=task.idempotency_key,
            finished_at=None if task.finished_at is None else as_utc(task.finished_at),
        )

    async def create(self, task: Task) -> Task:
        if task.idempotency_key is not None:
            existing = self._by_key.get(task.idempotency_key)
            if existing is not None:
                return decode_task(self._records[existing].data)
        if task.id in self._records:
            raise ValueError(f"a task with id {task.id!r} already exists")
        record = self._record(task)
        self._records[task.id] = record
        bisect.insort(self._order, record.order)
        if task.idempotency_key is not None:
            self._by_key[task.idempotency_key] = task.id
        return decode_task(record.data)

    async def get(self, task_id: str) -> Task | None:
        record = self._records.get(task_id)
        return None if record is None else decode_task(record.data)

    async def replace(self, old: Task, new: Task) -> bool:
        check_replace(old, new)
        current = self._records.get(old.id)
        if current is None or current.version != old.version:
            return False
        record = self._record(new)
        if record.order != current.order:
            self._remove_order(current.order)
            bisect.insort(self._order, record.order)
        self._records[old.id] = record
        return True

    async def list(self, status: TaskStatus | None = None, limit: int | None = None) -> list[Task]:
        check_limit(limit)
        out: builtins.list[Task] = []
        for _, task_id in self._order:
            if limit is not None and len(out) >= limit:
                break
            record = self._records[task_id]
            if status is None or record.status == status:
                out.append(decode_task(record.data))
        return out

    async def delete(self, task_id: str) -> None:
        self._delete(task_id)

    def _delete(self, task_id: str) -> None:
        record = self._records.pop(task_id, None)
        if record is None:
            return
        self._remove_order(record.order)
        if record.idempotency_key is not None:
            self._by_key.pop(record.idempotency_key, None)

    async def purge(self, finished_before: datetime) -> int:
        cutoff = as_utc(finished_before)
        doomed = [
            task_id
            for task_id, r in self._records.items()
            if r.status.is_terminal and r.finished_at is not None and r.finished_at < cutoff
        ]
        for task_id in doomed:
            self._delete(task_id)
        return len(doomed)

    def _remove_order(self, order: tuple[int, str]) -> None:
        i = bisect.bisect_left(self._order, order)
        if i < len(self._order) and self._order[i] == order:
            del self._order[i]

    async def outbox_put(
        self, topic: str, entry_id: str, data: Mapping[str, Any], due: float
    ) -> None:
        self._outbox[(topic, entry_id)] = (due, json.loads(json.dumps(dict(data))))

    async def outbox_claim(
        self, topic: str, now: float, lease: float, limit: int = 100
    ) -> builtins.list[tuple[str, dict[str, Any]]]:
        due = sorted(
            (when, key[1]) for key, (when, _) in self._outbox.items()
            if key[0] == topic and when <= now
        )[:limit]  # fmt: skip
        claimed = []
        for _, entry_id in due:
            data = self._outbox[(topic, entry_id)][1]
            self._outbox[(topic, entry_id)] = (now + lease, data)
            claimed.append((entry_id, json.loads(json.dumps(data))))
        return claimed

    async def outbox_done(self, topic: str, entry_id: str) -> None:
        self._outbox.pop((topic, entry_id), None)
