"""Outputs are what their names say, and playlists reference only this task's files."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest

from ffmpeg_tasks import OutputError, fake_media
from ffmpeg_tasks.output_types import (
    check_output_head,
    check_playlist,
    probe_formats,
    verify_outputs,
)
from ffmpeg_tasks.outputs import collect_outputs
from ffmpeg_tasks.policy import CommandPolicy

from .test_legit_commands import CASES, run

HLS_HEAD = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"


def refused(name: str, head: bytes) -> str:
    with pytest.raises(OutputError) as info:
        check_output_head(name, head)
    assert info.value.code == "output_format_mismatch"
    assert repr(name) in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("out.mp4", b"<?xml version='1.0'?><MPD>"),
        ("out.mp4", b"<!-- hi --><MPD>"),
        ("out.mp4", b"#EXTM3U\n/etc/passwd\n"),
        ("out.mp4", b"\x47" + b"\x00" * 187 + b"\x47"),  # MPEG-TS bytes
        ("out.mkv", b"ffconcat version 1.0\nfile /etc/passwd\n"),
        ("out.ts", b"\x00\x00\x00\x18ftypisom"),
        ("out.jpg", b"\x89PNG\r\n\x1a\n"),
        ("out.m3u8", b"<MPD>"),
        ("out.mpd", b"#EXTM3U\n"),
        ("out.srt", b"#EXTM3U\n#EXT-X-ENDLIST\n"),
        ("out.vtt", b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n"),
        ("out.wav", b"RIFF\x00\x00\x00\x00AVI "),
        ("out.gif", b""),
        ("out.h264", b"#EXTM3U\n"),  # an extension without a signature: no playlists
        ("out.xyz", b"\xef\xbb\xbf  <?xml version='1.0'?>"),
    ],
)
def test_bytes_that_are_not_what_the_name_says_are_refused(name: str, head: bytes) -> None:
    refused(name, head)


def test_m2ts_packets_with_a_time_prefix_pass() -> None:
    packet = b"\x00\x00\x00\x00\x47" + b"\xff" * 187
    check_output_head("out.m2ts", packet * 3)
    check_output_head("out.ts", packet * 3)


def test_the_message_says_what_the_bytes_look_like() -> None:
    message = refused("out.mp4", b"  <MPD>")
    assert message == (
        "output 'out.mp4' is not an MP4/QuickTime file "
        "(its bytes look like an XML document such as a DASH manifest)"
    )
    assert refused("out.mp4", b"#EXTM3U") == (
        "output 'out.mp4' is not an MP4/QuickTime file (its bytes look like an HLS playlist)"
    )


@pytest.mark.parametrize(
    "name",
    ["out.mp4", "out.m4a", "seg.m4s", "out.mkv", "out.webm", "seg_001.ts", "out.ogg", "out.opus",
     "out.jpg", "out.png", "out.gif", "out.webp", "out.mp3", "out.aac", "out.flac", "out.wav",
     "out.avi", "out.flv", "out.m3u8", "out.vtt", "out.srt", "out.h264"],
)  # fmt: skip
def test_fake_media_starts_like_its_name(name: str) -> None:
    check_output_head(name, fake_media(name))


def test_probe_formats_follow_the_name() -> None:
    assert probe_formats("out.mp4") == "mov"
    assert probe_formats("OUT.MKV") == "matroska"
    assert probe_formats("seg.ts") == "mpegts"
    assert probe_formats("out.m3u8") is not None and "hls" in probe_formats("out.m3u8")  # type: ignore[operator]
    assert probe_formats("out.mpd") is not None and "dash" in probe_formats("out.mpd")  # type: ignore[operator]
    assert probe_formats("out.h264") is None  # not probed at all


# -- HLS playlists ---------------------------------------------------------------------------


def playlist_refused(text: str | bytes, stored: set[str], name: str = "out.m3u8") -> str:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(OutputError) as info:
        check_playlist(name, data, stored | {name})
    assert info.value.code == "output_reference_not_allowed"
    assert repr(name) in str(info.value)
    return str(info.value)


STORED = {"seg0.ts", "seg1.ts", "init.mp4", "media_0.m3u8"}


def test_a_real_hls_playlist_passes() -> None:
    text = (
        HLS_HEAD + '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.0,\nseg0.ts\n#EXTINF:2.0,\nseg1.ts\n'
        "#EXT-X-ENDLIST\n"
    )
    check_playlist("out.m3u8", text.encode(), STORED | {"out.m3u8"})
    master = (
        '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="a",URI="media_0.m3u8"\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=1000\r\nmedia_0.m3u8\r\n"
    )
    check_playlist("master.m3u8", master.encode(), STORED | {"master.m3u8"})


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("/etc/passwd", "an absolute path"),
        ("/tmp/host/seg0.ts", "an absolute path"),
        ("file:/etc/passwd", "a URL"),
        ("file:seg0.ts", "a URL"),
        ("http://169.254.169.254/latest", "a URL"),
        ("//evil.example/seg0.ts", "an absolute path"),
        ("../seg0.ts", "a path into a parent directory"),
        ("sub/seg0.ts", "a path in another directory"),
        ("seg0.ts?x=1", "a name that is not a plain file name"),
        ("  seg0.ts", "a name that is not a plain file name"),  # leading blanks are not stripped
        ("seg9.ts", "'seg9.ts'"),  # a plain name, but not stored by this task
        ("in.mp4", "'in.mp4'"),
        ("out.m3u8", "'out.m3u8'"),  # itself
    ],
)
def test_hls_references_must_be_stored_plain_names(line: str, kind: str) -> None:
    message = playlist_refused(HLS_HEAD + f"#EXTINF:2.0,\n{line}\n", STORED)
    assert f"references {kind}," in message
    if kind.startswith(("an absolute", "a URL")):
        assert line not in message  # never echo a host path or URL


@pytest.mark.parametrize(
    "text",
    [
        HLS_HEAD + '#EXT-X-MAP:URI="/etc/passwd"\n',
        HLS_HEAD + "#EXT-X-MAP:uri='/etc/passwd'\n",
        HLS_HEAD + '#EXT-X-KEY:METHOD=AES-128,URI="http://evil.example/key"\n',
        HLS_HEAD + '#EXT-X-MEDIA:TYPE=AUDIO,URI="../media.m3u8"\n',
        HLS_HEAD + "#EXTINF:2.0,\rseg0.ts\r/etc/passwd\r",  # CR-only line ends
        HLS_HEAD + "#EXTINF:2.0,\nseg0.ts\x00/etc/passwd\n",
        "\ufeff" + HLS_HEAD + "#EXTINF:2.0,\n/etc/passwd\n",
    ],
    ids=["map", "map_lower_single", "key_url", "media_parent", "cr_only", "nul", "bom"],
)
def test_hls_references_in_tags_and_odd_line_ends(text: str) -> None:
    playlist_refused(text, STORED)


# -- DASH manifests --------------------------------------------------------------------------

MPD = (
    '<?xml version="1.0" encoding="utf-8"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" type="static">\n<Period id="0">'
    '<AdaptationSet id="0"><Representation id="0" bandwidth="1000">{inner}'
    "</Representation></AdaptationSet></Period></MPD>\n"
)
TEMPLATE = (
    '<SegmentTemplate initialization="init-stream$RepresentationID$.m4s" '
    'media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>'
)


def test_a_real_dash_manifest_passes() -> None:
    check_playlist("out.mpd", MPD.format(inner=TEMPLATE).encode(), {"out.mpd"})


@pytest.mark.parametrize(
    "inner",
    [
        "<BaseURL>file:///tmp/host/</BaseURL>",
        "<baseurl>x/</baseurl>",
        '<SegmentTemplate media="/tmp/host/x.mp4"/>',
        "<SegmentTemplate media='../x-$Number$.m4s'/>",
        '<SegmentTemplate initialization = "file:x.mp4"/>',
        '<SegmentTemplate xmlns:x="urn:x" x:media="/etc/passwd"/>',
        '<SegmentList><SegmentURL media="http://evil.example/a.m4s"/></SegmentList>',
        '<SegmentBase><Initialization sourceURL="/etc/passwd"/></SegmentBase>',
        '<SegmentTemplate media="&#47;etc&#47;passwd"/>',
        '<Period xlink:href="http://evil.example/period.xml"/>',
        "<![CDATA[ <BaseURL>/</BaseURL> ]]>",
        '<UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="https://time.example"/>',
        '<Representation id="../../etc"/>',
    ],
)
def test_dash_references_must_be_plain_names(inner: str) -> None:
    playlist_refused(MPD.format(inner=inner), set(), name="out.mpd")


def test_a_dash_base_url_naming_a_stored_file_passes() -> None:
    # ffmpeg writes this for -single_file 1; anything else in a BaseURL stays refused.
    check_playlist("out.mpd", MPD.format(inner="<BaseURL>out-stream0.mp4</BaseURL>").encode(),
                   {"out.mpd", "out-stream0.mp4"})  # fmt: skip
    for inner in (
        "<BaseURL>other.mp4</BaseURL>",
        "<BaseURL> /tmp/host/out-stream0.mp4 </BaseURL>",
        '<BaseURL serviceLocation="a">out-stream0.mp4</BaseURL>',
        "<BaseURL>out-stream0.mp4</BaseURL><BaseURL>//evil.example/</BaseURL>",
    ):
        playlist_refused(MPD.format(inner=inner), {"out.mpd", "out-stream0.mp4"}, name="out.mpd")


@pytest.mark.parametrize(
    "inner",
    [
        # an unpaired quote in a comment or in text once hid the next attribute from a regex
        "<!-- x=' --><SegmentTemplate media=\"file:///etc/passwd\"/><!-- ' -->",
        "<Title>x='</Title><SegmentTemplate media=\"/etc/passwd\"/><Title>'</Title>",
        '<Title>x="</Title><SegmentTemplate media="/etc/passwd"/><Title>"</Title>',
        # references outside the usual attributes
        '<SegmentTemplate xml:base="http://evil.example/" media="a-$Number$.m4s"/>',
        '<SupplementalProperty schemeIdUri="urn:x" value="http://evil.example/x"/>',
        '<EssentialProperty schemeIdUri="urn:x" value="file:/etc/passwd"/>',
        '<Label lang="en">/etc/passwd</Label>',
        "<ContentSteering>https://evil.example/steer</ContentSteering>",
        "<PatchLocation>x.mpd</PatchLocation>",
        '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="/etc/passwd"/>',
        '<?xml-stylesheet href="http://evil.example/x.xsl"?>',
    ],
    ids=["comment_quote", "text_quote", "text_dquote", "xml_base", "supplemental_url",
         "essential_file", "text_path", "steering", "patch", "xinclude", "stylesheet"],
)  # fmt: skip
def test_dash_references_anywhere_are_refused(inner: str) -> None:
    playlist_refused(MPD.format(inner=inner), set(), name="out.mpd")


@pytest.mark.parametrize(
    "head",
    [
        '<?xml version="1.0" encoding="UTF-7"?>',
        "<?xml version='1.0' encoding='utf-16'?>",
        '<?xml version="1.0" encoding="ISO-8859-1"?>',
    ],
)
def test_a_manifest_declaring_another_encoding_is_refused(head: str) -> None:
    text = MPD.format(inner=TEMPLATE).replace('<?xml version="1.0" encoding="utf-8"?>', head)
    assert "encoding" in playlist_refused(text, set(), name="out.mpd")


def test_a_manifest_that_is_not_utf8_or_not_xml_is_refused() -> None:
    text = MPD.format(inner="<Title>\xe9</Title>").encode("latin-1")
    playlist_refused(text, set(), name="out.mpd")
    with pytest.raises(OutputError) as info:
        check_playlist("out.mpd", b"<MPD><Period></MPD>", {"out.mpd"})
    assert info.value.code == "output_format_mismatch"


def test_hls_tag_lines_may_not_point_elsewhere() -> None:
    for line in (
        '#EXT-X-DATERANGE:ID="ad",CLASS="com.apple.hls.interstitial",'
        'START-DATE="2024-01-01T00:00:00Z",X-ASSET-LIST="http://evil.example/list.json"',
        '#EXT-X-DATERANGE:ID="ad",X-ASSET-URI="/etc/passwd"',
        '#EXT-X-SESSION-DATA:DATA-ID="x",VALUE="../../etc/passwd"',
        "#EXT-X-FOO:https://evil.example/",
    ):
        playlist_refused(HLS_HEAD + line + "\n#EXTINF:2.0,\nseg0.ts\n", STORED)
    # ordinary tag values still pass
    ok = (
        HLS_HEAD + "#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00.000+0000\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="English: main",CHARACTERISTICS='
        '"public.accessibility.describes-video",URI="media_0.m3u8"\n#EXTINF:2.0,\nseg0.ts\n'
    )
    check_playlist("out.m3u8", ok.encode(), STORED | {"out.m3u8"})


def test_a_title_with_a_colon_passes() -> None:
    inner = (
        TEMPLATE + "</Representation></AdaptationSet></Period><ProgramInformation>"
        "<Title>Talk: part 1/2</Title></ProgramInformation><Period><AdaptationSet><Representation>"
    )
    check_playlist("out.mpd", MPD.format(inner=inner).encode(), {"out.mpd"})


def test_dash_doctype_and_entities_are_refused() -> None:
    text = '<?xml version="1.0"?><!DOCTYPE MPD [<!ENTITY h "/etc/passwd">]><MPD>&h;</MPD>'
    playlist_refused(text, set(), name="out.mpd")


# -- what real ffmpeg writes passes -----------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, media_dir: Path) -> Path:
    for item in media_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    shutil.copy(media_dir / "clip.mp4", tmp_path / "clip2.mp4")
    for i in range(1, 4):
        shutil.copy(media_dir / "logo.png", tmp_path / f"frame_{i:03d}.png")
    return tmp_path


@pytest.mark.parametrize(
    ("command", "inputs", "outputs"),
    [c[1:] for c in CASES if "font.ttf" not in c[2]],  # the font case: test_legit_commands
    ids=[c[0] for c in CASES if "font.ttf" not in c[2]],
)
def test_everyday_outputs_pass_the_output_check(
    command: str, inputs: list[str], outputs: list[str], workdir: Path, ffmpeg_bin: str
) -> None:
    plan = CommandPolicy().plan(command, inputs=inputs, outputs=outputs)
    result = run(ffmpeg_bin, plan, workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    files = collect_outputs(workdir, plan.outputs, plan.sidecars, exclude=inputs)
    assert files
    verify_outputs(files)


@pytest.mark.parametrize(
    ("args", "output"),
    [
        ("-c:v libx264 -preset ultrafast -f mov", "out.mov"),
        ("-c:v libx264 -preset ultrafast -movflags frag_keyframe+empty_moov", "out.mp4"),
        ("-c:v libx264 -preset ultrafast -f mpegts", "out.ts"),
        ("-c:v mpeg2video -f mpeg", "out.mpg"),
        ("-c:v libx264 -preset ultrafast -f flv", "out.flv"),
        ("-c:v mpeg4 -f avi", "out.avi"),
        ("-c:v libx264 -preset ultrafast -f nut", "out.nut"),
        ("-vn -c:a aac -f adts", "out.aac"),
        ("-vn -c:a ac3 -f ac3", "out.ac3"),
        ("-vn -c:a libvorbis -f ogg", "out.ogg"),
        ("-frames:v 1 -c:v libwebp -f webp", "out.webp"),
        ("-frames:v 1 -c:v bmp", "out.bmp"),
        ("-frames:v 1 -c:v tiff", "out.tif"),
        ("-c:v libx264 -preset ultrafast -f hls -hls_segment_type fmp4 -hls_time 1", "o.m3u8"),
        ("-c:v libvpx -deadline realtime -f webm -an", "out.webm"),
        ("-f lavfi -i sine=d=1 -map 1:a -c:a pcm_s16le -f aiff", "out.aiff"),
        ("-i subs.srt -map 1:s -c:s webvtt", "out.vtt"),
        ("-i subs.srt -map 1:s -c:s ass", "out.ass"),
        ("-i subs.srt -map 1:s -c:s srt", "out.srt"),
    ],
)
def test_more_real_outputs_pass(args: str, output: str, workdir: Path, ffmpeg_bin: str) -> None:
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-v", "error", "-y", "-i", "clip.mp4", "-t", "1",
         *args.split(), output],
        cwd=workdir, check=True, timeout=120,
    )  # fmt: skip
    names = sorted(
        p.name
        for p in workdir.iterdir()
        if p.name == output or fnmatch.fnmatchcase(p.name, "o*.m4s") or p.name == "init.mp4"
    )
    verify_outputs([(n, workdir / n) for n in names])
