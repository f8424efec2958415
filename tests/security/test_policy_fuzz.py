"""Property tests: plan() fails only with typed errors and never lets an undeclared path through."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffmpeg_tasks.errors import CommandRejectedError, InvalidSpecError
from ffmpeg_tasks.policy import CommandPolicy
from ffmpeg_tasks.policy.policy import DEFAULT_INPUT_FORMATS

INPUTS = ["in.mp4", "subs.srt", "f_001.png"]
OUTPUTS = ["out.mp4", "thumb_%03d.jpg", "list.m3u8"]
POLICY = CommandPolicy()
TRUSTED = CommandPolicy.trusted()

PIECES = [
    "-i",
    "-f",
    "-c:v",
    "-vf",
    "-af",
    "-filter_complex",
    "-map",
    "-t",
    "-ss",
    "-s",
    "-r",
    "-hls_segment_filename",
    "-passlogfile",
    "-metadata",
    "-threads",
    "-y",
    "-an",
    "null",
    "-",
    "in.mp4",
    "subs.srt",
    "f_%03d.png",
    "out.mp4",
    "thumb_%03d.jpg",
    "list.m3u8",
    "/etc/passwd",
    "../x",
    "file:x",
    "http://h/x",
    "concat:a|b",
    "libx264",
    "copy",
    "lavfi",
    "hls",
    "tee",
    "scale=10:10",
    "subtitles=subs.srt",
    "subtitles=/etc/passwd",
    "movie=x",
    "'a b'",
    "[0:v]",
    "color=s=8x8",
    "seg%d.ts",
    "0:v",
    "title=x",
    "10",
    "-1",
    "{{in.mp4}}",
    "{{x}}",
    "\\",
    "'",
    "drawtext=textfile=subs.srt",
    "sub\\titles=x",
    "-/vf",
    "--",
    "-nostdin",
    "x.mp4",
]

tokens = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=12)), max_size=14)
FLAG_VALUES = {"-protocol_whitelist", "-format_whitelist", "-max_alloc", "-max_pixels", "-fs", "-t"}
_LIB_VALUE = re.compile(r"file|\d+|[a-z0-9_,]+")


def _assert_only_declared(args: tuple[str, ...], policy: CommandPolicy) -> None:
    declared = set(INPUTS) | set(OUTPUTS)
    for i, arg in enumerate(args):
        if "/" in arg or arg.startswith(("file:", "http", "pipe:", "concat:", "..")):
            # a path-looking token may only be a filter graph text or a metadata value
            prev = args[i - 1] if i else ""
            assert prev.startswith(("-filter", "-metadata", "-map")), (arg, args)
            assert not arg.startswith(("/", "file:", "http", "pipe:", "concat:", "..")), args
        if i and args[i - 1] == "-i":
            ok = arg in declared or re.fullmatch(r"f_%0?3?d\.png", arg) or args[i - 3] == "lavfi"
            assert ok or (i >= 2 and "lavfi" in args[: i - 1]), (arg, args)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens)
def test_plan_fails_only_with_typed_errors(argv: list[str]) -> None:
    for policy in (POLICY, TRUSTED):
        try:
            plan = policy.plan(argv, inputs=INPUTS, outputs=OUTPUTS, partial=True)
        except (CommandRejectedError, InvalidSpecError):
            continue
        _assert_only_declared(plan.args, policy)
        outs = [
            a
            for i, a in enumerate(plan.args)
            if i and not a.startswith("-") and not plan.args[i - 1].startswith("-")
        ]
        for name in outs:
            assert name in OUTPUTS or name == "-", (name, plan.args)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_string_command(text: str) -> None:
    try:
        plan = POLICY.plan(text, inputs=INPUTS, outputs=OUTPUTS, partial=True)
    except (CommandRejectedError, InvalidSpecError):
        return
    _assert_only_declared(plan.args, POLICY)


def test_format_whitelist_is_the_library_list() -> None:
    plan = POLICY.plan("-i in.mp4 out.mp4", inputs=["in.mp4"], outputs=["out.mp4"])
    value = plan.args[plan.args.index("-format_whitelist") + 1]
    assert set(value.split(",")) == DEFAULT_INPUT_FORMATS
