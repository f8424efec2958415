"""Inputs from where files live: a downloader per scheme, refusals known at register."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffmpeg_tasks import (
    HttpDownloader,
    InvalidSpecError,
    LocalFileDownloader,
    MemoryStorage,
    TaskManager,
    TaskStatus,
)

from .helpers import leftovers
from .servers import MediaServer

OVERLAY = "-i in.mp4 -i logo.png -filter_complex overlay -c:v libx264 -preset ultrafast out.mp4"


async def refused(tm: TaskManager, url: object) -> str:
    with pytest.raises(InvalidSpecError) as info:
        await tm.plan("-i in.mp4 -c copy out.mp4", {"in.mp4": url}, "out.mp4")  # type: ignore[dict-item]
    assert info.value.code == "url_not_allowed"
    assert info.value.field == "input_files"
    return str(info.value)


async def test_the_default_manager_says_how_to_read_s3_and_local_files(tmp_path: Path) -> None:
    async with TaskManager(storage=MemoryStorage(), work_dir=tmp_path) as tm:
        s3 = await refused(tm, "s3://media/clip.mp4")
        path = await refused(tm, "/data/clip.mp4")
        as_path = await refused(tm, Path("/data/clip.mp4"))
        file_url = await refused(tm, "file:///data/clip.mp4")
    assert "S3Downloader(buckets=[...])" in s3 and "'s3'" in s3
    assert "LocalFileDownloader(roots=[...])" in path
    assert as_path == path
    assert "LocalFileDownloader(roots=[...])" in file_url


async def test_a_task_mixes_a_local_file_and_an_http_input(
    tmp_path: Path, media_server: MediaServer, media_dir: Path
) -> None:
    http = HttpDownloader(allow_private_networks=True)
    async with TaskManager(
        downloader={"http": http, "https": http, "file": LocalFileDownloader(roots=[media_dir])},
        storage=MemoryStorage(),
        work_dir=tmp_path / "work",
    ) as tm:
        task = await tm.run(
            OVERLAY,
            {"in.mp4": media_server.media_url("clip.mp4"), "logo.png": media_dir / "logo.png"},
            "out.mp4",
        )
        assert task.status is TaskStatus.COMPLETED, task.error
        assert task.input_files["logo.png"] == str(media_dir / "logo.png")  # stored as text
        outside = await refused(tm, str(tmp_path / "x.mp4"))
        escape = await refused(tm, f"{media_dir}/../x.mp4")
        unserved = await refused(tm, "s3://media/clip.mp4")
    assert "is outside the directories this manager may read" in outside
    assert "has a '..' segment" in escape
    assert (
        "scheme 's3' is not allowed (allowed: file, http, https; pass downloader={'s3'" in unserved
    )
    assert not leftovers(tmp_path)


async def test_a_symlink_out_of_a_root_fails_the_task_not_the_host(
    tmp_path: Path, media_dir: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.mp4").write_bytes((media_dir / "clip.mp4").read_bytes())
    (root / "clip.mp4").symlink_to(tmp_path / "secret.mp4")
    async with TaskManager(
        downloader={"file": LocalFileDownloader(roots=[root])},
        storage=MemoryStorage(),
        work_dir=tmp_path / "work",
    ) as tm:
        task = await tm.run("-i in.mp4 -c copy out.mp4", {"in.mp4": root / "clip.mp4"}, "out.mp4")
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "url_not_allowed"
    assert "leads out of the allowed directories" in (task.error or "")
