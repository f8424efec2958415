"""Inputs from several places: one downloader per URL scheme, like httpx's mounts.

    TaskManager(downloader={
        "https": HttpDownloader(), "http": HttpDownloader(),
        "s3": S3Downloader(buckets=["media-in"]),
        "file": LocalFileDownloader(roots=["/data"]),
    })

An absolute path is routed to ``"file"``.  A downloader may implement
``check_input(url)`` (:class:`StaticCheck`) to refuse at ``register``/``plan`` what it
would never fetch (a bucket or a directory not allowed); the router also refuses a
scheme nobody serves, saying how to serve it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from .._lifecycle import AsyncResource, WarmUp
from ..errors import ConfigurationError, DownloadError
from .base import Downloader, DownloadProgress

__all__ = ["DownloaderRouter", "StaticCheck", "scheme_of"]

#: How to serve a scheme nobody serves, for the refusal's message.
_HOW = {
    "s3": "pass downloader={'s3': S3Downloader(buckets=[...]), ...} to TaskManager",
    "file": "pass downloader={'file': LocalFileDownloader(roots=[...]), ...} to TaskManager",
    "http": "pass downloader={'http': HttpDownloader(), ...} to TaskManager",
    "https": "pass downloader={'https': HttpDownloader(), ...} to TaskManager",
}


@runtime_checkable
class StaticCheck(Protocol):
    """A downloader that can refuse a URL before any task runs."""

    def check_input(self, url: str) -> None:
        """Raise ``DownloadError(code="url_not_allowed")`` if ``url`` will never be fetched."""
        ...


def scheme_of(url: str) -> str:
    """``"https"``, ``"s3"``, ``"file"`` (also for an absolute path) … in lower case."""
    if url.startswith("/"):
        return "file"
    return urlsplit(url).scheme.lower()


def how_to_serve(scheme: str) -> str:
    """A hint for a refused scheme: which downloader to configure."""
    return _HOW.get(scheme, f"pass downloader={{{scheme!r}: ...}} to TaskManager")


class DownloaderRouter(AsyncResource):
    """Sends each URL to the downloader of its scheme."""

    def __init__(self, mounts: Mapping[str, Downloader]) -> None:
        if not mounts:
            raise ConfigurationError("a downloader mapping needs at least one scheme")
        self.mounts = {scheme.lower().rstrip(":/"): d for scheme, d in mounts.items()}

    def __repr__(self) -> str:
        return f"DownloaderRouter({self.mounts!r})"

    @property
    def schemes(self) -> frozenset[str]:
        return frozenset(self.mounts)

    def route(self, url: str) -> Downloader:
        scheme = scheme_of(url)
        found = self.mounts.get(scheme)
        if found is None:
            shown = "a local path" if scheme == "file" else f"{scheme or '(none)'}://"
            raise DownloadError(
                f"{url}: {shown} inputs are not configured ({how_to_serve(scheme)})",
                url=url,
                code="url_not_allowed",
            )
        return found

    def check_input(self, url: str) -> None:
        downloader = self.route(url)
        if isinstance(downloader, StaticCheck):
            downloader.check_input(url)

    async def fetch(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        progress: DownloadProgress | None = None,
        resume: bool = False,
    ) -> int:
        return await self.route(url).fetch(
            url, dest, max_bytes=max_bytes, progress=progress, resume=resume
        )

    async def warm_up(self) -> None:
        """Warm up the downloaders that can (the S3 client …)."""
        for downloader in {id(d): d for d in self.mounts.values()}.values():
            if isinstance(downloader, WarmUp):
                await downloader.warm_up()

    async def aclose(self) -> None:
        """Close each downloader once (one may serve several schemes)."""
        for downloader in {id(d): d for d in self.mounts.values()}.values():
            await downloader.aclose()
