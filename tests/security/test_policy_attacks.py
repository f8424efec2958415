"""Hostile commands are refused with a typed error that names the bad part."""

from __future__ import annotations

import pytest

from ffmpeg_tasks.errors import CommandRejectedError, InvalidSpecError
from ffmpeg_tasks.policy import CommandPolicy

INS = ["input.mp4", "subs.srt", "logo.png"]
OUTS = ["out.mp4"]


def reject(
    command: str | list[str],
    *,
    code: str | None = None,
    names: str | None = None,
    inputs: list[str] = INS,
    outputs: list[str] = OUTS,
) -> CommandRejectedError:
    with pytest.raises(CommandRejectedError) as info:
        CommandPolicy().plan(command, inputs=inputs, outputs=outputs, partial=True)
    err = info.value
    if code is not None:
        assert err.code == code, err
    if names is not None:
        assert names in err.message, err.message
    return err


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("/etc/passwd", "path_not_allowed"),
        ("file:/etc/passwd", "path_not_allowed"),
        ("../x.mp4", "path_not_allowed"),
        ("concat:input.mp4|/etc/passwd", "path_not_allowed"),
        ("subfile,,start,0,end,0,,:/etc/passwd", "path_not_allowed"),
        ("http://169.254.169.254/latest/meta-data", "path_not_allowed"),
        ("data:text/plain,hello", "path_not_allowed"),
        ("undeclared.mp4", "path_not_allowed"),
        ("-", "path_not_allowed"),
        ("pipe:0", "path_not_allowed"),
        ("INPUT.MP4", "path_not_allowed"),
        ("input.mp4 ", "path_not_allowed"),
    ],
)
def test_input_reads_outside_declared_files(target: str, code: str) -> None:
    reject(["-i", target, "out.mp4"], code=code, names=target.strip()[:20])


def test_input_formats_that_open_other_files() -> None:
    reject("-f concat -i input.mp4 out.mp4", code="format_not_allowed", names="concat")
    reject("-f hls -i input.mp4 out.mp4", code="format_not_allowed", names="hls")
    reject("-f image2 -pattern_type glob -i input.mp4 out.mp4", names="pattern_type")


def test_undeclared_placeholder() -> None:
    reject("-i {{secret.mp4}} out.mp4", code="undeclared_placeholder", names="secret.mp4")


@pytest.mark.parametrize(
    ("graph", "names"),
    [
        ("movie=/etc/passwd", "movie"),
        ("amovie=input.mp4", "amovie"),
        ("sendcmd=f=/tmp/cmds,scale=10:10", "sendcmd"),
        ("zmq", "zmq"),
        ("lut3d=file=/etc/x", "/etc/x"),
        ("subtitles=/etc/passwd", "/etc/passwd"),
        ("subtitles=filename=/etc/passwd", "/etc/passwd"),
        ("subtitles=f=../subs.srt", "../subs.srt"),
        ("drawtext=textfile=/etc/passwd:text=x", "/etc/passwd"),
        ("drawtext=fontfile=/usr/share/fonts/x.ttf:text=x", "/usr/share/fonts/x.ttf"),
        ("subtitles='/etc/passwd'", "/etc/passwd"),
        (r"subtitles=\/etc\/passwd", "/etc/passwd"),
        (r"sub\titles=/etc/passwd", "/etc/passwd"),
        ("'subtitles'=/etc/passwd", "/etc/passwd"),
        (r"subtitles=filename='\/etc'/passwd", "/etc/passwd"),
        (r"scale=10:10,subtitles=f=\'/etc/passwd", "/etc/passwd"),
        ("subtitles=subs.srt:fontsdir=/etc", "fontsdir"),
        ("drawtext=text='%{env\\:HOME}'", "env"),
        ("drawtext=text=x:expansion=strftime", "strftime"),
        ("paletteuse=debug_kdtree=/tmp/x", "debug_kdtree"),
        ("curves=plot=/tmp/x", "plot"),
        ("scale=10:10:/text=/etc/passwd", "/text"),
        ("ladspa=file=x", "ladspa"),
        ("frei0r=x", "frei0r"),
        ("nosuchfilter", "nosuchfilter"),
    ],
)
def test_filter_file_access(graph: str, names: str) -> None:
    err = reject(["-i", "input.mp4", "-vf", graph, "out.mp4"], names=names)
    assert err.code in (
        "filter_not_allowed",
        "path_not_allowed",
        "filter_option_not_allowed",
        "bad_option_value",
        "bad_filtergraph",
    )


