"""Request bodies for S3 uploads: file slices streamed from disk, and their checksums.

Reading and hashing happen off the event loop; a slice whose file changes size while
it is sent raises :class:`SourceChanged`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import stat
import zlib
from pathlib import Path
from typing import Any

import aiohttp.payload

from ..errors import StorageError
from .content_types import is_browser_renderable

__all__ = [
    "CHUNK",
    "INLINE_BODY",
    "MAX_PARTS",
    "FileSlice",
    "SourceChanged",
    "digests_of",
    "open_small",
    "s3_headers",
    "sum_params",
]

MiB = 1024 * 1024
#: Parts S3 allows in one multipart upload.
MAX_PARTS = 10_000


class SourceChanged(Exception):
    """The local file changed size during the upload."""


HASH_BLOCK = 1 * MiB


def digests_of(path: Path, offset: int, length: int, *, md5: bool, crc32: bool) -> dict[str, str]:
    """Request checksum parameters for ``length`` bytes at ``offset``, in one read.

    Runs in a thread, 1 MiB at a time (``zlib.crc32`` and ``hashlib`` release the GIL
    on blocks that large).
    """
    digest = hashlib.md5(usedforsecurity=False) if md5 else None
    crc = 0
    buffer = bytearray(min(HASH_BLOCK, length) or 1)
    view = memoryview(buffer)
    read = 0
    with path.open("rb", buffering=0) as f:
        f.seek(offset)
        while read < length:
            n = f.readinto(view[: min(len(view), length - read)])
            if not n:
                break
            if digest is not None:
                digest.update(view[:n])
            if crc32:
                crc = zlib.crc32(view[:n], crc)
            read += n
    if read != length:
        raise SourceChanged(
            f"{path} shrank while uploading: expected {length} bytes at offset {offset}, "
            f"read {read}"
        )
    return sum_params(digest.digest() if digest is not None else None, crc if crc32 else None)


def sum_params(md5: bytes | None, crc32: int | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if md5 is not None:
        out["ContentMD5"] = base64.b64encode(md5).decode("ascii")
    if crc32 is not None:
        out["ChecksumCRC32"] = base64.b64encode(crc32.to_bytes(4, "big")).decode("ascii")
    return out


def open_small(
    path: Path, limit: int, *, md5: bool, crc32: bool
) -> tuple[int, bytes | None, dict[str, str]]:
    """The size of regular file ``path``; also its bytes and checksums if at most ``limit``.

    One thread hop for a small output (stat, read, hash): it is then sent from
    memory, which costs less than a file body.  Opened non-blocking, so a path that
    became a FIFO cannot hang the thread.
    """
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise StorageError(f"cannot upload {path.name!r}: not a regular file")
    if st.st_size > limit:
        return st.st_size, None, {}
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StorageError(f"cannot upload {path.name!r}: not a regular file")
        data = f.read(limit + 1)
        if len(data) > limit:  # grew since the stat: send it as a file
            return os.fstat(fd).st_size, None, {}
    return (
        len(data),
        data,
        sum_params(
            hashlib.md5(data, usedforsecurity=False).digest() if md5 else None,
            zlib.crc32(data) if crc32 else None,
        ),
    )


CHUNK = 256 * 1024
INLINE_BODY = CHUNK  # files up to this size are read whole and sent from memory
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


class FileSlice(aiohttp.payload.Payload):
    """Bytes ``[offset, offset + length)`` of a file as an aiohttp request body.

    Sent 256 KiB at a time, so a part is never in memory whole.  A chunk already in
    the page cache (the usual case: ffmpeg just wrote the file) is read on the event
    loop with ``preadv2(RWF_NOWAIT)``, which returns at once or fails with EAGAIN,
    never blocking; only the rest goes to a worker thread.  That avoids a thread hop
    per chunk and the GIL hand-offs that come with it.  botocore sees a seekable
    stream (``seek``/``tell``/``read``) and rewinds it for a retry.  aiohttp's
    ``close()`` leaves the file open for such a retry: :meth:`release` closes it.
    """

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__(None, content_type="application/octet-stream")
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self.closed = False
        have = os.fstat(self._fd).st_size
        if have < offset + length:
            self.release()
            raise SourceChanged(
                f"{path} shrank while uploading: {have} bytes, expected at least {offset + length}"
            )
        self._start = offset
        self._length = length
        self._pos = 0
        self._nowait = _RWF_NOWAIT is not None

    @property
    def size(self) -> int:
        return self._length

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        """Blocking read (for botocore, should it read the body itself)."""
        left = self._length - self._pos
        want = left if size is None or size < 0 else min(size, left)
        data = bytes(self._pread(want, nowait=False))
        self._pos += len(data)
        return data

    def _pread(self, want: int, *, nowait: bool) -> bytes | memoryview:
        if want <= 0:
            return b""
        where = self._start + self._pos
        if nowait:  # straight into a fresh buffer, handed to the transport as it is
            buffer = bytearray(want)
            got = os.preadv(self._fd, [buffer], where, _RWF_NOWAIT or 0)
            return memoryview(buffer)[:got]
        data = os.pread(self._fd, want, where)
        if not data:
            raise SourceChanged(f"file shrank while uploading: nothing at offset {where}")
        return data

    async def _next_chunk(self) -> bytes | memoryview:
        want = min(CHUNK, self._length - self._pos)
        data: bytes | memoryview = b""
        if self._nowait:
            try:
                data = self._pread(want, nowait=True)
            except BlockingIOError:  # not (all) in the page cache
                pass
            except OSError:  # RWF_NOWAIT unsupported here: threads from now on
                self._nowait = False
        if not data:
            data = await asyncio.to_thread(self._pread, want, nowait=False)
        self._pos += len(data)
        return data

    async def write(self, writer: Any) -> None:
        self._pos = 0
        while self._pos < self._length:
            await writer.write(await self._next_chunk())

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        await self.write(writer)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file body is not text")

    async def close(self) -> None:
        """Called by aiohttp after each send; the file stays open for a retry."""

    def release(self) -> None:
        """Close the file."""
        if not self.closed:
            self.closed = True
            os.close(self._fd)


def s3_headers(content_type: str) -> dict[str, str]:
    """ContentType, plus ``Content-Disposition: attachment`` for types a browser renders."""
    headers = {"ContentType": content_type}
    if is_browser_renderable(content_type):
        # Players fetch manifests with XHR, which ignores this; a browser tab downloads.
        headers["ContentDisposition"] = "attachment"
    return headers
