"""A full disk is a clear, typed error that names the task's file, never a host path.

The disk is a real one: a small tmpfs mounted for the test (needs root, which CI and the
development machines have).  Elsewhere the tests xfail, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffmpeg_tasks import (
    HttpDownloader,
    LocalExecutor,
    LocalStorage,
    MemoryStorage,
    RetryPolicy,
    TaskManager,
    TaskStatus,
)

from .servers import MediaServer


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: writes past that fail with ENOSPC."""
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.xfail("mounting a tmpfs needs root and mount(8); run as root to check this")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.xfail(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def host_paths(tmp_path: Path, *more: Path) -> list[str]:
    return [str(tmp_path), str(tmp_path.resolve()), *map(str, more)]


async def test_download_into_a_full_work_dir(
    tiny_disk: Path, tmp_path: Path, media_server: MediaServer, media_dir: Path
) -> None:
    assert (media_dir / "long.mp4").stat().st_size > 64 * 1024
    async with TaskManager(
        work_dir=tiny_disk,
        storage=MemoryStorage(),
        executor=LocalExecutor(),
        downloader=HttpDownloader(allow_private_networks=True),
        retry=RetryPolicy.none(),
    ) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.media_url("long.mp4")}, "out.mp4"
        )
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "disk_full", task.error
    assert "'in.mp4'" in task.error
    assert "No space left on device" in task.error
    for path in host_paths(tmp_path, tiny_disk):
        assert path not in task.error
    assert os.listdir(tiny_disk) == []  # the work dir was removed


async def test_store_into_a_full_local_storage(
    tiny_disk: Path, tmp_path: Path, media_server: MediaServer, media_dir: Path
) -> None:
    async with TaskManager(
        work_dir=tmp_path / "work",
        storage=LocalStorage(tiny_disk / "outputs"),
        executor=LocalExecutor(),
        downloader=HttpDownloader(allow_private_networks=True),
        retry=RetryPolicy.none(),
    ) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": media_server.media_url("long.mp4")}, "out.mp4"
        )
    assert task.status is TaskStatus.FAILED
    assert task.error_code is not None
    assert "'out.mp4'" in task.error
    assert "No space left on device" in task.error
    for path in host_paths(tmp_path, tiny_disk):
        assert path not in task.error
