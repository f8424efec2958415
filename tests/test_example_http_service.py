"""The example FastAPI service (examples/http_service.py), driven over real HTTP."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn

from ffmpeg_tasks import HttpDownloader, LocalExecutor, LocalStorage, TaskManager

from .servers import MediaServer, free_port

ROOT = Path(__file__).resolve().parent.parent


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "http_service", ROOT / "examples" / "http_service.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["http_service"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    module = load_example()
    manager = TaskManager(
        storage=LocalStorage(tmp_path / "out"),
        downloader=HttpDownloader(allow_private_networks=True),
        executor=LocalExecutor(max_concurrency=2),
        work_dir=tmp_path / "work",
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            module.create_app(manager),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(20)


async def test_register_execute_status_health(service: str, media_server: MediaServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service}/ffmpeg/health") as r:
            assert r.status == 200
            health = await r.json()
            assert health["ffmpeg"]["found"] is True
        body = {
            "command": "-i input.mp4 -c:v libx264 -preset ultrafast -crf 30 output.mp4",
            "input_files": {"input.mp4": media_server.media_url("clip.mp4")},
            "output_filename": "output.mp4",
        }
        async with http.post(f"{service}/ffmpeg/register", json=body) as r:
            assert r.status == 200
            registered = await r.json()
        assert registered["status"] == "pending"
        task_id = registered["task_id"]
        async with http.post(f"{service}/ffmpeg/execute/{task_id}") as r:
            assert r.status == 202
        for _ in range(600):
            async with http.get(f"{service}/ffmpeg/status/{task_id}") as r:
                assert r.status == 200
                status = await r.json()
            if status["status"] in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "completed", status
        assert status["output_url"].startswith("file://")
        assert "diagnostics" not in status
        async with http.post(f"{service}/ffmpeg/execute/{task_id}") as r:
            assert r.status == 409
            assert (await r.json())["error"] == "invalid_state"


async def test_errors_are_typed(service: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service}/ffmpeg/status/unknown") as r:
            assert r.status == 404
            assert (await r.json())["error"] == "task_not_found"
        bad = {"command": "-i /etc/passwd out.mp4", "input_files": {}, "output_filename": "out.mp4"}
        async with http.post(f"{service}/ffmpeg/register", json=bad) as r:
            assert r.status == 400
            error = await r.json()
            assert "/etc/passwd" in error["detail"]


async def test_register_with_argv(service: str, media_server: MediaServer) -> None:
    """``argv`` instead of ``command``: one command as a list, a token with spaces kept whole."""
    argv = ["ffmpeg", "-i", "input.mp4", "-metadata", "title=a b", "-c", "copy", "output.mp4"]
    async with aiohttp.ClientSession() as http:
        body = {
            "argv": argv,
            "input_files": {"input.mp4": media_server.media_url("clip.mp4")},
            "output_filename": "output.mp4",
        }
        async with http.post(f"{service}/ffmpeg/register", json=body) as r:
            assert r.status == 200, await r.text()
            task_id = (await r.json())["task_id"]
        async with http.get(f"{service}/ffmpeg/status/{task_id}") as r:
            assert (await r.json())["commands"] == [
                "-i input.mp4 -metadata 'title=a b' -c copy output.mp4"
            ]
        for extra in ({}, {"command": "-i input.mp4 output.mp4"}):
            both_or_neither = {**body, **extra}
            if not extra:
                del both_or_neither["argv"]
            async with http.post(f"{service}/ffmpeg/register", json=both_or_neither) as r:
                assert r.status == 400
                assert "argv=" in (await r.json())["detail"]
