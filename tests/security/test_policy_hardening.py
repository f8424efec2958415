"""The library flags really stop hostile media disguised as video (real ffmpeg, real server)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ffmpeg_tasks.policy import CommandPolicy

from ..servers import MediaServer

CMD = "-i input.mp4 -c copy out.mp4"
PLAYLIST_REFUSED = r"not on whitelist|Not detecting m3u8/hls with non standard extension"


def run(ffmpeg_bin: str, args: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ffmpeg_bin, "-loglevel", "error", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _hits(server: MediaServer, marker: str) -> int:
    return sum(1 for _, path, _ in server.requests if marker in path)


@pytest.mark.parametrize("segment", ["http", "local"])
def test_hls_playlist_disguised_as_mp4_is_refused(
    tmp_path: Path, ffmpeg_bin: str, media_server: MediaServer, segment: str
) -> None:
    url = media_server.url("x/hls-probe-" + segment)
    target = url if segment == "http" else "/etc/passwd"
    (tmp_path / "input.mp4").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{target}\n#EXT-X-ENDLIST\n"
    )
    plan = CommandPolicy().plan(CMD, inputs=["input.mp4"], outputs=["out.mp4"])
    result = run(ffmpeg_bin, plan.args, tmp_path)
    assert result.returncode != 0
    # Which layer refuses depends on the ffmpeg version: the policy's format whitelist, or
    # (newer ffmpeg, e.g. 9.0) the HLS demuxer's own refusal of a playlist named .mp4.  Either way
    # the playlist is refused, not followed: no request, no output.
    assert re.search(PLAYLIST_REFUSED, result.stderr), result.stderr
    assert _hits(media_server, "hls-probe") == 0
    assert not (tmp_path / "out.mp4").exists() or (tmp_path / "out.mp4").stat().st_size == 0


def test_ffconcat_list_disguised_as_mp4_is_refused(
    tmp_path: Path, ffmpeg_bin: str, media_server: MediaServer
) -> None:
    (tmp_path / "input.mp4").write_text(
        f"ffconcat version 1.0\nfile {media_server.url('x/concat-probe')}\nfile /etc/passwd\n"
    )
    plan = CommandPolicy().plan(CMD, inputs=["input.mp4"], outputs=["out.mp4"])
    result = run(ffmpeg_bin, plan.args, tmp_path)
    assert result.returncode != 0
    assert "not on whitelist" in result.stderr
    assert _hits(media_server, "concat-probe") == 0


def test_without_hardening_ffmpeg_would_open_the_playlist(
    tmp_path: Path, ffmpeg_bin: str, media_server: MediaServer
) -> None:
    """Control: the same file *is* parsed as HLS when the flags are off (the test can fail)."""
    (tmp_path / "input.mp4").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg.ts\n#EXT-X-ENDLIST\n"
    )
    plan = CommandPolicy(harden=False).plan(CMD, inputs=["input.mp4"], outputs=["out.mp4"])
    result = run(ffmpeg_bin, plan.args, tmp_path)
    assert "hls" in result.stderr.lower()
    assert "not on whitelist" not in result.stderr


def test_format_whitelist_names_exist_in_this_ffmpeg(ffmpeg_bin: str) -> None:
    out = subprocess.run(
        [ffmpeg_bin, "-hide_banner", "-demuxers"], capture_output=True, text=True, timeout=30
    ).stdout
    names: set[str] = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("D"):
            names.update(parts[1].split(","))
    policy = CommandPolicy()
    present = policy.input_formats & names
    assert {"mov", "matroska", "image2", "wav", "srt"} <= present
    assert not ({"hls", "concat", "lavfi", "dash", "sdp", "rtsp", "tee"} & policy.input_formats)


def test_real_media_and_image_sequences_still_work(
    tmp_path: Path, ffmpeg_bin: str, media_dir: Path
) -> None:
    shutil.copy(media_dir / "clip.mp4", tmp_path / "input.mp4")
    for i in range(1, 3):
        shutil.copy(media_dir / "logo.png", tmp_path / f"f_{i:02d}.png")
    plan = CommandPolicy().plan(CMD, inputs=["input.mp4"], outputs=["out.mp4"])
    assert run(ffmpeg_bin, plan.args, tmp_path).returncode == 0
    plan = CommandPolicy().plan(
        "-framerate 2 -i f_%02d.png -c:v png seq.mkv",
        inputs=["f_01.png", "f_02.png"],
        outputs=["seq.mkv"],
    )
    assert plan.inputs == ("f_01.png", "f_02.png")
    assert run(ffmpeg_bin, plan.args, tmp_path).returncode == 0


def test_output_caps_stop_runaway_sources(tmp_path: Path, ffmpeg_bin: str) -> None:
    """An endless lavfi source ends at the library's -t cap; -max_pixels refuses huge frames."""
    from ffmpeg_tasks.policy import CommandLimits

    policy = CommandPolicy(limits=CommandLimits(max_duration=1.0, max_pixels=320 * 240))
    plan = policy.plan(
        "-f lavfi -i color=s=64x64 -c:v libx264 -preset ultrafast out.mp4",
        inputs=[],
        outputs=["out.mp4"],
    )
    assert run(ffmpeg_bin, plan.args, tmp_path).returncode == 0
    probe = subprocess.run(
        [ffmpeg_bin, "-hide_banner", "-i", "out.mp4"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "Duration: 00:00:01.0" in probe.stderr
    plan = policy.plan(
        "-f lavfi -i color=s=64x64 -vf scale=640:480 out.mp4", inputs=[], outputs=["out.mp4"]
    )
    result = run(ffmpeg_bin, plan.args, tmp_path)
    assert result.returncode != 0 and "max pixel" in result.stderr
