"""Outputs are what their names say, before anything parses them.

A command can make ffmpeg copy hostile bytes into an output unchanged
(``-f image2 -i payload.png -c copy -f image2 out.mp4``), or write a playlist that
names files outside the work dir (``-hls_base_url``).  Before ffprobe (or a consumer of
the stored files) reads them, every file to store is checked:

* its first bytes must match the kind its extension names (``.mp4`` an ISO BMFF box,
  ``.ts`` MPEG-TS sync bytes, ``.m3u8`` ``#EXTM3U`` …); a file of an extension without
  a known signature only may not start like a playlist, manifest or reference list;
* an HLS playlist (``.m3u8``/``.m3u``) may only reference files of this task: every URI
  line and ``URI=`` attribute is a plain name (no ``/``, ``..``, scheme or absolute path)
  stored beside it, and no tag line holds a URL, an absolute path or a parent path;
* a DASH manifest (``.mpd``) must be UTF-8 XML without DOCTYPE, entities, CDATA,
  processing instructions or ``xml:base``; it is parsed, and on every element:
  ``media``/``initialization``/``sourceURL``/``index``/``href``/``id`` are plain names or
  plain-name segment templates, a ``BaseURL`` is a stored plain name, ``Location``,
  ``PatchLocation``, ``UTCTiming``, ``ContentSteering`` and XInclude are refused, and no
  other attribute (except ``schemeIdUri``, ``profiles``, ``xsi:schemaLocation``) nor any
  text holds a URL, an absolute path or a parent path.

Failures are :class:`~ffmpeg_tasks.errors.OutputError` with code
``output_format_mismatch`` or ``output_reference_not_allowed``, naming the output.
:func:`probe_formats` gives the ``-format_whitelist`` ffprobe gets for a name.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from .errors import OutputError
from .filenames import PLAIN_NAME, extension
from .sniff import INDIRECT_START

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

#: What the first bytes look like, for the error message.
_LOOKS_LIKE: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("an HLS playlist", _text(rb"\s*#EXT")),
    ("an XML document such as a DASH manifest", _text(rb"\s*<")),
    ("an ffconcat list", _text(rb"\s*ffconcat")),
    ("MPEG-TS", _mpegts),
    ("MP4/QuickTime", _bmff),
)


def probe_formats(name: str) -> str | None:
    """The ``-format_whitelist`` for probing ``name``; None when its kind is not known."""
    kind = _KINDS.get(extension(name))
    return kind[2] if kind else None


def check_output_head(name: str, head: bytes) -> None:
    """Raise ``OutputError(code="output_format_mismatch")`` unless ``head`` fits ``name``."""
    kind = _KINDS.get(extension(name))
    if kind is None:
        if INDIRECT_START.match(head.removeprefix(b"\xef\xbb\xbf")):
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

_PLAIN = PLAIN_NAME
_URI_ATTR = re.compile(r"\bURI\s*=\s*(\"[^\"]*\"|'[^']*'|[^,\s]*)", re.I)
#: DASH attributes whose value is a file reference (any namespace prefix).
_DASH_REFS = frozenset({"media", "initialization", "sourceurl", "index", "href", "id"})
#: DASH attributes that hold URIs naming schemes or schemas, never fetched as files.
_DASH_URI_NAMES = frozenset({"schemeiduri", "profiles", "schemalocation"})
#: Identifiers of DASH segment templates.
_DASH_TEMPLATE = re.compile(r"\$(?:RepresentationID|Number|Bandwidth|Time|SubNumber)(?:%0?\d*d)?\$")
#: Elements that name other resources.
_DASH_FORBIDDEN_ELEMENTS = frozenset(
    {"location", "patchlocation", "utctiming", "contentsteering", "include"}
)
#: Constructs refused before parsing: entities, CDATA (can hide text), processing
#: instructions other than the XML declaration.
_XML_FORBIDDEN = re.compile(rb"<!DOCTYPE|<!ENTITY|<!\[CDATA\[|<\?", re.I)
_XML_DECL_START = re.compile(rb"\s*<\?xml\s[^>]*\?>")
_XML_DECL = re.compile(rb"<\?xml\s[^>]*?\bencoding\s*=\s*[\"']([^\"']*)[\"']", re.I)
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
#: A value that points somewhere: a URL, a protocol ffmpeg or a player opens, an
#: absolute path, a parent directory.
_POINTS_AWAY = re.compile(
    r"://|^\s*(?:[/\\]|(?:file|data|https?|ftp|concat|subfile|crypto|pipe|fd|cache|async"
    r"|tcp|udp|rtmp\w*|rtp|srt|tls|hls|smb|sftp|ipfs|ipns|gopher)\s*:)|(?:^|[/\\])\.\.(?:[/\\]|$)",
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


def _hls_refs(name: str, text: str) -> list[str]:
    """Every URI line and ``URI=`` attribute; a line with leading blanks counts as a URI.

    A tag line that holds a URL, absolute path or parent path anywhere (``X-ASSET-LIST=``,
    ``X-ASSET-URI=`` …) is refused here.
    """
    refs: list[str] = []
    for raw in re.split(r"[\r\n\x00]", text.removeprefix("\ufeff")):
        line = raw.rstrip()
        if not line:
            continue
        if line.startswith("#"):
            uris = [v.strip("\"'") for v in _URI_ATTR.findall(line)]
            refs.extend(uris)
            rest = _URI_ATTR.sub("", line)
            for value in [*re.findall(r"=\s*(\"[^\"]*\"|'[^']*'|[^,\s]*)", rest), rest]:
                if _POINTS_AWAY.search(value.strip("\"'")):
                    raise _refuse(name, value.strip("\"'"), "in a tag line")
        else:
            refs.append(line)
    return refs


def _check_reference(name: str, ref: str, stored: Collection[str]) -> None:
    if ref not in stored or not _PLAIN.fullmatch(ref) or ".." in ref:
        raise _refuse(name, ref)


def _parse_mpd(name: str, data: bytes) -> ET.Element:
    """Parse a manifest after refusing what could expand, hide or fetch text."""
    body = data.removeprefix(b"\xef\xbb\xbf")
    declared = _XML_DECL.match(body.lstrip())
    if declared and declared.group(1).decode("ascii", "replace").lower() not in (
        "utf-8", "utf8", "us-ascii", "ascii",
    ):  # fmt: skip
        raise OutputError(
            f"output {name!r} declares the encoding {declared.group(1)[:20]!r}; only UTF-8 is read",
            code="output_reference_not_allowed",
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise OutputError(
            f"output {name!r} is not UTF-8 text", code="output_reference_not_allowed"
        ) from None
    decl = _XML_DECL_START.match(body)
    rest = body[decl.end() :] if decl else body
    bad = _XML_FORBIDDEN.search(rest)
    if bad:
        raise OutputError(
            f"output {name!r} contains {bad.group(0).decode()!r}, which may name other resources",
            code="output_reference_not_allowed",
        )
    try:
        return ET.fromstring(body)  # noqa: S314 - no DOCTYPE or entities: checked above
    except ET.ParseError:
        raise OutputError(
            f"output {name!r} is not well-formed XML", code="output_format_mismatch"
        ) from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _check_mpd(name: str, data: bytes, stored: Collection[str]) -> None:
    for element in _parse_mpd(name, data).iter():
        if not isinstance(element.tag, str):
            continue
        tag = _local(element.tag)
        if tag in _DASH_FORBIDDEN_ELEMENTS:
            raise OutputError(
                f"output {name!r} contains a <{tag}> element, which may name other resources",
                code="output_reference_not_allowed",
            )
        if tag == "baseurl":
            if element.attrib:
                raise _refuse(name, "BaseURL with attributes", "which is not a file of this task")
            _check_reference(name, (element.text or "").strip(), stored)
        else:
            for text in (element.text, element.tail):
                if text and _POINTS_AWAY.search(text):
                    raise _refuse(name, text.strip(), "in its text")
        for attr, value in element.attrib.items():
            if attr == _XML_BASE:
                raise _refuse(name, value, "in xml:base")
            key = _local(attr)
            if key in _DASH_REFS:
                plain = _DASH_TEMPLATE.sub("0", value.strip())
                if value.strip() and (not _PLAIN.fullmatch(plain) or ".." in plain):
                    raise _refuse(name, value.strip(), "which is not a plain name in the work dir")
            elif key not in _DASH_URI_NAMES and _POINTS_AWAY.search(value):
                raise _refuse(name, value.strip(), f"in its {key!r} attribute")


def check_playlist(name: str, data: bytes, stored: Collection[str]) -> None:
    """Refuse a playlist/manifest ``name`` that names anything but ``stored`` plain names.

    See the module docstring for what is checked in HLS playlists and DASH manifests.
    """
    if extension(name) == "mpd":
        _check_mpd(name, data, stored)
        return
    text = data.decode("utf-8", "replace")
    for ref in _hls_refs(name, text):
        if ref == name:
            raise _refuse(name, ref)
        _check_reference(name, ref, stored)


def verify_outputs(files: Sequence[tuple[str, Path]]) -> None:
    """Check every file to store (blocking: run in a thread); see the module doc."""
    stored = {n for n, _ in files}
    for name, path in files:
        is_playlist = extension(name) in ("m3u8", "m3u", "mpd")
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
