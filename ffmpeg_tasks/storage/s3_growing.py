"""Output overlap: upload the parts of an output ffmpeg is still writing.

:meth:`S3Storage.begin` starts a :class:`GrowingUpload` for a file that does not exist
yet.  While ffmpeg runs, :meth:`GrowingUpload.grow` uploads multipart parts 2, 3, …
once the file has grown a whole part past them (``MARGIN``): most muxers never touch
those bytes again.  Part 1 (headers a muxer patches at the end: MP4's ``mdat`` size,
Matroska's duration) waits.  :meth:`GrowingUpload.finish`, called after ffmpeg exited
and the output passed its check, reads each early part of the final file again and
uploads it anew if its CRC32 changed, uploads the rest, and completes — so what is
stored is the final file, byte for byte, whatever the muxer rewrote.  Nothing is
visible before Complete; :meth:`GrowingUpload.abort` leaves nothing.

Reads go through ``O_NOFOLLOW`` and must find a regular file: an output swapped for a
symlink is never read.  Memory: per output, at most the storage's ``max_concurrency`` parts
in flight, as for any multipart upload (the checks read 1 MiB at a time).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import os
import stat
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from ..errors import StorageError
from . import _s3compat
from ._s3body import MAX_PARTS, s3_headers
from .base import StoredFile, UploadProgress


class _Owner(Protocol):
    """What a growing upload uses of its ``S3Storage`` (no import back: no cycle)."""

    bucket: str
    part_size: int
    multipart_threshold: int
    max_concurrency: int
    _hasher: ThreadPoolExecutor

    @property
    def _crc32(self) -> bool: ...
    def full_key(self, key: str) -> str: ...
    def _where(self, full_key: str) -> str: ...
    async def _get_client(self) -> Any: ...
    async def _url(self, client: Any, full_key: str) -> str: ...


__all__ = ["GrowingUpload"]

log = logging.getLogger("ffmpeg_tasks.s3")

#: A part is uploaded once the file is this many parts past its end.
MARGIN_PARTS = 1
POLL = 0.2


def _open(path: Path) -> int:
    """``path`` opened for reading if it is a regular file (never through a symlink)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"output {path.name!r} is not a regular file", code="output_invalid")
    return fd


