"""Content-Type for stored outputs, from the file extension.

A fixed table instead of :mod:`mimetypes`, so the answer does not depend on the host's
``/etc/mime.types``.  Nothing here maps to a type a browser would render as a page
(HTML, SVG, XML with scripts): unknown or risky extensions get
``application/octet-stream``, so a stored output served from a bucket cannot run script.
The one XML type kept is ``application/dash+xml`` for ``.mpd`` manifests, which players
need; :func:`is_browser_renderable` flags it so S3 stores it as an attachment.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["CONTENT_TYPES", "DEFAULT_CONTENT_TYPE", "content_type_for", "is_browser_renderable"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: Lower-case extension (without the dot) -> Content-Type.
CONTENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        # video containers
        "mp4": "video/mp4",
        "m4v": "video/mp4",
        "mov": "video/quicktime",
        "mkv": "video/x-matroska",
        "webm": "video/webm",
        "avi": "video/x-msvideo",
        "flv": "video/x-flv",
        "mpg": "video/mpeg",
        "mpeg": "video/mpeg",
        "ogv": "video/ogg",
        "3gp": "video/3gpp",
        "ts": "video/mp2t",
        "m4s": "video/iso.segment",
        "h264": "video/h264",
        # streaming manifests
        "m3u8": "application/vnd.apple.mpegurl",
        "mpd": "application/dash+xml",
        # audio
        "m4a": "audio/mp4",
        "mp3": "audio/mpeg",
        "aac": "audio/aac",
        "wav": "audio/wav",
        "flac": "audio/flac",
        "ogg": "audio/ogg",
        "oga": "audio/ogg",
        "opus": "audio/ogg",
        "weba": "audio/webm",
        "mka": "audio/x-matroska",
        "ac3": "audio/ac3",
        "aiff": "audio/aiff",
        "aif": "audio/aiff",
        # images
        "gif": "image/gif",
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "png": "image/png",
        "apng": "image/apng",
        "webp": "image/webp",
        "avif": "image/avif",
        "bmp": "image/bmp",
        "tif": "image/tiff",
        "tiff": "image/tiff",
        # subtitles, data
        "srt": "application/x-subrip",
        "vtt": "text/vtt",
        "ass": "text/x-ssa",
        "ssa": "text/x-ssa",
        "json": "application/json",
        "txt": "text/plain; charset=utf-8",
        "log": "text/plain; charset=utf-8",
        "csv": "text/csv; charset=utf-8",
        "zip": "application/zip",
        "tar": "application/x-tar",
        "gz": "application/gzip",
    }
)


def content_type_for(name: str) -> str:
    """The Content-Type for a file name or key, e.g. ``"out/clip.MP4"`` -> ``"video/mp4"``.

    Unknown extensions (and ``svg``, ``html``, ``xml`` …) give ``application/octet-stream``.
    """
    base = posixpath.basename(name.replace("\\", "/"))
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        return DEFAULT_CONTENT_TYPE
    return CONTENT_TYPES.get(ext.lower(), DEFAULT_CONTENT_TYPE)


_ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/pdf",
    }
)


def is_browser_renderable(content_type: str) -> bool:
    """True when a browser opening the URL could render it as a document with script.

    HTML, SVG, JavaScript, PDF and every XML type (``*/xml``, ``*+xml`` such as
    ``application/dash+xml``: XML documents can embed XHTML ``<script>``).  Storages that
    can set ``Content-Disposition`` store such objects as attachments.
    """
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence in _ACTIVE_TYPES or essence.endswith(("+xml", "/xml"))
