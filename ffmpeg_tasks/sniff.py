"""A look at the first bytes of each downloaded input, before ffmpeg sees it.

Media inputs are also guarded by ffmpeg's ``-format_whitelist``; this check matters
most for text inputs that filters open on their own (``subtitles=``/``ass=``), where no
whitelist applies: a hostile ``.srt`` could otherwise be an HLS playlist, an ffconcat
list, a DASH manifest or an SDP file that makes ffmpeg open other files or sockets.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import TaskFailure

__all__ = ["check_input", "read_head"]

HEAD_BYTES = 512

#: Container texts that make libavformat open further resources; refused for every input.
_INDIRECT = re.compile(rb"^\s*(?:#EXTM3U|#EXT-X-|ffconcat\s+version|<\?xml|<MPD\b|v=0\s)", re.I)

#: What a declared subtitle file must start with (after a UTF-8 BOM and blank lines).
_SUBTITLE_START = {
    "srt": re.compile(rb"^\s*\d+\s*\r?\n\s*\d{1,2}:\d\d:\d\d[,.]\d{1,3}\s*-->"),
    "vtt": re.compile(rb"^WEBVTT\b"),
    "ass": re.compile(rb"^\s*\[Script Info\]", re.I),
    "ssa": re.compile(rb"^\s*\[Script Info\]", re.I),
}


def read_head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(HEAD_BYTES)


def check_input(name: str, head: bytes) -> None:
    """Raise ``TaskFailure(code="input_type_mismatch")`` for a disguised input."""
    body = head.removeprefix(b"\xef\xbb\xbf")
    if _INDIRECT.match(body):
        raise TaskFailure(
            f"input {name!r} is a playlist or reference file, not media",
            code="input_type_mismatch",
        )
    ext = name.rsplit(".", 1)[-1].lower()
    pattern = _SUBTITLE_START.get(ext)
    if pattern is not None and not pattern.match(body):
        raise TaskFailure(
            f"input {name!r} does not look like a .{ext} subtitle file",
            code="input_type_mismatch",
        )
