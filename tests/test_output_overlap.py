"""Output overlap against real S3 servers: parts of an output go up while it is written.

Whatever a muxer rewrites after a part went up (MP4's ``mdat`` size, a patched header),
the stored object must be the final file byte for byte; nothing is visible before
Complete, and a failed or cancelled task leaves no object and no open multipart upload.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path

import pytest

from ffmpeg_tasks import S3Storage, TaskStatus
from ffmpeg_tasks.storage.s3 import MiB
from ffmpeg_tasks.storage.s3_growing import GrowingUpload

from .conftest import S3Server
from .helpers import make_manager
from .s3_proxy import ProviderProxy
from .servers import MediaServer

pytestmark = pytest.mark.s3_servers

PART = 5 * MiB


def storage_for(s3_server: S3Server, bucket: str) -> S3Storage:
    return S3Storage(
        bucket, endpoint_url=s3_server.endpoint_url, multipart_threshold=PART, part_size=PART
    )


def stored_bytes(s3_client: object, bucket: str, key: str) -> bytes:
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined,no-any-return]


def open_uploads(s3_client: object, bucket: str) -> list[object]:
    listed = s3_client.list_multipart_uploads(Bucket=bucket)  # type: ignore[attr-defined]
    return list(listed.get("Uploads", []))


async def write_slowly(path: Path, data: bytes, *, chunk: int = MiB, delay: float = 0.05) -> None:
    with path.open("wb") as f:
        for i in range(0, len(data), chunk):
            f.write(data[i : i + chunk])
            f.flush()
            await asyncio.sleep(delay)


async def test_parts_go_up_while_the_file_grows_and_rewrites_are_caught(
    s3_server: S3Server, s3_bucket: str, s3_client: object, tmp_path: Path
) -> None:
    data = bytearray(os.urandom(4 * PART + 123))
    path = tmp_path / "out.mkv"
    async with storage_for(s3_server, s3_bucket) as storage:
        upload = storage.begin(path, "t/out.mkv", content_type="video/x-matroska")
        assert isinstance(upload, GrowingUpload)
        grower = asyncio.create_task(upload.grow())
        await write_slowly(path, bytes(data))
        for _ in range(100):  # parts 2 and 3 are behind the margin: they go up early
            if {2, 3} <= set(upload.parts):
                break
            await asyncio.sleep(0.05)
        assert {2, 3} <= set(upload.parts) and 1 not in upload.parts
        grower.cancel()
        # What a muxer does at the end: patch the header and a byte of an early part.
        data[10:20] = b"HEADERDONE"
        data[PART + 7] ^= 0xFF
        with path.open("r+b") as f:
            f.seek(10)
            f.write(data[10:20])
            f.seek(PART + 7)
            f.write(data[PART + 7 : PART + 8])
        stored = await upload.finish()
    assert stored is not None and stored.size == len(data)
    assert stored_bytes(s3_client, s3_bucket, "t/out.mkv") == bytes(data)
    assert not open_uploads(s3_client, s3_bucket)


@pytest.mark.s3_servers("moto")
async def test_a_part_still_in_flight_when_ffmpeg_exits_is_checked_after_it_lands(
    s3_server: S3Server, s3_bucket: str, s3_client: object, tmp_path: Path
) -> None:
    """finish() does not wait for every early part: it waits for each one it checks.  Part
    2's early upload is held and its bytes change meanwhile; finish() waits for it to land,
    then sends it again; Complete never races a part on its way."""
    proxy = ProviderProxy(s3_server.endpoint_url)
    proxy.start()
    held = proxy.hold_parts[2] = threading.Event()
    data = bytearray(os.urandom(4 * PART + 123))
    path = tmp_path / "out.ts"
    try:
        async with S3Storage(
            s3_bucket, endpoint_url=proxy.base_url, multipart_threshold=PART, part_size=PART
        ) as storage:
            upload = storage.begin(path, "t/out.ts", content_type="video/mp2t")
            assert isinstance(upload, GrowingUpload)
            grower = asyncio.create_task(upload.grow())
            await write_slowly(path, bytes(data))
            for _ in range(100):
                if 3 in upload.parts:
                    break
                await asyncio.sleep(0.05)
            assert 3 in upload.parts and 2 not in upload.parts  # part 2 is held
            grower.cancel()
            data[PART + 7] ^= 0xFF
            with path.open("r+b") as f:
                f.seek(PART + 7)
                f.write(data[PART + 7 : PART + 8])
            finishing = asyncio.create_task(upload.finish())
            await asyncio.sleep(0.5)
            assert not finishing.done()  # waiting for part 2
            held.set()
            stored = await finishing
            assert not upload._inflight
    finally:
        held.set()
        proxy.stop()
    assert stored is not None and stored.size == len(data)
    assert stored_bytes(s3_client, s3_bucket, "t/out.ts") == bytes(data)
    assert not open_uploads(s3_client, s3_bucket)
    puts = [q for m, _, q in proxy.requests if m == "PUT" and "partNumber=2&" in q + "&"]
    assert len(puts) == 2  # early, then again with the changed byte


async def test_abort_leaves_nothing(
    s3_server: S3Server, s3_bucket: str, s3_client: object, tmp_path: Path
) -> None:
    path = tmp_path / "out.ts"
    async with storage_for(s3_server, s3_bucket) as storage:
        upload = storage.begin(path, "t/out.ts", content_type="video/mp2t")
        grower = asyncio.create_task(upload.grow())
        await write_slowly(path, os.urandom(4 * PART))
        for _ in range(100):
            if upload.parts:
                break
            await asyncio.sleep(0.05)
        assert upload.parts
        grower.cancel()
        await upload.abort()
    assert not open_uploads(s3_client, s3_bucket)
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)  # type: ignore[attr-defined]
    assert listed.get("KeyCount", 0) == 0


async def test_a_symlinked_output_is_never_read(
    s3_server: S3Server, s3_bucket: str, s3_client: object, tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret"
    secret.write_bytes(os.urandom(4 * PART))
    path = tmp_path / "out.ts"
    path.symlink_to(secret)
    async with storage_for(s3_server, s3_bucket) as storage:
        upload = storage.begin(path, "t/out.ts", content_type="video/mp2t")
        grower = asyncio.create_task(upload.grow())
        await asyncio.sleep(0.6)
        grower.cancel()
        assert not upload.parts
        await upload.abort()


@pytest.mark.s3_servers("moto")
async def test_a_task_stores_the_final_file_byte_for_byte(
    s3_server: S3Server,
    s3_bucket: str,
    s3_client: object,
    tmp_path: Path,
    media_server: MediaServer,
    ffprobe_bin: str,
) -> None:
    # ~25 MB of MP4 written over a few seconds: the mdat size at the start is patched at
    # the end, so part 1 always goes last and the early parts are checked again.
    command = "-i in.mp4 -vf scale=1280:720 -c:v libx264 -preset ultrafast -crf 0 -an out.mp4"
    async with make_manager(
        tmp_path, storage=storage_for(s3_server, s3_bucket), overlap_outputs=True
    ) as manager:
        task = await manager.run(command, {"in.mp4": media_server.media_url("long.mp4")}, "out.mp4")
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.output is not None and task.output.size > 3 * PART
    body = stored_bytes(s3_client, s3_bucket, task.output.key)
    assert len(body) == task.output.size
    stored = tmp_path / "stored.mp4"
    stored.write_bytes(body)
    probe = subprocess.run(
        [ffprobe_bin, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         str(stored)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert float(probe.stdout) == pytest.approx(10, abs=0.5)  # the whole file, playable
    assert not open_uploads(s3_client, s3_bucket)


@pytest.mark.s3_servers("moto")
async def test_a_run_stopped_mid_write_leaves_no_upload(
    s3_server: S3Server,
    s3_bucket: str,
    s3_client: object,
    tmp_path: Path,
    media_server: MediaServer,
) -> None:
    # -re: ffmpeg writes for 10 s; its timeout stops it after 3 s, parts already sent.
    command = "-re -i in.mp4 -vf scale=1280:720 -c:v libx264 -preset ultrafast -crf 0 out.mkv"
    inputs = {"in.mp4": media_server.media_url("long.mp4")}
    async with make_manager(
        tmp_path, storage=storage_for(s3_server, s3_bucket), overlap_outputs=True
    ) as manager:
        task = await manager.run(command, inputs, "out.mkv", timeout=3)
    assert (task.status, task.error_code) == (TaskStatus.FAILED, "timeout")
    assert not open_uploads(s3_client, s3_bucket)
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)  # type: ignore[attr-defined]
    assert listed.get("KeyCount", 0) == 0
