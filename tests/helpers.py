"""Helpers shared by the TaskManager tests (one definition instead of a copy per file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ffmpeg_tasks import HttpDownloader, LocalExecutor, LocalStorage, TaskManager


def make_manager(tmp_path: Path, storage: Any = None, **kwargs: Any) -> TaskManager:
    """A manager on real backends: local storage under ``tmp_path/out`` (unless given),
    ffmpeg two at a time, downloads from the tests' loopback servers, work dirs under
    ``tmp_path/work``."""
    kwargs.setdefault("executor", LocalExecutor(max_concurrency=2))
    kwargs.setdefault("downloader", HttpDownloader(allow_private_networks=True))
    return TaskManager(
        storage=storage if storage is not None else LocalStorage(tmp_path / "out"),
        work_dir=tmp_path / "work",
        **kwargs,
    )


def leftovers(tmp_path: Path) -> list[str]:
    """What runs left in the work dir root (nothing, once every task has settled)."""
    work = tmp_path / "work"
    return sorted(os.listdir(work)) if work.exists() else []


def stored_mp4s(tmp_path: Path) -> list[Path]:
    """The .mp4 files in local storage under ``tmp_path/out`` (none when it was never made)."""
    return sorted((tmp_path / "out").rglob("*.mp4"))
