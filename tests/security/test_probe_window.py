"""The sniffer reads what libavformat probes (issue 13, finding 3): a window, not a head.

A hostile file that libavformat would detect as a manifest is refused before ffmpeg
opens it — wherever the detecting text sits in the probe window, behind an XML comment
or an ID3v2 tag — and so are such files written by an earlier step of a chain.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from ffmpeg_tasks import (
    FakeExecutor,
    HttpDownloader,
    LocalExecutor,
    LocalStorage,
    MemoryStorage,
    TaskManager,
    TaskStatus,
    fake_media,
)
from ffmpeg_tasks.errors import TaskFailure
from ffmpeg_tasks.sniff import PROBE_WINDOW, check_input

from ..servers import MediaServer

MODES = ["off", "require"]
SUBS = "-i in.mp4 -vf subtitles=track.mp4 -c:v libx264 -preset ultrafast -an out.mp4"
DASH_PROFILE = 'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"'


def mpd(base_url: str) -> bytes:
    return (
        f'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" {DASH_PROFILE} '
        'mediaPresentationDuration="PT1S" minBufferTime="PT1S"><Period><AdaptationSet '
        f'mimeType="video/mp4"><Representation id="1" bandwidth="1000"><BaseURL>{base_url}'
        "</BaseURL><SegmentBase/></Representation></AdaptationSet></Period></MPD>\n"
    ).encode()


def id3v2(payload_size: int = 100) -> bytes:
    size = payload_size
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x04\x00\x00" + syncsafe + b"\x00" * size


def refused(name: str, data: bytes) -> None:
    with pytest.raises(TaskFailure) as info:
        check_input(name, data)
    assert info.value.code == "input_type_mismatch"
    assert repr(name) in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        b"<!-- " + b"x" * 4000 + b" -->\n" + mpd("/etc/passwd"),  # a comment first
        b"hello\n" * 100_000 + mpd("/etc/passwd"),  # 600 KB of text first, still in the window
        id3v2() + b"#EXTM3U\n#EXTINF:1,\n/etc/passwd\n",  # an ID3v2 tag hides a playlist
        id3v2() + id3v2(20) + b"ffconcat version 1.0\nfile /etc/passwd\n",
        b"some text\nc=IN IP4 127.0.0.1\nm=video 5004 RTP/AVP 96\n",  # SDP detects by this line
        b"junk <CompositionPlaylist xmlns='http://www.smpte-ra.org/schemas/2067-3/2016'>",
        b"\xef\xbb\xbf  <SmoothStreamingMedia MajorVersion='2'>",
        b"# VobSub index file, v7 (do not modify this line!)\nsize: 720x480\n",  # opens a .sub
    ],
    ids=["comment", "deep", "id3_hls", "id3x2_concat", "sdp_line", "imf", "smooth", "vobsub"],
)
def test_what_libavformat_would_detect_anywhere_is_refused(data: bytes) -> None:
    assert len(data) <= PROBE_WINDOW
    refused("track.mp4", data)


def test_beyond_a_nul_or_the_window_libavformat_does_not_look() -> None:
    # its probes search C strings: text after the first NUL is not seen, as in real media
    check_input("in.mp4", b"\x00\x00\x00\x20ftypisom\x00" + mpd("/etc/passwd"))
    check_input("in.mp4", b"a" * PROBE_WINDOW + mpd("/etc/passwd"))


def test_real_media_passes(media_dir: Path) -> None:
    for path in sorted(media_dir.iterdir()):
        if path.is_file():
            check_input(path.name, path.read_bytes()[:PROBE_WINDOW])


def _serve(server: MediaServer, name: str, body: bytes) -> str:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/octet-stream")

    server.handlers[name] = handler
    return server.url(f"x/{name}")


@pytest.mark.parametrize("sandbox", MODES)
@pytest.mark.parametrize("kind", ["comment", "id3_hls"])
async def test_a_manifest_behind_a_comment_or_tag_never_reaches_ffmpeg(
    tmp_path: Path, media_server: MediaServer, sandbox: str, kind: str
) -> None:
    target = media_server.url("x/never-fetched")
    body = (
        b"<!-- " + b"x" * 3000 + b" -->\n" + mpd(target)
        if kind == "comment"
        else id3v2() + f"#EXTM3U\n#EXTINF:1,\n{target}\n#EXT-X-ENDLIST\n".encode()
    )
    url = _serve(media_server, f"track-{kind}-{sandbox}", body)
    before = len(media_server.requests)
    async with TaskManager(
        storage=LocalStorage(tmp_path / "out"),
        downloader=HttpDownloader(allow_private_networks=True),
        executor=LocalExecutor(sandbox=sandbox),  # type: ignore[arg-type]
        work_dir=tmp_path / "work",
    ) as tm:
        task = await tm.run(
            SUBS, {"in.mp4": media_server.media_url("clip.mp4"), "track.mp4": url}, "out.mp4"
        )
    assert task.status is TaskStatus.FAILED
    assert (task.error_code, task.error) == (
        "input_type_mismatch",
        "input 'track.mp4' is a playlist or reference file, not media",
    )
    assert not any("never-fetched" in path for _, path, _ in media_server.requests[before:])
    assert not list((tmp_path / "work").iterdir())


async def test_a_chain_step_output_is_sniffed_like_an_input(tmp_path: Path) -> None:
    """Step 1 writes a file that is a fine .srt at its start and a manifest further on."""
    disguised = b"1\n00:00:00,000 --> 00:00:01,000\nhi\n\n" + mpd("/etc/passwd")
    executor = FakeExecutor(outputs={"mid.srt": disguised, "out.mp4": fake_media("out.mp4")})
    async with TaskManager(
        executor=executor, storage=MemoryStorage(), work_dir=tmp_path / "work"
    ) as tm:
        task = await tm.run(
            ["-f lavfi -i testsrc=d=1 -c:v libx264 -f srt mid.srt",
             "-f lavfi -i testsrc=d=1 -vf subtitles=mid.srt -c:v libx264 out.mp4"],
            {},
            output_files=["out.mp4", "mid.srt"],
        )  # fmt: skip
    assert task.status is TaskStatus.FAILED, task
    assert (task.error_code, task.error) == (
        "input_type_mismatch",
        "input 'mid.srt' is a playlist or reference file, not media",
    )
    assert len(executor.calls) == 1  # step 2 never ran


@pytest.mark.parametrize("sandbox", MODES)
async def test_a_chain_step_cannot_move_a_manifest_into_the_probe_window(
    tmp_path: Path, media_server: MediaServer, sandbox: str
) -> None:
    """An ordinary ``.srt`` whose last cue, past 1 MiB (where libavformat and the sniffer
    stop looking), is a DASH manifest; step 1's ``-ss`` with ``-c copy`` makes it the first
    cue of ``mid.srt``, which step 2 opens with ``subtitles=`` (no whitelist there)."""
    cues = [
        f"{i + 1}\n{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},000 --> "
        f"{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},500\nfiller line\n\n"
        for i in range(40_000)
    ]
    target = media_server.url("x/never-fetched")
    cues.append(f"40001\n11:40:00,000 --> 11:40:01,000\n{mpd(target).decode()}\n")
    payload = "".join(cues).encode()
    assert len(payload) > PROBE_WINDOW
    check_input("in.srt", payload)  # the input itself passes: the manifest is out of sight
    url = _serve(media_server, f"deep-srt-{sandbox}", payload)
    before = len(media_server.requests)
    async with TaskManager(
        storage=MemoryStorage(),
        downloader=HttpDownloader(allow_private_networks=True),
        executor=LocalExecutor(sandbox=sandbox),  # type: ignore[arg-type]
        work_dir=tmp_path / "work",
    ) as tm:
        task = await tm.run(
            ["-i in.srt -ss 42000 -c copy mid.srt",
             "-i in.mp4 -vf subtitles=mid.srt -c:v libx264 -preset ultrafast -an out.mp4"],
            {"in.mp4": media_server.media_url("clip.mp4"), "in.srt": url},
            output_files=["mid.srt", "out.mp4"],
        )  # fmt: skip
    assert task.status is TaskStatus.FAILED, task.error
    assert (task.error_code, task.error) == (
        "input_type_mismatch",
        "input 'mid.srt' is a playlist or reference file, not media",
    )
    assert not any("never-fetched" in path for _, path, _ in media_server.requests[before:])
