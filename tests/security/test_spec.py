"""Spec checks at register: names, URLs, counts — every refusal typed and named."""

from __future__ import annotations

import pytest

from ffmpeg_tasks import InvalidSpecError, SpecLimits
from ffmpeg_tasks.spec import validate_spec

URL = "https://example.com/a.mp4"
LIMITS = SpecLimits()


def check(inputs: dict[str, str], outputs: list[str], commands: tuple[str, ...] = ("x",)) -> None:
    validate_spec(commands, inputs, outputs, LIMITS)


@pytest.mark.parametrize(
    "name",
    [
        "../a.mp4",
        "/etc/passwd.mp4",
        "a/b.mp4",
        "-i.mp4",
        ".hidden.mp4",
        "a\\b.mp4",
        "a b.mp4",
        "a\x00.mp4",
        "a\n.mp4",
        "\uff41.mp4",
        "a..mp4",
        "file:a.mp4",
        "a.mp4\u202e",
        "",
        "a" * 200 + ".mp4",
        "concat:a.mp4",
        "%d.mp4",
        "a.exe",
        "a",
        "a.html",
    ],
)
def test_bad_input_names(name: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        check({name: URL}, ["out.mp4"])
    assert info.value.field == "input_files"
    assert info.value.code in ("invalid_name", "extension_not_allowed")


@pytest.mark.parametrize(
    "name",
    ["../o.mp4", "o/p.mp4", "-o.mp4", "o.sh", "o.html", "o.svg", "%s.mp4", "%n.jpg", "o%x.jpg"],
)
def test_bad_output_names(name: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        check({"in.mp4": URL}, [name])
    assert info.value.field == "output_filename"


@pytest.mark.parametrize(
    "name", ["out.mp4", "thumb_%03d.jpg", "seg%d.ts", "OUT-1_a.webm", "master.m3u8", "manifest.mpd"]
)
def test_good_output_names(name: str) -> None:
    check({"in.mp4": URL}, [name])


def test_names_are_unique_case_insensitively_and_outputs_never_inputs() -> None:
    with pytest.raises(InvalidSpecError, match="differ only in case"):
        check({"a.mp4": URL, "A.MP4": URL}, ["out.mp4"])
    with pytest.raises(InvalidSpecError, match="clashes with an input"):
        check({"a.mp4": URL}, ["A.mp4"])
    with pytest.raises(InvalidSpecError, match="clashes with another output"):
        check({"a.mp4": URL}, ["o.mp4", "O.mp4"])


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/a.mp4", "url_not_allowed"),
        ("file:///etc/passwd", "url_not_allowed"),
        ("gopher://x/", "url_not_allowed"),
        ("https://user:pw@example.com/a.mp4", "url_not_allowed"),
        ("https://@example.com/a.mp4", "url_not_allowed"),
        ("https:///a.mp4", "invalid_url"),
        ("https://example.com:99999/a.mp4", "invalid_url"),
        ("https://exa mple.com/a.mp4", "invalid_url"),
        ("https://example.com/a\r\nX: y", "invalid_url"),
        ("https://example.com/" + "a" * 5000, "invalid_url"),
        ("", "invalid_url"),
    ],
)
def test_bad_urls(url: str, code: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        check({"in.mp4": url}, ["out.mp4"])
    assert info.value.code == code
    assert "in.mp4" in str(info.value)


def test_counts_are_bounded() -> None:
    many = {f"in{i}.mp4": URL for i in range(LIMITS.max_inputs + 1)}
    with pytest.raises(InvalidSpecError, match="too many input files"):
        check(many, ["out.mp4"])
    with pytest.raises(InvalidSpecError, match="too many output files"):
        check({"in.mp4": URL}, [f"o{i}.mp4" for i in range(LIMITS.max_outputs + 1)])
    with pytest.raises(InvalidSpecError, match="too many chained commands"):
        check({"in.mp4": URL}, ["o.mp4"], ("x",) * (LIMITS.max_commands + 1))
    with pytest.raises(InvalidSpecError, match="empty"):
        check({"in.mp4": URL}, ["o.mp4"], ("  ",))


def test_limits_are_extensible() -> None:
    limits = SpecLimits(input_extensions=LIMITS.input_extensions | {"dat"})
    validate_spec(("x",), {"in.dat": URL}, ["o.mp4"], limits)
