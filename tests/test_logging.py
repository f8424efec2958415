"""One log line per change of a task's status, on ``ffmpeg_tasks.tasks``, task id in ``extra``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ffmpeg_tasks import FakeDownloader, FakeExecutor, MemoryStorage, TaskManager, fake_media


async def test_each_transition_is_one_structured_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ffmpeg_tasks.tasks")
    async with TaskManager(
        downloader=FakeDownloader({"https://e.x/in.mp4": fake_media("in.mp4")}),
        executor=FakeExecutor(outputs={"out.mp4": fake_media("out.mp4")}),
        storage=MemoryStorage(),
        work_dir=tmp_path,
    ) as tm:
        ok = await tm.run("-i in.mp4 -c copy out.mp4", {"in.mp4": "https://e.x/in.mp4"}, "out.mp4")
        bad = await tm.run("-i in.mp4 -c copy out.mp4", {"in.mp4": "https://e.x/no.mp4"}, "out.mp4")
    records = [r for r in caplog.records if r.name == "ffmpeg_tasks.tasks"]
    mine = [(r.task_id, r.event) for r in records]  # type: ignore[attr-defined]
    assert mine == [
        (ok.id, "started"), (ok.id, "completed"), (bad.id, "started"), (bad.id, "failed"),
    ]  # fmt: skip
    done, failed = records[1], records[3]
    assert done.status == "completed" and done.levelno == logging.INFO  # type: ignore[attr-defined]
    assert "completed in " in done.getMessage() and "1 objects stored" in done.getMessage()
    assert failed.levelno == logging.WARNING
    assert failed.error_code == bad.error_code  # type: ignore[attr-defined]
    assert failed.getMessage() == f"task {bad.id} failed: {bad.error_code}: {bad.error}"
