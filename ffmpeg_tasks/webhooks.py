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
import hmac
import json
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Collection, Mapping
from typing import Any

import aiohttp
import attrs
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from ._lifecycle import AsyncResource
from ._version import __version__
from .downloader.addresses import check_host, is_public_address, parse_ip
from .downloader.http import AddressFilteringResolver, BlockedConnectError, retry_after_seconds
from .errors import ConfigurationError, WebhookError
from .events import Event, EventType
from .retry import RetryPolicy

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Webhook",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-FFmpeg-Tasks-Timestamp"
SIGNATURE_HEADER = "X-FFmpeg-Tasks-Signature"
DELIVERY_HEADER = "X-FFmpeg-Tasks-Delivery"
EVENT_HEADER = "X-FFmpeg-Tasks-Event"

_TRANSIENT = frozenset({408, 425, 429})
_USER_AGENT = f"ffmpeg-tasks-webhook/{__version__}"


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def sign(secret: str | bytes, timestamp: int | str, body: bytes | str) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    data = body.encode() if isinstance(body, str) else body
    mac = hmac.new(_key(secret), f"{timestamp}.".encode() + data, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: int | str,
    body: bytes | str,
    signature: str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """True if ``signature`` signs ``body`` at ``timestamp`` and the timestamp is fresh.

    ``timestamp`` and ``signature`` are the header values as received, ``body`` the
    raw request body (not re-serialised JSON).  A timestamp more than ``tolerance``
    seconds away from ``now`` (default: the current time) fails, so a captured
    delivery cannot be replayed later.  The comparison is constant-time.
    """
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = sign(secret, ts, body)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


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
        self._secret = _key(secret)
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
        return self._deliver_logged(event)

    async def _deliver_logged(self, event: Event) -> None:
        current = asyncio.current_task()
        if current is not None:
            self._inflight.add(current)
        try:
            await self.deliver(event)
        except WebhookError as exc:
            log.warning("webhook for task %s not delivered: %s", event.task_id, exc)
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
        body = self.payload(event)
        delivery = uuid.uuid4().hex
        attempt = 1
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
            await asyncio.sleep(wait)
            attempt += 1

    async def _attempt(self, body: bytes, delivery: str, event: Event) -> _Outcome:
        """One signed POST."""
        timestamp = int(time.time())
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            EVENT_HEADER: event.type.value,
            DELIVERY_HEADER: delivery,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
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
        """Wait for deliveries in flight, then close the session this webhook created."""
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
