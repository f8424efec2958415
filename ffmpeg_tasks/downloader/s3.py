"""S3 objects as inputs: ``s3://bucket/key``, from an allow-list of buckets and prefixes.

    S3Downloader(buckets=["media-in", "shared/uploads/"], endpoint_url=...)
    S3Downloader(buckets=["media-in"], client_from=storage)   # one S3 client for both

``buckets`` allows nothing by default: a hostile task must not read whatever the
worker's credentials can read.  An entry is a bucket (all its keys) or
``bucket/prefix/``.  Keys with ``.``/``..`` or empty segments, control characters,
backslashes or ``%`` escapes are refused at ``register`` (``check_input``).

A fetch asks for the object's size and ETag (HEAD), refuses it if larger than the cap,
then reads it with parallel ranged GETs (``part_size``, ``concurrency``) pinned to that
ETag (``If-Match``: an object replaced mid-download fails cleanly), writing each range
at its offset from a thread.  A range that fails transiently (throttling, 5xx, a broken
connection) is retried from where it stopped.  Ranges start in order, so the object's
front is complete early: :meth:`S3Downloader.watching` reports how far (input overlap
feeds ffmpeg up to there while the rest arrives).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .._lifecycle import AsyncResource, all_or_nothing
from ..errors import ConfigurationError, DownloadError, DownloadTooLargeError
from ..storage.s3 import S3Storage
from .base import DownloadProgress, Revalidated, Validator

__all__ = ["S3Downloader"]

MiB = 1024 * 1024
_BUFFER = 1 * MiB  # bytes gathered before one write in a thread
#: Range size while ffmpeg reads the object as it arrives (input overlap).
WATCHED_PART_SIZE = 4 * MiB
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BAD_KEY = re.compile(r"[\x00-\x1f\x7f\\%]")
_TRANSIENT = frozenset(
    {"SlowDown", "Throttling", "RequestTimeout", "InternalError", "ServiceUnavailable"}
)


class S3Downloader(AsyncResource):
    """Fetches ``s3://bucket/key`` inputs from allowed buckets; see the module docstring.

    Client options are :class:`~ffmpeg_tasks.S3Storage`'s (``region``, ``endpoint_url``,
    credentials, ``addressing_style``, timeouts, ``max_attempts``); or ``client_from=`` an
    ``S3Storage`` whose client it then shares (and does not close).
    """

    def __init__(
        self,
        buckets: Iterable[str] = (),
        *,
        client_from: S3Storage | None = None,
        part_size: int = 16 * MiB,
        concurrency: int = 8,
        range_attempts: int = 4,
        max_bytes: int | None = None,
        **client_options: Any,
    ) -> None:
        self.allowed = tuple(_allowed_entry(entry) for entry in buckets)
        if part_size < 1 * MiB or concurrency < 1 or range_attempts < 1:
            raise ConfigurationError(
                "S3Downloader: part_size must be >= 1 MiB, concurrency and range_attempts >= 1"
            )
        if client_from is not None and client_options:
            raise ConfigurationError("S3Downloader: give client_from= or client options, not both")
        self.part_size = part_size
        self.concurrency = concurrency
        self.range_attempts = range_attempts
        self.max_bytes = max_bytes
        # The client is S3Storage's: the same options, the same one-client-per-life rules.
        self._client_holder = client_from or S3Storage("ffmpeg-tasks-inputs", **client_options)
        self._owns_client = client_from is None
        self._watchers: dict[Path, Callable[[int], None]] = {}

    def __repr__(self) -> str:
        entries = ["/".join(e).rstrip("/") if e[1] else e[0] for e in self.allowed]
        return f"S3Downloader(buckets={entries!r})"

    # -- the static check ---------------------------------------------------------

    def check_input(self, url: str) -> None:
        """Refuse ``url`` now unless it is a plain key in an allowed bucket and prefix."""
        self._locate(url)

    def _locate(self, url: str) -> tuple[str, str]:
        if not url.startswith("s3://"):
            raise _refused(url, "is not an s3:// URL")
        bucket, _, key = url[5:].partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise _refused(url, f"bucket {bucket!r} is not a valid bucket name")
        if not key:
            raise _refused(url, "names no key")
        if _BAD_KEY.search(key) or len(key.encode()) > 1024:
            raise _refused(url, "key holds control characters, '\\', '%' escapes or is too long")
        if any(part in ("", ".", "..") for part in key.split("/")):
            raise _refused(url, "key has empty, '.' or '..' segments")
        if not any(bucket == b and key.startswith(prefix) for b, prefix in self.allowed):
            where = f"bucket {bucket!r}" if all(b != bucket for b, _ in self.allowed) else "key"
            raise _refused(url, f"{where} is not on this manager's allow-list")
        return bucket, key

    # -- fetching -----------------------------------------------------------------

    @contextlib.contextmanager
    def watching(self, dest: Path, contiguous: Callable[[int], None]) -> Iterator[None]:
        """While inside, fetches to ``dest`` call ``contiguous(n)`` whenever the first
        ``n`` bytes of the file are complete (from 0 again if a fetch starts over)."""
        self._watchers[Path(dest)] = contiguous
        try:
            yield
        finally:
            self._watchers.pop(Path(dest), None)

    async def warm_up(self) -> None:
        """Create the S3 client now (botocore loads its model in a thread)."""
        await self._client_holder.warm_up()

    async def fetch(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        progress: DownloadProgress | None = None,
        resume: bool = False,
    ) -> int:
        """Download the object to ``dest``; return its size."""
        client, bucket, key, head = await self._head(url)
        return await self._download(client, url, bucket, key, head, dest, max_bytes, progress)

    async def fetch_if_changed(
        self,
        url: str,
        dest: Path,
        *,
        known: Validator | None = None,
        max_bytes: int | None = None,
        progress: DownloadProgress | None = None,
    ) -> Revalidated:
        """HEAD the object: if its ETag and VersionId are ``known`` write nothing, else
        download it (pinned to that ETag)."""
        client, bucket, key, head = await self._head(url)
        version = head.get("VersionId")
        current = Validator(
            etag=str(head["ETag"]), version_id=str(version) if version is not None else None
        )
        if current == known:
            return Revalidated(current, None)
        size = await self._download(client, url, bucket, key, head, dest, max_bytes, progress)
        return Revalidated(current, size)

    async def _head(self, url: str) -> tuple[Any, str, str, Any]:
        bucket, key = self._locate(url)
        client = await self._client_holder._get_client()
        try:
            head = await client.head_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _error(url, exc, "HEAD") from None
        return client, bucket, key, head

    async def _download(
        self,
        client: Any,
        url: str,
        bucket: str,
        key: str,
        head: Any,
        dest: Path,
        max_bytes: int | None,
        progress: DownloadProgress | None,
    ) -> int:
        caps = [c for c in (self.max_bytes, max_bytes) if c is not None]
        cap = min(caps) if caps else None
        size = int(head["ContentLength"])
        etag = str(head["ETag"])
        if cap is not None and size > cap:
            raise DownloadTooLargeError(
                f"{url}: {size} bytes is more than the limit of {cap}", url=url
            )
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        watch = self._watchers.get(dest)
        if watch is not None:
            watch(0)  # before the sparse file exists: none of its bytes are there yet
        fd = await asyncio.to_thread(_open_for_write, url, part, size)
        fetch = _Ranges(self, client, url, bucket, key, etag, fd, size, progress)
        if watch is not None:
            # ffmpeg reads the front while the rest arrives: smaller ranges keep less of
            # the object waiting behind the first incomplete one when the last bytes land.
            fetch.step = min(self.part_size, WATCHED_PART_SIZE)
            fetch.watch = watch
        try:
            await fetch.run()
            await asyncio.to_thread(os.replace, part, dest)
        except BaseException:
            await fetch.settle()
            await asyncio.to_thread(part.unlink, missing_ok=True)
            raise
        finally:
            await fetch.settle()  # a thread still writing must not meet a closed (reused) fd
            await asyncio.to_thread(os.close, fd)
        return size

    async def aclose(self) -> None:
        """Close the client this downloader created (a shared one stays open)."""
        if self._owns_client:
            await self._client_holder.aclose()


class _Ranges:
    """One object's ranges, fetched ``concurrency`` at a time into one file."""

    def __init__(
        self,
        owner: S3Downloader,
        client: Any,
        url: str,
        bucket: str,
        key: str,
        etag: str,
        fd: int,
        size: int,
        progress: DownloadProgress | None,
    ) -> None:
        self.owner, self.client, self.url = owner, client, url
        self.bucket, self.key, self.etag = bucket, key, etag
        self.fd, self.size, self.progress = fd, size, progress
        self.done = 0
        #: Writes under way in threads: the file is closed only after the last one.
        self.writes: set[asyncio.Future[None]] = set()
        self.step = owner.part_size
        #: Told how many leading bytes are complete (``S3Downloader.watching``).
        self.watch: Callable[[int], None] | None = None
        self._cursors: dict[int, list[int]] = {}  # range start → its write position
        self._front = 0  # start of the first range not yet complete

    def _written(self, write: asyncio.Future[None]) -> None:
        self.writes.discard(write)
        if not write.cancelled():
            write.exception()  # seen: a range's own await raised it, or none was left to

    async def settle(self) -> None:
        """Wait for the writes of cancelled ranges (their threads run on)."""
        while self.writes:
            await asyncio.wait(set(self.writes))

    async def run(self) -> None:
        if self.size == 0:
            return
        step = self.step
        slots = asyncio.Semaphore(self.owner.concurrency)

        async def one(start: int) -> None:
            async with slots:
                await self._range(start, min(start + step, self.size))

        await all_or_nothing(one(start) for start in range(0, self.size, step))

    async def _range(self, start: int, end: int) -> None:
        """Bytes ``[start, end)``, retried from where a transient failure stopped them."""
        cursor = [start]  # advanced by each write, so a retry resumes there
        self._cursors[start] = cursor
        for attempt in range(1, self.owner.range_attempts + 1):
            try:
                await self._read(cursor, end)
                return
            except DownloadError as exc:
                if not exc.transient or attempt == self.owner.range_attempts:
                    raise
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))

    async def _read(self, cursor: list[int], end: int) -> None:
        try:
            resp = await self.client.get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={cursor[0]}-{end - 1}",
                IfMatch=self.etag,
            )  # fmt: skip
            async with resp["Body"] as body:
                buffer = bytearray()
                while chunk := await body.read(256 * 1024):
                    buffer += chunk
                    if len(buffer) >= _BUFFER:
                        await self._write(bytes(buffer), cursor, end)
                        buffer.clear()
                if buffer:
                    await self._write(bytes(buffer), cursor, end)
        except DownloadError:
            raise
        except (ClientError, BotoCoreError, OSError, asyncio.IncompleteReadError) as exc:
            raise _error(self.url, exc, "GET") from None
        except Exception as exc:  # aiohttp's payload errors: a broken connection
            if not type(exc).__module__.startswith("aiohttp"):
                raise
            raise DownloadError(
                f"{self.url}: connection broken ({type(exc).__name__})",
                url=self.url,
                code="download_connection_error",
                transient=True,
            ) from None
        if cursor[0] != end:
            raise DownloadError(f"{self.url}: the object ended early", url=self.url, transient=True)

    async def _write(self, data: bytes, cursor: list[int], end: int) -> None:
        if cursor[0] + len(data) > end:
            raise DownloadError(f"{self.url}: more bytes than asked for", url=self.url)
        write = asyncio.ensure_future(
            asyncio.to_thread(_pwrite_all, self.url, self.fd, data, cursor[0])
        )
        self.writes.add(write)
        write.add_done_callback(self._written)
        await asyncio.shield(write)  # a cancel leaves the write running, awaited in close
        cursor[0] += len(data)
        self.done += len(data)
        if self.watch is not None:
            self.watch(self._contiguous())
        if self.progress is not None:
            self.progress(self.done, self.size)

    def _contiguous(self) -> int:
        """How many leading bytes are written: complete ranges, then the next one's part
        (each range is written front to back)."""
        step = self.step
        while self._front < self.size:
            cursor = self._cursors.get(self._front)
            end = min(self._front + step, self.size)
            if cursor is None or cursor[0] < end:
                return self._front if cursor is None else cursor[0]
            del self._cursors[self._front]
            self._front = end
        return self.size


