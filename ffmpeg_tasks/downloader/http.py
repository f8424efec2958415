"""``HttpDownloader``: streamed aiohttp downloads with size caps, timeouts and SSRF checks.

    async with HttpDownloader() as dl:
        size = await dl.fetch("https://example.com/in.mp4", Path("work/in.mp4"))

Each fetch streams the body to ``<dest>.part`` (a thread does the file writes,
batched ~1 MiB per hop) and renames it to ``dest`` on success.  On failure the
``.part`` file is removed, except after a transient error (broken connection,
timeout) from a server that supports ranges: then it is kept so that a later
``fetch(..., resume=True)`` continues with ``Range: bytes=N-``.

Unless ``allow_private_networks=True`` every address connected to must pass
``address_filter`` (default :func:`~ffmpeg_tasks.downloader.addresses.is_public_address`).
IP-literal hosts are checked before the request; names are checked inside the
session's resolver, on the very addresses the socket then connects to, so a DNS
answer that changes between check and connect (rebinding) cannot slip through.
A name is refused if *any* of its addresses fails.  Redirects are followed by
hand (at most ``max_redirects``), re-checking every hop: scheme, credentials,
port, https->http downgrade, address.  Extra ``headers`` (e.g. Authorization)
are sent to the first URL's origin only.  Proxies from the environment are
ignored, cookies are not kept and bodies are stored exactly as sent (no
decompression).

Errors name the URL: DownloadHTTPError (with ``retry_after``), DownloadTimeoutError,
DownloadConnectionError (DNS, refused, reset, truncated body, bad certificate —
the last one not transient), DownloadTooLargeError, BlockedAddressError, and
DownloadError with code ``url_not_allowed``, ``invalid_url``, ``too_many_redirects``,
``bad_redirect``, ``bad_range``, ``disk_full`` (no space left in the work dir) or
``write_failed``; a local file is named by its name, never its host path.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import os
import socket
import time
from collections.abc import Awaitable, Collection, Mapping
from pathlib import Path

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from .._lifecycle import AsyncResource
from .._version import __version__
from ..error_codes import ErrorCode
from ..errors import (
    BlockedAddressError,
    ConfigurationError,
    DownloadConnectionError,
    DownloadError,
    DownloadHTTPError,
    DownloadTimeoutError,
    DownloadTooLargeError,
)
from ._partfile import LocalIOError, PartWriter, local, part_size, unlink
from .addresses import AddressFilter, check_host, is_public_address, parse_ip
from .base import DownloadProgress, Revalidated, Validator

__all__ = ["AddressFilteringResolver", "BlockedConnectError", "HttpDownloader"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_USER_AGENT = f"ffmpeg-tasks/{__version__}"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_OK = frozenset({200, 203})
_EVERY_ORIGIN = frozenset({"user-agent", "accept-encoding"})  # other headers: first origin only


class BlockedConnectError(OSError):
    """Raised by ``AddressFilteringResolver`` for a host with a blocked address.

    aiohttp wraps it in a connection error; ``fetch()`` turns it into ``BlockedAddressError``.
    """

    def __init__(self, host: str, addresses: list[str]) -> None:
        shown = ", ".join(addresses) if addresses else "no usable address"
        super().__init__(f"host {host!r} resolves to an address that is not allowed ({shown})")


class AddressFilteringResolver(AbstractResolver):
    """An aiohttp resolver that refuses a host if any of its addresses fails the filter.

    Wraps aiohttp's ``DefaultResolver``; ``timeout`` bounds the lookup.  Use it in
    your own ``TCPConnector(resolver=...)`` if you pass a session to HttpDownloader.
    """

    def __init__(
        self,
        address_filter: AddressFilter = is_public_address,
        *,
        timeout: float | None = None,
        inner: AbstractResolver | None = None,
    ) -> None:
        self._filter = address_filter
        self._timeout = timeout
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host``; raise OSError if any resolved address is refused."""
        async with asyncio.timeout(self._timeout):
            results = await self._inner.resolve(host, port, family)
        blocked = []
        for result in results:
            ip = parse_ip(result["host"])
            if ip is None or not self._filter(ip):
                blocked.append(result["host"])
        if blocked or not results:
            raise BlockedConnectError(host.rstrip("."), blocked)
        return results

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