def test_filter_complex_movie_source() -> None:
    reject(
        "-i input.mp4 -filter_complex '[in]movie=/etc/passwd[out]' -map '[out]' out.mp4",
        code="filter_not_allowed",
        names="movie",
    )
    reject("-i input.mp4 -lavfi 'amovie=x.wav[a]' out.mp4", code="filter_not_allowed")
    reject("-f lavfi -i movie=/etc/passwd out.mp4", code="filter_not_allowed", names="movie")


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("-filter_script x -i input.mp4 out.mp4", "-filter_script"),
        ("-i input.mp4 -filter_complex_script x out.mp4", "-filter_complex_script"),
        ("-i input.mp4 -/vf x out.mp4", "-/vf"),
        ("-i input.mp4 -/filter_complex x out.mp4", "-/filter_complex"),
        ("-i input.mp4 -attach /etc/passwd out.mp4", "-attach"),
        ("-dump_attachment:t x -i input.mp4 out.mp4", "-dump_attachment"),
        ("-report -i input.mp4 out.mp4", "-report"),
        ("-vstats_file /tmp/v -i input.mp4 out.mp4", "-vstats_file"),
        ("-i input.mp4 -progress /tmp/x out.mp4", "-progress"),
        ("-i input.mp4 -sdp_file /tmp/x out.mp4", "-sdp_file"),
        ("-protocol_whitelist file,http -i input.mp4 out.mp4", "-protocol_whitelist"),
        ("-i input.mp4 -hls_key_info_file k out.mp4", "-hls_key_info_file"),
        ("-i input.mp4 -foo 1 out.mp4", "-foo"),
        ("-i input.mp4 -- out.mp4", "--"),
    ],
)
def test_options_that_touch_files(command: str, names: str) -> None:
    reject(command, code="option_not_allowed", names=names)


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("-i input.mp4 /tmp/x.mp4", "/tmp/x.mp4"),
        ("-i input.mp4 ../x.mp4", "../x.mp4"),
        ("-i input.mp4 file:out.mp4", "file:out.mp4"),
        ("-i input.mp4 -hls_segment_filename /tmp/seg%d.ts out.mp4", "/tmp/seg%d.ts"),
        ("-i input.mp4 -hls_segment_filename ../seg%d.ts out.mp4", "../seg%d.ts"),
        ("-i input.mp4 -f tee '[f=mp4]/tmp/x.mp4' ", "tee"),
        ("-i input.mp4 -f tee out.mp4", "tee"),
        ("-i input.mp4 -f segment /tmp/seg%d.mp4", "/tmp/seg%d.mp4"),
        ("-i input.mp4 -f segment out.mp4", "segment"),
        ("-i input.mp4 -passlogfile /tmp/x out.mp4", "/tmp/x"),
        ("-i input.mp4 -init_seg_name /tmp/i.m4s out.mp4", "/tmp/i.m4s"),
        ("-i input.mp4 -f null out.mp4", "null"),
        ("-i input.mp4 -f mp4 -", "-"),
        ("-i input.mp4 rtmp://evil/live", "rtmp://evil/live"),
        ("-i input.mp4 tcp://10.0.0.1:9", "tcp://10.0.0.1:9"),
        ("-i input.mp4 udp://10.0.0.1:9", "udp://10.0.0.1:9"),
        ("-i input.mp4 -listen 1 out.mp4", "-listen"),
        ("-i input.mp4 -f rtp out.mp4", "rtp"),
        ("-i input.mp4 -f rtsp out.mp4", "rtsp"),
        ("-i input.mp4 -method PUT out.mp4", "-method"),
        ("-i input.mp4 undeclared.mp4", "undeclared.mp4"),
    ],
)
def test_writes_outside_work_dir_or_network(command: str, names: str) -> None:
    reject(command, names=names)


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("-i input.mp4 -s 100000x100000 out.mp4", "100000x100000"),
        ("-i input.mp4 -vf scale=99999:99999 out.mp4", "99999"),
        ("-i input.mp4 -vf scale=w=100*1000:h=10 out.mp4", "100*1000"),
        ("-i input.mp4 -vf pad=99999:10 out.mp4", "99999"),
        ("-threads 9999 -i input.mp4 out.mp4", "9999"),
        ("-i input.mp4 -x264-params threads=999 out.mp4", "threads=999"),
        ("-stream_loop -1 -i input.mp4 out.mp4", "-1"),
        ("-stream_loop 100000 -i input.mp4 out.mp4", "100000"),
        ("-i input.mp4 -vf loop=loop=-1:size=10 out.mp4", "-1"),
        ("-i input.mp4 -vf loop=-1:10 out.mp4", "-1"),
        ("-i input.mp4 -vf loop=10:size=10000000 out.mp4", "10000000"),
        ("-i input.mp4 -t 99999999 out.mp4", "99999999"),
        ("-i input.mp4 -r 100000 out.mp4", "100000"),
        ("-i input.mp4 -max_pixels 999999999999 out.mp4", "999999999999"),
    ],
)
def test_resource_bombs(command: str, names: str) -> None:
    reject(command, code="limit_exceeded", names=names)


def test_thousands_of_filters() -> None:
    graph = ",".join(["null"] * 2000)
    err = reject(["-i", "input.mp4", "-vf", graph, "out.mp4"])
    assert err.code in ("filtergraph_too_large", "command_too_long")
    reject(
        ["-i", "input.mp4", "-vf", ",".join(["null"] * 150), "out.mp4"],
        code="filtergraph_too_large",
        names="150",
    )


def test_too_many_tokens_and_length() -> None:
    reject(" ".join(["-y"] * 600) + " -i input.mp4 out.mp4", code="too_many_tokens")
    reject("-i input.mp4 -metadata title=" + "a" * 20000 + " out.mp4", code="command_too_long")


