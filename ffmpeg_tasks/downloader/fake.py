"""``FakeDownloader``: canned downloads for tests of code that uses ffmpeg_tasks.

    dl = FakeDownloader({"https://example.com/in.mp4": Path("tests/clip.mp4"),
                         "https://example.com/gone.mp4": DownloadHTTPError("...", 404)})

A URL that is not in the mapping fails with ``DownloadHTTPError(url, 404)``.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from .._lifecycle import AsyncResource
from ..errors import DownloadHTTPError, DownloadTooLargeError
from .base import DownloadProgress

__all__ = ["FakeDownloader", "FakeResponse"]

#: What a URL "downloads" to: the body, a file to copy, or an error to raise.
FakeResponse = bytes | Path | BaseException


class FakeDownloader(AsyncResource):
    """A Downloader that serves bytes, files or errors from a mapping or a callable.

    Every fetched URL is appended to ``calls``.  ``max_bytes`` and ``progress``
    behave as with HttpDownloader (one progress call at the end).
    """

    def __init__(
        self,
        responses: Mapping[str, FakeResponse] | Callable[[str], FakeResponse] | None = None,
    ) -> None:
        self._responses = responses if responses is not None else {}
        self.calls: list[str] = []
        self.closed = False

    def _lookup(self, url: str) -> FakeResponse:
        if callable(self._responses):
            return self._responses(url)
        if url not in self._responses:
            return DownloadHTTPError(url, 404, reason="Not Found (FakeDownloader)")
        return self._responses[url]

    async def fetch(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        progress: DownloadProgress | None = None,
        resume: bool = False,
    ) -> int:
        """Write the canned response for ``url`` to ``dest`` (or raise it)."""
        self.calls.append(url)
        response = self._lookup(url)
        if isinstance(response, BaseException):
            raise response
        size = len(response) if isinstance(response, bytes) else response.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise DownloadTooLargeError(
                f"{url}: {size} bytes is over the limit of {max_bytes} bytes", url=url
            )
        if isinstance(response, bytes):
            await asyncio.to_thread(Path(dest).write_bytes, response)
        else:
            await asyncio.to_thread(shutil.copyfile, response, dest)
        if progress is not None:
            progress(size, size)
        return size

    async def aclose(self) -> None:
        """Mark the fake closed."""
        self.closed = True
