"""``CachingDownloader``: a Downloader that fetches each input once per host.

    cache = DownloadCache("/var/cache/ffmpeg-tasks", max_bytes=50 * GiB)
    TaskManager(downloader=CachingDownloader(
        {"https": HttpDownloader(), "s3": S3Downloader(buckets=["media-in"])}, cache))

For a URL whose downloader can revalidate (:class:`ConditionalDownloader`: http(s) and
s3) a fetch asks whether the cached version is current — a conditional GET with
``If-None-Match``/``If-Modified-Since`` (304: reuse), an S3 HeadObject compared with
the cached ETag/VersionId — and otherwise downloads into the cache, then hands the
entry to ``dest`` read-only.  A body with no validator is not cached.  Other
downloaders (local files, fakes) are called as they are.

Concurrent fetches of one URL share one flight: it runs in its own task, every fetch
waiting on it is an equal party and gets its result or its error; a cancelled party
only leaves, and the flight is cancelled when its last party leaves.  ``resume`` is
ignored: a flight downloads to a fresh temp file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from .._lifecycle import AsyncResource, WarmUp
from ..errors import DownloadError, DownloadTooLargeError
from .base import ConditionalDownloader, Downloader, DownloadProgress, Validator
from .cache import CacheEntry, DownloadCache, EntryGone
from .router import DownloaderRouter, StaticCheck

__all__ = ["CacheStats", "CachingDownloader"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_ATTEMPTS = 3  # hand-overs lost to another process's eviction before giving up


@attrs.define
class CacheStats:
    """What a CachingDownloader did, counted per flight (``shared``: per joining fetch)."""

    downloads: int = 0  #: bodies downloaded into the cache
    hits: int = 0  #: cached versions confirmed current (304, same ETag)
    uncacheable: int = 0  #: bodies without a validator: downloaded, not kept
    shared: int = 0  #: fetches that joined a flight already under way


@attrs.define(eq=False)
class _Flight:
    url: str
    cap: int | None
    #: The entry, once it can be handed over (before the fsync and the index record).
    ready: asyncio.Future[CacheEntry]
    task: asyncio.Task[None] | None = None
    parties: int = 0
    listeners: list[DownloadProgress] = attrs.Factory(list)
    released: bool = False

    def report(self, done: int, total: int | None) -> None:
        for listener in list(self.listeners):
            listener(done, total)


class CachingDownloader(AsyncResource):
    """Wraps a downloader (or a scheme mapping, as for TaskManager) with a
    :class:`DownloadCache`; see the module docstring.  Closing it closes ``inner``."""

    def __init__(self, inner: Downloader | Mapping[str, Downloader], cache: DownloadCache) -> None:
        self.inner: Downloader = DownloaderRouter(inner) if isinstance(inner, Mapping) else inner
        self.cache = cache
        self.stats = CacheStats()
        self._flights: dict[str, _Flight] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: Deferred fsyncs of new entries (DownloadCache.sync_after); cancelled by aclose.
        self._syncs: set[asyncio.Task[None]] = set()
        self._closing = False

    def __repr__(self) -> str:
        return f"CachingDownloader({self.inner!r}, {self.cache!r})"

    @property
    def schemes(self) -> frozenset[str] | None:
        """The inner router's schemes (None for a single downloader)."""
        return self.inner.schemes if isinstance(self.inner, DownloaderRouter) else None

    def check_input(self, url: str) -> None:
        if isinstance(self.inner, StaticCheck):
            self.inner.check_input(url)

    async def warm_up(self) -> None:
        if isinstance(self.inner, WarmUp):
            await self.inner.warm_up()

    async def aclose(self) -> None:
        """Stop the downloads under way, let new entries settle, finish the clean-ups,
        drop the deferred fsyncs (those entries serve until the next reboot), close
        ``inner``."""
        self._closing = True  # no new deferred fsync from here on
        for job in self._syncs:
            job.cancel()
        for flight in self._flights.values():
            if flight.task is not None and not flight.ready.done():
                flight.task.cancel()
        while pending := [
            *(f.task for f in self._flights.values() if f.task is not None),
            *self._background,
            *self._syncs,
        ]:
            await asyncio.wait(pending)
            await asyncio.sleep(0)  # the done callbacks: a flight's release
        await self.inner.aclose()

    # -- fetch ----------------------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        progress: DownloadProgress | None = None,
        resume: bool = False,
    ) -> int:
        """Hand the current version of ``url`` to ``dest`` from the cache, fetching it if needed."""
        target = self.inner.route(url) if isinstance(self.inner, DownloaderRouter) else self.inner
        if not isinstance(target, ConditionalDownloader):
            return await target.fetch(
                url, dest, max_bytes=max_bytes, progress=progress, resume=resume
            )
        dest = Path(dest)
        for _ in range(_ATTEMPTS):
            flight = self._flights.get(url)
            if flight is None or flight.task is None or flight.task.done():
                flight = self._start(target, url, max_bytes)
            else:
                self.stats.shared += 1
            flight.parties += 1
            if progress is not None:
                flight.listeners.append(progress)
            try:
                entry = await asyncio.shield(flight.ready)
                if max_bytes is not None and entry.size > max_bytes:
                    raise DownloadTooLargeError(
                        f"{url}: {entry.size} bytes is over the limit of {max_bytes} bytes",
                        url=url,
                    )
                await self._local(url, self.cache.hand_over, entry, dest)
                return entry.size
            except DownloadTooLargeError:
                if flight.cap is None or (max_bytes is not None and max_bytes <= flight.cap):
                    raise
                continue  # the flight's cap was lower than ours: a flight of our own
            except EntryGone:
                continue  # evicted by another process before the hand-over: fetch again
            finally:
                self._leave(flight, progress)
        raise DownloadError(
            f"{url}: the cached copy was evicted again and again before use",
            url=url,
            transient=True,
        )

    def _start(self, target: ConditionalDownloader, url: str, cap: int | None) -> _Flight:
        flight = _Flight(url, cap, asyncio.get_running_loop().create_future())
        flight.ready.add_done_callback(_seen)
        flight.task = asyncio.create_task(self._fly(target, flight), name=f"cache-fetch {url}")
        flight.task.add_done_callback(lambda task: self._landed(flight, task))
        self._flights[url] = flight
        return flight

    def _landed(self, flight: _Flight, task: asyncio.Task[None]) -> None:
        if self._flights.get(flight.url) is flight:
            del self._flights[flight.url]
        _seen(task)
        self._release_once(flight)

    def _leave(self, flight: _Flight, progress: DownloadProgress | None) -> None:
        flight.parties -= 1
        if progress is not None:
            flight.listeners.remove(progress)
        if flight.parties:
            return
        if not flight.ready.done():  # nobody wants it any more: stop the download
            if self._flights.get(flight.url) is flight:
                del self._flights[flight.url]  # a newcomer starts afresh
            assert flight.task is not None
            flight.task.cancel()
            return
        self._release_once(flight)

    def _release_once(self, flight: _Flight) -> None:
        """Once the flight's task has ended and its last party has left: release its entry."""
        if flight.released or flight.parties or flight.task is None or not flight.task.done():
            return
        flight.released = True
        ready = flight.ready
        if ready.done() and not ready.cancelled() and ready.exception() is None:
            self._spawn(self._release(ready.result()))

    def _spawn(self, coro: Any) -> None:
        job: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    async def _release(self, entry: CacheEntry) -> None:
        """After the last hand-over: unpin and evict, or remove an uncacheable temp."""
        if not entry.cached:
            await asyncio.to_thread(self.cache.discard, entry.path)
            return
        self.cache.pins[entry.path.name] -= 1
        if self.cache.pins[entry.path.name] <= 0:
            del self.cache.pins[entry.path.name]
        pinned = frozenset(self.cache.pins)
        with contextlib.suppress(OSError):  # best effort: the next eviction tries again
            await asyncio.to_thread(self.cache.evict, pinned)

    async def _fly(self, target: ConditionalDownloader, flight: _Flight) -> None:
        """Get the entry to the parties (``ready``), then make a new one findable (its
        index record) and, ``sync_after`` seconds later, durable."""
        try:
            entry, validator = await self._obtain(target, flight)
        except Exception as exc:
            flight.ready.set_exception(exc)
            return
        except BaseException:  # cancelled: every party has left
            flight.ready.cancel()
            raise
        if entry.cached:
            self.cache.pins[entry.path.name] += 1  # no await since: a cancel cannot leak it
        flight.ready.set_result(entry)
        if validator is not None:
            synced = await self._local(flight.url, self.cache.settle, flight.url, validator, entry)
            if not synced and self.cache.durable and not self._closing:
                job = asyncio.create_task(self._sync_later(flight.url, validator, entry))
                self._syncs.add(job)
                job.add_done_callback(self._syncs.discard)

    async def _sync_later(self, url: str, validator: Validator, entry: CacheEntry) -> None:
        """fsync a new entry once the kernel has had time to write it back (cheap then)."""
        await asyncio.sleep(self.cache.sync_after)
        try:
            await asyncio.to_thread(self.cache.sync, url, validator, entry)
        except OSError as exc:  # dropped by sync(): fetched again next time
            log.warning("download cache: fsync of an entry failed (%s); dropped", exc.strerror)

    async def _obtain(
        self, target: ConditionalDownloader, flight: _Flight
    ) -> tuple[CacheEntry, Validator | None]:
        """Revalidate or download ``flight.url``: the entry, and the validator of a new one."""
        url, cache = flight.url, self.cache
        fresh = False  # after a 304 for an entry evicted meanwhile: ask unconditionally
        for _ in range(2):
            known = None if fresh else await self._local(url, cache.lookup, url)
            temp = await self._local(url, cache.new_temp)
            try:
                result = await target.fetch_if_changed(
                    url,
                    temp,
                    known=known.validator if known is not None else None,
                    max_bytes=flight.cap,
                    progress=flight.report,
                )
                if result.size is None:
                    entry = None if known is None else await self._local(url, cache.reuse, known)
                    if entry is None:
                        fresh = True
                        continue
                    self.stats.hits += 1
                    flight.report(entry.size, entry.size)
                    return entry, None
                if result.validator is None:
                    self.stats.uncacheable += 1
                    return CacheEntry(temp, result.size, cached=False), None
                entry = await self._local(
                    url, cache.commit, url, result.validator, temp, result.size
                )
                self.stats.downloads += 1
                return entry, result.validator
            except BaseException:
                await asyncio.to_thread(cache.discard, temp)
                raise
        raise DownloadError(f"{url}: not modified, yet not cached", url=url, transient=True)

    @staticmethod
    async def _local(url: str, fn: Callable[..., _T], *args: Any) -> _T:
        """A cache file operation in a thread; OSError becomes DownloadError (no path)."""
        try:
            return await asyncio.to_thread(fn, *args)
        except EntryGone:
            raise
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise DownloadError(
                f"{url}: download cache: {exc.strerror or type(exc).__name__}",
                url=url,
                code="disk_full" if full else "write_failed",
            ) from exc


def _seen(future: asyncio.Future[Any]) -> None:
    """Mark a future's error retrieved: the parties got it, or none was left to."""
    if not future.cancelled():
        future.exception()
