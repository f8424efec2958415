"""HLS: cut a video into a playlist plus 2-second segments, and store them all.

    python examples/hls.py                     # makes a test clip and serves it locally
    python examples/hls.py https://…/in.mp4    # or package any public URL

The outputs land in ./ffmpeg-tasks-output/<task id>/ (out.m3u8, seg_000.ts, …).
Only ``out.m3u8`` is declared; the segments its command names with
``-hls_segment_filename`` are stored beside it.  Serve that directory over HTTP and
open out.m3u8 in any HLS player.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from _demo_media import make_clip, serve
from aiohttp import web

from ffmpeg_tasks import HttpDownloader, LocalStorage, TaskManager
from ffmpeg_tasks.progressbar import PlainBar, follow

# -g 50 puts a keyframe every 2 s at 25 fps so that segments can be cut there.
HLS = (
    "-i input.mp4 -c:v libx264 -preset veryfast -g 50 -keyint_min 50 -sc_threshold 0 "
    "-c:a aac -b:a 128k -f hls -hls_time 2 -hls_playlist_type vod "
    "-hls_segment_filename seg_%03d.ts out.m3u8"
)


async def main(argv: list[str]) -> int:
    urls = argv[:1]
    runner: web.AppRunner | None = None
    with tempfile.TemporaryDirectory() as tmp:
        if urls:
            url = urls[0]
        else:
            clip = await make_clip(Path(tmp), seconds=10, rate=25)
            runner, port = await serve(clip.parent)
            url = f"http://127.0.0.1:{port}/clip.mp4"
        try:
            async with TaskManager(
                storage=LocalStorage("ffmpeg-tasks-output"),
                downloader=HttpDownloader(allow_private_networks=runner is not None),
            ) as tm:
                task = await tm.register(HLS, {"input.mp4": url}, output_files=["out.m3u8"])
                await tm.submit(task.id)
                task = await follow(tm, task.id, bar=PlainBar())
        finally:
            if runner is not None:
                await runner.cleanup()
    if task.status != "completed":
        print(f"failed: {task.error_code}: {task.error}", file=sys.stderr)
        return 1
    print(f"playlist: {task.output_url}")
    segments = [o for o in task.outputs if o.name.endswith(".ts")]
    print(f"{len(segments)} segments, {sum(o.size for o in segments)} bytes:")
    for obj in task.outputs:
        print(f"  {obj.name:16} {obj.size:>9}  {obj.url}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
