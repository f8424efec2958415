"""The downloader protocol: fetch one URL into one file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["DownloadProgress", "Downloader"]

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
