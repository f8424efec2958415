"""Contract tests for every TaskStore, against real SQLite files, Redis and PostgreSQL.

Redis and PostgreSQL tests do not skip: when a server is down they fail with the
driver's connection error.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from ffmpeg_tasks.errors import ConfigurationError, InvalidSpecError
from ffmpeg_tasks.models import TaskStatus, utcnow
from ffmpeg_tasks.store import (
    MemoryTaskStore,
    PostgresTaskStore,
    RedisTaskStore,
    SQLiteTaskStore,
    TaskStore,
)
from ffmpeg_tasks.store.base import Outbox

from .store_helpers import make_task, rich_task

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


async def _redis_cleanup(prefix: str) -> list[str]:
    """Delete every key under ``prefix``; return the names that were left."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        left = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if left:
            await client.delete(*left)
        return left
    finally:
        await client.aclose()


async def _pg_drop(table: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{table}", "{table}_outbox"')
    finally:
        await conn.close()


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    kind = request.param
    if kind == "memory":
        async with MemoryTaskStore() as s:
            yield s
    elif kind == "sqlite":
        async with SQLiteTaskStore(tmp_path / "tasks.db") as s:
            yield s
    elif kind == "redis":
        prefix = f"test_ft_{uuid.uuid4().hex[:12]}"
        try:
            async with RedisTaskStore(REDIS_URL, prefix=prefix, max_connections=4) as s:
                yield s
        finally:
            await _redis_cleanup(prefix)
    else:
        table = f"test_ft_{uuid.uuid4().hex[:12]}"
        try:
            async with PostgresTaskStore(PG_DSN, table=table, max_connections=4) as s:
                yield s
        finally:
            await _pg_drop(table)


# --- the contract -------------------------------------------------------------


async def test_round_trip_is_exact(store: TaskStore) -> None:
    local = timezone(timedelta(hours=5, minutes=30))
    task = rich_task(T0.astimezone(local), T0 + timedelta(seconds=3, microseconds=7))
    assert await store.create(task) == task
    got = await store.get(task.id)
    assert got == task
    assert got is not None
    assert got.to_dict(include_diagnostics=True) == task.to_dict(include_diagnostics=True)
    assert got.outputs == task.outputs
    assert got.diagnostics == task.diagnostics
    assert got.created_at.utcoffset() == timedelta(hours=5, minutes=30)

    new = task.evolve(metadata={**task.metadata, "extra": [1, 2.5, "x"]}, progress=1.0)
    assert await store.replace(task, new)
    assert await store.get(task.id) == new
    assert await store.list() == [new]


async def test_get_missing_returns_none(store: TaskStore) -> None:
    assert await store.get("nope") is None


async def test_list_orders_filters_and_limits(store: TaskStore) -> None:
    plus2 = timezone(timedelta(hours=2))
    # Creation order differs from time order; 10:30+02:00 is 08:30Z, the oldest.
    t_mid = make_task(id="m", created_at=T0 + timedelta(hours=1), status=TaskStatus.RUNNING)
    t_old = make_task(id="o", created_at=datetime(2024, 5, 1, 10, 30, tzinfo=plus2))
    t_new = make_task(id="n", created_at=T0 + timedelta(days=1), status=TaskStatus.RUNNING)
    t_tie_b = make_task(id="b", created_at=T0)
    t_tie_a = make_task(id="a", created_at=T0, status=TaskStatus.FAILED)
    for t in (t_mid, t_old, t_new, t_tie_b, t_tie_a):
        await store.create(t)

    ids = [t.id for t in await store.list()]
    assert ids == ["o", "a", "b", "m", "n"]
    assert [t.id for t in await store.list(status=TaskStatus.RUNNING)] == ["m", "n"]
    assert [t.id for t in await store.list(status="running")] == ["m", "n"]  # type: ignore[arg-type]
    assert [t.id for t in await store.list(status=TaskStatus.PENDING)] == ["o", "b"]
    assert await store.list(status=TaskStatus.CANCELLED) == []
    assert [t.id for t in await store.list(limit=2)] == ["o", "a"]
    assert [t.id for t in await store.list(status=TaskStatus.RUNNING, limit=1)] == ["m"]
    assert await store.list(limit=0) == []
    assert len(await store.list(limit=50)) == 5
    with pytest.raises(ValueError, match="-1"):
        await store.list(limit=-1)

    # A status change moves the task between the filtered lists.
    moved = t_old.evolve(status=TaskStatus.RUNNING)
    assert await store.replace(t_old, moved)
    assert [t.id for t in await store.list(status=TaskStatus.RUNNING)] == ["o", "m", "n"]
    assert [t.id for t in await store.list(status=TaskStatus.PENDING)] == ["b"]


async def test_duplicate_id_raises_and_keeps_first(store: TaskStore) -> None:
    first = make_task(id="dup", metadata={"n": 1})
    await store.create(first)
    with pytest.raises(ValueError, match="'dup'"):
        await store.create(make_task(id="dup", metadata={"n": 2}))
    assert await store.get("dup") == first
    assert len(await store.list()) == 1


async def test_idempotency_key_returns_first_task(store: TaskStore) -> None:
    first = make_task(idempotency_key="order-42", metadata={"n": 1})
    second = make_task(idempotency_key="order-42", metadata={"n": 2})
    assert await store.create(first) == first
    assert await store.create(second) == first
    assert await store.get(second.id) is None
    # Tasks without a key never collide.
    await store.create(make_task())
    await store.create(make_task())
    assert len(await store.list()) == 3
    # Deleting the owner frees the key.
    await store.delete(first.id)
    assert await store.create(second) == second


async def test_concurrent_creates_with_one_key_store_one_task(store: TaskStore) -> None:
    tasks = [make_task(idempotency_key="same", metadata={"i": i}) for i in range(20)]
    results = await asyncio.gather(*(store.create(t) for t in tasks))
    assert len({r.id for r in results}) == 1
    stored = await store.list()
    assert len(stored) == 1
    assert stored[0] == results[0]


async def test_replace_with_stale_version_fails_and_leaves_record(store: TaskStore) -> None:
    task = make_task()
    await store.create(task)
    running = task.evolve(status=TaskStatus.RUNNING, worker="w1")
    assert await store.replace(task, running)
    stale = task.evolve(status=TaskStatus.CANCELLED)  # also version 1, but from version 0
    assert not await store.replace(task, stale)
    assert await store.get(task.id) == running
    assert [t.id for t in await store.list(status=TaskStatus.RUNNING)] == [task.id]
    assert await store.list(status=TaskStatus.CANCELLED) == []
    # Unknown task: nothing to replace.
    ghost = make_task()
    assert not await store.replace(ghost, ghost.evolve())
    assert await store.get(ghost.id) is None


async def test_replace_rejects_bad_new_value(store: TaskStore) -> None:
    task = make_task(idempotency_key="k1")
    await store.create(task)
    with pytest.raises(ValueError, match="greater version"):
        await store.replace(task, task)
    with pytest.raises(ValueError, match="task id"):
        await store.replace(task, make_task(version=5))
    with pytest.raises(ValueError, match="idempotency_key"):
        await store.replace(task, task.evolve(idempotency_key="k2"))
    assert await store.get(task.id) == task


async def test_twenty_racers_exactly_one_wins(store: TaskStore) -> None:
    task = make_task()
    await store.create(task)
    snapshot = await store.get(task.id)
    assert snapshot is not None

    async def racer(i: int) -> bool:
        await asyncio.sleep(0)
        return await store.replace(
            snapshot, snapshot.evolve(status=TaskStatus.RUNNING, worker=f"w{i}")
        )

    wins = await asyncio.gather(*(racer(i) for i in range(20)))
    assert wins.count(True) == 1
    stored = await store.get(task.id)
    assert stored is not None
    assert stored.status is TaskStatus.RUNNING
    assert stored.version == 1
    assert stored.worker == f"w{wins.index(True)}"


async def test_burst_beyond_connection_pool_succeeds(store: TaskStore) -> None:
    tasks = [make_task(metadata={"i": i}) for i in range(200)]
    created = await asyncio.gather(*(store.create(t) for t in tasks))
    assert created == tasks
    got = await asyncio.gather(*(store.get(t.id) for t in tasks))
    assert got == tasks


async def test_purge_removes_only_old_terminal_tasks(store: TaskStore) -> None:
    now = utcnow()
    old = now - timedelta(hours=2)
    cutoff = now - timedelta(hours=1)
    doomed = [
        make_task(status=s, finished_at=old, idempotency_key=f"k-{s.value}")
        for s in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
    ]
    kept = [
        make_task(status=TaskStatus.COMPLETED, finished_at=now),  # after the cutoff
        make_task(status=TaskStatus.COMPLETED, finished_at=cutoff),  # not *before* it
        make_task(status=TaskStatus.COMPLETED),  # finished_at unknown
        make_task(status=TaskStatus.RUNNING, finished_at=old),  # not terminal
        make_task(),
    ]
    for t in doomed + kept:
        await store.create(t)
    # Becomes terminal through replace -> purged; leaves terminal state -> kept.
    late = make_task(status=TaskStatus.RUNNING)
    await store.create(late)
    await store.replace(late, late.evolve(status=TaskStatus.FAILED, finished_at=old))
    retried = make_task(status=TaskStatus.FAILED, finished_at=old)
    await store.create(retried)
    back = retried.evolve(status=TaskStatus.PENDING)
    await store.replace(retried, back)

    assert await store.purge(cutoff) == 4
    remaining = {t.id for t in await store.list()}
    assert remaining == {t.id for t in kept} | {retried.id}
    assert {t.id for t in await store.list(status=TaskStatus.COMPLETED)} == {t.id for t in kept[:3]}
    assert await store.list(status=TaskStatus.FAILED) == []
    assert await store.list(status=TaskStatus.CANCELLED) == []
    for t in doomed:
        assert await store.get(t.id) is None
    assert await store.purge(cutoff) == 0
    # The purged tasks' idempotency keys are free again.
    again = make_task(idempotency_key="k-completed")
    assert await store.create(again) == again


async def test_delete(store: TaskStore) -> None:
    a = make_task(idempotency_key="ka", created_at=T0)
    b = make_task(created_at=T0 + timedelta(seconds=1))
    await store.create(a)
    await store.create(b)
    await store.delete(a.id)
    assert await store.get(a.id) is None
    assert await store.list() == [b]
    assert await store.list(status=TaskStatus.PENDING) == [b]
    await store.delete(a.id)  # missing: no error
    await store.delete("never-existed")
    assert not await store.replace(a, a.evolve())
    assert await store.get(a.id) is None
    assert await store.list() == [b]


async def test_unserialisable_task_is_refused(store: TaskStore) -> None:
    bad = make_task(metadata={"when": object()})
    with pytest.raises(InvalidSpecError, match=bad.id) as info:
        await store.create(bad)
    assert info.value.field == "metadata"
    nan = make_task(progress=float("nan"))
    with pytest.raises(InvalidSpecError, match=nan.id):
        await store.create(nan)
    assert await store.list() == []


# --- SQLite -------------------------------------------------------------------


async def test_sqlite_file_settings_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    task = rich_task(T0, T0 + timedelta(seconds=1))
    async with SQLiteTaskStore(path) as s:
        await s.create(task)
    async with SQLiteTaskStore(str(path)) as s:
        assert await s.get(task.id) == task
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = [r[1] for r in conn.execute("PRAGMA table_info(tasks)")]
        assert cols == [
            "id",
            "status",
            "version",
            "idempotency_key",
            "created_at",
            "finished_at",
            "data",
        ]
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(tasks)")}
        assert {"tasks_status_idx", "tasks_created_idx"} <= indexes
        (data,) = conn.execute("SELECT data FROM tasks").fetchone()
        assert json.loads(data) == task.to_dict(include_diagnostics=True)
    finally:
        conn.close()


async def test_sqlite_closed_store_refuses_calls(tmp_path: Path) -> None:
    s = SQLiteTaskStore(tmp_path / "c.db")
    await s.create(make_task())
    await s.aclose()
    await s.aclose()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        await s.list()


async def test_sqlite_unusable_path_names_it(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "t.db"
    async with SQLiteTaskStore(path) as s:
        with pytest.raises(ConfigurationError, match="missing-dir"):
            await s.list()


async def test_sqlite_two_processes_race_each_transition_won_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    tasks = [make_task() for _ in range(150)]
    async with SQLiteTaskStore(path) as s:
        for t in tasks:
            await s.create(t)

    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.store_helpers",
            str(path),
            name,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for name in ("p1", "p2")
    ]
    for p in procs:
        assert p.stdout is not None
        assert (await p.stdout.readline()).strip() == b"ready"
    for p in procs:  # both are waiting: start them together
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        await p.stdin.drain()
    outs = await asyncio.gather(*(p.communicate() for p in procs))
    assert [p.returncode for p in procs] == [0, 0]

    won = {name: json.loads(out) for name, (out, _) in zip(("p1", "p2"), outs, strict=True)}
    counts = Counter((tid, step) for wins in won.values() for tid, step in wins)
    expected = {(t.id, step) for t in tasks for step in ("running", "completed")}
    assert set(counts) == expected
    assert set(counts.values()) == {1}

    runner = {tid: n for n, wins in won.items() for tid, step in wins if step == "running"}
    finisher = {tid: n for n, wins in won.items() for tid, step in wins if step == "completed"}
    async with SQLiteTaskStore(path) as s:
        final = await s.list()
    assert len(final) == len(tasks)
    for t in final:
        assert t.status is TaskStatus.COMPLETED
        assert t.version == 2
        assert t.worker == runner[t.id]
        assert t.metadata == {"completed_by": finisher[t.id]}


# --- Redis --------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_leaves_no_keys_behind() -> None:
    prefix = f"test_ft_{uuid.uuid4().hex[:12]}"
    try:
        async with RedisTaskStore(REDIS_URL, prefix=prefix) as s:
            a = make_task(idempotency_key="ka")
            b = make_task(status=TaskStatus.RUNNING, idempotency_key="kb")
            await s.create(a)
            await s.create(b)
            done = b.evolve(status=TaskStatus.COMPLETED, finished_at=T0)
            assert await s.replace(b, done)
            await s.delete(a.id)
            assert await s.purge(utcnow()) == 1
            assert await s.list() == []
    finally:
        left = await _redis_cleanup(prefix)
    assert left == []


@pytest.mark.redis
async def test_redis_keeps_a_client_it_was_given() -> None:
    prefix = f"test_ft_{uuid.uuid4().hex[:12]}"
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with RedisTaskStore(prefix=prefix, client=client) as s:
            task = make_task()
            await s.create(task)
            assert await s.get(task.id) == task
        assert await client.ping()
        with pytest.raises(RuntimeError, match="closed"):
            await s.get(task.id)
        raw = await client.hget(f"{prefix}:task:{task.id}", "data")
        assert json.loads(raw) == task.to_dict(include_diagnostics=True)
    finally:
        await client.aclose()
        await _redis_cleanup(prefix)


@pytest.mark.redis
async def test_redis_unreachable_server_raises(dead_endpoint: str) -> None:
    port = urlsplit(dead_endpoint).port
    async with RedisTaskStore(f"redis://127.0.0.1:{port}/0", prefix="x") as s:
        with pytest.raises(redis.exceptions.ConnectionError):
            await s.create(make_task())


def test_redis_bad_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("'http://127.0.0.1:6379'")):
        RedisTaskStore("http://127.0.0.1:6379")