def _read(path: Path, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of the regular file ``path``."""
    fd = _open(path)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _crc(data: bytes) -> int:
    return zlib.crc32(data)


def _read_crc(path: Path, offset: int, length: int) -> int:
    """CRC32 of those bytes, read 1 MiB at a time (a check holds no whole part)."""
    fd = _open(path)
    crc = 0
    try:
        while length > 0:
            data = os.pread(fd, min(length, 1 << 20), offset)
            if not data:
                break
            crc = zlib.crc32(data, crc)
            offset += len(data)
            length -= len(data)
    finally:
        os.close(fd)
    return crc


def _b64(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")


class GrowingUpload:
    """One multipart upload fed while its file grows; see the module docstring."""

    def __init__(self, storage: _Owner, path: Path, key: str, content_type: str) -> None:
        self.storage = storage
        self.path = path
        self.key = key
        self.full_key = storage.full_key(key)
        self.content_type = content_type
        self.part_size = storage.part_size
        self.upload_id: str | None = None
        #: part number -> (ETag, CRC32 of the bytes sent, length)
        self.parts: dict[int, tuple[str, int, int]] = {}
        # as many as a plain upload: fewer fall behind a capped link (S3's per-part latency)
        self._slots = asyncio.Semaphore(storage.max_concurrency)
        self._inflight: dict[int, asyncio.Task[None]] = {}  # part number -> its upload
        self._client: Any = None
        self._starting = asyncio.Lock()
        self._closed = False

    # -- while ffmpeg runs ------------------------------------------------------------

    async def grow(self) -> None:
        """Upload closed parts until cancelled (ffmpeg has exited); never raises but that.

        A failure here is only logged: :meth:`finish` uploads whatever is missing.
        """
        loop = asyncio.get_running_loop()
        next_part = 2
        try:
            while True:
                await asyncio.sleep(POLL)
                size = await loop.run_in_executor(self.storage._hasher, _size, self.path)
                while size >= (next_part + MARGIN_PARTS) * self.part_size:
                    if next_part > MAX_PARTS:
                        return
                    await self._slots.acquire()
                    task = asyncio.create_task(self._early_part(next_part))
                    self._inflight[next_part] = task
                    task.add_done_callback(functools.partial(self._landed, next_part))
                    next_part += 1
        except Exception:  # a cancel (ffmpeg exited) passes through
            log.warning("early upload of %s stopped", self.full_key, exc_info=True)

    def _landed(self, number: int, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(number, None)

    async def _early_part(self, number: int) -> None:
        try:
            await self._upload_part(number, (number - 1) * self.part_size, self.part_size)
        except Exception as exc:
            log.info("early part %d of %s failed (%s); finish() sends it", number, self.key, exc)
        finally:
            self._slots.release()

    async def _ensure_started(self) -> Any:
        async with self._starting:  # parts in flight must share one upload
            return await self._start()

    async def _start(self) -> Any:
        if self._client is None:
            self._client = await self.storage._get_client()
        if self.upload_id is None:
            algorithm = {"ChecksumAlgorithm": "CRC32"} if self.storage._crc32 else {}
            created = await self._client.create_multipart_upload(
                Bucket=self.storage.bucket,
                Key=self.full_key,
                **algorithm,
                **s3_headers(self.content_type),
            )
            self.upload_id = created["UploadId"]
        return self._client

    async def _upload_part(self, number: int, offset: int, length: int) -> int:
        loop = asyncio.get_running_loop()
        hasher = self.storage._hasher
        data = await loop.run_in_executor(hasher, _read, self.path, offset, length)
        crc = await loop.run_in_executor(hasher, _crc, data)
        client = await self._ensure_started()
        sums = {"ChecksumCRC32": _b64(crc)} if self.storage._crc32 else {}
        response = await client.upload_part(
            Bucket=self.storage.bucket,
            Key=self.full_key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
            ContentLength=len(data),
            **sums,
        )
        self.parts[number] = (response["ETag"], crc, len(data))
        return len(data)

    # -- after ffmpeg exited --------------------------------------------------------

    async def finish(self, progress: UploadProgress | None = None) -> StoredFile | None:
        """Verify the early parts against the final file, send the rest, complete.

        Returns None (and leaves nothing) when the file is too small for a multipart
        upload or needs more parts than S3 allows: the caller puts it the plain way.
        Parts never sent go first, each as a slot frees (the link's work); the early
        parts are checked meanwhile, each once its own upload has ended.
        """
        loop = asyncio.get_running_loop()
        size = await loop.run_in_executor(self.storage._hasher, _size, self.path)
        count = -(-size // self.part_size)
        if size <= self.storage.multipart_threshold or count > MAX_PARTS:
            await self.abort()
            return None
        try:
            done = 0
            sent = set(self.parts) | set(self._inflight)
            numbers = iter(sorted(range(1, count + 1), key=lambda n: n in sent))

            async def worker() -> None:
                nonlocal done
                for number in numbers:  # shared: each part goes to one worker
                    offset = (number - 1) * self.part_size
                    length = min(self.part_size, size - offset)
                    running = self._inflight.get(number)
                    if running is not None:
                        await asyncio.wait([running])  # it ends valid, or is sent again
                    if not await self._still_valid(number, offset, length):
                        async with self._slots:  # with the early ones: max_concurrency
                            await self._upload_part(number, offset, length)
                    done += length
                    if progress is not None:
                        progress(done, size)

            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(min(self.storage.max_concurrency, count)):
                        group.create_task(worker())
            except BaseExceptionGroup as eg:
                raise eg.exceptions[0] from None
            await self._stop_inflight()  # parts past the end: the file shrank
            client = await self._ensure_started()
            parts = []
            for number in range(1, count + 1):
                etag, crc, _ = self.parts[number]
                part: dict[str, Any] = {"ETag": etag, "PartNumber": number}
                if self.storage._crc32:
                    part["ChecksumCRC32"] = _b64(crc)
                parts.append(part)
            assert self.upload_id is not None
            await _s3compat.complete(
                client, self.storage.bucket, self.full_key, self.upload_id, parts
            )
            self._closed = True
            url = await self.storage._url(client, self.full_key)
        except BaseException:
            await asyncio.shield(self.abort())
            raise
        return StoredFile(
            key=self.full_key, uri=self.storage._where(self.full_key), url=url, size=size
        )

    async def _still_valid(self, number: int, offset: int, length: int) -> bool:
        sent = self.parts.get(number)
        if sent is None or sent[2] != length:
            return False
        # Every early part is read again here, all at once after ffmpeg exits: in the
        # default executor's threads (pread and crc32 release the GIL), not the one hasher.
        crc = await asyncio.to_thread(_read_crc, self.path, offset, length)
        if crc != sent[1]:
            log.debug("part %d of %s changed after its early upload", number, self.key)
            return False
        return True

    async def _stop_inflight(self) -> None:
        """Cancel the early parts still on their way and wait until they have ended."""
        running = list(self._inflight.values())
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    async def abort(self) -> None:
        """Stop and leave nothing: parts in flight are cancelled, the upload aborted."""
        if self._closed:
            return
        self._closed = True
        await self._stop_inflight()
        if self.upload_id is not None and self._client is not None:
            with contextlib.suppress(Exception):
                await _s3compat.abort(
                    self._client, self.storage.bucket, self.full_key, self.upload_id, []
                )
