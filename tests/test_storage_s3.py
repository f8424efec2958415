"""S3Storage against real S3 servers, moto and SeaweedFS (no patching of aiobotocore).

Every test that uses ``s3_server`` runs against both (``pytestmark`` below); a few
check moto-only behaviour and skip on SeaweedFS (see :func:`_moto_only`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ffmpeg_tasks.errors import ConfigurationError, StorageError
from ffmpeg_tasks.storage import _s3compat
from ffmpeg_tasks.storage import s3 as s3_module
from ffmpeg_tasks.storage.s3 import MiB, S3Storage

from .conftest import S3Server
from .servers import ThreadedAiohttpServer

pytestmark = pytest.mark.s3_servers


@pytest.fixture
async def storage(s3_server: S3Server, s3_bucket: str) -> AsyncIterator[S3Storage]:
    async with S3Storage(s3_bucket, endpoint_url=s3_server.endpoint_url) as s:
        yield s


def _multipart_storage(s3_server: S3Server, bucket: str, **kw: Any) -> S3Storage:
    return S3Storage(
        bucket,
        endpoint_url=s3_server.endpoint_url,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
        **kw,
    )


@pytest.fixture(scope="module")
def big_bytes() -> bytes:
    return os.urandom(12 * MiB)


@pytest.fixture
def big_file(tmp_path: Path, big_bytes: bytes) -> Path:
    p = tmp_path / "big.mp4"
    p.write_bytes(big_bytes)
    return p


def _no_leftovers(s3_client: Any, bucket: str) -> None:
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_small_put_reads_back_with_content_type(
    storage: S3Storage, s3_client: Any, s3_bucket: str, media_dir: Path
) -> None:
    src = media_dir / "clip.mp4"
    seen: list[tuple[int, int]] = []
    stored = await storage.put(
        src,
        "task1/clip.mp4",
        content_type="video/mp4",
        progress=lambda done, total: seen.append((done, total)),
    )
    size = src.stat().st_size
    assert stored.key == "task1/clip.mp4"
    assert stored.uri == f"s3://{s3_bucket}/task1/clip.mp4"
    assert stored.size == size
    assert seen[-1] == (size, size)
    obj = s3_client.get_object(Bucket=s3_bucket, Key="task1/clip.mp4")
    assert obj["Body"].read() == src.read_bytes()
    assert obj["ContentType"] == "video/mp4"


async def test_renderable_types_stored_as_attachment(
    storage: S3Storage, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "manifest.mpd"
    src.write_text("<MPD xmlns='urn:mpeg:dash:schema:mpd:2011'/>")
    await storage.put(src, "t/manifest.mpd", content_type="application/dash+xml")
    await storage.put(src, "t/page.html", content_type="text/html")
    await storage.put(src, "t/clip.mp4", content_type="video/mp4")
    head = s3_client.head_object(Bucket=s3_bucket, Key="t/manifest.mpd")
    assert head["ContentType"] == "application/dash+xml"
    assert head["ContentDisposition"] == "attachment"
    assert s3_client.head_object(Bucket=s3_bucket, Key="t/page.html")["ContentDisposition"] == (
        "attachment"
    )
    assert "ContentDisposition" not in s3_client.head_object(Bucket=s3_bucket, Key="t/clip.mp4")


async def test_empty_file(
    storage: S3Storage, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "empty.txt"
    src.write_bytes(b"")
    stored = await storage.put(src, "t/empty.txt", content_type="text/plain")
    assert stored.size == 0
    assert s3_client.get_object(Bucket=s3_bucket, Key="t/empty.txt")["Body"].read() == b""


async def test_presigned_url_downloads_with_plain_get(storage: S3Storage, media_dir: Path) -> None:
    src = media_dir / "logo.png"
    stored = await storage.put(src, "t/logo.png", content_type="image/png")
    assert "X-Amz-Signature=" in stored.url
    assert "X-Amz-Expires=604800" in stored.url
    async with aiohttp.ClientSession() as http, http.get(stored.url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/png"
        assert await resp.read() == src.read_bytes()
    fresh = await storage.url("t/logo.png")
    async with aiohttp.ClientSession() as http, http.get(fresh) as resp:
        assert resp.status == 200
        assert await resp.read() == src.read_bytes()


async def test_multipart_upload_in_parts(
    s3_server: S3Server, s3_bucket: str, s3_client: Any, big_file: Path, big_bytes: bytes
) -> None:
    seen: list[tuple[int, int]] = []
    async with _multipart_storage(s3_server, s3_bucket) as storage:
        stored = await storage.put(
            big_file,
            "t/big.mp4",
            content_type="video/mp4",
            progress=lambda d, t: seen.append((d, t)),
        )
    assert stored.size == len(big_bytes)
    head = s3_client.head_object(Bucket=s3_bucket, Key="t/big.mp4")
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB
    assert head["ContentType"] == "video/mp4"
    assert s3_client.get_object(Bucket=s3_bucket, Key="t/big.mp4")["Body"].read() == big_bytes
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) == 3
    assert seen[-1] == (len(big_bytes), len(big_bytes))
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


async def test_bodies_carry_crc32_checksums_that_s3_keeps(
    s3_server: S3Server, s3_bucket: str, s3_client: Any, big_file: Path, big_bytes: bytes
) -> None:
    def b64crc(data: bytes) -> str:
        return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()

    small = big_file.with_name("small.bin")
    small.write_bytes(big_bytes[:1000])
    async with _multipart_storage(s3_server, s3_bucket) as storage:
        await storage.put(big_file, "t/big.mp4", content_type="video/mp4")
        await storage.put(small, "t/small.bin", content_type="application/octet-stream")

    head = s3_client.head_object(Bucket=s3_bucket, Key="t/small.bin", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == b64crc(big_bytes[:1000])
    parts = [big_bytes[i : i + 5 * MiB] for i in range(0, len(big_bytes), 5 * MiB)]
    composite = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
    head = s3_client.head_object(Bucket=s3_bucket, Key="t/big.mp4", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"].split("-")[0] == b64crc(composite)  # moto omits "-3"


@pytest.mark.parametrize("extra", [-1, 0, 1])
async def test_files_either_side_of_the_in_memory_limit_arrive_whole_and_checked(
    storage: S3Storage, s3_client: Any, s3_bucket: str, tmp_path: Path, extra: int
) -> None:
    """Files up to ``_INLINE_BODY`` are sent from memory, larger ones from the file."""
    data = os.urandom(s3_module.INLINE_BODY + extra)
    src = tmp_path / "out.bin"
    src.write_bytes(data)
    seen: list[tuple[int, int]] = []
    stored = await storage.put(
        src,
        "t/out.bin",
        content_type="application/octet-stream",
        progress=lambda *a: seen.append(a),
    )
    assert stored.size == len(data) and seen[-1] == (len(data), len(data))
    obj = s3_client.get_object(Bucket=s3_bucket, Key="t/out.bin", ChecksumMode="ENABLED")
    assert obj["Body"].read() == data
    assert obj["ChecksumCRC32"] == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


async def test_a_fifo_is_refused_not_waited_on(storage: S3Storage, tmp_path: Path) -> None:
    fifo = tmp_path / "out.mp4"
    os.mkfifo(fifo)
    with pytest.raises(StorageError, match="not a regular file"):
        await asyncio.wait_for(storage.put(fifo, "t/out.mp4", content_type="video/mp4"), 10)


def test_a_small_file_that_grows_before_it_is_read_is_sent_whole_from_the_file(
    tmp_path: Path,
) -> None:
    """Between the stat and the read another writer adds bytes: the real size is used."""
    path = tmp_path / "out.bin"
    path.write_bytes(b"x" * 100)

    class Growing(type(path)):  # type: ignore[misc]
        def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
            st = super().stat(follow_symlinks=follow_symlinks)
            with open(self, "ab") as f:
                f.write(b"y" * 1000)
            return st

    size, data, sums = s3_module.open_small(Growing(path), 500, md5=False, crc32=True)
    assert (size, data, sums) == (1100, None, {})


async def test_checksum_none_sends_no_checksum(
    s3_server: S3Server, s3_bucket: str, s3_client: Any, big_file: Path
) -> None:
    async with _multipart_storage(s3_server, s3_bucket, checksum=None) as storage:
        await storage.put(big_file, "t/big.mp4", content_type="video/mp4")
    head = s3_client.head_object(Bucket=s3_bucket, Key="t/big.mp4", ChecksumMode="ENABLED")
    assert "ChecksumCRC32" not in head


async def test_file_shrinking_mid_multipart_leaves_nothing(
    s3_server: S3Server, s3_bucket: str, s3_client: Any, big_file: Path
) -> None:
    def shrink(done: int, total: int) -> None:
        with big_file.open("r+b") as f:
            f.truncate(6 * MiB)

    async with _multipart_storage(s3_server, s3_bucket, max_concurrency=1) as storage:
        with pytest.raises(StorageError) as info:
            await storage.put(big_file, "t/big.mp4", content_type="video/mp4", progress=shrink)
    assert "shrank" in str(info.value)
    assert str(big_file) in str(info.value)
    assert f"s3://{s3_bucket}/t/big.mp4" in str(info.value)
    _no_leftovers(s3_client, s3_bucket)


async def test_cancel_mid_multipart_aborts_upload(
    s3_server: S3Server, s3_bucket: str, s3_client: Any, big_file: Path
) -> None:
    first_part = asyncio.Event()
    async with _multipart_storage(s3_server, s3_bucket, max_concurrency=1) as storage:
        put = asyncio.create_task(
            storage.put(
                big_file,
                "t/big.mp4",
                content_type="video/mp4",
                progress=lambda d, t: first_part.set(),
            )
        )
        await first_part.wait()
        # The upload exists server-side now; cancel while the next part is in flight.
        assert len(s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])) == 1
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
    _no_leftovers(s3_client, s3_bucket)


async def test_failing_part_aborts_upload(
    s3_server: S3Server, s3_bucket: str, s3_client: Any, big_file: Path
) -> None:
    """An error raised while parts are in flight (here: from the progress callback)."""

    def boom(done: int, total: int) -> None:
        raise RuntimeError("progress sink broke")

    async with _multipart_storage(s3_server, s3_bucket, max_concurrency=2) as storage:
        with pytest.raises(StorageError) as info:
            await storage.put(big_file, "t/big.mp4", content_type="video/mp4", progress=boom)
    assert f"s3://{s3_bucket}/t/big.mp4" in str(info.value)
    _no_leftovers(s3_client, s3_bucket)


async def test_missing_bucket_mid_multipart_is_storage_error(
    s3_server: S3Server, s3_client: Any, big_file: Path
) -> None:
    async with _multipart_storage(s3_server, "no-such-bucket-here") as storage:
        with pytest.raises(StorageError) as info:
            await storage.put(big_file, "t/big.mp4", content_type="video/mp4")
    assert "no-such-bucket-here" in str(info.value)
    assert info.value.code == "storage_failed"
    assert not info.value.transient


async def test_dead_endpoint_fails_fast(dead_endpoint: str, media_dir: Path) -> None:
    async with S3Storage(
        "bucket", endpoint_url=dead_endpoint, connect_timeout=2, max_attempts=1
    ) as storage:
        start = time.monotonic()
        with pytest.raises(StorageError) as info:
            await storage.put(media_dir / "logo.png", "t/logo.png", content_type="image/png")
        assert time.monotonic() - start < 30  # generous: only "not hanging" is asserted
        with pytest.raises(StorageError) as check_info:
            await storage.check()
    err = info.value
    assert err.code == "storage_unavailable"
    assert err.transient
    assert "s3://bucket/t/logo.png" in str(err)
    assert dead_endpoint in str(err)
    assert check_info.value.code == "storage_unavailable"


async def test_one_client_for_many_puts(
    storage: S3Storage, s3_client: Any, s3_bucket: str, media_dir: Path
) -> None:
    src = media_dir / "tone.wav"
    # Concurrent first calls must still create a single client.
    await asyncio.gather(
        *(storage.put(src, f"t{i}/tone.wav", content_type="audio/wav") for i in range(8))
    )
    client = storage._client
    assert client is not None
    for i in range(8, 12):
        await storage.put(src, f"t{i}/tone.wav", content_type="audio/wav")
        assert storage._client is client
    await storage.url("t0/tone.wav")
    await storage.check()
    await storage.warm_up()  # the manager's early call: the same client
    assert storage.clients_created == 1
    assert s3_client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 12


async def test_prefix_joined_without_double_slashes(
    s3_server: S3Server, s3_bucket: str, s3_client: Any, media_dir: Path
) -> None:
    async with S3Storage(
        s3_bucket, prefix="/renders//2024/", endpoint_url=s3_server.endpoint_url
    ) as s:
        stored = await s.put(media_dir / "subs.srt", "task9/subs.srt", content_type="x/y")
        assert stored.key == "renders/2024/task9/subs.srt"
        assert stored.uri == f"s3://{s3_bucket}/renders/2024/task9/subs.srt"
        assert "/renders/2024/task9/subs.srt?" in await s.url("task9/subs.srt")
        await s.delete("task9/subs.srt")
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a/\x00", "k" * 1025])
async def test_bad_keys_refused(storage: S3Storage, media_dir: Path, key: str) -> None:
    with pytest.raises(StorageError) as info:
        await storage.put(media_dir / "subs.srt", key, content_type="text/plain")
    assert info.value.code == "invalid_key"
    assert repr(key) in str(info.value)
    with pytest.raises(StorageError):
        await storage.url(key)
    with pytest.raises(StorageError):
        await storage.delete(key)


async def test_delete_and_missing_delete(
    storage: S3Storage, s3_client: Any, s3_bucket: str, media_dir: Path
) -> None:
    await storage.put(media_dir / "subs.srt", "t/subs.srt", content_type="application/x-subrip")
    await storage.delete("t/subs.srt")
    await storage.delete("t/subs.srt")  # missing: not an error
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


async def test_check(storage: S3Storage, s3_server: S3Server) -> None:
    await storage.check()
    async with S3Storage("missing-bucket-x", endpoint_url=s3_server.endpoint_url) as missing:
        with pytest.raises(StorageError) as info:
            await missing.check()
    assert "missing-bucket-x" in str(info.value)
    assert "does not exist" in str(info.value)
    assert not info.value.transient


async def test_missing_local_file(storage: S3Storage, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        await storage.put(tmp_path / "nope.mp4", "t/nope.mp4", content_type="video/mp4")
    assert "nope.mp4" in str(info.value)


async def test_public_base_url(s3_server: S3Server, s3_bucket: str, media_dir: Path) -> None:
    async with S3Storage(
        s3_bucket,
        prefix="p",
        endpoint_url=s3_server.endpoint_url,
        public_base_url="https://cdn.example.com/media/",
    ) as s:
        stored = await s.put(media_dir / "logo.png", "t/a b.png", content_type="image/png")
    assert stored.url == "https://cdn.example.com/media/p/t/a%20b.png"


async def test_closed_storage_refuses(s3_server: S3Server, s3_bucket: str, media_dir: Path) -> None:
    s = S3Storage(s3_bucket, endpoint_url=s3_server.endpoint_url)
    await s.check()
    await s.aclose()
    await s.aclose()  # twice is fine
    with pytest.raises(StorageError) as info:
        await s.put(media_dir / "logo.png", "t/logo.png", content_type="image/png")
    assert info.value.code == "storage_closed"


def test_part_size_grows_to_fit_10000_parts() -> None:
    s = S3Storage("b", part_size=8 * MiB)
    assert s.part_size_for(100 * MiB) == 8 * MiB
    size = 200_000 * MiB  # ~195 GiB
    part = s.part_size_for(size)
    assert part % MiB == 0
    assert -(-size // part) <= 10_000
    assert part == 20 * MiB


def test_defaults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio:9000")
    s = S3Storage("b")
    assert s.region == "eu-west-3"
    assert s.endpoint_url == "http://minio:9000"
    assert s.addressing_style == "path"
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    s = S3Storage("b")
    assert s.region == "us-east-1"
    assert s.endpoint_url is None
    assert s.addressing_style == "auto"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"part_size": 4 * MiB},
        {"presign_expires": 604801},
        {"presign_expires": 0},
        {"max_concurrency": 0},
        {"addressing_style": "sideways"},
        {"access_key_id": "only-id"},
        {"prefix": "a/../b"},
        {"checksum": "sha1"},
    ],
)
def test_bad_configuration(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        S3Storage("b", **kwargs)
    name, value = next(iter(kwargs.items()))
    assert name in str(info.value) or repr(value) in str(info.value)


# -- error mapping against a scripted S3-like HTTP server ---------------------------


class ScriptedS3:
    """A real aiohttp server answering S3 requests from a script of (status, code)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.checksums: list[bool] = []  # per body with a CRC32: did it match?
        app = web.Application(client_max_size=64 * MiB)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = ThreadedAiohttpServer(app)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path))
        sent = request.headers.get("x-amz-checksum-crc32")
        if sent is not None:
            matches = sent == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
            self.checksums.append(matches)
            if not matches:  # what S3 answers
                self.script.insert(0, (400, "BadDigest"))
        if self.script:
            status, code = self.script.pop(0)
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                f"<Error><Code>{code}</Code><Message>scripted {code}</Message></Error>"
            )
            return web.Response(status=status, text=body, content_type="application/xml")
        if request.method == "POST" and "uploads" in request.query:
            xml = (
                "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                "<UploadId>up1</UploadId></InitiateMultipartUploadResult>"
            )
            return web.Response(text=xml, content_type="application/xml")
        if request.method == "POST":
            xml = "<CompleteMultipartUploadResult><ETag>x</ETag></CompleteMultipartUploadResult>"
            return web.Response(text=xml, content_type="application/xml")
        return web.Response(status=200, headers={"ETag": '"abc"'})


