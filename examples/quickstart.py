"""Quickstart: transcode a video into local storage — no cloud account needed.

    python examples/quickstart.py                  # makes a test clip and serves it locally
    python examples/quickstart.py https://…/in.mp4 # or transcode any public URL

The output lands in ./ffmpeg-tasks-output/<task id>/output.mp4.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from _demo_media import make_clip, serve
from aiohttp import web

from ffmpeg_tasks import HttpDownloader, LocalStorage, TaskManager

COMMAND = "-i input.mp4 -vf scale=640:-2 -c:v libx264 -preset veryfast -crf 23 -c:a aac output.mp4"


async def main() -> None:
    runner: web.AppRunner | None = None
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            url, local = sys.argv[1], False
        else:
            clip = await make_clip(Path(tmp))
            runner, port = await serve(clip.parent)
            url, local = f"http://127.0.0.1:{port}/clip.mp4", True

        async with TaskManager(
            storage=LocalStorage("ffmpeg-tasks-output"),
            # Private addresses are refused by default; the local demo server needs this.
            downloader=HttpDownloader(allow_private_networks=local),
        ) as tm:
            ffmpeg = (await tm.health())["ffmpeg"]
            print(f"ffmpeg sandbox: {ffmpeg['sandbox']} (bwrap: {ffmpeg.get('bwrap_source')})")
            task = await tm.register(COMMAND, {"input.mp4": url}, "output.mp4")
            print(f"registered {task.id} ({task.status})")
            await tm.submit(task.id)
            async for event in tm.events(task.id):
                if event.type.is_terminal:
                    print()
                elif event.percent is not None:
                    print(f"\r{event.type:>10} {event.percent:5.1f}%", end="", flush=True)
            task = await tm.status(task.id)
        if runner is not None:
            await runner.cleanup()
    if task.status != "completed":
        raise SystemExit(f"failed: {task.error_code}: {task.error}")
    print(f"completed: {task.output_url}")
    print(f"metadata: {task.metadata.get('output.mp4')}")


if __name__ == "__main__":
    asyncio.run(main())
