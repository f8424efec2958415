"""``task.metadata`` has one typed shape, with ffprobe or from ffmpeg's own stream dump."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest

from ffmpeg_tasks import (
    FakeDownloader,
    FakeExecutor,
    MemoryStorage,
    OutputMetadata,
    SQLiteTaskStore,
    StreamMetadata,
    Task,
    TaskManager,
    TaskStatus,
    fake_media,
)
from ffmpeg_tasks.probe import check_expectations

from .helpers import make_manager
from .servers import MediaServer

OUTPUT_KEYS = set(typing.get_type_hints(OutputMetadata))
STREAM_KEYS = set(typing.get_type_hints(StreamMetadata))


def make(tmp_path: Path, **kwargs: Any) -> TaskManager:
    return make_manager(tmp_path, MemoryStorage(), **kwargs)


def types(meta: Any) -> Any:
    """The shape: each key with its value's type name, streams too."""
    top = {k: type(v).__name__ for k, v in meta.items() if k != "streams"}
    return top, [{k: type(v).__name__ for k, v in s.items()} for s in meta["streams"]]


async def both_ways(
    tmp_path: Path, command: str, media_server: MediaServer, output: str
) -> tuple[Any, Any]:
    found = []
    for ffprobe in (True, False):
        async with make(tmp_path, ffprobe=ffprobe) as tm:
            task = await tm.run(command, {"in.mp4": media_server.media_url("clip.mp4")}, output)
        assert task.status is TaskStatus.COMPLETED, task.error
        found.append(task.metadata[output])
    return found[0], found[1]


@pytest.mark.parametrize(
    ("command", "output"),
    [
        ("-i in.mp4 -vf scale=160:120 -c:v libx264 -preset ultrafast -c:a aac out.mp4", "out.mp4"),
        ("-i in.mp4 -c:v libx264 -preset ultrafast -c:a libopus out.mkv", "out.mkv"),
        ("-i in.mp4 -c copy -f hls -hls_time 1 out.m3u8", "out.m3u8"),
    ],
    ids=["mp4", "mkv", "hls"],
)
async def test_same_keys_and_types_with_and_without_ffprobe(
    tmp_path: Path, media_server: MediaServer, ffprobe_bin: str | None, command: str, output: str
) -> None:
    if not ffprobe_bin:
        pytest.skip("no ffprobe")
    probed, dumped = await both_ways(tmp_path, command, media_server, output)
    assert set(probed) == set(dumped) == OUTPUT_KEYS
    assert {k for s in probed["streams"] + dumped["streams"] for k in s} == STREAM_KEYS
    assert types(probed) == types(dumped), (probed, dumped)
    assert probed["format"] == dumped["format"]  # the muxer's name both ways
    assert probed["size"] == dumped["size"]
    assert abs(probed["duration"] - dumped["duration"]) < 0.2
    for p, d in zip(probed["streams"], dumped["streams"], strict=True):
        for key in ("type", "codec", "width", "height", "fps", "sample_rate", "channels"):
            assert p[key] == d[key], (key, p, d)
        assert p["duration"] is not None and d["duration"] is not None
    video = next(s for s in probed["streams"] if s["type"] == "video")
    assert video["fps"] == 25.0 and video["sample_rate"] is None and video["channels"] is None
    audio = next((s for s in probed["streams"] if s["type"] == "audio"), None)
    if audio is not None:
        assert audio["width"] is None and audio["fps"] is None
        assert audio["sample_rate"] and audio["channels"] == 1


@pytest.mark.parametrize("ffprobe", [True, False])
async def test_an_image_sequence_is_described_by_its_first_file(
    tmp_path: Path, media_server: MediaServer, ffprobe: bool
) -> None:
    async with make(tmp_path, ffprobe=ffprobe) as tm:
        task = await tm.run(
            "-i in.mp4 -vf fps=2,scale=80:60 thumb_%03d.jpg",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "thumb_%03d.jpg",
        )
    assert task.status is TaskStatus.COMPLETED, task.error
    meta = task.metadata["thumb_001.jpg"]
    assert meta["format"] == "image2"
    [video] = meta["streams"]
    assert (video["codec"], video["width"], video["height"]) == ("mjpeg", 80, 60)


async def test_metadata_survives_a_json_store(tmp_path: Path, media_server: MediaServer) -> None:
    async with make(tmp_path, store=SQLiteTaskStore(tmp_path / "t.db")) as tm:
        task = await tm.run(
            "-i in.mp4 -c:v libx264 -preset ultrafast -c:a aac out.mp4",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "out.mp4",
            expect={"min_duration": 1, "width": 320, "streams": ["video", "audio"]},
        )
    assert task.status is TaskStatus.COMPLETED, task.error
    again = Task.from_dict(json.loads(json.dumps(task.to_dict(include_diagnostics=True))))
    assert again.metadata == task.metadata
    async with SQLiteTaskStore(tmp_path / "t.db") as store:
        stored = await store.get(task.id)
    assert stored is not None and stored.metadata == task.metadata
    check_expectations(stored.metadata, "out.mp4", {"height": 240, "max_size": 10**9})


async def test_a_fake_probe_result_gets_the_same_shape() -> None:
    """FakeExecutor(probes=…) answers Executor.probe with ffprobe's JSON."""
    probe_json = {
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "2.000000"},
        "streams": [
            {"codec_type": "video", "codec_name": "h264", "width": 640, "height": 360,
             "avg_frame_rate": "30000/1001", "duration": "2.002"},
            {"codec_type": "audio", "codec_name": "aac", "sample_rate": "48000", "channels": 2},
        ],
    }  # fmt: skip
    executor = FakeExecutor(
        outputs={"out.mp4": fake_media("out.mp4")}, probes={"out.mp4": probe_json}
    )
    async with TaskManager(
        downloader=FakeDownloader({"https://example.com/in.mp4": b"input"}),
        executor=executor,
        storage=MemoryStorage(),
        ffprobe="/bin/true",  # any executable: the fake executor never runs it
    ) as tm:
        task = await tm.run(
            "-i in.mp4 -c:v libx264 out.mp4", {"in.mp4": "https://example.com/in.mp4"}, "out.mp4"
        )
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.metadata["out.mp4"] == {
        "format": "mp4",
        "size": len(fake_media("out.mp4")),
        "duration": 2.0,
        "bit_rate": len(fake_media("out.mp4")) * 4,
        "streams": [
            {"type": "video", "codec": "h264", "width": 640, "height": 360, "fps": 29.97,
             "sample_rate": None, "channels": None, "duration": 2.002},
            {"type": "audio", "codec": "aac", "width": None, "height": None, "fps": None,
             "sample_rate": 48000, "channels": 2, "duration": 2.0},
        ],
    }  # fmt: skip
    (call,) = executor.probe_calls
    assert call.args[-1] == "file:out.mp4"
    assert call.args[call.args.index("-format_whitelist") + 1] == "mov"
    assert call.args[call.args.index("-protocol_whitelist") + 1] == "file"
