"""The downloader protocol: fetch one URL into one file (and, for caches, only if changed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

__all__ = ["ConditionalDownloader", "DownloadProgress", "Downloader", "Revalidated", "Validator"]

#: Called with (bytes written so far, total bytes or None when unknown).
DownloadProgress = Callable[[int, int | None], None]


@runtime_checkable
class Downloader(Protocol):
    """Fetches a URL into a local file.

    Implementations stream to ``dest`` (never the whole body in memory), enforce
    ``max_bytes`` while streaming, and raise :class:`~ffmpeg_tasks.errors.DownloadError`
    subclasses that name the URL.  With ``resume=True`` and a partial ``dest`` they
    may continue from the partial ``<dest>.part`` file with a ``Range`` request;
    otherwise ``dest`` is overwritten.
    Retries are the manager's job, not the downloader's.
    """

    async def fetch(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        progress: DownloadProgress | None = None,
        resume: bool = False,
    ) -> int:
        """Download ``url`` to ``dest``; return the file's final size in bytes."""
        ...

    async def aclose(self) -> None: ...


@attrs.frozen
class Validator:
    """What names one version of a URL's body: a strong ETag, a Last-Modified date,
    an S3 VersionId.  Two bodies of a URL with equal validators are taken as equal."""

    etag: str | None = None
    last_modified: str | None = None
    version_id: str | None = None

    @property
    def token(self) -> str:
        """A stable text of all fields, for cache keys."""
        return json.dumps([self.etag, self.last_modified, self.version_id])


@attrs.frozen
class Revalidated:
    """What a conditional fetch found: ``size`` None means the ``known`` version is
    still current and nothing was written; ``validator`` None means the body has none
    (it must not be cached)."""

    validator: Validator | None
    size: int | None


@runtime_checkable
class ConditionalDownloader(Protocol):
    """A downloader that can tell a body's validator and skip an unchanged body."""

    async def fetch_if_changed(
        self,
        url: str,
        dest: Path,
        *,
        known: Validator | None = None,
        max_bytes: int | None = None,
        progress: DownloadProgress | None = None,
    ) -> Revalidated:
        """Download ``url`` to ``dest`` unless its current version is ``known``."""
        ...
