"""Outputs are what their names say, before anything parses them.

A command can make ffmpeg copy hostile bytes into an output unchanged
(``-f image2 -i payload.png -c copy -f image2 out.mp4``), or write a playlist that
names files outside the work dir (``-hls_base_url``).  Before ffprobe (or a consumer of
the stored files) reads them, every file to store is checked:

* its first bytes must match the kind its extension names (``.mp4`` an ISO BMFF box,
  ``.ts`` MPEG-TS sync bytes, ``.m3u8`` ``#EXTM3U`` …); a file of an extension without
  a known signature only may not start like a playlist, manifest or reference list;
* an HLS playlist (``.m3u8``/``.m3u``) or DASH manifest (``.mpd``) may only reference
  files of this task: plain names (no ``/``, ``..``, scheme or absolute path) that are
  stored beside it (DASH segment templates: plain-name templates).

Failures are :class:`~ffmpeg_tasks.errors.OutputError` with code
``output_format_mismatch`` or ``output_reference_not_allowed``, naming the output.
:func:`probe_formats` gives the ``-format_whitelist`` ffprobe gets for a name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from .errors import OutputError

__all__ = ["check_output_head", "check_playlist", "probe_formats", "verify_outputs"]

HEAD_BYTES = 512
#: Playlists are read whole for the reference check, up to this size.
MAX_PLAYLIST_BYTES = 8 * 1024 * 1024

_BOX_TYPES = (
    b"ftyp", b"styp", b"moov", b"moof", b"mdat", b"free", b"skip", b"wide", b"sidx",
    b"uuid", b"pnot", b"emsg", b"prft",
)  # fmt: skip


def _bmff(head: bytes) -> bool:
    return head[4:8] in _BOX_TYPES


def _mpegts(head: bytes) -> bool:
    """Sync bytes of 188-byte packets, or of 192-byte M2TS packets (4-byte time prefix)."""
    return any(
        head[first : first + 1] == b"\x47"
        and (len(head) <= first + size or head[first + size : first + size + 1] == b"\x47")
        for first, size in ((0, 188), (4, 192))
    )


def _mp3(head: bytes) -> bool:
    return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] >= 0xE0)


def _adts(head: bytes) -> bool:
    return head.startswith((b"ID3", b"ADIF")) or (
        len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0
    )


def _riff(kind: bytes) -> Callable[[bytes], bool]:
    return lambda head: head.startswith(b"RIFF") and head[8:12] == kind


def _prefix(*magics: bytes) -> Callable[[bytes], bool]:
    return lambda head: head.startswith(magics)


def _text(pattern: bytes) -> Callable[[bytes], bool]:
    rx = re.compile(pattern, re.S)
    return lambda head: rx.match(head.removeprefix(b"\xef\xbb\xbf")) is not None


# (what the name says, signature check, formats ffprobe may use for it)
_Kind = tuple[str, Callable[[bytes], bool], str]
_BMFF: _Kind = ("an MP4/QuickTime file", _bmff, "mov")
_MKV: _Kind = (
    "a Matroska/WebM file",
    _prefix(b"\x1a\x45\xdf\xa3", b"\x1f\x43\xb6\x75"),  # EBML header, or a DASH cluster
    "matroska",
)
_TS: _Kind = ("an MPEG-TS file", _mpegts, "mpegts")
_OGG: _Kind = ("an Ogg file", _prefix(b"OggS"), "ogg")
_HLS: _Kind = ("an HLS playlist", _text(rb"\s*#EXTM3U"), "hls,mpegts,mov,aac,mp3,ac3,webvtt")
_KINDS: dict[str, _Kind] = {
    **dict.fromkeys(("mp4", "m4v", "m4a", "mov", "3gp", "m4s", "avif"), _BMFF),
    **dict.fromkeys(("mkv", "mka", "webm", "weba"), _MKV),
    **dict.fromkeys(("ts", "m2ts", "mts"), _TS),
    **dict.fromkeys(("ogg", "oga", "ogv", "opus"), _OGG),
    **dict.fromkeys(("m3u8", "m3u"), _HLS),
    "mpd": (
        "a DASH manifest",
        _text(rb"\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<MPD\b"),
        "dash,mov,matroska",
    ),
    "mpg": ("an MPEG program stream", _prefix(b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"), "mpeg"),
    "mpeg": ("an MPEG program stream", _prefix(b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"), "mpeg"),
    "avi": ("an AVI file", _riff(b"AVI "), "avi"),
    "wav": ("a WAV file", _riff(b"WAVE"), "wav"),
    "webp": ("a WebP image", _riff(b"WEBP"), "webp_pipe,image2"),
    "flv": ("an FLV file", _prefix(b"FLV"), "flv"),
    "nut": ("a NUT file", _prefix(b"nut/multimedia container"), "nut"),
    "mp3": ("an MP3 file", _mp3, "mp3"),
    "aac": ("an AAC (ADTS) file", _adts, "aac"),
    "flac": ("a FLAC file", _prefix(b"fLaC", b"ID3"), "flac"),
    "ac3": ("an AC-3 file", _prefix(b"\x0b\x77"), "ac3"),
    "eac3": ("an E-AC-3 file", _prefix(b"\x0b\x77"), "eac3"),
    "aiff": ("an AIFF file", _prefix(b"FORM"), "aiff"),
    "aif": ("an AIFF file", _prefix(b"FORM"), "aiff"),
    "y4m": ("a YUV4MPEG file", _prefix(b"YUV4MPEG2"), "yuv4mpegpipe"),
    "gif": ("a GIF image", _prefix(b"GIF87a", b"GIF89a"), "gif"),
    "png": ("a PNG image", _prefix(b"\x89PNG\r\n\x1a\n"), "image2,png_pipe"),
    "apng": ("an APNG image", _prefix(b"\x89PNG\r\n\x1a\n"), "apng"),
    "jpg": ("a JPEG image", _prefix(b"\xff\xd8\xff"), "image2,jpeg_pipe"),
    "jpeg": ("a JPEG image", _prefix(b"\xff\xd8\xff"), "image2,jpeg_pipe"),
    "bmp": ("a BMP image", _prefix(b"BM"), "image2,bmp_pipe"),
    "tif": ("a TIFF image", _prefix(b"II*\x00", b"MM\x00*"), "image2,tiff_pipe"),
    "tiff": ("a TIFF image", _prefix(b"II*\x00", b"MM\x00*"), "image2,tiff_pipe"),
    "srt": (
        "an SRT subtitle file",
        _text(rb"\s*\d+\s*\r?\n\s*\d{1,2}:\d\d:\d\d[,.]\d{1,3}\s*-->"),
        "srt",
    ),
    "vtt": ("a WebVTT file", _text(rb"WEBVTT\b"), "webvtt"),
    "ass": ("an ASS subtitle file", _text(rb"\s*\[Script Info\]"), "ass"),
    "ssa": ("an SSA subtitle file", _text(rb"\s*\[Script Info\]"), "ass"),
}

#: Texts that make libavformat (or a player) open further resources.
_INDIRECT = re.compile(
    rb"\s*(?:#EXTM3U|#EXT-X-|ffconcat\s+version|<\?xml|<!--|<MPD\b|<SmoothStreamingMedia|v=0\s)",
    re.I,
)
#: What the first bytes look like, for the error message.
_LOOKS_LIKE: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("an HLS playlist", _text(rb"\s*#EXT")),
    ("an XML document such as a DASH manifest", _text(rb"\s*<")),
    ("an ffconcat list", _text(rb"\s*ffconcat")),
    ("MPEG-TS", _mpegts),
    ("MP4/QuickTime", _bmff),
)


def _ext(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def probe_formats(name: str) -> str | None:
    """The ``-format_whitelist`` for probing ``name``; None when its kind is not known."""
    kind = _KINDS.get(_ext(name))
    return kind[2] if kind else None


def check_output_head(name: str, head: bytes) -> None:
    """Raise ``OutputError(code="output_format_mismatch")`` unless ``head`` fits ``name``."""
    kind = _KINDS.get(_ext(name))
    if kind is None:
        if _INDIRECT.match(head.removeprefix(b"\xef\xbb\xbf")):
            raise OutputError(
                f"output {name!r} is a playlist or reference file", code="output_format_mismatch"
            )
        return
    what, matches, _ = kind
    if not matches(head):
        seen = next((label for label, test in _LOOKS_LIKE if test(head)), None)
        detail = f" (its bytes look like {seen})" if seen else ""
        raise OutputError(f"output {name!r} is not {what}{detail}", code="output_format_mismatch")


# -- playlists ------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_URI_ATTR = re.compile(r"\bURI\s*=\s*(\"[^\"]*\"|'[^']*'|[^,\s]*)", re.I)
_XML_ATTR = re.compile(r"([A-Za-z_][\w.:-]*)\s*=\s*(\"[^\"]*\"|'[^']*')")
#: DASH attributes whose value is a file reference (any namespace prefix).
_DASH_REFS = frozenset({"media", "initialization", "sourceurl", "index", "href", "id"})
#: Identifiers of DASH segment templates.
_DASH_TEMPLATE = re.compile(r"\$(?:RepresentationID|Number|Bandwidth|Time|SubNumber)(?:%0?\d*d)?\$")
#: MPD constructs that name other resources, or that can hide text from a regex.
#: ``<BaseURL>name</BaseURL>`` as ffmpeg writes it for ``-single_file 1``: checked like a
#: reference (a stored plain name), then removed before the forbidden constructs are sought.
_DASH_BASE_URL = re.compile(r"<(\w+:)?BaseURL>([^<]*)</\1?BaseURL>", re.I)
_DASH_FORBIDDEN = re.compile(
    r"<!DOCTYPE|<!ENTITY|<!\[CDATA\[|&#|<(?:\w+:)?(?:BaseURL|Location|PatchLocation|UTCTiming"
    r"|ContentSteering)\b|<\?xml-stylesheet|<xi?:include",
    re.I,
)


def _describe(ref: str) -> str:
    """How to name a bad reference without echoing a host path or URL."""
    if _PLAIN.fullmatch(ref) and ".." not in ref:
        return repr(ref)
    if "://" in ref or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", ref):
        return "a URL"
    if ref.startswith(("/", "\\")):
        return "an absolute path"
    if ".." in ref:
        return "a path into a parent directory"
    if "/" in ref or "\\" in ref:
        return "a path in another directory"
    return "a name that is not a plain file name"


def _refuse(name: str, ref: str, why: str = "which is not a file of this task") -> OutputError:
    return OutputError(
        f"output {name!r} references {_describe(ref)}, {why}",
        code="output_reference_not_allowed",
    )


def _hls_refs(text: str) -> list[str]:
    """Every URI line and ``URI=`` attribute; a line with leading blanks counts as a URI."""
    refs: list[str] = []
    for raw in re.split(r"[\r\n\x00]", text.removeprefix("\ufeff")):
        line = raw.rstrip()
        if not line:
            continue
        if line.startswith("#"):
            refs.extend(v.strip("\"'") for v in _URI_ATTR.findall(line))
        else:
            refs.append(line)
    return refs


def check_playlist(name: str, data: bytes, stored: Collection[str]) -> None:
    """Refuse a playlist/manifest ``name`` whose references are not ``stored`` plain names.

    HLS: every URI line and every ``URI=`` attribute must be one of ``stored``.  DASH:
    ``media``/``initialization``/``sourceURL``/``index``/``href``/``id`` values must be
    plain names or plain-name segment templates, a ``BaseURL`` one of ``stored``, and
    ``Location``,
    ``UTCTiming``, DOCTYPE/entities/CDATA and character references are refused.
    """
    text = data.decode("utf-8", "replace")
    if _ext(name) == "mpd":
        for _prefix, ref in _DASH_BASE_URL.findall(text):
            ref = ref.strip()
            if ref not in stored or not _PLAIN.fullmatch(ref) or ".." in ref:
                raise _refuse(name, ref)
        text = _DASH_BASE_URL.sub("", text)
        bad = _DASH_FORBIDDEN.search(text)
        if bad:
            raise OutputError(
                f"output {name!r} contains {bad.group(0)!r}, which may name other resources",
                code="output_reference_not_allowed",
            )
        for attr, quoted in _XML_ATTR.findall(text):
            if attr.rsplit(":", 1)[-1].lower() not in _DASH_REFS:
                continue
            value = quoted[1:-1].strip()
            plain = _DASH_TEMPLATE.sub("0", value)
            if value and (not _PLAIN.fullmatch(plain) or ".." in plain):
                raise _refuse(name, value, "which is not a plain name in the work dir")
        return
    for ref in _hls_refs(text):
        if ref == name or ref not in stored or not _PLAIN.fullmatch(ref) or ".." in ref:
            raise _refuse(name, ref)


def verify_outputs(files: Sequence[tuple[str, Path]]) -> None:
    """Check every file to store (blocking: run in a thread); see the module doc."""
    stored = {n for n, _ in files}
    for name, path in files:
        is_playlist = _ext(name) in ("m3u8", "m3u", "mpd")
        with path.open("rb") as f:
            data = f.read(MAX_PLAYLIST_BYTES + 1 if is_playlist else HEAD_BYTES)
        check_output_head(name, data[:HEAD_BYTES])
        if is_playlist:
            if len(data) > MAX_PLAYLIST_BYTES:
                raise OutputError(
                    f"output {name!r} is larger than {MAX_PLAYLIST_BYTES} bytes",
                    code="output_format_mismatch",
                )
            check_playlist(name, data, stored)
