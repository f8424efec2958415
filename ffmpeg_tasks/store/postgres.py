"""``PostgresTaskStore``: tasks in one PostgreSQL table, via asyncpg."""

from __future__ import annotations

import asyncio
import builtins
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._lifecycle import AsyncResource
from ..errors import ConfigurationError, InvalidSpecError
from ..models import Task, TaskStatus
from .base import (
    TERMINAL_STATUSES,
    as_utc,
    check_limit,
    check_replace,
    decode_task,
    encode_task,
)

if TYPE_CHECKING:
    from asyncpg import Pool

__all__ = ["PostgresTaskStore"]

# 48 leaves room for the "_status_idx" style suffixes within PostgreSQL's 63 bytes.
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS "{t}" (
    id text COLLATE "C" PRIMARY KEY,
    status text NOT NULL,
    version bigint NOT NULL,
    idempotency_key text UNIQUE,
    created_at timestamptz NOT NULL,
    finished_at timestamptz,
    data jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS "{t}_status_idx" ON "{t}" (status, created_at, id);
CREATE INDEX IF NOT EXISTS "{t}_created_idx" ON "{t}" (created_at, id);
CREATE INDEX IF NOT EXISTS "{t}_finished_idx" ON "{t}" (finished_at);
CREATE TABLE IF NOT EXISTS "{t}_outbox" (
    topic text NOT NULL,
    id text NOT NULL,
    due double precision NOT NULL,
    data text NOT NULL,
    PRIMARY KEY (topic, id)
);
CREATE INDEX IF NOT EXISTS "{t}_obx_idx" ON "{t}_outbox" (topic, due);
"""


def _rowcount(status: str) -> int:
    """The count in a command tag such as ``"UPDATE 1"``."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresTaskStore(AsyncResource):
    """Keeps tasks in ``table`` (created at first use) of the database at ``dsn``.

    The ``data`` column holds the JSON record as ``jsonb``; ``id``, ``status``,
    ``version``, ``idempotency_key``, ``created_at`` and ``finished_at`` are
    columns for indexing and compare-and-set.  Pass ``pool`` (an
    ``asyncpg.Pool``) to share one; it is then not closed by :meth:`aclose`.  JSON
    goes in and out as text, so a ``jsonb`` codec set on that pool does not matter.
    Needs the ``postgres`` extra.
    """

    def __init__(
        self,
        dsn: str = "postgresql://postgres@127.0.0.1:5432/test",
        *,
        table: str = "ffmpeg_tasks",
        pool: Pool | None = None,
        max_connections: int = 10,
    ) -> None:
        if not _TABLE_RE.fullmatch(table):
            raise ConfigurationError(
                f"invalid PostgreSQL table name {table!r}: use letters, digits and '_' "
                "(at most 48, not starting with a digit)"
            )
        try:
            import asyncpg
        except ImportError as exc:
            raise ConfigurationError(
                "PostgresTaskStore needs the 'asyncpg' package: "
                "pip install 'ffmpeg-tasks[postgres]'"
            ) from exc
        self._asyncpg: Any = asyncpg
        self.table = table
        self._dsn = dsn
        self._max = max_connections
        self._pool: Any = pool
        self._owns_pool = pool is None
        self._ready = False
        self._closed = False
        self._lock = asyncio.Lock()
        t = table
        self._sql = {
            "insert": (
                f'INSERT INTO "{t}" (id, status, version, idempotency_key, created_at, '  # noqa: S608
                "finished_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1"
            ),
            "by_key": f'SELECT data::text FROM "{t}" WHERE idempotency_key = $1',  # noqa: S608
            "get": f'SELECT data::text FROM "{t}" WHERE id = $1',  # noqa: S608
            "update": (
                f'UPDATE "{t}" SET status = $3, version = $4, created_at = $5, '  # noqa: S608
                "finished_at = $6, data = $7::text::jsonb WHERE id = $1 AND version = $2"
            ),
            "list": f'SELECT data::text FROM "{t}" ORDER BY created_at, id LIMIT $1',  # noqa: S608
            "list_status": (
                f'SELECT data::text FROM "{t}" WHERE status = $1 '  # noqa: S608
                "ORDER BY created_at, id LIMIT $2"
            ),
            "delete": f'DELETE FROM "{t}" WHERE id = $1',  # noqa: S608
            "outbox_put": (
                f'INSERT INTO "{t}_outbox" (topic, id, due, data) VALUES ($1, $2, $3, $4) '  # noqa: S608
                "ON CONFLICT (topic, id) DO UPDATE SET due = EXCLUDED.due, data = EXCLUDED.data"
            ),
            "outbox_claim": (
                f'UPDATE "{t}_outbox" SET due = $3 WHERE (topic, id) IN (SELECT topic, id '  # noqa: S608
                f'FROM "{t}_outbox" WHERE topic = $1 AND due <= $2 ORDER BY due LIMIT $4 '
                "FOR UPDATE SKIP LOCKED) RETURNING id, data"
            ),
            "outbox_done": f'DELETE FROM "{t}_outbox" WHERE topic = $1 AND id = $2',  # noqa: S608
            "purge": (
                f'DELETE FROM "{t}" WHERE status = ANY($1::text[]) '  # noqa: S608
                "AND finished_at < $2"
            ),
        }

    async def _get_pool(self) -> Any:
        if self._ready:
            return self._pool
        if self._closed:
            raise RuntimeError(f"PostgreSQL task store for table {self.table!r} is closed")
        async with self._lock:
            if self._pool is None:
                self._pool = await self._asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=self._max
                )
            if not self._ready:
                async with self._pool.acquire() as conn, conn.transaction():
                    # Serialise concurrent first use (CREATE … IF NOT EXISTS can race).
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
                    await conn.execute(_SCHEMA.format(t=self.table))
                self._ready = True
        return self._pool

    def _row(self, task: Task) -> tuple[Any, ...]:
        finished = None if task.finished_at is None else as_utc(task.finished_at)
        return (task.status.value, task.version, as_utc(task.created_at), finished)

    async def create(self, task: Task) -> Task:
        data = encode_task(task)
        pool = await self._get_pool()
        status, version, created, finished = self._row(task)
        args = (task.id, status, version, task.idempotency_key, created, finished, data)
        while True:
            async with pool.acquire() as conn:
                try:
                    inserted = await conn.fetchval(self._sql["insert"], *args)
                except self._asyncpg.UniqueViolationError as exc:
                    if exc.constraint_name == f"{self.table}_pkey":
                        raise ValueError(f"a task with id {task.id!r} already exists") from exc
                    raise
                except self._asyncpg.UntranslatableCharacterError as exc:
                    raise InvalidSpecError(
                        f"task {task.id!r} cannot be stored in PostgreSQL: {exc}",
                        field="metadata",
                    ) from exc
                if inserted is not None:
                    return decode_task(data)
                existing = await conn.fetchval(self._sql["by_key"], task.idempotency_key)
            if existing is not None:
                return decode_task(existing)
            # The owner of the key was deleted in between: try the insert again.

    async def get(self, task_id: str) -> Task | None:
        pool = await self._get_pool()
        data = await pool.fetchval(self._sql["get"], task_id)
        return None if data is None else decode_task(data)

    async def replace(self, old: Task, new: Task) -> bool:
        check_replace(old, new)
        data = encode_task(new)
        pool = await self._get_pool()
        status, version, created, finished = self._row(new)
        try:
            tag = await pool.execute(
                self._sql["update"], old.id, old.version, status, version, created, finished, data
            )
        except self._asyncpg.UntranslatableCharacterError as exc:
            raise InvalidSpecError(
                f"task {new.id!r} cannot be stored in PostgreSQL: {exc}", field="metadata"
            ) from exc
        return _rowcount(tag) == 1

    async def list(self, status: TaskStatus | None = None, limit: int | None = None) -> list[Task]:
        check_limit(limit)
        pool = await self._get_pool()
        if status is None:
            rows = await pool.fetch(self._sql["list"], limit)
        else:
            rows = await pool.fetch(self._sql["list_status"], TaskStatus(status).value, limit)
        out: builtins.list[Task] = [decode_task(r[0]) for r in rows]
        return out

    async def delete(self, task_id: str) -> None:
        pool = await self._get_pool()
        await pool.execute(self._sql["delete"], task_id)

    async def purge(self, finished_before: datetime) -> int:
        pool = await self._get_pool()
        tag = await pool.execute(
            self._sql["purge"], list(TERMINAL_STATUSES), as_utc(finished_before)
        )
        return _rowcount(tag)

    async def outbox_put(
        self, topic: str, entry_id: str, data: Mapping[str, Any], due: float
    ) -> None:
        pool = await self._get_pool()
        await pool.execute(self._sql["outbox_put"], topic, entry_id, due, json.dumps(dict(data)))

    async def outbox_claim(
        self, topic: str, now: float, lease: float, limit: int = 100
    ) -> builtins.list[tuple[str, dict[str, Any]]]:
        pool = await self._get_pool()
        rows = await pool.fetch(self._sql["outbox_claim"], topic, now, now + lease, limit)
        return [(r["id"], json.loads(r["data"])) for r in rows]

    async def outbox_done(self, topic: str, entry_id: str) -> None:
        pool = await self._get_pool()
        await pool.execute(self._sql["outbox_done"], topic, entry_id)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
