"""Shared by the demo examples: a test clip made by ffmpeg, served on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from ffmpeg_tasks import find_ffmpeg


async def make_clip(directory: Path, *, seconds: int = 5, rate: int = 30) -> Path:
    """A 1280x720 clip (colour bars + a 440 Hz tone) of ``seconds``, made by ffmpeg itself."""
    clip = directory / "clip.mp4"
    proc = await asyncio.create_subprocess_exec(
        find_ffmpeg().path, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={rate}:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-shortest", str(clip),
    )  # fmt: skip
    if await proc.wait() != 0:
        raise SystemExit("ffmpeg could not make the test clip")
    return clip


async def start(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    """Run ``app`` on 127.0.0.1 (a free port unless given); return the runner and port."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, runner.addresses[0][1]


async def serve(directory: Path) -> tuple[web.AppRunner, int]:
    """Serve the files of ``directory`` on 127.0.0.1."""
    app = web.Application()
    app.router.add_static("/", directory)
    return await start(app)