def test_redis_prefix_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="'a b'"):
        RedisTaskStore(prefix="a b")
    with pytest.raises(ConfigurationError, match="''"):
        RedisTaskStore(prefix="")


# --- PostgreSQL ---------------------------------------------------------------


@pytest.mark.parametrize(
    "table", ['x"; DROP TABLE users; --', "1abc", "a" * 49, "a.b", "", "tab le", "ä"]
)
def test_postgres_table_name_is_validated(table: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid PostgreSQL table name"):
        PostgresTaskStore(table=table)


@pytest.mark.postgres
async def test_postgres_keeps_a_pool_it_was_given_and_schema() -> None:
    table = f"test_ft_{uuid.uuid4().hex[:12]}"
    pool = await asyncpg.create_pool(PG_DSN, min_size=1, max_size=2)
    try:
        task = make_task(finished_at=T0, status=TaskStatus.FAILED, idempotency_key="k")
        async with PostgresTaskStore(table=table, pool=pool) as s:
            await s.create(task)
        assert not pool.is_closing()
        row = await pool.fetchrow(
            "SELECT id, status, version, idempotency_key, created_at, finished_at, data "
            f'FROM "{table}"'
        )
        assert row["id"] == task.id
        assert row["status"] == "failed"
        assert row["finished_at"] == T0
        assert row["created_at"] == task.created_at
        assert json.loads(row["data"]) == task.to_dict(include_diagnostics=True)
        with pytest.raises(RuntimeError, match="closed"):
            await s.get(task.id)
    finally:
        await pool.execute(f'DROP TABLE IF EXISTS "{table}", "{table}_outbox"')
        await pool.close()


@pytest.mark.postgres
async def test_postgres_works_with_a_pool_that_decodes_jsonb() -> None:
    async def init(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )

    table = f"test_ft_{uuid.uuid4().hex[:12]}"
    pool = await asyncpg.create_pool(PG_DSN, min_size=1, max_size=2, init=init)
    try:
        async with PostgresTaskStore(table=table, pool=pool) as s:
            task = rich_task(T0, T0)
            assert await s.create(task) == task
            assert await s.get(task.id) == task
            assert await s.list() == [task]
            assert await s.replace(task, task.evolve(progress=0.5))
        # The column holds a JSON object, not a JSON string.
        assert (await pool.fetchval(f'SELECT data FROM "{table}"'))["id"] == task.id
    finally:
        await pool.execute(f'DROP TABLE IF EXISTS "{table}"')
        await pool.close()


@pytest.mark.postgres
async def test_postgres_first_use_from_many_stores_at_once() -> None:
    table = f"test_ft_{uuid.uuid4().hex[:12]}"
    stores = [PostgresTaskStore(table=table, max_connections=2) for _ in range(4)]
    try:
        tasks = [make_task() for _ in stores]
        await asyncio.gather(*(s.create(t) for s, t in zip(stores, tasks, strict=True)))
        assert {t.id for t in await stores[0].list()} == {t.id for t in tasks}
    finally:
        for s in stores:
            await s.aclose()
        await _pg_drop(table)


@pytest.mark.postgres
async def test_postgres_refuses_nul_character() -> None:
    table = f"test_ft_{uuid.uuid4().hex[:12]}"
    try:
        async with PostgresTaskStore(table=table) as s:
            bad = make_task(diagnostics="before\x00after")
            with pytest.raises(InvalidSpecError, match=bad.id):
                await s.create(bad)
            assert await s.list() == []
    finally:
        await _pg_drop(table)


@pytest.mark.postgres
async def test_postgres_unreachable_server_raises(dead_endpoint: str) -> None:
    port = urlsplit(dead_endpoint).port
    async with PostgresTaskStore(f"postgresql://postgres@127.0.0.1:{port}/test") as s:
        with pytest.raises(OSError):
            await s.get("x")


# --- optional drivers ---------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_core_import_does_not_load_drivers() -> None:
    r = _python(
        "import sys, ffmpeg_tasks.store\n"
        "assert 'redis' not in sys.modules and 'asyncpg' not in sys.modules, sorted(sys.modules)"
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("module", "make", "extra"),
    [
        ("redis", "RedisTaskStore()", "ffmpeg-tasks[redis]"),
        ("asyncpg", "PostgresTaskStore()", "ffmpeg-tasks[postgres]"),
    ],
)
def test_missing_driver_is_a_configuration_error(module: str, make: str, extra: str) -> None:
    r = _python(
        f"import sys; sys.modules[{module!r}] = None\n"
        "from ffmpeg_tasks.errors import ConfigurationError\n"
        "from ffmpeg_tasks.store import PostgresTaskStore, RedisTaskStore\n"
        f"try:\n    {make}\nexcept ConfigurationError as e:\n    print(e)\n"
        "else:\n    raise SystemExit('no error')\n"
    )
    assert r.returncode == 0, r.stderr
    assert extra in r.stdout


# -- the outbox (webhook deliveries that survive a restart) -------------------------


async def test_outbox_claims_due_entries_once_per_lease(store: TaskStore) -> None:
    assert isinstance(store, Outbox)
    await store.outbox_put("hooks", "a", {"n": 1, "body": "é"}, due=100.0)
    await store.outbox_put("hooks", "b", {"n": 2}, due=200.0)
    await store.outbox_put("other", "c", {"n": 3}, due=0.0)
    assert await store.outbox_claim("hooks", now=150.0, lease=60.0) == [
        ("a", {"n": 1, "body": "é"})
    ]
    assert await store.outbox_claim("hooks", now=150.0, lease=60.0) == []  # leased
    claimed = await store.outbox_claim("hooks", now=300.0, lease=60.0)
    assert sorted(i for i, _ in claimed) == ["a", "b"]  # the lease of a ran out
    await store.outbox_put("hooks", "a", {"n": 10}, due=0.0)  # overwrite: a retry's state
    await store.outbox_done("hooks", "b")
    await store.outbox_done("hooks", "missing")
    assert await store.outbox_claim("hooks", now=1000.0, lease=1.0) == [("a", {"n": 10})]
    assert await store.outbox_claim("other", now=1.0, lease=1.0) == [("c", {"n": 3})]