@pytest.fixture(scope="module")
def scripted_s3() -> Iterator[ScriptedS3]:
    fake = ScriptedS3()
    fake.server.start()
    yield fake
    fake.server.stop()


@pytest.fixture
def fake_s3(scripted_s3: ScriptedS3) -> ScriptedS3:
    scripted_s3.script.clear()
    scripted_s3.requests.clear()
    scripted_s3.checksums.clear()
    return scripted_s3


@pytest.mark.parametrize(
    ("status", "code", "transient"),
    [
        (503, "SlowDown", True),
        (500, "InternalError", True),
        (400, "RequestTimeout", True),
        (403, "AccessDenied", False),
        (400, "InvalidArgument", False),
    ],
)
async def test_error_mapping(
    fake_s3: ScriptedS3, media_dir: Path, status: int, code: str, transient: bool
) -> None:
    fake_s3.script.append((status, code))
    async with S3Storage("bkt", endpoint_url=fake_s3.server.base_url, max_attempts=1) as s:
        with pytest.raises(StorageError) as info:
            await s.put(media_dir / "logo.png", "t/logo.png", content_type="image/png")
    err = info.value
    assert err.transient is transient
    assert err.code == "storage_failed"
    assert "s3://bkt/t/logo.png" in str(err)
    assert (code in str(err)) or "access denied" in str(err)
    assert fake_s3.requests == [("PUT", "/bkt/t/logo.png")]


