"""Webhooks against a real aiohttp receiver, driven by real TaskManager runs."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from aiohttp import web

from ffmpeg_tasks import (
    ConfigurationError,
    HttpDownloader,
    LocalStorage,
    RetryPolicy,
    TaskManager,
    WebhookError,
)
from ffmpeg_tasks.events import Event, EventType
from ffmpeg_tasks.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Webhook,
    sign,
    verify_signature,
)

from .servers import MediaServer

SECRET = "s3cr3t-for-tests"
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


@attrs.define
class Delivery:
    status: int
    headers: dict[str, str]
    body: bytes
    valid: bool


@attrs.define
class Receiver:
    """A webhook receiver: answers with ``script`` statuses in turn, then 200."""

    url: str
    deliveries: list[Delivery]
    script: list[int]
    gate: asyncio.Event | None = None

    @property
    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.status == 200]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(url="", deliveries=[], script=[])

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        valid = verify_signature(
            SECRET,
            request.headers.get(TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
        )
        if rec.gate is not None:
            await rec.gate.wait()
        status = rec.script.pop(0) if rec.script else (200 if valid else 401)
        rec.deliveries.append(Delivery(status, dict(request.headers), body, valid))
        return web.Response(status=status, text="ok" if status == 200 else "nope")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


def manager(tmp_path: Path, **kwargs: object) -> TaskManager:
    return TaskManager(
        storage=LocalStorage(tmp_path / "out"),
        downloader=HttpDownloader(allow_private_networks=True),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_delivered_once_with_valid_signature_after_two_503s(
    tmp_path: Path, media_server: MediaServer, receiver: Receiver
) -> None:
    receiver.script = [503, 503]
    async with (
        Webhook(receiver.url, secret=SECRET, retry=FAST, allow_private_networks=True) as hook,
        manager(tmp_path, on_event=hook) as tm,
    ):
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "out.mp4",
        )
        # tm.aclose() waited for the delivery
    assert task.status == "completed"
    assert [d.status for d in receiver.deliveries] == [503, 503, 200]
    assert all(d.valid for d in receiver.deliveries)
    assert len({d.headers[DELIVERY_HEADER] for d in receiver.deliveries}) == 1  # same delivery id
    (accepted,) = receiver.accepted
    payload = json.loads(accepted.body)
    assert payload["event"] == "completed"
    assert payload["task"]["id"] == task.id
    assert payload["task"]["status"] == "completed"
    assert payload["task"]["output_url"] == task.output_url
    assert "diagnostics" not in payload["task"]
    assert accepted.headers["Content-Type"] == "application/json"


async def test_failed_task_delivered_with_error_code(
    tmp_path: Path, media_server: MediaServer, receiver: Receiver
) -> None:
    async with (
        Webhook(receiver.url, secret=SECRET, retry=FAST, allow_private_networks=True) as hook,
        manager(tmp_path, retry=RetryPolicy.none()) as tm,
    ):
        tm.add_event_handler(hook)
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.url("status/404")}, "out.mp4"
        )
    assert task.status == "failed"
    (accepted,) = receiver.accepted
    payload = json.loads(accepted.body)
    assert payload["event"] == "failed"
    assert payload["task"]["error_code"] == task.error_code == "download_http_error"


async def test_only_selected_events_are_posted(
    tmp_path: Path, media_server: MediaServer, receiver: Receiver
) -> None:
    hook = Webhook(
        receiver.url, secret=SECRET, events=("started",), retry=FAST, allow_private_networks=True
    )
    async with hook, manager(tmp_path, on_event=hook) as tm:
        await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4"
        )
    assert [json.loads(d.body)["event"] for d in receiver.deliveries] == ["started"]


async def test_slow_receiver_does_not_hold_up_the_task(
    tmp_path: Path, media_server: MediaServer, receiver: Receiver
) -> None:
    receiver.gate = asyncio.Event()
    hook = Webhook(receiver.url, secret=SECRET, retry=FAST, allow_private_networks=True)
    tm = manager(tmp_path, on_event=hook)
    task = await tm.run(
        "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4"
    )
    assert task.status == "completed"  # returned while the receiver still holds the POST
    assert receiver.deliveries == []
    receiver.gate.set()
    await tm.aclose()
    await hook.aclose()
    assert len(receiver.accepted) == 1


def _event(task_id: str = "t1") -> Event:
    return Event(EventType.COMPLETED, task_id)


async def test_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.script = [400]
    async with Webhook(
        receiver.url, secret=SECRET, retry=FAST, allow_private_networks=True
    ) as hook:
        with pytest.raises(WebhookError) as info:
            await hook.deliver(_event())
    assert info.value.status == 400
    assert receiver.url in str(info.value)
    assert len(receiver.deliveries) == 1


async def test_gives_up_after_the_configured_attempts(receiver: Receiver) -> None:
    receiver.script = [503] * 10
    retry = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    async with Webhook(
        receiver.url, secret=SECRET, retry=retry, allow_private_networks=True
    ) as hook:
        with pytest.raises(WebhookError, match="HTTP 503") as info:
            await hook.deliver(_event())
    assert info.value.code == "webhook_failed"
    assert len(receiver.deliveries) == 3


async def test_connection_refused_is_retried_then_reported(dead_endpoint: str) -> None:
    retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
    url = dead_endpoint + "/hook"
    async with Webhook(url, secret=SECRET, retry=retry, allow_private_networks=True) as hook:
        with pytest.raises(WebhookError, match="could not connect") as info:
            await hook.deliver(_event())
    assert "attempt 2 of 2" in str(info.value)
    assert info.value.status is None


async def test_redirect_is_not_followed(media_server: MediaServer, receiver: Receiver) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(receiver.url)

    media_server.handlers["hook-redirect"] = redirect
    url = media_server.url("x/hook-redirect")
    async with Webhook(url, secret=SECRET, retry=FAST, allow_private_networks=True) as hook:
        with pytest.raises(WebhookError, match="redirects are not followed"):
            await hook.deliver(_event())
    assert receiver.deliveries == []


# -- SSRF ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/hook",
        "http://localhost/hook",
        "http://2130706433/hook",
    ],
)
def test_private_targets_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="not allowed"):
        Webhook(url, secret=SECRET)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "example.com/hook", "http://user:pw@example.com/h"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        Webhook(url, secret=SECRET)


def _private_hostname() -> str | None:
    """This host's name if it resolves only to non-public addresses."""
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, 80)
    except OSError:
        return None
    import ipaddress

    from ffmpeg_tasks.downloader.addresses import is_public_address

    ips = [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]
    if not ips or any(is_public_address(ip) for ip in ips) or name.endswith("localhost"):
        return None
    return name


