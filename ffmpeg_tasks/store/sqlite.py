"""``SQLiteTaskStore``: tasks in one SQLite file, safe for several processes on a host."""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .._lifecycle import AsyncResource
from ..errors import ConfigurationError
from ..models import Task, TaskStatus
from .base import (
    TERMINAL_STATUSES,
    check_limit,
    check_replace,
    decode_task,
    encode_task,
    utc_text,
)

__all__ = ["SQLiteTaskStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_status_idx ON tasks (status, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_created_idx ON tasks (created_at, id);
CREATE INDEX IF NOT EXISTS tasks_finished_idx ON tasks (finished_at);
CREATE TABLE IF NOT EXISTS outbox (
    topic TEXT NOT NULL,
    id TEXT NOT NULL,
    due REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (topic, id)
);
CREATE INDEX IF NOT EXISTS outbox_due_idx ON outbox (topic, due);
"""


class SQLiteTaskStore(AsyncResource):
    """Keeps tasks in the SQLite database at ``path`` (created if missing).

    One worker thread owns the connection and runs every call in order, so the
    event loop never blocks on disk.  The database uses WAL, ``synchronous=NORMAL``
    and a ``busy_timeout``; writes run in ``BEGIN IMMEDIATE`` transactions and
    ``replace`` is ``UPDATE … WHERE id=? AND version=?``, so several processes may
    share one file.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self._busy_ms = int(busy_timeout * 1000)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ffmpeg-tasks-sqlite")
        self._conn: sqlite3.Connection | None = None  # only touched by the worker thread
        self._closed = False

    # -- plumbing (worker thread) ------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_ms / 1000, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise ConfigurationError(f"cannot open SQLite task store {self.path!r}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.close()
            raise ConfigurationError(f"cannot use SQLite task store {self.path!r}: {exc}") from exc
        self._conn = conn
        return conn

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise RuntimeError(f"SQLite task store {self.path!r} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # -- protocol -----------------------------------------------------------------

    async def create(self, task: Task) -> Task:
        data = encode_task(task)
        row = (
            task.id,
            task.status.value,
            task.version,
            task.idempotency_key,
            utc_text(task.created_at),
            utc_text(task.finished_at),
            data,
        )

        def tx(conn: sqlite3.Connection) -> str:
            if task.idempotency_key is not None:
                found = conn.execute(
                    "SELECT data FROM tasks WHERE idempotency_key = ?", (task.idempotency_key,)
                ).fetchone()
                if found is not None:
                    return str(found[0])
            try:
                conn.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"a task with id {task.id!r} already exists") from exc
            return data

        stored = await self._run(lambda: self._write(tx))
        return decode_task(stored)

    async def get(self, task_id: str) -> Task | None:
        def read() -> Task | None:
            found = (
                self._connect()
                .execute("SELECT data FROM tasks WHERE id = ?", (task_id,))
                .fetchone()
            )
            return None if found is None else decode_task(found[0])

        return await self._run(read)

    async def replace(self, old: Task, new: Task) -> bool:
        check_replace(old, new)
        params = (
            new.status.value,
            new.version,
            utc_text(new.created_at),
            utc_text(new.finished_at),
            encode_task(new),
            old.id,
            old.version,
        )

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE tasks SET status = ?, version = ?, created_at = ?, finished_at = ?, "
                "data = ? WHERE id = ? AND version = ?",
                params,
            )
            return cur.rowcount == 1

        return await self._run(lambda: self._write(tx))

    async def list(self, status: TaskStatus | None = None, limit: int | None = None) -> list[Task]:
        check_limit(limit)
        sql = "SELECT data FROM tasks"
        args: builtins.list[object] = []
        if status is not None:
            sql += " WHERE status = ?"
            args.append(TaskStatus(status).value)
        sql += " ORDER BY created_at, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)

        def read() -> builtins.list[Task]:
            rows = self._connect().execute(sql, args).fetchall()
            return [decode_task(r[0]) for r in rows]

        return await self._run(read)

    async def delete(self, task_id: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))

        await self._run(lambda: self._write(tx))

    async def purge(self, finished_before: datetime) -> int:
        marks = ", ".join("?" * len(TERMINAL_STATUSES))
        sql = (
            f"DELETE FROM tasks WHERE status IN ({marks}) "  # noqa: S608 - placeholders only
            "AND finished_at IS NOT NULL AND finished_at < ?"
        )
        args = (*TERMINAL_STATUSES, utc_text(finished_before))

        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, args).rowcount

        return await self._run(lambda: self._write(tx))

    async def outbox_put(
        self, topic: str, entry_id: str, data: Mapping[str, Any], due: float
    ) -> None:
        text = json.dumps(dict(data))

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO outbox (topic, id, due, data) VALUES (?, ?, ?, ?)",
                (topic, entry_id, due, text),
            )

        await self._run(lambda: self._write(tx))

    async def outbox_claim(
        self, topic: str, now: float, lease: float, limit: int = 100
    ) -> builtins.list[tuple[str, dict[str, Any]]]:
        def tx(conn: sqlite3.Connection) -> builtins.list[tuple[str, dict[str, Any]]]:
            rows = conn.execute(
                "SELECT id, data FROM outbox WHERE topic = ? AND due <= ? ORDER BY due LIMIT ?",
                (topic, now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE outbox SET due = ? WHERE topic = ? AND id = ?",
                [(now + lease, topic, r[0]) for r in rows],
            )
            return [(r[0], json.loads(r[1])) for r in rows]

        return await self._run(lambda: self._write(tx))

    async def outbox_done(self, topic: str, entry_id: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM outbox WHERE topic = ? AND id = ?", (topic, entry_id))

        await self._run(lambda: self._write(tx))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, close)
        finally:
            await asyncio.to_thread(self._executor.shutdown, wait=True)