class HttpDownloader(AsyncResource):
    """Downloads http(s) URLs with aiohttp.  See the module docstring.

    ``max_bytes`` caps every download (a ``fetch(max_bytes=...)`` can only lower
    it); ``headers_timeout`` bounds the wait from sending a request to its complete
    response headers (a server dripping header bytes resets ``read_timeout`` with
    each one); ``read_timeout`` is the longest wait between two chunks; a body slower
    than ``min_rate_bytes`` per second, averaged over ``min_rate_window`` seconds,
    fails with DownloadTimeoutError (0 disables); ``total_timeout`` bounds a whole
    fetch.  ``address_filter`` replaces the public-address policy (ignored with
    ``allow_private_networks=True``).  A passed-in ``session`` is used as is and
    not closed; its hosts are then checked by a separate lookup before each
    request, which does not protect against DNS rebinding — give that session a
    connector with :class:`AddressFilteringResolver` to get that too.
    """

    def __init__(
        self,
        *,
        allow_private_networks: bool = False,
        address_filter: AddressFilter | None = None,
        max_bytes: int | None = 10 * GiB,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        headers_timeout: float = 30.0,
        total_timeout: float | None = None,
        min_rate_bytes: int = 10 * KiB,
        min_rate_window: float = 30.0,
        max_redirects: int = 5,
        chunk_size: int = 256 * KiB,
        user_agent: str = DEFAULT_USER_AGENT,
        headers: Mapping[str, str] | None = None,
        allowed_ports: Collection[int] | None = None,
        limit: int = 64,
        limit_per_host: int = 8,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("headers_timeout", headers_timeout),
            ("min_rate_window", min_rate_window),
            ("chunk_size", chunk_size),
        ):
            if value <= 0:
                raise ConfigurationError(f"HttpDownloader: {name}={value!r} must be > 0")
        if max_bytes is not None and max_bytes < 0:
            raise ConfigurationError(f"HttpDownloader: max_bytes={max_bytes!r} must be >= 0")
        if total_timeout is not None and total_timeout <= 0:
            raise ConfigurationError(
                f"HttpDownloader: total_timeout={total_timeout!r} must be > 0 or None"
            )
        if min_rate_bytes < 0 or max_redirects < 0:
            raise ConfigurationError(
                "HttpDownloader: min_rate_bytes and max_redirects must be >= 0"
            )
        self.allow_private_networks = allow_private_networks
        self.address_filter: AddressFilter | None = (
            None if allow_private_networks else (address_filter or is_public_address)
        )
        self.max_bytes = max_bytes
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.headers_timeout = headers_timeout
        self.total_timeout = total_timeout
        self.min_rate_bytes = min_rate_bytes
        self.min_rate_window = min_rate_window
        self.max_redirects = max_redirects
        self.chunk_size = chunk_size
        self.allowed_ports = frozenset(allowed_ports) if allowed_ports is not None else None
        self._headers = {"User-Agent": user_agent, "Accept-Encoding": "identity", **(headers or {})}
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._session = session
        self._owns_session = session is None

    # --- session -------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            resolver: AbstractResolver = (
                AddressFilteringResolver(self.address_filter, timeout=self.connect_timeout)
                if self.address_filter is not None
                else DefaultResolver()
            )
            connector = aiohttp.TCPConnector(
                resolver=resolver, limit=self._limit, limit_per_host=self._limit_per_host
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
                ),
            )
            self._owns_session = True
        return self._session

    async def aclose(self) -> None:
        """Close the session this downloader created (a passed-in one is left open)."""
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    # --- fetch ---------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        progress: DownloadProgress | None = None,
        resume: bool = False,
    ) -> int:
        """Download ``url`` to ``dest``; return the file's size in bytes."""
        return (await self._fetch(url, dest, max_bytes, progress, resume, {})).size

    async def fetch_if_changed(
        self,
        url: str,
        dest: Path,
        *,
        known: Validator | None = None,
        max_bytes: int | None = None,
        progress: DownloadProgress | None = None,
    ) -> Revalidated:
        """A GET with ``If-None-Match``/``If-Modified-Since`` from ``known``: on 304 nothing
        is written; else the body goes to ``dest`` with its strong ETag / Last-Modified."""
        conditional = {}
        if known is not None and known.etag is not None:
            conditional["If-None-Match"] = known.etag
        elif known is not None and known.last_modified is not None:
            conditional["If-Modified-Since"] = known.last_modified
        fetch = await self._fetch(url, dest, max_bytes, progress, False, conditional)
        if fetch.not_modified:
            return Revalidated(known, None)
        return Revalidated(fetch.validator, fetch.size)

    async def _fetch(
        self,
        url: str,
        dest: Path,
        max_bytes: int | None,
        progress: DownloadProgress | None,
        resume: bool,
        conditional: dict[str, str],
    ) -> _Fetch:
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        caps = [c for c in (self.max_bytes, max_bytes) if c is not None]
        cap = min(caps) if caps else None
        fetch = _Fetch(self, url, dest, part, cap, progress, conditional)
        try:
            async with asyncio.timeout(self.total_timeout):
                fetch.size = await fetch.run(resume)
                return fetch
        except TimeoutError:
            raise DownloadTimeoutError(
                f"download of {url} took longer than total_timeout={self.total_timeout}s", url=url
            ) from None

    # --- hop checks ------------------------------------------------------------

    def check_input(self, url: str) -> None:
        """Refuse now what no fetch would accept: another scheme, credentials, a port
        outside ``allowed_ports``.  (Addresses are checked when connecting.)"""
        try:
            target = URL(url)
        except (ValueError, TypeError) as exc:
            raise DownloadError(
                f"{url}: malformed URL ({exc})", url=url, code="invalid_url"
            ) from None
        self.check_url(url, target, addresses=False)

    def check_url(
        self, url: str, target: URL, previous: URL | None = None, *, addresses: bool = True
    ) -> None:
        """Refuse ``target`` (``url`` itself or a redirect from ``previous``) if not allowed.

        Raises DownloadError(code="url_not_allowed") for a bad scheme, credentials,
        a port outside ``allowed_ports`` or an https->http downgrade, and
        BlockedAddressError for a refused IP-literal or numeric host.
        """
        shown = _shown(url, target if previous is not None else None)
        scheme = target.scheme.lower()
        if scheme not in ("http", "https"):
            raise DownloadError(
                f"{shown}: scheme {target.scheme or '(none)'!r} is not allowed (http, https)",
                url=url,
                code="url_not_allowed",
            )
        if previous is not None and previous.scheme.lower() == "https" and scheme == "http":
            raise DownloadError(
                f"{shown}: redirect from https to http is not allowed",
                url=url,
                code="url_not_allowed",
            )
        if target.user is not None or target.password is not None:
            raise DownloadError(
                f"{shown}: URLs with credentials (user:pass@) are not allowed",
                url=url,
                code="url_not_allowed",
            )
        if not target.host:
            raise DownloadError(f"{shown}: URL has no host", url=url, code="invalid_url")
        if self.allowed_ports is not None and target.port not in self.allowed_ports:
            raise DownloadError(
                f"{shown}: port {target.port} is not allowed", url=url, code="url_not_allowed"
            )
        if addresses and self.address_filter is not None:
            reason = check_host(target.host, self.address_filter)
            if reason is not None:
                raise BlockedAddressError(f"{shown}: {reason}", url=url)

    async def _preflight(self, url: str, target: URL) -> None:
        """Resolve and check a host ourselves (only for a passed-in session)."""
        if self.address_filter is None or self._owns_session or target.host is None:
            return
        assert self._session is not None
        if isinstance(
            getattr(self._session.connector, "_resolver", None), AddressFilteringResolver
        ):
            return  # the session checks every connection itself
        if parse_ip(target.host) is not None:
            return  # literal: already judged by check_url
        resolver = AddressFilteringResolver(self.address_filter, timeout=self.connect_timeout)
        try:
            await resolver.resolve(target.host, target.port or 0, socket.AF_UNSPEC)
        finally:
            await resolver.close()