async def test_name_resolving_to_private_address_is_refused_when_delivering(
    receiver: Receiver,
) -> None:
    name = _private_hostname()
    if name is None:
        pytest.skip("this host's name does not resolve to a private address only")
    port = receiver.url.rsplit(":", 1)[1]
    hook = Webhook(f"http://{name}:{port}", secret=SECRET, retry=FAST)
    async with hook:
        with pytest.raises(WebhookError, match="address refused") as info:
            await hook.deliver(_event())
    assert "attempt 1 of" in str(info.value)  # refused addresses are not retried
    assert receiver.deliveries == []


# -- verify_signature ------------------------------------------------------------


BODY = b'{"event":"completed","task":{"id":"abc"}}'


def test_signature_round_trip() -> None:
    ts = int(time.time())
    assert verify_signature(SECRET, str(ts), BODY, sign(SECRET, ts, BODY))
    assert verify_signature(SECRET.encode(), ts, BODY.decode(), sign(SECRET, ts, BODY))


def test_signature_format_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, BODY) == f"sha256={expected}"


def test_bad_secret_fails_verification() -> None:
    ts = int(time.time())
    assert not verify_signature("another-secret", ts, BODY, sign(SECRET, ts, BODY))


def test_tampered_body_or_timestamp_fails_verification() -> None:
    ts = int(time.time())
    sig = sign(SECRET, ts, BODY)
    assert not verify_signature(SECRET, ts, BODY.replace(b"abc", b"abd"), sig)
    assert not verify_signature(SECRET, ts + 1, BODY, sig)
    assert not verify_signature(SECRET, "not-a-number", BODY, sig)
    assert not verify_signature(SECRET, ts, BODY, "sha256=")


def test_replay_outside_tolerance_fails() -> None:
    old = int(time.time()) - 301
    sig = sign(SECRET, old, BODY)
    assert not verify_signature(SECRET, old, BODY, sig)
    assert verify_signature(SECRET, old, BODY, sig, tolerance=600)
    assert not verify_signature(SECRET, old + 1000, BODY, sign(SECRET, old + 1000, BODY))
    assert verify_signature(SECRET, 1000, BODY, sign(SECRET, 1000, BODY), now=1100)
    assert not verify_signature(SECRET, 1000, BODY, sign(SECRET, 1000, BODY), now=1301)


def test_handler_ignores_events_it_was_not_asked_for() -> None:
    hook = Webhook("https://hooks.example.com/x", secret=SECRET)
    assert hook(Event(EventType.RUNNING, "t1", percent=50.0)) is None
    delivery = hook(_event())
    assert delivery is not None
    delivery.close()  # type: ignore[attr-defined]  # a coroutine we do not run


async def test_a_passed_session_is_used_and_left_open(receiver: Receiver) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        hook = Webhook(
            receiver.url, secret=SECRET, retry=FAST, session=session, allow_private_networks=True
        )
        async with hook:
            assert await hook.deliver(_event("with-session")) == 200
        assert not session.closed
    (accepted,) = receiver.accepted
    assert json.loads(accepted.body)["task"]["id"] == "with-session"


async def test_a_passed_session_still_gets_the_address_check(receiver: Receiver) -> None:
    import aiohttp

    name = _private_hostname()
    if name is None:
        pytest.skip("this host's name does not resolve to a private address only")
    port = receiver.url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as session:
        hook = Webhook(f"http://{name}:{port}", secret=SECRET, retry=FAST, session=session)
        with pytest.raises(WebhookError, match="address refused"):
            await hook.deliver(_event())
    assert receiver.deliveries == []
