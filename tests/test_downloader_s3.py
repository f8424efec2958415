"""S3Downloader against real S3 servers (moto and SeaweedFS): allow-list, ranges, errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ffmpeg_tasks import (
    ConfigurationError,
    DownloadError,
    DownloadTooLargeError,
    MemoryStorage,
    S3Downloader,
    S3Storage,
    TaskManager,
    TaskStatus,
)

from .helpers import leftovers

pytestmark = pytest.mark.s3_servers

MiB = 1024 * 1024


def downloader(s3_server: Any, buckets: list[str], **kwargs: Any) -> S3Downloader:
    return S3Downloader(buckets, endpoint_url=s3_server.endpoint_url, region="us-east-1", **kwargs)


def put(s3_client: Any, bucket: str, key: str, data: bytes) -> str:
    s3_client.put_object(Bucket=bucket, Key=key, Body=data)
    return f"s3://{bucket}/{key}"


async def test_small_and_ranged_objects_arrive_byte_exact(
    tmp_path: Path, s3_server: Any, s3_bucket: str, s3_client: Any
) -> None:
    small = os.urandom(1000)
    big = os.urandom(5 * MiB + 123)  # six 1 MiB ranges, the last one short
    seen: list[tuple[int, int | None]] = []
    async with downloader(s3_server, [s3_bucket], part_size=1 * MiB, concurrency=3) as dl:
        n = await dl.fetch(put(s3_client, s3_bucket, "in/a.bin", small), tmp_path / "a")
        m = await dl.fetch(
            put(s3_client, s3_bucket, "in/b.bin", big),
            tmp_path / "b",
            progress=lambda done, total: seen.append((done, total)),
        )
        empty = await dl.fetch(put(s3_client, s3_bucket, "in/e.bin", b""), tmp_path / "e")
    assert (n, m, empty) == (len(small), len(big), 0)
    assert (tmp_path / "a").read_bytes() == small
    assert (tmp_path / "b").read_bytes() == big
    assert (tmp_path / "e").read_bytes() == b""
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (len(big), len(big))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "e"]  # no .part left


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("s3://other-bucket/x.mp4", "bucket 'other-bucket' is not on this manager's allow-list"),
        ("s3://{b}/private/x.mp4", "key is not on this manager's allow-list"),
        ("s3://{b}/in/../private/x.mp4", "key has empty, '.' or '..' segments"),
        ("s3://{b}/in//x.mp4", "key has empty, '.' or '..' segments"),
        ("s3://{b}/", "names no key"),
        ("s3://{b}/in/%2e%2e/x.mp4", "key holds control characters"),
        ("s3://{b}/in/a\\b.mp4", "key holds control characters"),
        ("s3://Bad_Bucket/x.mp4", "is not a valid bucket name"),
        ("https://example.com/x.mp4", "is not an s3:// URL"),
    ],
)
async def test_refusals_are_known_before_anything_is_read(
    s3_server: Any, s3_bucket: str, url: str, why: str
) -> None:
    url = url.format(b=s3_bucket)
    dl = downloader(s3_server, [f"{s3_bucket}/in/"])
    with pytest.raises(DownloadError) as info:
        dl.check_input(url)
    assert info.value.code == "url_not_allowed"
    assert why in str(info.value) and str(info.value).startswith(url)
    await dl.aclose()


def test_the_default_allows_nothing_and_entries_are_checked() -> None:
    with pytest.raises(DownloadError, match="allow-list"):
        S3Downloader().check_input("s3://media/x.mp4")
    with pytest.raises(ConfigurationError, match="bucket/prefix"):
        S3Downloader(["../etc"])


async def test_missing_object_too_large_and_no_leftovers(
    tmp_path: Path, s3_server: Any, s3_bucket: str, s3_client: Any
) -> None:
    async with downloader(s3_server, [s3_bucket], max_bytes=100) as dl:
        with pytest.raises(DownloadError) as info:
            await dl.fetch(f"s3://{s3_bucket}/nope.mp4", tmp_path / "x")
        assert (info.value.code, str(info.value)) == (
            "not_found",
            f"s3://{s3_bucket}/nope.mp4: no such object",
        )
        url = put(s3_client, s3_bucket, "big.bin", b"x" * 101)
        with pytest.raises(DownloadTooLargeError, match="more than the limit of 100"):
            await dl.fetch(url, tmp_path / "x")
    assert not list(tmp_path.iterdir())


async def test_an_object_replaced_mid_download_fails_cleanly(
    tmp_path: Path, s3_server: Any, s3_bucket: str, s3_client: Any
) -> None:
    url = put(s3_client, s3_bucket, "moving.bin", os.urandom(4 * MiB))
    replaced = False

    def replace_once(done: int, total: int | None) -> None:
        nonlocal replaced
        if not replaced:
            replaced = True
            s3_client.put_object(Bucket=s3_bucket, Key="moving.bin", Body=os.urandom(4 * MiB))

    async with downloader(s3_server, [s3_bucket], part_size=1 * MiB, concurrency=1) as dl:
        with pytest.raises(DownloadError, match="changed during the download"):
            await dl.fetch(url, tmp_path / "x", progress=replace_once)
    assert not list(tmp_path.iterdir())


async def test_one_client_serves_storage_and_inputs(
    tmp_path: Path, s3_server: Any, s3_bucket: str, s3_client: Any
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=s3_server.endpoint_url, region="us-east-1")
    url = put(s3_client, s3_bucket, "in/clip.bin", b"data")
    dl = S3Downloader([s3_bucket], client_from=storage)
    assert await dl.fetch(url, tmp_path / "x") == 4
    await dl.aclose()  # a shared client stays open for its storage
    (tmp_path / "y").write_bytes(b"out")
    await storage.put(tmp_path / "y", "out/y.bin", content_type="application/octet-stream")
    assert storage.clients_created == 1
    await storage.aclose()


async def test_a_task_reads_an_s3_input(
    tmp_path: Path, s3_server: Any, s3_bucket: str, s3_client: Any, media_dir: Path
) -> None:
    url = put(s3_client, s3_bucket, "in/clip.mp4", (media_dir / "clip.mp4").read_bytes())
    async with TaskManager(
        downloader={"s3": downloader(s3_server, [f"{s3_bucket}/in/"])},
        storage=MemoryStorage(),
        work_dir=tmp_path / "work",
    ) as tm:
        task = await tm.run("-i in.mp4 -c copy out.mp4", {"in.mp4": url}, "out.mp4")
        assert task.status is TaskStatus.COMPLETED, task.error
        with pytest.raises(Exception) as info:
            await tm.register(
                "-i in.mp4 -c copy out.mp4", {"in.mp4": f"s3://{s3_bucket}/x.mp4"}, "out.mp4"
            )
    assert getattr(info.value, "code", None) == "url_not_allowed"
    assert "key is not on this manager's allow-list" in str(info.value)
    assert not leftovers(tmp_path)
