"""Webhooks: get a signed POST when a task ends, and check it on the receiving side.

    python examples/webhooks.py                    # demo: local clip, local receiver
    python examples/webhooks.py receive 8080       # only the receiver, on 127.0.0.1:8080
    WEBHOOK_URL=https://your.app/hook python examples/webhooks.py   # POST to your app

The secret comes from ``WEBHOOK_SECRET`` (a demo value otherwise); the sender and
the receiver must share it.  The receiver below needs nothing but aiohttp and
:func:`ffmpeg_tasks.webhooks.verify_signature`; in any other framework read the raw
body and the two headers the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from _demo_media import make_clip, serve, start
from aiohttp import web

from ffmpeg_tasks import HttpDownloader, LocalStorage, TaskManager
from ffmpeg_tasks.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, Webhook, verify_signature

SECRET = os.environ.get("WEBHOOK_SECRET", "demo-secret-change-me")
COMMAND = "-i input.mp4 -vf scale=640:-2 -c:v libx264 -preset veryfast -c:a aac output.mp4"


# -- the receiving side (your application) ----------------------------------------------


def receiver_app(received: asyncio.Queue[dict[str, object]] | None = None) -> web.Application:
    """An aiohttp app with ``POST /hook`` that accepts only correctly signed, fresh deliveries."""

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()  # the raw bytes: the signature covers exactly these
        if not verify_signature(
            SECRET,
            request.headers.get(TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
            tolerance=300,
        ):
            return web.Response(status=401, text="bad signature")
        payload = json.loads(body)
        task = payload["task"]
        print(f"[receiver] {payload['event']}: task {task['id']} -> {task['output_url']}")
        if received is not None:
            await received.put(payload)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    return app


# -- the sending side (where tasks run) -----------------------------------------------


async def demo() -> int:
    received: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    target = os.environ.get("WEBHOOK_URL")
    with tempfile.TemporaryDirectory() as tmp:
        clip = await make_clip(Path(tmp), seconds=3)
        file_runner, file_port = await serve(clip.parent)
        hook_runner, hook_port = await start(receiver_app(received))
        local_target = target is None
        url = target or f"http://127.0.0.1:{hook_port}/hook"
        try:
            # allow_private_networks only because this demo's receiver is on 127.0.0.1.
            async with (
                Webhook(url, secret=SECRET, allow_private_networks=local_target) as webhook,
                TaskManager(
                    storage=LocalStorage("ffmpeg-tasks-output"),
                    downloader=HttpDownloader(allow_private_networks=True),
                    on_event=webhook,
                ) as tm,
            ):
                task = await tm.run(
                    COMMAND, {"input.mp4": f"http://127.0.0.1:{file_port}/clip.mp4"}, "output.mp4"
                )
                print(f"[sender] task {task.id} {task.status}")
            # Leaving the block waited for the delivery.
            if local_target:
                payload = received.get_nowait()
                print(f"[sender] the receiver got a verified {payload['event']!r} event")
        finally:
            await hook_runner.cleanup()
            await file_runner.cleanup()
    return 0 if task.status == "completed" else 1


async def receive_only(port: int) -> None:
    runner, port = await start(receiver_app(), port)
    print(f"receiving on http://127.0.0.1:{port}/hook (Ctrl-C to stop)")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    if sys.argv[1:2] == ["receive"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(receive_only(int(sys.argv[2]) if len(sys.argv) > 2 else 8080))
    else:
        sys.exit(asyncio.run(demo()))
