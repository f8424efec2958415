"""The filter-graph parser follows ffmpeg's two escaping levels."""

from __future__ import annotations

import pytest

from ffmpeg_tasks.errors import CommandRejectedError
from ffmpeg_tasks.policy import parse_filtergraph
from ffmpeg_tasks.policy.filters import av_get_token, parse_filter_args


@pytest.mark.parametrize(
    ("text", "term", "token", "rest"),
    [
        ("abc,def", ",", "abc", ",def"),
        ("  abc  ,x", ",", "abc", ",x"),
        (r"a\,b,c", ",", "a,b", ",c"),
        ("'a,b',c", ",", "a,b", ",c"),
        ("'a'\\''b'", ",", "a'b", ""),
        ("'  '", ",", "  ", ""),
        ("a\\ ", ",", "a ", ""),
        ("a\\", ",", "a\\", ""),
        ("'unterminated", ",", "unterminated", ""),
    ],
)
def test_av_get_token(text: str, term: str, token: str, rest: str) -> None:
    got, pos = av_get_token(text, 0, term)
    assert (got, text[pos:]) == (token, rest)


def test_chains_filters_and_labels() -> None:
    graph = parse_filtergraph("[0:v]scale=320:-2[a];[a][1:v] overlay = x=10:y=10 [out]")
    first, second = graph.chains
    assert first[0].name == "scale" and first[0].inputs == ("0:v",) and first[0].outputs == ("a",)
    assert first[0].args == ((None, "320"), (None, "-2"))
    assert second[0].name == "overlay" and second[0].inputs == ("a", "1:v")
    assert second[0].args == (("x", "10"), ("y", "10"))
    assert second[0].outputs == ("out",)


def test_instance_names_and_commas() -> None:
    graph = parse_filtergraph("scale@s1=w=10:h=20,null")
    assert [(f.name, f.instance) for f in graph.filters] == [("scale", "s1"), ("null", None)]


def test_two_levels_of_unescaping() -> None:
    # graph level removes one level of quoting, filter level another
    (call,) = parse_filtergraph(r"drawtext=text='a\:b, c':x=1").filters
    assert call.args == (("text", "a:b, c"), ("x", "1"))
    (call,) = parse_filtergraph(r"drawtext=text=a\\\:b").filters
    assert call.args == (("text", "a:b"),)
    (call,) = parse_filtergraph(r"sub\titles=\'/etc/passwd\'").filters
    assert call.name == "subtitles" and call.args == ((None, "/etc/passwd"),)
    (call,) = parse_filtergraph(r"subtitles='f=/etc/pa'sswd").filters
    assert call.args == (("f", "/etc/passwd"),)


def test_pipe_and_semicolon_inside_quotes() -> None:
    graph = parse_filtergraph("format=pix_fmts='yuv420p|yuv444p',drawtext=text='a;b'")
    assert [f.name for f in graph.filters] == ["format", "drawtext"]
    assert graph.filters[0].args == (("pix_fmts", "yuv420p|yuv444p"),)
    assert graph.filters[1].args == (("text", "a;b"),)


def test_filter_args_keys_and_positional() -> None:
    assert parse_filter_args("640:h=360") == ((None, "640"), ("h", "360"))
    assert parse_filter_args(" w = 1 : x") == (("w", "1"), (None, "x"))
    assert parse_filter_args("/text=x") == (("/text", "x"),)


@pytest.mark.parametrize(
    "bad", ["", "[a", "[]null", "null,", "scale=1:1]x", "sws_flags=bicubic;null"]
)
def test_malformed_graphs_are_refused(bad: str) -> None:
    with pytest.raises(CommandRejectedError):
        parse_filtergraph(bad)