# -- helpers ------------------------------------------------------------------------------


def _allowed_entry(entry: str) -> tuple[str, str]:
    bucket, _, prefix = entry.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in entry or "\\" in entry:
        raise ConfigurationError(f"S3Downloader: {entry!r} is not 'bucket' or 'bucket/prefix/'")
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # "a/b" allows keys below a/b/, never a/bc
    return bucket, prefix


def _refused(url: str, why: str) -> DownloadError:
    return DownloadError(f"{url}: {why}", url=url, code="url_not_allowed")


def _error(url: str, exc: BaseException, action: str) -> DownloadError:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if status == 404 or code in ("NoSuchKey", "NotFound", "NoSuchBucket"):
            return DownloadError(f"{url}: no such object", url=url, code="not_found")
        if status == 403 or code == "AccessDenied":
            return DownloadError(f"{url}: access denied", url=url, code="access_denied")
        if status == 412 or code == "PreconditionFailed":
            return DownloadError(
                f"{url}: the object changed during the download", url=url, transient=False
            )
        transient = code in _TRANSIENT or status == 429 or status >= 500
        return DownloadError(
            f"{url}: {action} failed ({code or status})", url=url, transient=transient
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(f"{url}: the work dir is full", url=url, code="disk_full")
    return DownloadError(
        f"{url}: {action} failed ({type(exc).__name__})",
        url=url,
        code="download_connection_error",
        transient=True,
    )


def _open_for_write(url: str, part: Path, size: int) -> int:
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.ftruncate(fd, size)  # sparse: the ranges fill it in any order
    except OSError as exc:
        raise _error(url, exc, "open") from None
    return fd


def _pwrite_all(url: str, fd: int, data: bytes, position: int) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.pwrite(fd, view, position)
        except OSError as exc:
            raise _error(url, exc, "write") from None
        view = view[written:]
        position += written
