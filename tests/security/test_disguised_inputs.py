"""Hostile inputs disguised as media or subtitles, end to end through the TaskManager."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from ffmpeg_tasks import HttpDownloader, LocalExecutor, LocalStorage, TaskManager, TaskStatus
from ffmpeg_tasks.sniff import check_input

from ..helpers import leftovers
from ..servers import MediaServer

SUBS_CMD = "-i in.mp4 -vf subtitles=subs.srt -c:v libx264 -preset ultrafast -an out.mp4"


def serve_text(server: MediaServer, name: str, text: str) -> str:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=text.encode(), content_type="application/octet-stream")

    server.handlers[name] = handler
    return server.url(f"x/{name}")


def manager(tmp_path: Path) -> TaskManager:
    return TaskManager(
        storage=LocalStorage(tmp_path / "out"),
        downloader=HttpDownloader(allow_private_networks=True),
        executor=LocalExecutor(max_concurrency=2),
        work_dir=tmp_path / "work",
    )


@pytest.mark.parametrize(
    "payload",
    [
        "#EXTM3U\n#EXTINF:1,\n{target}\n#EXT-X-ENDLIST\n",
        "\ufeff#EXTM3U\n#EXTINF:1,\n/etc/passwd\n",
        "ffconcat version 1.0\nfile '/etc/passwd'\n",
        '<?xml version="1.0"?><MPD><BaseURL>{target}</BaseURL></MPD>',
        "v=0\no=- 0 0 IN IP4 127.0.0.1\nc=IN IP4 127.0.0.1\nm=video 5004 RTP/AVP 96\n",
        "not a subtitle at all",
    ],
)
async def test_hostile_subtitle_input_is_refused_before_ffmpeg(
    tmp_path: Path, media_server: MediaServer, payload: str
) -> None:
    target = media_server.url("x/never-fetched")
    url = serve_text(media_server, f"subs-{abs(hash(payload))}", payload.format(target=target))
    before = len(media_server.requests)
    async with manager(tmp_path) as tm:
        task = await tm.run(
            SUBS_CMD, {"in.mp4": media_server.media_url("clip.mp4"), "subs.srt": url}, "out.mp4"
        )
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "input_type_mismatch"
    assert "subs.srt" in (task.error or "")
    assert not any("never-fetched" in path for _, path, _ in media_server.requests[before:])
    assert not leftovers(tmp_path)


async def test_real_subtitles_still_burn_in(tmp_path: Path, media_server: MediaServer) -> None:
    async with manager(tmp_path) as tm:
        task = await tm.run(
            SUBS_CMD,
            {
                "in.mp4": media_server.media_url("clip.mp4"),
                "subs.srt": media_server.media_url("subs.srt"),
            },
            "out.mp4",
        )
    assert task.status is TaskStatus.COMPLETED, (task.error_code, task.error, task.diagnostics)


async def test_playlist_disguised_as_mp4_is_refused(
    tmp_path: Path, media_server: MediaServer
) -> None:
    url = serve_text(media_server, "fake-video", "#EXTM3U\n#EXTINF:1,\n/etc/passwd\n")
    async with manager(tmp_path) as tm:
        task = await tm.run("-i in.mp4 -c copy out.mp4", {"in.mp4": url}, "out.mp4")
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "input_type_mismatch"


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("a.srt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n"),
        ("a.srt", b"\xef\xbb\xbf1\r\n00:00:00,000 --> 00:00:01,000\r\nhi\r\n"),
        ("a.vtt", b"WEBVTT\n\n00:00.000 --> 00:01.000\nhi\n"),
        ("a.ass", b"[Script Info]\nTitle: x\n"),
        ("a.mp4", b"\x00\x00\x00\x20ftypisom"),
    ],
)
def test_legit_heads_pass(name: str, head: bytes) -> None:
    check_input(name, head)
