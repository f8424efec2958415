"""Quickstart: transcode a video into local storage — no cloud account needed.

    python examples/quickstart.py                   # makes a test clip with ffmpeg and uses it
    python examples/quickstart.py ~/Videos/in.mp4   # or a video file of yours
    python examples/quickstart.py https://…/in.mp4  # or any public URL

The output lands in ./ffmpeg-tasks-output/<task id>/output.mp4.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from _demo_media import make_clip

from ffmpeg_tasks import (
    Downloader,
    HttpDownloader,
    LocalFileDownloader,
    LocalStorage,
    TaskManager,
)

COMMAND = "-i input.mp4 -vf scale=640:-2 -c:v libx264 -preset veryfast -crf 23 -c:a aac output.mp4"


def given(argv: list[str]) -> str | Path | None:
    """The input named on the command line: a URL, a local file, or None (make a clip)."""
    if not argv:
        return None
    return argv[0] if "://" in argv[0] else Path(argv[0]).expanduser().absolute()


async def main(source: str | Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if source is None:
            source = await make_clip(Path(tmp))
        http = HttpDownloader()
        downloader: dict[str, Downloader] = {"https": http, "http": http}
        if isinstance(source, Path):
            # Local inputs are read only from below the roots named here: this file's folder.
            downloader["file"] = LocalFileDownloader(roots=[source.parent])

        async with TaskManager(
            storage=LocalStorage("ffmpeg-tasks-output"), downloader=downloader
        ) as tm:
            ffmpeg = (await tm.health())["ffmpeg"]
            print(f"ffmpeg sandbox: {ffmpeg['sandbox']} (bwrap: {ffmpeg.get('bwrap_source')})")
            task = await tm.register(COMMAND, {"input.mp4": source}, "output.mp4")
            print(f"registered {task.id} ({task.status})")
            await tm.submit(task.id)
            async for event in tm.events(task.id):
                if event.type.is_terminal:
                    print()
                elif event.percent is not None:
                    print(f"\r{event.type:>10} {event.percent:5.1f}%", end="", flush=True)
            task = await tm.status(task.id)
    if task.status != "completed":
        raise SystemExit(f"failed: {task.error_code}: {task.error}")
    print(f"completed: {task.output_url}")
    print(f"metadata: {task.metadata.get('output.mp4')}")


if __name__ == "__main__":
    asyncio.run(main(given(sys.argv[1:])))
