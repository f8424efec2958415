"""Signed webhooks: POST a task to a URL when it ends.

    async with Webhook("https://app.example/hooks/ffmpeg", secret=SECRET) as hook:
        async with TaskManager(on_event=hook) as tm:
            await tm.run(...)

Each delivery is a JSON body ``{"event": "completed", "task": {...}}`` (``task`` is
``Task.to_dict()``, without ffmpeg diagnostics) with three headers:

- ``X-FFmpeg-Tasks-Timestamp``: unix seconds when this attempt was signed;
- ``X-FFmpeg-Tasks-Signature``: ``sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``;
- ``X-FFmpeg-Tasks-Delivery``: an id that stays the same across retries (deduplicate on it).

Receivers check a delivery with :func:`verify_signature` — no web framework needed.
Deliveries run in the background (the task never waits for them) and are retried
with backoff on connection errors, timeouts, 408, 425, 429 and 5xx; redirects are
not followed.  Unless ``allow_private_networks=True`` the target must be a public
address, checked on the very addresses connected to (the downloader's SSRF rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Collection, Mapping
from typing import Any, Literal

import aiohttp
import attrs
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from ._lifecycle import AsyncResource, cancel_and_wait
from ._version import __version__
from .downloader.addresses import check_host, is_public_address, parse_ip
from .downloader.http import AddressFilteringResolver, BlockedConnectError, retry_after_seconds
from .errors import ConfigurationError, WebhookError
from .events import Event, EventType
from .retry import RetryPolicy
from .store.base import Outbox, TaskStore
from .webhook_signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    STANDARD_ID_HEADER,
    STANDARD_SIGNATURE_HEADER,
    STANDARD_TIMESTAMP_HEADER,
    TIMESTAMP_HEADER,
    _key,
    sign,
    sign_standard,
    standard_key,
    verify_signature,
    verify_standard,
)

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Webhook",
    "sign",
    "sign_standard",
    "verify_signature",
    "verify_standard",
]

log = logging.getLogger(__name__)

_TRANSIENT = frozenset({408, 425, 429})
_USER_AGENT = f"ffmpeg-tasks-webhook/{__version__}"


class Webhook(AsyncResource):
    """An event handler that POSTs terminal task events to ``url``, signed with ``secret``.

    Use it as ``TaskManager(on_event=hook)`` or ``tm.add_event_handler(hook)``.
    ``events`` selects the event types delivered (default: the three terminal ones).
    ``retry`` sets attempts and backoff; ``timeout`` bounds each attempt in seconds.
    A passed-in ``session`` is used as is and not closed; its target host is then
    checked by a separate lookup before each attempt (no DNS-rebinding protection —
    give it a connector with ``AddressFilteringResolver`` for that).  ``aclose()``
    waits for deliveries still in flight, then closes the session it created.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | bytes,
        events: Collection[str | EventType] = ("completed", "failed", "cancelled"),
        retry: RetryPolicy | None = None,
        timeout: float = 10,
        session: aiohttp.ClientSession | None = None,
        allow_private_networks: bool = False,
        headers: Mapping[str, str] | None = None,
        scheme: Literal["ffmpeg-tasks", "standard"] = "ffmpeg-tasks",
        lease: float = 60.0,
    ) -> None:
        self.url = url
        target = URL(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise ConfigurationError(f"webhook URL {url!r} must be an http(s) URL with a host")
        if target.user is not None or target.password is not None:
            raise ConfigurationError(
                f"webhook URL {target.with_user(None)!s} carries credentials; pass them in headers="
            )
        if not secret:
            raise ConfigurationError(f"webhook {url!r}: secret must not be empty")
        if scheme not in ("ffmpeg-tasks", "standard"):
            raise ConfigurationError(f"webhook {url!r}: scheme={scheme!r} is not known")
        if scheme == "standard":
            standard_key(secret if isinstance(secret, str) else secret.decode())
        if timeout <= 0:
            raise ConfigurationError(f"webhook {url!r}: timeout={timeout!r} must be > 0")
        try:
            self.events = frozenset(EventType(e) for e in events)
        except ValueError as exc:
            raise ConfigurationError(f"webhook {url!r}: {exc}") from None
        self.allow_private_networks = allow_private_networks
        if not allow_private_networks:
            reason = check_host(target.host, is_public_address)
            if reason is not None:
                raise ConfigurationError(
                    f"webhook URL {url!r} is not allowed: {reason} "
                    "(allow_private_networks=True permits it)"
                )
        self._target = target
        self.scheme = scheme
        self._secret = _key(secret)
        self._standard_secret = secret if isinstance(secret, str) else secret.decode()
        self.lease = lease
        self.topic = "webhook:" + hashlib.sha256(f"{scheme} {url}".encode()).hexdigest()[:16]
        self._outbox: Outbox | None = None
        self._resumer: asyncio.Task[None] | None = None
        self._resumed: set[asyncio.Future[None]] = set()
        self.retry = retry if retry is not None else RetryPolicy()
        self.timeout = timeout
        self._headers = dict(headers or {})
        self._session = session
        self._owns_session = session is None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"Webhook({self.url!r}, events={sorted(self.events)!r})"

    # -- the event handler ----------------------------------------------------

    def __call__(self, event: Event) -> Awaitable[None] | None:
        """Handle one event: return a delivery to run in the background, or None."""
        if event.type not in self.events or self._closed:
            return None
        return self._run(self.payload(event), uuid.uuid4().hex, event.type.value, 1, new=True)

    # -- the outbox: deliveries that survive a restart ---------------------------

    async def bind(self, store: TaskStore) -> None:
        """Keep pending deliveries in ``store`` (if it has an outbox) and resume those a
        stopped process left; called by the manager as it starts."""
        if not isinstance(store, Outbox) or not getattr(store, "durable", True) or self._closed:
            return  # nothing survives this process: deliveries are awaited at close instead
        self._outbox = store
        self._resumer = asyncio.create_task(self._resume_loop(), name="ffmpeg-tasks-webhook")

    async def unbind(self) -> None:
        """Stop using the store: deliveries in flight stop and stay due in the outbox
        for the next process; called by the manager before it closes the store."""
        if self._outbox is None:
            return  # not bound: deliveries in flight are awaited by aclose()
        resumer, self._resumer = self._resumer, None
        if resumer is not None:
            await cancel_and_wait(resumer)
        pending = [t for t in {*self._inflight, *self._resumed} if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        self._outbox = None

    async def _resume_loop(self, poll: float = 2.0) -> None:
        assert self._outbox is not None
        while True:
            try:
                claimed = await self._outbox.outbox_claim(
                    self.topic, time.time(), self.lease, limit=50
                )
            except Exception:
                log.warning("webhook %s: reading the outbox failed", self.url, exc_info=True)
                claimed = []
            for delivery, entry in claimed:
                log.info("webhook %s: resuming delivery %s", self.url, delivery)
                body = str(entry["body"]).encode()
                run = self._run(body, delivery, str(entry["event"]), int(entry["attempt"]))
                task = asyncio.ensure_future(run)
                self._resumed.add(task)
                task.add_done_callback(self._resumed.discard)
            await asyncio.sleep(poll)

    async def _save(self, body: bytes, delivery: str, event: str, attempt: int, due: float) -> None:
        if self._outbox is None:
            return
        entry = {"body": body.decode(), "event": event, "attempt": attempt}
        try:
            await self._outbox.outbox_put(self.topic, delivery, entry, due)
        except Exception:
            log.warning("webhook %s: could not save delivery %s", self.url, delivery)

    async def _done(self, delivery: str) -> None:
        if self._outbox is None:
            return
        try:
            await self._outbox.outbox_done(self.topic, delivery)
        except Exception:
            log.warning("webhook %s: could not clear delivery %s", self.url, delivery)

    async def _run(
        self, body: bytes, delivery: str, event: str, attempt: int, *, new: bool = False
    ) -> None:
        """Deliver in the background: saved first, cleared once delivered or refused."""
        current = asyncio.current_task()
        if current is not None:
            self._inflight.add(current)
        try:
            if new:
                await self._save(body, delivery, event, attempt, time.time() + self.lease)
            try:
                await self._deliver(body, delivery, event, attempt)
            except WebhookError as exc:
                log.warning("webhook %s: delivery %s failed for good: %s", self.url, delivery, exc)
            except asyncio.CancelledError:
                # stopping: the entry stays, due now, for the next process
                await asyncio.shield(self._save(body, delivery, event, attempt, time.time()))
                raise
            await self._done(delivery)
        finally:
            if current is not None:
                self._inflight.discard(current)

    def payload(self, event: Event) -> bytes:
        """The JSON body sent for ``event``."""
        task = event.task.to_dict() if event.task is not None else {"id": event.task_id}
        data = {"event": event.type.value, "task": task}
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    async def deliver(self, event: Event) -> int:
        """POST ``event`` now, retrying as configured; return the accepting HTTP status.

        Raises :class:`WebhookError` once attempts run out, on a refused address,
        or on a non-retryable answer (other 4xx, 3xx).
        """
        return await self._deliver(self.payload(event), uuid.uuid4().hex, event.type.value, 1)

    async def _deliver(self, body: bytes, delivery: str, event: str, attempt: int) -> int:
        while True:
            outcome = await self._attempt(body, delivery, event)
            if outcome.problem is None:
                return outcome.status
            if not outcome.retryable or attempt >= self.retry.attempts:
                raise WebhookError(
                    f"webhook {self.url}: {outcome.problem} "
                    f"(attempt {attempt} of {self.retry.attempts})",
                    url=self.url,
                    status=outcome.status or None,
                )
            wait = self.retry.delay(attempt, outcome.retry_after)
            log.info("webhook %s: %s; retrying in %.1fs", self.url, outcome.problem, wait)
            attempt += 1
            await self._save(body, delivery, event, attempt, time.time() + wait + self.lease)
            await asyncio.sleep(wait)

    async def _attempt(self, body: bytes, delivery: str, event: str) -> _Outcome:
        """One signed POST."""
        timestamp = int(time.time())
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            EVENT_HEADER: event,
        }
        if self.scheme == "standard":
            headers[STANDARD_ID_HEADER] = delivery
            headers[STANDARD_TIMESTAMP_HEADER] = str(timestamp)
            headers[STANDARD_SIGNATURE_HEADER] = sign_standard(
                self._standard_secret, delivery, timestamp, body
            )
        else:
            headers[DELIVERY_HEADER] = delivery
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        session = self._get_session()
        try:
            await self._preflight()
            async with session.post(
                self._target,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                status = resp.status
                hint = retry_after_seconds(resp.headers.get("Retry-After"))
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await resp.content.read(64 * 1024)  # small, so the connection is reusable
        except BlockedConnectError as exc:
            return _Outcome(0, f"address refused: {exc.strerror or exc}", retryable=False)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedConnectError):
                return _Outcome(0, f"address refused: {exc.os_error}", retryable=False)
            return _Outcome(0, f"could not connect ({exc.os_error.strerror or exc.os_error})")
        except TimeoutError:
            return _Outcome(0, f"no answer within {self.timeout}s")
        except aiohttp.ClientError as exc:
            return _Outcome(0, f"connection failed ({type(exc).__name__})")
        if 200 <= status < 300:
            return _Outcome(status, None)
        if status in _TRANSIENT or status >= 500:
            return _Outcome(status, f"HTTP {status}", retry_after=hint)
        if 300 <= status < 400:
            return _Outcome(status, f"HTTP {status} (redirects are not followed)", retryable=False)
        return _Outcome(status, f"HTTP {status}", retryable=False)

    # -- session ----------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise WebhookError(f"webhook {self.url}: closed", url=self.url, code="closed")
        if self._session is None or (self._owns_session and self._session.closed):
            resolver: AbstractResolver = (
                DefaultResolver()
                if self.allow_private_networks
                else AddressFilteringResolver(is_public_address, timeout=self.timeout)
            )
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=resolver, limit=16),
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._owns_session = True
        return self._session

    async def _preflight(self) -> None:
        """Check the host with a separate lookup when the session is not ours."""
        host = self._target.host
        if self.allow_private_networks or self._owns_session or host is None:
            return
        if parse_ip(host) is not None:
            return  # a literal: checked in __init__
        resolver = AddressFilteringResolver(is_public_address, timeout=self.timeout)
        try:
            await resolver.resolve(host, self._target.port or 0, socket.AF_UNSPEC)
        finally:
            await resolver.close()

    async def aclose(self) -> None:
        """Wait for deliveries in flight (with an outbox: stop them, they stay due), then
        close the session this webhook created."""
        if self._outbox is not None:
            await self.unbind()
        pending = [t for t in self._inflight if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending)
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()


@attrs.frozen
class _Outcome:
    """What one attempt gave: ``problem`` is None on success."""

    status: int
    problem: str | None
    retryable: bool = True
    retry_after: float | None = None
