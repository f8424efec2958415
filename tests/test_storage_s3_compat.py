"""S3Storage against servers that answer like Swift and B2 (a real proxy, tests/s3_proxy.py).

Runs against moto and SeaweedFS behind the proxy; the fallbacks live in
``ffmpeg_tasks/storage/_s3compat.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ffmpeg_tasks.storage import _s3compat
from ffmpeg_tasks.storage.s3 import MiB, S3Storage

from .conftest import S3Server
from .s3_proxy import ProviderProxy

pytestmark = pytest.mark.s3_servers


@pytest.fixture(scope="session")
def proxy_server(s3_server: S3Server) -> Iterator[ProviderProxy]:
    proxy = ProviderProxy(s3_server.endpoint_url)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxy(proxy_server: ProviderProxy) -> Iterator[ProviderProxy]:
    proxy_server.reset()
    yield proxy_server
    proxy_server.release.set()
    proxy_server.reset()


@pytest.fixture
async def storage(proxy: ProviderProxy, s3_bucket: str) -> AsyncIterator[S3Storage]:
    async with S3Storage(
        s3_bucket,
        endpoint_url=proxy.base_url,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
        max_attempts=1,
    ) as s:
        yield s


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    p = tmp_path / "big.mp4"
    p.write_bytes(os.urandom(11 * MiB))
    return p


def _no_leftovers(s3_client: Any, bucket: str) -> None:
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# Like AWS, SeaweedFS wants every part's checksum in the Complete of an upload created with a
# ChecksumAlgorithm (InvalidRequest without), so a proxy in front of it cannot be Swift.
@pytest.mark.s3_servers("moto")
async def test_swift_complete_is_sent_again_without_part_checksums(
    storage: S3Storage,
    proxy: ProviderProxy,
    s3_client: Any,
    s3_bucket: str,
    big_file: Path,
    s3_server: S3Server,
) -> None:
    proxy.mode = "swift"
    await storage.put(big_file, "t/big.mp4", content_type="video/mp4")
    assert len(proxy.rejected) == 1
    assert proxy.rejected[0][0] == "POST"
    body = s3_client.get_object(Bucket=s3_bucket, Key="t/big.mp4")["Body"].read()
    assert body == big_file.read_bytes()
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    # Parts still carry their CRC32: only the Complete body changed.
    assert not storage.checksums_rejected


async def test_b2_checksum_headers_refused_once_then_never_sent(
    storage: S3Storage,
    proxy: ProviderProxy,
    s3_client: Any,
    s3_bucket: str,
    big_file: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy.mode = "b2"
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello b2")
    with caplog.at_level(logging.WARNING, logger="ffmpeg_tasks.storage.s3"):
        await storage.put(small, "t/small.txt", content_type="text/plain")
        await storage.put(big_file, "t/big.mp4", content_type="video/mp4")
        await storage.put(small, "t/again.txt", content_type="text/plain")
    assert storage.checksums_rejected
    assert len(proxy.rejected) == 1  # remembered for the storage's life
    assert proxy.checksum_headers_seen == 1
    assert len([r for r in caplog.records if "refuses checksum headers" in r.message]) == 1
    assert s3_client.get_object(Bucket=s3_bucket, Key="t/small.txt")["Body"].read() == b"hello b2"
    assert s3_client.get_object(Bucket=s3_bucket, Key="t/again.txt")["Body"].read() == b"hello b2"
    body = s3_client.get_object(Bucket=s3_bucket, Key="t/big.mp4")["Body"].read()
    assert body == big_file.read_bytes()


async def test_b2_refusal_first_seen_on_a_multipart_upload(
    storage: S3Storage, proxy: ProviderProxy, s3_client: Any, s3_bucket: str, big_file: Path
) -> None:
    proxy.mode = "b2"
    await storage.put(big_file, "t/big.mp4", content_type="video/mp4")
    assert len(proxy.rejected) == 1 and proxy.rejected[0][0] == "POST"  # CreateMultipartUpload
    body = s3_client.get_object(Bucket=s3_bucket, Key="t/big.mp4")["Body"].read()
    assert body == big_file.read_bytes()


async def test_other_invalid_argument_is_not_taken_for_a_checksum_refusal() -> None:
    from botocore.exceptions import ClientError

    def err(status: int, code: str, message: str) -> ClientError:
        response: Any = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return ClientError(response, "PutObject")

    assert _s3compat.header_rejects_checksums(err(400, "InvalidArgument", "Unsupported header"))
    assert not _s3compat.header_rejects_checksums(err(400, "InvalidArgument", "bad part size"))
    assert not _s3compat.header_rejects_checksums(err(403, "AccessDenied", "checksum"))
    assert _s3compat.complete_rejects_checksums(err(400, "MalformedXML", ""))
    assert not _s3compat.complete_rejects_checksums(err(400, "EntityTooSmall", ""))


@pytest.mark.parametrize("answer", ["204", "NoSuchKey", None])
async def test_cancel_after_complete_removes_the_object_whatever_abort_answers(
    storage: S3Storage,
    proxy: ProviderProxy,
    s3_client: Any,
    s3_bucket: str,
    big_file: Path,
    answer: str | None,
) -> None:
    """Complete went through, then the put was cancelled: the object must not remain."""
    proxy.abort_answer = answer
    proxy.hold_complete = True
    put = asyncio.create_task(storage.put(big_file, "t/raced.mp4", content_type="video/mp4"))
    assert await asyncio.to_thread(proxy.complete_forwarded.wait, 60)
    assert s3_client.head_object(Bucket=s3_bucket, Key="t/raced.mp4")  # S3 has it now
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    proxy.release.set()
    # The abort's answer decided nothing: a HeadObject found the object, then a DELETE.
    assert ("HEAD", f"/{s3_bucket}/t/raced.mp4") in [(m, p) for m, p, _ in proxy.requests]
    assert ("DELETE", f"/{s3_bucket}/t/raced.mp4", "") in proxy.requests
    _no_leftovers(s3_client, s3_bucket)


async def test_an_older_object_is_kept_when_our_upload_never_completed(
    storage: S3Storage, s3_client: Any, s3_bucket: str
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="t/old.bin", Body=b"old")
    upload_id = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="t/old.bin")["UploadId"]
    etag = s3_client.upload_part(
        Bucket=s3_bucket, Key="t/old.bin", UploadId=upload_id, PartNumber=1, Body=b"new"
    )["ETag"]
    client = await storage._get_client()
    await _s3compat.abort(client, s3_bucket, "t/old.bin", upload_id, [etag])
    assert s3_client.get_object(Bucket=s3_bucket, Key="t/old.bin")["Body"].read() == b"old"
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


async def test_b2_refusal_first_seen_on_a_streamed_single_put(
    storage: S3Storage, proxy: ProviderProxy, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    """A file past the in-memory limit is streamed; the retry rewinds the same stream."""
    proxy.mode = "b2"
    src = tmp_path / "medium.bin"
    src.write_bytes(os.urandom(MiB + 7))
    stored = await storage.put(src, "t/medium.bin", content_type="video/mp4")
    assert stored.size == MiB + 7
    assert len(proxy.rejected) == 1 and proxy.rejected[0][0] == "PUT"
    body = s3_client.get_object(Bucket=s3_bucket, Key="t/medium.bin")["Body"].read()
    assert body == src.read_bytes()