async def test_throttling_is_retried_by_the_client(fake_s3: ScriptedS3, media_dir: Path) -> None:
    fake_s3.script.append((503, "SlowDown"))
    async with S3Storage("bkt", endpoint_url=fake_s3.server.base_url, max_attempts=3) as s:
        stored = await s.put(media_dir / "logo.png", "t/logo.png", content_type="image/png")
    assert stored.key == "t/logo.png"
    assert fake_s3.requests == [("PUT", "/bkt/t/logo.png")] * 2


async def test_abort_after_completion_race_deletes_object(
    storage: S3Storage, s3_client: Any, s3_bucket: str
) -> None:
    """If CompleteMultipartUpload went through just before a cancel, the object goes too."""
    key = "t/raced.bin"
    upload_id = s3_client.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
    etag = s3_client.upload_part(
        Bucket=s3_bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 10
    )["ETag"]
    s3_client.complete_multipart_upload(
        Bucket=s3_bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
    )
    client = await storage._get_client()
    await _s3compat.abort(client, s3_bucket, key, upload_id, [etag])
    _no_leftovers(s3_client, s3_bucket)


async def test_multipart_streams_at_most_max_concurrency_parts(
    s3_server: S3Server,
    s3_bucket: str,
    s3_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parts are streamed from the file, never more than max_concurrency open at once."""

    live = 0
    peak = 0
    opened = 0
    original = s3_module.FileSlice

    class CountingSlice(original):  # type: ignore[misc, valid-type]
        def __init__(self, path: Path, offset: int, length: int) -> None:
            nonlocal live, peak, opened
            super().__init__(path, offset, length)
            live += 1
            opened += 1
            peak = max(peak, live)

        def release(self) -> None:
            nonlocal live
            if not self.closed:
                live -= 1
            super().release()

    monkeypatch.setattr(s3_module, "FileSlice", CountingSlice)
    src = tmp_path / "big.bin"
    data = os.urandom(26 * MiB)  # 6 parts of 5 MiB (last 1 MiB)
    src.write_bytes(data)
    async with _multipart_storage(s3_server, s3_bucket, max_concurrency=2) as storage:
        await storage.put(src, "t/big.bin", content_type="x")
    assert opened == 6
    assert 1 <= peak <= 2
    assert live == 0
    assert s3_client.get_object(Bucket=s3_bucket, Key="t/big.bin")["Body"].read() == data


async def test_cancelled_twice_abort_finishes_before_aclose(
    s3_server: S3Server, s3_bucket: str, s3_client: Any, big_file: Path
) -> None:
    """A second cancel during the abort leaves it running in the background; aclose waits."""
    first_part = asyncio.Event()
    storage = _multipart_storage(s3_server, s3_bucket, max_concurrency=1)
    put = asyncio.create_task(
        storage.put(
            big_file, "t/big.mp4", content_type="video/mp4", progress=lambda d, t: first_part.set()
        )
    )
    await first_part.wait()
    put.cancel()
    for _ in range(3):
        await asyncio.sleep(0)
        put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    await storage.aclose()
    _no_leftovers(s3_client, s3_bucket)


async def test_every_body_carries_the_crc32_of_the_bytes_sent(
    fake_s3: ScriptedS3, big_file: Path
) -> None:
    async with S3Storage(
        "b", endpoint_url=fake_s3.server.base_url, multipart_threshold=5 * MiB, part_size=5 * MiB
    ) as storage:
        await storage.put(big_file, "t/big.mp4", content_type="video/mp4")
    assert fake_s3.checksums == [True, True, True]


async def test_a_part_changed_after_hashing_is_refused_and_aborted(
    fake_s3: ScriptedS3, big_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 answers BadDigest when a body does not match its checksum."""
    real = s3_module.digests_of

    def then_change(path: Path, offset: int, length: int, **kw: bool) -> dict[str, str]:
        sums = real(path, offset, length, **kw)
        if offset > 0:
            with path.open("r+b") as f:
                f.seek(offset)
                f.write(b"\xff\x00\xff")
        return sums

    monkeypatch.setattr(s3_module, "digests_of", then_change)
    async with S3Storage(
        "b",
        endpoint_url=fake_s3.server.base_url,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
        max_concurrency=1,
    ) as storage:
        with pytest.raises(StorageError) as info:
            await storage.put(big_file, "t/big.mp4", content_type="video/mp4")
    assert "BadDigest" in str(info.value)
    assert "s3://b/t/big.mp4" in str(info.value)
    assert False in fake_s3.checksums
    assert fake_s3.requests[-1][0] == "DELETE"  # the multipart upload was aborted
