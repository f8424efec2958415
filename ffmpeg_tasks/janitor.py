"""A manager's housekeeping loops: stale work dirs swept, expired tasks purged."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from .models import utcnow
from .store.base import TaskStore
from .workdirs import SWEEP_EVERY, sweep_work_dirs

__all__ = ["purge_loop", "sweep_loop"]

log = logging.getLogger("ffmpeg_tasks")


async def sweep_loop(work_dir: Path | None) -> None:
    """Remove work dirs that killed processes left, now and every ``SWEEP_EVERY`` s."""
    while True:
        try:
            await asyncio.to_thread(sweep_work_dirs, work_dir)
        except Exception:
            log.exception("sweeping stale work dirs failed")
        await asyncio.sleep(SWEEP_EVERY)


async def purge_loop(store: TaskStore, retention: float) -> None:
    """Delete tasks finished more than ``retention`` seconds ago, every so often."""
    while True:
        await asyncio.sleep(min(max(retention / 4, 1.0), 60.0))
        try:
            await store.purge(utcnow() - timedelta(seconds=retention))
        except Exception:
            log.exception("purging expired tasks failed")
