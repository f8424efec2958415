"""Issue 13's policy findings: hidden outputs, uncapped outputs, muxer names, manifest URLs.

The end-to-end tests run the plan with real ffmpeg through ``LocalExecutor``, with the
sandbox off and required.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ffmpeg_tasks.errors import CommandRejectedError
from ffmpeg_tasks.executor import LocalExecutor
from ffmpeg_tasks.executor.sandbox import find_bwrap
from ffmpeg_tasks.policy import CommandLimits, CommandPolicy


def _bwrap_usable() -> bool:
    bwrap = find_bwrap()
    if bwrap is None:
        return False
    probe = subprocess.run(
        [bwrap, "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


@pytest.fixture(params=["off", "require"])
async def executor(request: pytest.FixtureRequest) -> AsyncIterator[LocalExecutor]:
    if request.param == "require" and not _bwrap_usable():
        pytest.skip("bubblewrap cannot run here")
    async with LocalExecutor(sandbox=request.param, grace_period=2.0) as ex:
        yield ex


def _duration(ffmpeg_bin: str, path: Path) -> float:
    out = subprocess.run(
        [ffmpeg_bin, "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    ).stderr
    stamp = out.split("Duration: ", 1)[1].split(",", 1)[0]
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.mark.parametrize("flags", ["-noshortest", "-novn", "-noan", "-nosn -nodn"])
async def test_no_flags_keep_the_duration_and_write_no_hidden_file(
    executor: LocalExecutor, flags: str, tmp_path: Path, media_dir: Path, ffmpeg_bin: str
) -> None:
    """``-noshortest`` was rendered ``-shortest 0``: ffmpeg wrote file ``0`` and dropped ``-t``."""
    shutil.copy(media_dir / "long.mp4", tmp_path / "long.mp4")
    plan = CommandPolicy().plan(
        f"-i long.mp4 -t 1 {flags} -c:v libx264 -preset ultrafast out.mp4",
        inputs=["long.mp4"],
        outputs=["out.mp4"],
    )
    result = await executor.run(plan.args, tmp_path)
    assert result.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "out.mp4"]
    if flags != "-novn":
        assert _duration(ffmpeg_bin, tmp_path / "out.mp4") <= 1.2


async def test_null_output_has_the_duration_cap(
    executor: LocalExecutor, tmp_path: Path, media_dir: Path
) -> None:
    """``-loop 1 -i x.png -f null -`` ran until a timeout that by default does not exist."""
    shutil.copy(media_dir / "logo.png", tmp_path / "x.png")
    policy = CommandPolicy(limits=CommandLimits(max_duration=1.0))
    plan = policy.plan("-loop 1 -i x.png -f null -", inputs=["x.png"], outputs=[])
    assert plan.args[-3:] == ("-t", "1", "-")
    result = await executor.run(plan.args, tmp_path, timeout=120)
    assert result.returncode == 0


@pytest.mark.parametrize(
    ("user", "rendered"),
    [("999999999999999", str(CommandLimits().max_file_size)), ("5M", "5000000"), ("1000", "1000")],
)
def test_user_fs_is_bounded_by_the_library_cap(user: str, rendered: str) -> None:
    plan = CommandPolicy().plan(
        f"-i a.mp4 -fs {user} out.mp4", inputs=["a.mp4"], outputs=["out.mp4"]
    )
    values = [plan.args[i + 1] for i, a in enumerate(plan.args) if a == "-fs"]
    assert values == [rendered]


@pytest.mark.parametrize(
    "command",
    [
        "-i input.mp4 -f dash -single_file 1 -single_file_name input.mp4 out.mpd",
        "-i input.mp4 -f dash -init_seg_name input.mp4 out.mpd",
        "-i input.mp4 -f dash -media_seg_name input$Number$.mp4 out.mpd",
        "-i input.mp4 -f hls -hls_segment_filename input.mp4 out.m3u8",
        "-i input.mp4 -f hls -hls_segment_type fmp4 -hls_fmp4_init_filename input.mp4 out.m3u8",
        "-i input.mp4 -f segment -segment_list input.mp4 out_%03d.mp4",
    ],
)
def test_muxer_written_names_never_name_an_input(command: str) -> None:
    with pytest.raises(CommandRejectedError) as info:
        CommandPolicy().plan(
            command, inputs=["input.mp4"], outputs=["out.mpd", "out.m3u8", "out_%03d.mp4"],
            partial=True,
        )  # fmt: skip
    assert info.value.code == "path_not_allowed"
    assert "input" in info.value.message


def test_dash_single_file_truncated_the_input_with_plain_ffmpeg(
    tmp_path: Path, media_dir: Path, ffmpeg_bin: str
) -> None:
    """Control for the rule above: without the policy ffmpeg overwrites the input it reads."""
    shutil.copy(media_dir / "clip.mp4", tmp_path / "input.mp4")
    size = (tmp_path / "input.mp4").stat().st_size
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-y", "-loglevel", "error", "-i", "input.mp4", "-c", "copy",
         "-f", "dash", "-single_file", "1", "-single_file_name", "input.mp4", "out.mpd"],
        cwd=tmp_path, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert (tmp_path / "input.mp4").stat().st_size != size


def test_segment_list_must_be_a_declared_output() -> None:
    with pytest.raises(CommandRejectedError) as info:
        CommandPolicy().plan(
            "-i a.mp4 -f segment -segment_list list.csv out_%03d.mp4",
            inputs=["a.mp4"],
            outputs=["out_%03d.mp4"],
        )
    assert info.value.code == "path_not_allowed" and "list.csv" in info.value.message
    plan = CommandPolicy().plan(
        "-i a.mp4 -f segment -segment_list list.csv out_%03d.mp4",
        inputs=["a.mp4"],
        outputs=["out_%03d.mp4", "list.csv"],
    )
    assert plan.outputs == ("out_%03d.mp4", "list.csv")


@pytest.mark.parametrize(
    "url", ["/tmp/work/", "/", "//evil.example/", "http://evil.example/", "file:/etc/", "../x/"]
)
def test_hls_base_url_cannot_point_at_host_paths_or_hosts(url: str) -> None:
    with pytest.raises(CommandRejectedError) as info:
        CommandPolicy().plan(
            f"-i a.mp4 -c copy -f hls -hls_base_url {url} -hls_flags single_file "
            "-hls_segment_filename x.mp4 out.m3u8",
            inputs=["a.mp4"],
            outputs=["out.m3u8"],
        )
    assert info.value.code == "bad_option_value"


def test_relative_hls_base_url_is_refused_at_plan_time() -> None:
    # The output check accepts only plain names in a playlist, so a prefix the policy let
    # through would fail the task after ffmpeg ran; the policy says so up front.
    with pytest.raises(CommandRejectedError) as info:
        CommandPolicy().plan(
            "-i a.mp4 -c copy -f hls -hls_base_url media/ out.m3u8",
            inputs=["a.mp4"],
            outputs=["out.m3u8"],
        )
    assert info.value.code == "bad_option_value" and "hls_base_url" in info.value.message


def test_segment_needs_a_numbered_output() -> None:
    with pytest.raises(CommandRejectedError) as info:
        CommandPolicy().plan("-i a.mp4 -f segment out.mp4", inputs=["a.mp4"], outputs=["out.mp4"])
    assert info.value.code == "format_not_allowed"


@pytest.mark.parametrize(
    "option",
    ["-hls_subtitle_path x.m3u8", "-segment_list_entry_prefix x", "-master_pl_name m.m3u8",
     "-segment_format_options movflags=x", "-hls_key_info_file key.txt"],
)  # fmt: skip
def test_trusted_mode_refuses_unknown_name_writing_options(option: str) -> None:
    with pytest.raises(CommandRejectedError):
        CommandPolicy.trusted().plan(
            f"-i a.mp4 -f hls {option} out.m3u8", inputs=["a.mp4"], outputs=["out.m3u8"]
        )


def test_timing_reads_a_cleared_shortest_as_off() -> None:
    policy = CommandPolicy()
    plan = policy.plan(
        "-i a.mp4 -shortest -noshortest out.mp4", inputs=["a.mp4"], outputs=["out.mp4"]
    )
    assert plan.timing.outputs[0].shortest is False
    plan = policy.plan(
        "-i a.mp4 -noshortest -shortest out.mp4", inputs=["a.mp4"], outputs=["out.mp4"]
    )
    assert plan.timing.outputs[0].shortest is True
