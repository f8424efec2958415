"""Helpers for tests/test_task_stores.py.

Run as ``python -m tests.store_helpers DB_PATH WORKER`` it is one racer of the
multi-process SQLite test: it prints ``ready``, waits for a line on stdin, then
drives every task PENDING -> RUNNING -> COMPLETED with compare-and-set, and
prints the transitions it won as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from ffmpeg_tasks.models import Phase, StoredObject, Task, TaskStatus, new_task_id, utcnow
from ffmpeg_tasks.store import SQLiteTaskStore


def make_task(**changes: Any) -> Task:
    """A small valid task; ``changes`` override any field."""
    fields: dict[str, Any] = {
        "id": new_task_id(),
        "commands": "ffmpeg -i in.mp4 -c copy out.mp4",
        "input_files": {"in.mp4": "http://127.0.0.1/in.mp4"},
        "output_files": "out.mp4",
    }
    fields.update(changes)
    return Task(**fields)


def rich_task(created_at: datetime, finished_at: datetime) -> Task:
    """A task with every field filled, for exact round-trip checks."""
    return make_task(
        commands=("ffmpeg -i in.mp4 -vf scale=160:-2 mid.mp4", "ffmpeg -i mid.mp4 out.webm"),
        input_files={"in.mp4": "http://127.0.0.1:1/a b/in.mp4?x=1&y=é", "logo.png": "s3://b/l"},
        output_files=("out.webm", "mid.mp4"),
        status=TaskStatus.COMPLETED,
        phase=Phase.DONE,
        created_at=created_at,
        started_at=created_at,
        finished_at=finished_at,
        outputs=[
            StoredObject(
                name="out.webm",
                key="t/out.webm",
                uri="s3://bucket/t/out.webm",
                url="http://127.0.0.1:9/bucket/t/out.webm?X-Amz-Signature=abc",
                size=123456,
                content_type="video/webm",
            ),
            StoredObject(
                "mid.mp4", "t/mid.mp4", "s3://bucket/t/mid.mp4", "http://x/m", 7, "video/mp4"
            ),
        ],
        error=None,
        error_code=None,
        diagnostics="frame=   50 fps=0.0 q=-1.0 Lsize=     123kB\n'quoted' \"double\" \\ \t ünï ✓",
        progress=0.1 + 0.2,
        attempts={"download": 2, "ffmpeg": 1},
        metadata={"user": {"id": 7, "tags": ["a", "b"], "ratio": 1.5, "none": None}, "big": 2**60},
        options={"timeout": 30.5, "sandbox": True},
        idempotency_key="key-" + new_task_id(),
        worker="host-1:1234",
        version=7,
    )


async def _race(path: str, worker: str) -> list[list[str]]:
    async with SQLiteTaskStore(path) as store:
        ids = [t.id for t in await store.list()]
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        won: list[list[str]] = []
        for task_id in ids:
            task = await store.get(task_id)
            while task is not None and not task.is_finished:
                if task.status is TaskStatus.PENDING:
                    new = task.evolve(status=TaskStatus.RUNNING, worker=worker)
                else:
                    new = task.evolve(
                        status=TaskStatus.COMPLETED,
                        finished_at=utcnow(),
                        metadata={"completed_by": worker},
                    )
                if await store.replace(task, new):
                    won.append([task_id, new.status.value])
                task = await store.get(task_id)
        return won


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_race(sys.argv[1], sys.argv[2]))), flush=True)
