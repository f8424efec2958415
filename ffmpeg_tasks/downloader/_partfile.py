"""The local side of a download: the ``.part`` file, written off the event loop.

Errors of local file operations become :class:`LocalIOError`, whose message names the
file but not the work dir's host path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

__all__ = ["LocalIOError", "PartWriter", "local", "part_size", "unlink"]

WRITE_BATCH = 1 << 20
_T = TypeVar("_T")


class LocalIOError(Exception):
    """A local file operation failed (full disk, missing directory …)."""

    def __init__(self, path: Path, error: OSError) -> None:
        # The file's name only: the message reaches the task's caller, the work dir's
        # host path must not (the OSError, with the path, stays as the cause).
        name = path.name.removesuffix(".part")
        super().__init__(f"cannot write {name!r}: {error.strerror or type(error).__name__}")
        self.errno = error.errno


async def local(path: Path, fn: Callable[..., _T], *args: Any) -> _T:
    """Run a file operation on ``path`` in a thread; OSError becomes LocalIOError."""
    try:
        return await asyncio.to_thread(fn, *args)
    except OSError as exc:
        raise LocalIOError(path, exc) from exc


class PartWriter:
    """Appends chunks to a file from worker threads, about 1 MiB per thread hop.

    The first hop opens the file and the last one closes it, so a small body costs
    a single hop.  Hops run one after another, also when a cancelled one is still
    running in its thread as the abort starts.
    """

    def __init__(self, path: Path, *, append: bool) -> None:
        self._path = path
        self._mode = "ab" if append else "wb"
        self._file: IO[bytes] | None = None
        self._buffer = bytearray()
        self._closed = False
        self._hop_done: asyncio.Future[None] | None = None

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        if len(self._buffer) >= WRITE_BATCH:
            await self._hop(close=False)

    async def close(self) -> None:
        """Write what is buffered and close (creating the file if nothing came)."""
        if not self._closed:
            self._closed = True
            await self._hop(close=True)

    async def abort(self) -> None:
        """Write what is buffered (it is valid data, useful for resume) and close."""
        with contextlib.suppress(LocalIOError):
            await self.close()

    async def _hop(self, *, close: bool) -> None:
        previous = self._hop_done
        if previous is not None:
            if not previous.done():
                await asyncio.wait({previous})  # a cancelled hop's thread is still writing
            if not previous.cancelled():
                previous.exception()  # mark its error seen: its caller was cancelled
        data, self._buffer = bytes(self._buffer), bytearray()
        self._hop_done = asyncio.ensure_future(local(self._path, self._write, data, close))
        await asyncio.shield(self._hop_done)

    def _write(self, data: bytes, close: bool) -> None:
        if self._file is None:
            self._file = open(self._path, self._mode)  # noqa: SIM115 - closed below
        try:
            if data:
                self._file.write(data)
        finally:
            if close:
                file, self._file = self._file, None
                file.close()


def part_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
