"""Store outputs in S3 (or an S3-compatible service) with aiobotocore.

One client serves the storage's whole life: it is created on first use and closed by
:meth:`S3Storage.aclose` (or ``async with``).  Files up to ``multipart_threshold`` go up
in one PutObject; larger ones as a multipart upload sent ``max_concurrency`` parts at a
time.  Bodies are streamed from the file 256 KiB at a time (see :class:`FileSlice`:
page-cached chunks are read without blocking, the rest in a thread), so memory stays
flat whatever the file or part size.
A failed or cancelled multipart upload is aborted, so no partial object and no pending
upload stays behind.

Request bodies are not SHA-256 signed (that hash would run on the event loop).  Each
body carries a CRC32 (``x-amz-checksum-crc32``, computed before sending by the storage's
one hashing thread), which S3 verifies and keeps: a body corrupted in transit, or a file
that changes between hashing and sending, is refused.  Without it S3 servers compute a
full-object checksum of their own at CompleteMultipartUpload.  ``content_md5=True`` adds
a Content-MD5.  Providers that refuse checksums are handled in :mod:`._s3compat`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from .._lifecycle import AsyncResource
from ..errors import ConfigurationError, StorageError
from . import _s3compat
from ._s3body import (
    INLINE_BODY,
    MAX_PARTS,
    FileSlice,
    SourceChanged,
    digests_of,
    open_small,
    s3_headers,
)
from .base import StoredFile, UploadProgress
from .s3_growing import GrowingUpload

__all__ = ["S3Storage"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600  # SigV4 maximum
MAX_KEY_BYTES = 1024

AddressingStyle = Literal["auto", "path", "virtual"]

# S3 error codes worth retrying besides any 5xx / 429.
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "RequestLimitExceeded",
        "TooManyRequests",
    }
)


def _error_code(exc: ClientError) -> tuple[str, int | None, str]:
    err = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    status = meta.get("HTTPStatusCode")
    return str(err.get("Code", "")), status, str(err.get("Message", "") or "")


class S3Storage(AsyncResource):
    """Put task outputs into ``bucket`` under ``prefix``.

    >>> async with S3Storage("my-bucket", prefix="renders") as storage:
    ...     stored = await storage.put(Path("out.mp4"), "task1/out.mp4", content_type="video/mp4")

    ``region`` defaults to ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` or ``us-east-1``;
    ``endpoint_url`` to ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (then path-style
    addressing is used unless ``addressing_style`` says otherwise).  Credentials default to
    the standard AWS chain.  ``url`` of a stored file is a presigned GET valid for
    ``presign_expires`` seconds (shorter if the credentials expire sooner), or
    ``public_base_url`` + key when that is set.  ``checksum="crc32"`` (the default)
    sends a CRC32 of every body, which S3 verifies (``None`` for endpoints that reject
    checksum headers); ``content_md5`` adds a Content-MD5 as well.  ``connect_timeout``,
    ``read_timeout`` and ``max_attempts`` (attempts per request including the first,
    botocore "standard" retry mode) tune the client.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        presign_expires: int = MAX_PRESIGN_EXPIRES,
        multipart_threshold: int = 16 * MiB,
        part_size: int = 8 * MiB,
        max_concurrency: int = 10,
        addressing_style: AddressingStyle = "auto",
        session: AioSession | None = None,
        public_base_url: str | None = None,
        content_md5: bool = False,
        checksum: Literal["crc32"] | None = "crc32",
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ConfigurationError(f"invalid S3 bucket name {bucket!r}")
        if not 1 <= presign_expires <= MAX_PRESIGN_EXPIRES:
            raise ConfigurationError(
                f"presign_expires={presign_expires!r} must be between 1 and "
                f"{MAX_PRESIGN_EXPIRES} seconds (the SigV4 maximum)"
            )
        if part_size < MIN_PART_SIZE:
            raise ConfigurationError(f"part_size={part_size!r} is below the S3 minimum of 5 MiB")
        if multipart_threshold < 0:
            raise ConfigurationError(f"multipart_threshold={multipart_threshold!r} is negative")
        if max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency={max_concurrency!r} must be at least 1")
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts={max_attempts!r} must be at least 1")
        if addressing_style not in ("auto", "path", "virtual"):
            raise ConfigurationError(
                f"addressing_style={addressing_style!r} must be 'auto', 'path' or 'virtual'"
            )
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigurationError(
                "access_key_id and secret_access_key must be given together (or neither)"
            )
        parts = [p for p in prefix.split("/") if p]
        if any(p in (".", "..") for p in parts) or "\x00" in prefix:
            raise ConfigurationError(f"invalid S3 key prefix {prefix!r}")

        self.bucket = bucket
        self.prefix = "/".join(parts)
        self.region = (
            region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        ) or "us-east-1"
        self.endpoint_url = (
            endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        if addressing_style == "auto" and self.endpoint_url:
            addressing_style = "path"
        self.addressing_style: AddressingStyle = addressing_style
        self.presign_expires = presign_expires
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.public_base_url = public_base_url
        self.content_md5 = content_md5
        if checksum not in ("crc32", None):
            raise ConfigurationError(f"checksum={checksum!r} must be 'crc32' or None")
        self.checksum = checksum
        #: Set once the endpoint refused a checksum header: none are sent from then on.
        self.checksums_rejected = False
        self._credentials = (access_key_id, secret_access_key, session_token)
        self._session = session
        self._config = AioConfig(
            region_name=self.region,
            signature_version="s3v4",
            s3={"addressing_style": addressing_style, "payload_signing_enabled": False},
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(10, 2 * max_concurrency),
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Load botocore's S3 model files in a thread, not on the event loop.
            warm_up_loader_caches=True,
        )
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._exit_stack = AsyncExitStack()
        self._closed = False
        self._aborts: set[asyncio.Task[None]] = set()
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="ffmpeg-tasks-s3-hash")
        #: How many aiobotocore clients this storage created (0 or 1).
        self.clients_created = 0

    def __repr__(self) -> str:
        return (
            f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"endpoint_url={self.endpoint_url!r})"
        )

    # -- keys and client --------------------------------------------------------

    def full_key(self, key: str) -> str:
        """``prefix/key``; refuses empty, absolute and ``.``/``..`` segment keys."""
        segments = key.split("/")
        if not key or "\x00" in key or any(s in ("", ".", "..") for s in segments):
            raise StorageError(
                f"refusing S3 key {key!r}: empty, absolute or with empty/'.'/'..' segments",
                code="invalid_key",
            )
        full = f"{self.prefix}/{key}" if self.prefix else key
        if len(full.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise StorageError(
                f"refusing S3 key {full!r}: longer than {MAX_KEY_BYTES} bytes", code="invalid_key"
            )
        return full

    def _where(self, full_key: str) -> str:
        return f"s3://{self.bucket}/{full_key}"

    async def warm_up(self) -> None:
        """Create the S3 client now (~0.25 s: botocore loads its service model).

        The manager calls this in the background as a task's ffmpeg starts, so the
        first upload does not wait for it.
        """
        await self._get_client()

    async def _get_client(self) -> Any:
        client = self._client
        if client is not None:
            return client
        async with self._client_lock:
            if self._closed:
                raise StorageError(f"{self!r} is closed", code="storage_closed")
            if self._client is None:
                key_id, secret, token = self._credentials
                session = self._session or get_session()
                self._client = await self._exit_stack.enter_async_context(
                    session.create_client(
                        "s3",
                        region_name=self.region,
                        endpoint_url=self.endpoint_url,
                        aws_access_key_id=key_id,
                        aws_secret_access_key=secret,
                        aws_session_token=token,
                        config=self._config,
                    )
                )
                self.clients_created += 1
            return self._client

    async def aclose(self) -> None:
        """Wait (briefly) for pending aborts, then close the client.  Safe to call twice."""
        self._closed = True
        if self._aborts:
            await asyncio.wait(set(self._aborts), timeout=30)
        async with self._client_lock:
            self._client = None
            await self._exit_stack.aclose()
        self._hasher.shutdown(wait=False)

    # -- errors -------------------------------------------------------------------

    def _error(self, exc: BaseException, action: str, full_key: str | None) -> StorageError:
        """Turn a botocore / OS error into a StorageError naming bucket and key."""
        if isinstance(exc, StorageError):
            return exc
        where = self._where(full_key) if full_key is not None else f"bucket {self.bucket!r}"
        if isinstance(exc, ClientError):
            code, status, message = _error_code(exc)
            transient = code in _TRANSIENT_CODES or status == 429 or (status or 0) >= 500
            if code in ("NoSuchBucket",) or (full_key is None and status == 404):
                text = f"{action} {where} failed: bucket {self.bucket!r} does not exist"
            elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or (
                status == 403
            ):
                text = f"{action} {where} failed: access denied ({code or status})"
            else:
                detail = f"{code or status}{': ' + message if message else ''}"
                text = f"{action} {where} failed: {detail}"
            return StorageError(text, transient=transient)
        if isinstance(exc, BotoConnectionError | ReadTimeoutError | ConnectionClosedError):
            endpoint = self.endpoint_url or "AWS S3"
            return StorageError(
                f"{action} {where} failed: cannot reach {endpoint} ({exc})",
                code="storage_unavailable",
                transient=True,
            )
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(f"{action} {where} failed: no usable AWS credentials ({exc})")
        if isinstance(exc, BotoCoreError):
            return StorageError(f"{action} {where} failed: {exc}")
        if isinstance(exc, SourceChanged):
            return StorageError(f"{action} {where} failed: {exc}")
        if isinstance(exc, OSError):
            return StorageError(f"{action} {where} failed: cannot read local file ({exc})")
        return StorageError(f"{action} {where} failed: {type(exc).__name__}: {exc}")

    # -- protocol ---------------------------------------------------------------

    async def put(
        self,
        path: Path,
        key: str,
        *,
        content_type: str,
        progress: UploadProgress | None = None,
    ) -> StoredFile:
        """Upload ``path`` to ``prefix/key`` with ``content_type``; all-or-nothing."""
        full_key = self.full_key(key)
        try:
            client = await self._get_client()  # first: a closed storage says so
            crc32, md5 = self._crc32, self.content_md5
            size, data, sums = await asyncio.get_running_loop().run_in_executor(
                self._hasher, lambda: open_small(Path(path), INLINE_BODY, md5=md5, crc32=crc32)
            )
            if data is None and size > self.multipart_threshold:
                await self._put_multipart(
                    client, Path(path), full_key, size, content_type, progress
                )
            else:
                if data is not None:
                    await self._put_object(client, full_key, data, sums, content_type)
                else:
                    await self._put_single(client, Path(path), full_key, size, content_type)
                if progress is not None:
                    progress(size, size)
            url = await self._url(client, full_key)
        except Exception as exc:
            raise self._error(exc, "upload to", full_key) from exc
        return StoredFile(key=full_key, uri=self._where(full_key), url=url, size=size)

    def begin(self, path: Path, key: str, *, content_type: str) -> GrowingUpload:
        """An upload of ``path`` that may start while ffmpeg still writes it (see
        :mod:`.s3_growing`): ``grow()`` while it runs, then ``finish()`` or ``abort()``."""
        return GrowingUpload(self, Path(path), key, content_type)

    async def url(self, key: str) -> str:
        """A fresh presigned GET URL (or the public URL) for ``key`` as passed to ``put``."""
        full_key = self.full_key(key)
        try:
            return await self._url(await self._get_client(), full_key)
        except Exception as exc:
            raise self._error(exc, "presign", full_key) from exc

    async def delete(self, key: str) -> None:
        """Delete ``prefix/key``; a missing object is not an error."""
        full_key = self.full_key(key)
        try:
            client = await self._get_client()
            await client.delete_object(Bucket=self.bucket, Key=full_key)
        except Exception as exc:
            raise self._error(exc, "delete", full_key) from exc

    async def check(self) -> None:
        """HeadBucket: raise StorageError when the bucket is missing, forbidden or unreachable."""
        try:
            client = await self._get_client()
            await client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise self._error(exc, "check", None) from exc

    # -- internals ----------------------------------------------------------------

    async def _url(self, client: Any, full_key: str) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/") + "/" + quote(full_key, safe="/~")
        url: str = await client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": full_key},
            ExpiresIn=self.presign_expires,
        )
        return url

    async def _body(self, path: Path, offset: int, length: int) -> tuple[FileSlice, dict[str, str]]:
        """A request body and its ``ChecksumCRC32`` / ``ContentMD5`` parameters.

        Made in one hop to the hasher thread: one thread hashes for all parts in
        flight, so fewer threads contend for the GIL with the event loop (measured:
        loop stalls grew with every extra hasher).
        """
        crc32 = self._crc32
        md5 = self.content_md5

        def make() -> tuple[FileSlice, dict[str, str]]:
            sums = digests_of(path, offset, length, md5=md5, crc32=crc32) if crc32 or md5 else {}
            return FileSlice(path, offset, length), sums

        return await asyncio.get_running_loop().run_in_executor(self._hasher, make)

    @property
    def _crc32(self) -> bool:
        return self.checksum == "crc32" and not self.checksums_rejected

    def _checksum_rejected(self, exc: BaseException, sent: bool) -> bool:
        """True (and checksums off from now on) if ``exc`` refuses the checksum headers."""
        if not sent or not _s3compat.header_rejects_checksums(exc):
            return False
        if not self.checksums_rejected:
            self.checksums_rejected = True
            log.warning(
                "%s refuses checksum headers (%s); %r sends none from now on",
                self.endpoint_url or "S3",
                exc,
                self,
            )
        return True

    async def _put_single(
        self, client: Any, path: Path, full_key: str, size: int, content_type: str
    ) -> None:
        body, sums = await self._body(path, 0, size)
        try:
            await self._put_object(client, full_key, body, sums, content_type)
        finally:
            body.release()

    async def _put_object(
        self,
        client: Any,
        full_key: str,
        body: bytes | FileSlice,
        sums: dict[str, str],
        content_type: str,
    ) -> None:
        crc = {"ChecksumAlgorithm": "CRC32"} if "ChecksumCRC32" in sums else {}
        try:
            await client.put_object(
                Bucket=self.bucket,
                Key=full_key,
                Body=body,
                ContentLength=len(body) if isinstance(body, bytes) else body.size,
                **sums,
                **crc,
                **s3_headers(content_type),
            )
        except ClientError as exc:
            if not self._checksum_rejected(exc, bool(crc)):
                raise
            if not isinstance(body, bytes):
                body.seek(0)
            sums = {k: v for k, v in sums.items() if k != "ChecksumCRC32"}
            await self._put_object(client, full_key, body, sums, content_type)

    def part_size_for(self, size: int) -> int:
        """``part_size``, grown (in whole MiB) so ``size`` needs at most 10 000 parts."""
        part = self.part_size
        if -(-size // part) > MAX_PARTS:
            part = -(-size // MAX_PARTS)
            part = -(-part // MiB) * MiB
        return part

    async def _put_multipart(
        self,
        client: Any,
        path: Path,
        full_key: str,
        size: int,
        content_type: str,
        progress: UploadProgress | None,
    ) -> None:
        part_size = self.part_size_for(size)
        count = -(-size // part_size)
        algorithm = {"ChecksumAlgorithm": "CRC32"} if self._crc32 else {}
        try:
            created = await client.create_multipart_upload(
                Bucket=self.bucket, Key=full_key, **algorithm, **s3_headers(content_type)
            )
        except ClientError as exc:
            if not self._checksum_rejected(exc, bool(algorithm)):
                raise
            created = await client.create_multipart_upload(
                Bucket=self.bucket, Key=full_key, **s3_headers(content_type)
            )
        upload_id: str = created["UploadId"]
        parts: dict[int, dict[str, Any]] = {}
        numbers = iter(range(1, count + 1))
        done = 0
        completing = False

        async def upload_part(number: int) -> None:
            nonlocal done
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)
            body, sums = await self._body(path, offset, length)
            try:
                response = await client.upload_part(
                    Bucket=self.bucket,
                    Key=full_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentLength=length,
                    **sums,
                )
            except ClientError as exc:
                if not self._checksum_rejected(exc, "ChecksumCRC32" in sums):
                    raise
                await upload_part(number)  # the same part, without its checksum
                return
            finally:
                body.release()
            parts[number] = {"ETag": response["ETag"], "PartNumber": number}
            if "ChecksumCRC32" in sums:
                parts[number]["ChecksumCRC32"] = sums["ChecksumCRC32"]
            done += length
            if progress is not None:
                progress(done, size)

        async def worker() -> None:
            # Each worker streams one part at a time.
            for number in numbers:
                await upload_part(number)

        try:
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(min(self.max_concurrency, count)):
                        group.create_task(worker())
            except BaseExceptionGroup as eg:
                raise eg.exceptions[0] from None
            completing = True
            ordered = [parts[n] for n in range(1, count + 1)]
            await _s3compat.complete(client, self.bucket, full_key, upload_id, ordered)
        except BaseException:
            etags = [str(parts[n]["ETag"]) for n in sorted(parts)] if completing else []
            abort = asyncio.create_task(
                _s3compat.abort(client, self.bucket, full_key, upload_id, etags)
            )
            self._aborts.add(abort)
            abort.add_done_callback(self._aborts.discard)
            # Shielded: a cancelled put still aborts; if cancelled again, the abort goes
            # on in the background and aclose() waits for it.
            await asyncio.shield(abort)
            raise
