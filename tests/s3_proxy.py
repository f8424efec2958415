"""A real HTTP proxy in front of an S3 server that answers like providers that differ.

Everything is forwarded unchanged (the Host header too, so SigV4 signatures stay valid)
except what the chosen ``mode`` changes:

- ``"swift"``: CompleteMultipartUpload whose body lists ``<ChecksumCRC32>`` →
  ``400 MalformedXML`` (OpenStack Swift's s3api: its schema allows PartNumber and ETag).
- ``"b2"``: any request with an ``x-amz-checksum-*`` or ``x-amz-sdk-checksum-algorithm``
  header → ``400 InvalidArgument … Unsupported header`` (Backblaze B2, documented).
- ``abort_answer``: ``"204"`` (SeaweedFS) or ``"NoSuchKey"`` (Swift) replaces the
  ``NoSuchUpload`` an upstream gives to AbortMultipartUpload after completion.
- ``hold_complete``: a forwarded Complete's answer waits until ``release`` is set
  (``complete_forwarded`` is set first), so a test can cancel after S3 completed.
- ``slow_front``: a ranged GET from byte 0 is answered that many seconds late, so the
  ranges after it land first.
- ``hold_parts``: part number → event: the first UploadPart of that number is forwarded
  once the event is set (at most 30 s), so a test decides when it lands.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from .servers import ThreadedAiohttpServer

_HOP = frozenset({"transfer-encoding", "connection", "keep-alive", "content-encoding"})


def _error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


class ProviderProxy(ThreadedAiohttpServer):
    """See the module docstring; ``rejected`` counts the requests it refused."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode: str | None = None
        self.abort_answer: str | None = None
        self.hold_complete = False
        self.slow_front = 0.0
        self.hold_parts: dict[int, threading.Event] = {}
        self.complete_forwarded = threading.Event()
        self.release = threading.Event()
        self.rejected: list[tuple[str, str]] = []
        self.checksum_headers_seen = 0
        self.requests: list[tuple[str, str, str]] = []
        self._http: aiohttp.ClientSession | None = None
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_cleanup.append(self._close)
        super().__init__(app)

    def reset(self) -> None:
        self.mode = self.abort_answer = None
        self.hold_complete = False
        self.slow_front = 0.0
        self.hold_parts.clear()
        self.complete_forwarded.clear()
        self.release.clear()
        self.rejected.clear()
        self.requests.clear()
        self.checksum_headers_seen = 0

    async def _close(self, app: web.Application) -> None:
        if self._http is not None:
            await self._http.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        query = request.query_string
        self.requests.append((request.method, request.path, query))
        names = [h.lower() for h in request.headers]
        has_sums = any(
            n.startswith("x-amz-checksum-") or n == "x-amz-sdk-checksum-algorithm" for n in names
        )
        self.checksum_headers_seen += has_sums
        completing = request.method == "POST" and "uploadId" in request.query
        if self.mode == "b2" and has_sums:
            self.rejected.append((request.method, query))
            return _error(
                400,
                "InvalidArgument",
                "Unsupported header 'x-amz-checksum-crc32' received for this API call.",
            )
        if self.mode == "swift" and completing and b"<ChecksumCRC32>" in body:
            self.rejected.append((request.method, query))
            return _error(400, "MalformedXML", "The XML you provided was not well-formed")
        if request.method == "GET" and request.headers.get("Range", "").startswith("bytes=0-"):
            await asyncio.sleep(self.slow_front)
        if request.method == "PUT" and "partNumber" in request.query:
            hold = self.hold_parts.pop(int(request.query["partNumber"]), None)
            for _ in range(600 if hold is not None else 0):  # at most 30 s
                if hold is not None and hold.is_set():
                    break
                await asyncio.sleep(0.05)
        status, headers, payload = await self._forward(request, body)
        aborting = request.method == "DELETE" and "uploadId" in request.query
        if aborting and self.abort_answer is not None and b"NoSuchUpload" in payload:
            if self.abort_answer == "204":
                return web.Response(status=204)
            return _error(404, "NoSuchKey", "The specified key does not exist.")
        if completing and self.hold_complete and status == 200:
            self.complete_forwarded.set()
            for _ in range(600):  # at most 30 s
                if self.release.is_set() or not self.hold_complete:
                    break
                await asyncio.sleep(0.05)
        return web.Response(status=status, headers=headers, body=payload)

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if self._http is None:
            self._http = aiohttp.ClientSession(auto_decompress=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        url = URL(self.upstream + request.rel_url.raw_path_qs, encoded=True)
        kwargs: dict[str, Any] = {"headers": headers, "allow_redirects": False}
        if body or request.method in ("PUT", "POST"):
            kwargs["data"] = body
        async with self._http.request(request.method, url, **kwargs) as resp:
            payload = await resp.read()
            keep_length = request.method == "HEAD"  # the object's size, with no body
            out = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in _HOP and (keep_length or k.lower() != "content-length")
            }
            return resp.status, out, payload