@pytest.mark.parametrize(
    "command",
    [
        "-i input.mp4\x00 out.mp4",
        "-i input.mp4\n-f tee out.mp4",
        "-i input.mp4\r out.mp4",
        "-i input.mp4 \u202eout.mp4",
        "-i input.mp4 out\u200b.mp4",
    ],
)
def test_control_and_invisible_characters(command: str) -> None:
    reject(command, code="invalid_character", names="U+")


def test_unicode_lookalikes_and_option_looking_names() -> None:
    reject("-i input.mp4 \u2010f tee out.mp4", code="path_not_allowed")  # hyphen lookalike
    reject("\u2212i /etc/passwd out.mp4", code="path_not_allowed")
    reject("-i input.mp4 -\u0456 x out.mp4", code="option_not_allowed")  # Cyrillic i
    reject("-i input.mp4 -vf sub\u0074itles=/etc/passwd out.mp4", names="/etc/passwd")
    reject("-i input.mp4 -vf ｓubtitles=x out.mp4", code="filter_not_allowed")  # noqa: RUF001
    with pytest.raises(InvalidSpecError):
        CommandPolicy().plan("-i -f out.mp4", inputs=["-f"], outputs=OUTS)
    reject("-i input.mp4 -i -f out.mp4", code="path_not_allowed", names="-f")


def test_unbalanced_quotes_and_empty() -> None:
    reject("-i 'input.mp4 out.mp4", code="unbalanced_quotes")
    reject("   ", code="empty_command")
    reject("-i input.mp4", code="no_output")
    reject("-i input.mp4 out.mp4 -c:v libx264", code="trailing_options", names="-c")


def test_declared_files_must_be_used_and_written() -> None:
    with pytest.raises(CommandRejectedError) as info:
        CommandPolicy().plan(
            "-i input.mp4 out.mp4", inputs=["input.mp4", "extra.mp4"], outputs=["out.mp4"]
        )
    assert info.value.code == "unused_input" and "extra.mp4" in info.value.message
    with pytest.raises(CommandRejectedError) as info:
        CommandPolicy().plan(
            "-i input.mp4 out.mp4", inputs=["input.mp4"], outputs=["out.mp4", "b.mp4"]
        )
    assert info.value.code == "missing_output" and "b.mp4" in info.value.message


def test_codec_format_and_bsf_allow_lists() -> None:
    reject("-i input.mp4 -c:v evilcodec out.mp4", code="codec_not_allowed", names="evilcodec")
    reject("-i input.mp4 -bsf:v trace_headers out.mp4", names="trace_headers")
    reject("-i input.mp4 -x264-params stats=/tmp/x out.mp4", names="stats")
    reject("-i input.mp4 -x265-params csv=/tmp/x out.mp4", names="csv")
    reject("-i input.mp4 -movflags +evil out.mp4", names="evil")
    reject("-i input.mp4 -map 3:v out.mp4", names="#3")


def test_sidecar_pattern_may_not_overwrite_inputs() -> None:
    reject(
        "-i input.mp4 -f hls -hls_segment_filename input%d.mp4 out.m3u8",
        inputs=["input.mp4", "input1.mp4"],
        outputs=["out.m3u8"],
        code="path_not_allowed",
        names="input*.mp4",
    )


def test_trusted_mode_still_guards_files() -> None:
    trusted = CommandPolicy.trusted()
    plan = trusted.plan(
        "-i input.mp4 -vf 'hqx=2' -someopt 3 out.mp4", inputs=["input.mp4"], outputs=OUTS
    )
    assert "-someopt" in plan.args
    for bad in [
        "-i /etc/passwd out.mp4",
        "-i input.mp4 -vf movie=x out.mp4",
        "-i input.mp4 -vf subtitles=/etc/passwd out.mp4",
        "-i input.mp4 -filter_script x out.mp4",
        "-i input.mp4 /tmp/o.mp4",
        "-i input.mp4 -someopt /etc/passwd out.mp4",
        "-i input.mp4 -vf x=f=/y out.mp4",
    ]:
        with pytest.raises(CommandRejectedError):
            trusted.plan(bad, inputs=["input.mp4"], outputs=OUTS, partial=True)


def test_extend_allows_more() -> None:
    from ffmpeg_tasks.policy import FilterRule, OptionSpec

    policy = CommandPolicy().extend(
        options=[OptionSpec("segment_time", "float:0:3600")],
        output_formats=["segment"],
        filters=[FilterRule("hqx", {"n": "value"}, ("n",))],
    )
    plan = policy.plan(
        "-i input.mp4 -vf hqx=2 -f segment -segment_time 2 out%03d.mp4",
        inputs=["input.mp4"],
        outputs=["out%03d.mp4"],
    )
    assert plan.sidecars == ("out*.mp4",)
    with pytest.raises(CommandRejectedError):
        CommandPolicy().plan("-i input.mp4 -vf hqx=2 out.mp4", inputs=["input.mp4"], outputs=OUTS)