def _shown(url: str, target: URL | None) -> str:
    """``url`` as given, plus the redirect ``target`` (if any) without its query or userinfo."""
    if target is None:
        return url
    bare = target.with_query(None).with_fragment(None)
    if bare.user is not None or bare.password is not None:
        bare = bare.with_user(None)
    return f"{url} (redirected to {bare})"


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a Retry-After header (delta-seconds or HTTP-date) into seconds >= 0."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _validator(headers: Mapping[str, str]) -> Validator | None:
    """A body's strong ETag and Last-Modified (a weak ``W/`` ETag is not byte-exact)."""
    etag = headers.get("ETag")
    etag = etag if etag and not etag.startswith("W/") else None
    modified = headers.get("Last-Modified") or None
    return Validator(etag=etag, last_modified=modified) if etag or modified else None


def _content_range(value: str | None) -> tuple[int | None, int | None] | None:
    """``bytes START-END/TOTAL`` or ``bytes */TOTAL`` -> (START, TOTAL); None if unparsable."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[6:].partition("/")
    start = span.partition("-")[0].strip()
    try:
        return (
            None if start == "*" else int(start),
            None if total.strip() == "*" else int(total),
        )
    except ValueError:
        return None


class _Fetch:
    """One fetch: the redirect loop, the streaming, the clean-up."""

    def __init__(
        self,
        dl: HttpDownloader,
        url: str,
        dest: Path,
        part: Path,
        cap: int | None,
        progress: DownloadProgress | None,
        conditional: dict[str, str],
    ) -> None:
        self.dl = dl
        self.url = url
        self.dest = dest
        self.part = part
        self.cap = cap
        self.progress = progress
        self.keep_part = False  # the .part file is worth keeping after a transient error
        self.redirected: URL | None = None  # the current hop, once redirected
        self.conditional = conditional  # If-None-Match / If-Modified-Since, if any
        self.not_modified = False  # a 304 answered ``conditional``
        self.validator: Validator | None = None  # of the body received
        self.size = 0

    @property
    def where(self) -> str:
        """The URL for messages: as given, plus the current redirect target."""
        return _shown(self.url, self.redirected)

    async def run(self, resume: bool) -> int:
        try:
            target = URL(self.url)
        except (ValueError, TypeError) as exc:
            raise DownloadError(
                f"{self.url}: malformed URL ({exc})", url=self.url, code="invalid_url"
            ) from None
        # Without resume, an old .part file is truncated by the first write (or
        # removed below if this attempt fails first).
        offset = await asyncio.to_thread(part_size, self.part) if resume else 0
        self.keep_part = offset > 0  # a resumable partial file from an earlier attempt
        try:
            return await self._hops(target, offset)
        except BaseException as exc:
            transient = isinstance(exc, DownloadError) and exc.transient
            if not (transient and self.keep_part):
                await asyncio.to_thread(unlink, self.part)
            raise

    async def _hops(self, target: URL, offset: int) -> int:
        previous: URL | None = None
        session = self.dl._get_session()
        for _hop in range(self.dl.max_redirects + 1):
            self.dl.check_url(self.url, target, previous)
            try:
                await self.dl._preflight(self.url, target)
                headers = dict(self.dl._headers)
                if previous is not None and target.origin() != URL(self.url).origin():
                    headers = {k: v for k, v in headers.items() if k.lower() in _EVERY_ORIGIN}
                if offset:
                    headers["Range"] = f"bytes={offset}-"
                headers.update(self.conditional)
                request = session.get(target, allow_redirects=False, headers=headers)
                async with await self._response(request) as resp:
                    if resp.status in _REDIRECTS:
                        location = resp.headers.get("Location")
                        if not location:
                            raise DownloadError(
                                f"{self.where}: HTTP {resp.status} without Location",
                                url=self.url,
                                code="bad_redirect",
                            )
                        previous, target = target, target.join(URL(location))
                        self.redirected = target
                        continue
                    if resp.status == 416 and offset:
                        # Our partial file is unusable (or already complete): start over.
                        total = (_content_range(resp.headers.get("Content-Range")) or (0, None))[1]
                        if total == offset:
                            return await self._finish(offset)
                        await asyncio.to_thread(unlink, self.part)
                        offset = 0
                        self.keep_part = False
                        continue
                    if resp.status == 304 and self.conditional:
                        self.not_modified = True
                        return 0
                    return await self._receive(resp, offset)
            except LocalIOError as exc:
                full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                code: ErrorCode = "disk_full" if full else "write_failed"
                raise DownloadError(f"{self.where}: {exc}", url=self.url, code=code) from exc
            except BlockedConnectError as exc:
                raise BlockedAddressError(
                    f"{self.where}: {exc.strerror or exc}", url=self.url
                ) from None
            except aiohttp.ClientConnectorCertificateError as exc:
                # not ``exc.os_error``: before aiohttp 3.13.4 it raises AttributeError here
                raise DownloadConnectionError(
                    f"{self.where}: could not connect ({exc.certificate_error})",
                    url=self.url,
                    transient=False,
                ) from exc
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, BlockedConnectError):
                    raise BlockedAddressError(
                        f"{self.where}: {exc.os_error}", url=self.url
                    ) from None
                what = (
                    "could not resolve host"
                    if isinstance(exc, aiohttp.ClientConnectorDNSError)
                    else "could not connect"
                )
                raise DownloadConnectionError(
                    f"{self.where}: {what} ({exc.os_error})", url=self.url
                ) from exc
            except TimeoutError as exc:  # connect, DNS or sock_read timeout
                raise DownloadTimeoutError(
                    f"{self.where}: server too slow (connect_timeout="
                    f"{self.dl.connect_timeout}s, read_timeout={self.dl.read_timeout}s)",
                    url=self.url,
                ) from exc
            except aiohttp.ClientPayloadError as exc:
                raise DownloadConnectionError(
                    f"{self.where}: response body broken or truncated ({exc})",
                    url=self.url,
                ) from exc
            except aiohttp.InvalidURL as exc:
                raise DownloadError(
                    f"{self.where}: invalid URL ({exc})",
                    url=self.url,
                    code="invalid_url",
                ) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise DownloadConnectionError(
                    f"{self.where}: connection failed ({type(exc).__name__}: {exc})",
                    url=self.url,
                ) from exc
        raise DownloadError(
            f"{self.where}: more than {self.dl.max_redirects} redirects",
            url=self.url,
            code="too_many_redirects",
        )

    async def _response(self, request: Awaitable[aiohttp.ClientResponse]) -> aiohttp.ClientResponse:
        """Send ``request``; its complete headers must arrive within ``headers_timeout``."""
        window = asyncio.timeout(self.dl.headers_timeout)
        try:
            async with window:
                return await request
        except TimeoutError:
            if not window.expired():
                raise  # aiohttp's own connect or read timeout
            raise DownloadTimeoutError(
                f"{self.where}: no complete response headers within "
                f"headers_timeout={self.dl.headers_timeout}s",
                url=self.url,
            ) from None

    async def _receive(self, resp: aiohttp.ClientResponse, offset: int) -> int:
        shown = self.where
        if resp.status == 206 and offset:
            parsed = _content_range(resp.headers.get("Content-Range"))
            if parsed is None or parsed[0] != offset:
                self.keep_part = False
                raise DownloadError(
                    f"{shown}: Content-Range {resp.headers.get('Content-Range')!r} does not "
                    f"continue at byte {offset}",
                    url=self.url,
                    code="bad_range",
                    transient=True,  # the .part file is dropped; a retry starts over
                )
            total = parsed[1]
        elif resp.status in _OK:
            offset = 0  # full body: the .part file is rewritten from the start
            self.keep_part = False
            total = resp.content_length
            self.validator = _validator(resp.headers)
        else:
            raise DownloadHTTPError(
                self.url,
                resp.status,
                reason=resp.reason or "",
                retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
            )
        if self.cap is not None and total is not None and total > self.cap:
            raise DownloadTooLargeError(
                f"{shown}: {total} bytes is over the limit of {self.cap} bytes", url=self.url
            )
        ranges = resp.status == 206 or resp.headers.get("Accept-Ranges", "").lower() == "bytes"
        writer = PartWriter(self.part, append=offset > 0)
        done = offset
        loop = asyncio.get_running_loop()
        window_start, window_bytes = loop.time(), done
        try:
            async for chunk in resp.content.iter_chunked(self.dl.chunk_size):
                done += len(chunk)
                if self.cap is not None and done > self.cap:
                    self.keep_part = False
                    raise DownloadTooLargeError(
                        f"{shown}: body is over the limit of {self.cap} bytes", url=self.url
                    )
                await writer.write(chunk)
                self.keep_part = ranges
                now = loop.time()
                if self.dl.min_rate_bytes and now - window_start >= self.dl.min_rate_window:
                    rate = (done - window_bytes) / (now - window_start)
                    if rate < self.dl.min_rate_bytes:
                        raise DownloadTimeoutError(
                            f"{shown}: transfer rate {rate:.0f} B/s is below the minimum of "
                            f"{self.dl.min_rate_bytes} B/s",
                            url=self.url,
                        )
                    window_start, window_bytes = now, done
                if self.progress is not None:
                    self.progress(done, total)
        except BaseException:
            await writer.abort()
            raise
        await writer.close()
        if total is not None and done != total:
            raise DownloadConnectionError(
                f"{shown}: body ended after {done} of {total} bytes", url=self.url
            )
        return await self._finish(done)

    async def _finish(self, size: int) -> int:
        await local(self.dest, os.replace, self.part, self.dest)
        return size
