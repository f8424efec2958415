"""The backend conformance kit (``ffmpeg_tasks.testing``) against every engine we ship.

saq on Redis and on PostgreSQL, Celery on RabbitMQ and on Redis: real brokers, real
worker processes started through the public entry points (``ffmpeg-tasks worker`` and
``celery -A ffmpeg_tasks.backends.celery worker``), real ffmpeg, real kill -9.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ffmpeg_tasks.backends import CeleryBackend, SaqBackend
from ffmpeg_tasks.store import PostgresTaskStore, RedisTaskStore
from ffmpeg_tasks.testing import CHECKS, Conformance, EngineSetup

from .servers import MediaServer

REDIS = "redis://127.0.0.1:6379/0"
CELERY_REDIS = "redis://127.0.0.1:6379/1"
PG = "postgresql://postgres@127.0.0.1:5432/test"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def _cli(engine: str, queue: str, name: str, store: str, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "ffmpeg_tasks", "worker", "--engine", engine,
        "--queue", queue, "--queue-name", name, "--store", store, "--store-prefix", name,
        "--storage-dir", str(out), "--allow-private-networks", "--shutdown-grace", "2",
        "--concurrency", "1", "-v",
    ]  # fmt: skip


def _engines(name: str, out: Path) -> dict[str, EngineSetup]:
    worker_env = {"FFMPEG_TASKS_STORE": REDIS, "FFMPEG_TASKS_STORE_PREFIX": name,
                  "FFMPEG_TASKS_STORAGE_DIR": str(out), "FFMPEG_TASKS_QUEUE": CELERY_REDIS,
                  "FFMPEG_TASKS_QUEUE_NAME": name, "FFMPEG_TASKS_SHUTDOWN_GRACE": "2",
                  "FFMPEG_TASKS_ALLOW_PRIVATE_NETWORKS": "1",
                  "FFMPEG_TASKS_VISIBILITY_TIMEOUT": "6"}  # fmt: skip
    return {
        "saq-redis": EngineSetup(
            name="saq-redis",
            backend=lambda: SaqBackend(REDIS, name=name, heartbeat=2),
            store=lambda: RedisTaskStore(REDIS, prefix=name),
            worker_argv=[*_cli("saq", REDIS, name, REDIS, out), "--sweep-interval", "1"],
        ),
        "saq-postgres": EngineSetup(
            name="saq-postgres",
            backend=lambda: SaqBackend(PG, name=name, heartbeat=2),
            store=lambda: PostgresTaskStore(PG, table=name),
            worker_argv=[*_cli("saq", PG, name, PG, out), "--sweep-interval", "1"],
        ),
        "celery-rabbitmq": EngineSetup(
            name="celery-rabbitmq",
            backend=lambda: CeleryBackend(AMQP, queue=name),
            store=lambda: RedisTaskStore(REDIS, prefix=name),
            worker_argv=_cli("celery", AMQP, name, REDIS, out),
        ),
        # Celery's own command line, configured from the environment like from_env.
        "celery-redis": EngineSetup(
            name="celery-redis",
            backend=lambda: CeleryBackend(CELERY_REDIS, queue=name, visibility_timeout=6),
            store=lambda: RedisTaskStore(REDIS, prefix=name),
            worker_argv=[sys.executable, "-m", "celery", "-A", "ffmpeg_tasks.backends.celery",
                         "worker", "-Q", name, "-c", "1", "--loglevel", "INFO",
                         "-n", f"{name}-%i@%h", "--without-gossip", "--without-mingle"],
            worker_env=worker_env,
            recovery_delay=6,  # the visibility timeout
        ),
    }  # fmt: skip


#: Every engine passes every check; the slowest ones (kill -9, SIGTERM) run on the
#: engines whose mechanics differ (saq's sweep on Redis, the broker's redelivery).
MATRIX = [
    *[("saq-redis", c) for c in CHECKS],
    *[("celery-rabbitmq", c) for c in CHECKS],
    ("saq-postgres", "completes_once"),
    ("saq-postgres", "events_reach_any_process"),
    ("saq-postgres", "remote_cancel_stops_ffmpeg"),
    ("saq-postgres", "kill_9_reruns_elsewhere"),
    ("celery-redis", "completes_once"),
    ("celery-redis", "enqueue_twice_is_harmless"),
    ("celery-redis", "remote_cancel_stops_ffmpeg"),
    ("celery-redis", "kill_9_reruns_elsewhere"),
]


@pytest.fixture
async def cleanup() -> AsyncIterator[Callable[[str], None]]:
    names: list[str] = []
    yield names.append
    import psycopg
    import redis.asyncio as aioredis

    for url in (REDIS, CELERY_REDIS):
        client = aioredis.from_url(url)
        for name in names:
            keys = [k async for k in client.scan_iter(match=f"*{name}*", count=500)]
            if keys:
                await client.delete(*keys)
        await client.aclose()
    async with await psycopg.AsyncConnection.connect(PG, autocommit=True) as conn:
        # saq creates saq_jobs on first use: on a fresh server it may not exist yet.
        found = await (await conn.execute("SELECT to_regclass('saq_jobs')")).fetchone()
        for name in names:
            if found is not None and found[0] is not None:
                await conn.execute("DELETE FROM saq_jobs WHERE queue = %s", (name,))
            await conn.execute(f'DROP TABLE IF EXISTS "{name}", "{name}_outbox"')


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("engine", "check"), MATRIX, ids=[f"{e}-{c}" for e, c in MATRIX])
async def test_engine_passes(
    engine: str,
    check: str,
    tmp_path: Path,
    media_server: MediaServer,
    cleanup: Callable[[str], None],
) -> None:
    name = f"t{uuid.uuid4().hex[:10]}"
    cleanup(name)
    out = tmp_path / "out"
    setup = _engines(name, out)[engine]
    kit = Conformance(
        setup, input_url=media_server.media_url("long.mp4"), storage_dir=out, log_dir=tmp_path
    )
    async with kit:
        await getattr(kit, check)()
