"""Standard Webhooks signatures, checked by the ``standardwebhooks`` package, and
deliveries that survive a restart through the task store's outbox (SQLite, Redis,
PostgreSQL), with their original webhook id."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook as StandardVerifier

from ffmpeg_tasks import ConfigurationError, RetryPolicy, TaskManager
from ffmpeg_tasks.store import PostgresTaskStore, RedisTaskStore, SQLiteTaskStore
from ffmpeg_tasks.store.base import TaskStore
from ffmpeg_tasks.webhooks import Webhook, verify_standard

from .helpers import make_manager
from .servers import MediaServer

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
REDIS_URL = "redis://127.0.0.1:6379/0"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: Slow enough that a manager closes while the delivery waits for its next attempt.
PATIENT = RetryPolicy(attempts=5, base_delay=30, max_delay=30)


@attrs.define
class Receiver:
    url: str = ""
    script: list[int] = attrs.field(factory=list)
    seen: list[tuple[int, dict[str, str], bytes]] = attrs.field(factory=list)

    def accepted(self) -> list[tuple[int, dict[str, str], bytes]]:
        return [s for s in self.seen if s[0] == 200]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        status = rec.script.pop(0) if rec.script else 200
        rec.seen.append((status, dict(request.headers), body))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield rec
    await runner.cleanup()


async def run_one(tm: TaskManager, media_server: MediaServer) -> str:
    task = await tm.run(
        "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4"
    )
    assert task.status == "completed", task.error
    return task.id


async def test_standard_webhooks_verify_with_the_reference_library(
    tmp_path: Path, media_server: MediaServer, receiver: Receiver
) -> None:
    hook = Webhook(receiver.url, secret=SECRET, scheme="standard", allow_private_networks=True)
    async with hook, make_manager(tmp_path, on_event=hook) as tm:
        task_id = await run_one(tm, media_server)
    ((_, headers, body),) = receiver.seen
    payload = StandardVerifier(SECRET).verify(body, headers)  # raises if the signature is bad
    assert payload["task"]["id"] == task_id and payload["event"] == "completed"
    assert verify_standard(SECRET, headers, body)
    assert not verify_standard(SECRET, headers, body + b" ")
    assert headers["webhook-id"] and "X-FFmpeg-Tasks-Signature" not in headers


def test_a_standard_secret_must_be_whsec_base64() -> None:
    for bad in ("s3cret", "whsec_***", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ConfigurationError):
            Webhook("https://example.com/h", secret=bad, scheme="standard")


StoreFactory = Callable[[], TaskStore]


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def durable_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        yield lambda: SQLiteTaskStore(tmp_path / "tasks.db")
        return
    if request.param == "redis":
        yield lambda: RedisTaskStore(REDIS_URL, prefix=name)
        import redis.asyncio as aioredis

        client = aioredis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=f"{name}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        return
    yield lambda: PostgresTaskStore(PG_DSN, table=name)
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(f'DROP TABLE IF EXISTS "{name}", "{name}_outbox"')
    await conn.close()


@pytest.mark.parametrize("scheme", ["ffmpeg-tasks", "standard"])
async def test_a_delivery_pending_at_a_restart_is_delivered_after_it(
    tmp_path: Path,
    media_server: MediaServer,
    receiver: Receiver,
    durable_store: StoreFactory,
    scheme: str,
) -> None:
    receiver.script = [503]  # the first attempt fails; the next is 30 s away
    secret = SECRET if scheme == "standard" else "plain-secret"

    def hook() -> Webhook:
        return Webhook(
            receiver.url, secret=secret, scheme=scheme, retry=PATIENT,  # type: ignore[arg-type]
            allow_private_networks=True,
        )  # fmt: skip

    first = hook()
    async with first, make_manager(tmp_path, store=durable_store(), on_event=first) as tm:
        await run_one(tm, media_server)
        async with asyncio.timeout(10):
            while not receiver.seen:
                await asyncio.sleep(0.02)
    # The manager closed while the delivery waited: nothing accepted yet.
    assert [s[0] for s in receiver.seen] == [503]
    sent = receiver.seen[0][1]
    first_id = sent.get("webhook-id") or sent["X-FFmpeg-Tasks-Delivery"]

    second = hook()  # a new process: same store, same webhook
    async with second, make_manager(tmp_path, store=durable_store(), on_event=second):
        async with asyncio.timeout(20):
            while not receiver.accepted():
                await asyncio.sleep(0.05)
    ((_, headers, body),) = receiver.accepted()
    again_id = headers.get("webhook-id") or headers["X-FFmpeg-Tasks-Delivery"]
    assert again_id == first_id  # the original id: receivers deduplicate on it
    if scheme == "standard":
        StandardVerifier(SECRET).verify(body, headers)

    third = hook()  # delivered: nothing is left to resume
    async with third, make_manager(tmp_path, store=durable_store(), on_event=third):
        await asyncio.sleep(2.5)
    assert len(receiver.accepted()) == 1
