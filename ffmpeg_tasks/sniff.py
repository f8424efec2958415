"""A look at each file ffmpeg will read, as libavformat would probe it, before it does.

Media inputs are also guarded by ffmpeg's ``-format_whitelist``; this check matters
most where no whitelist applies — files that filters open on their own
(``subtitles=``/``ass=``), which libavformat probes against every demuxer. A hostile
input could be an HLS playlist, an ffconcat list, a DASH or IMF manifest or an SDP
file, any of which makes ffmpeg open other files or sockets.

The check reads what libavformat's probe reads: up to :data:`PROBE_WINDOW` bytes (its
``PROBE_BUF_MAX``), after the ID3v2 tags it skips, and looks for

* texts that must start the file to be detected (``#EXTM3U``, ``ffconcat version``,
  ``v=0`` …), after a UTF-8 BOM and blanks, and XML documents of any kind;
* texts detected anywhere before the first NUL byte, as libavformat's probes search
  (C strings): ``<MPD`` (DASH), ``<CompositionPlaylist`` (IMF), a line starting
  ``c=IN IP`` (SDP).

Downloaded inputs and the files a chain's earlier steps wrote are both checked.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import TaskFailure
from .filenames import extension

__all__ = ["INDIRECT_START", "PROBE_WINDOW", "check_file", "check_input", "read_window"]

#: libavformat's PROBE_BUF_MAX: the most it reads to guess a format.
PROBE_WINDOW = 1 << 20

#: Texts that make libavformat (or a player) open further resources when they start a
#: file (after a UTF-8 BOM and blanks); the output check refuses them too.
INDIRECT_START = re.compile(
    rb"\s*(?:#EXTM3U|#EXT-X-|ffconcat\s+version|<\?xml|<!--|<MPD\b|<SmoothStreamingMedia"
    rb"|<CompositionPlaylist|v=0\s|\#\s*VobSub\s+index\s+file)",
    re.I,
)
#: Texts libavformat's probes find anywhere in the C string the window starts with.
_INDIRECT_ANYWHERE = re.compile(rb"<MPD|<CompositionPlaylist|(?:^|\n)\r?c=IN IP", re.I)

#: What a declared subtitle file must start with (after a UTF-8 BOM and blank lines).
_SUBTITLE_START = {
    "srt": re.compile(rb"\s*\d+\s*\r?\n\s*\d{1,2}:\d\d:\d\d[,.]\d{1,3}\s*-->"),
    "vtt": re.compile(rb"WEBVTT\b"),
    "ass": re.compile(rb"\s*\[Script Info\]", re.I),
    "ssa": re.compile(rb"\s*\[Script Info\]", re.I),
}


def read_window(path: Path) -> bytes:
    """The bytes libavformat would probe (blocking: run it in a thread)."""
    with path.open("rb") as f:
        return f.read(PROBE_WINDOW)


def _skip_id3v2(data: bytes) -> bytes:
    """``data`` after the ID3v2 tags at its start (libavformat skips one before probing)."""
    while len(data) >= 10 and data[:3] == b"ID3" and data[3] != 0xFF and data[4] != 0xFF:
        size = data[6:10]
        if any(b & 0x80 for b in size):
            break
        length = 10 + (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3])
        if data[5] & 0x10:  # a footer follows
            length += 10
        data = data[length:]
    return data


def check_input(name: str, window: bytes) -> None:
    """Raise ``TaskFailure(code="input_type_mismatch")`` for a disguised input.

    ``window`` is the file's first bytes, up to :data:`PROBE_WINDOW`.
    """
    body = _skip_id3v2(window[:PROBE_WINDOW]).removeprefix(b"\xef\xbb\xbf")
    c_string = body.split(b"\x00", 1)[0]
    if INDIRECT_START.match(body) or _INDIRECT_ANYWHERE.search(c_string):
        raise TaskFailure(
            f"input {name!r} is a playlist or reference file, not media",
            code="input_type_mismatch",
        )
    ext = extension(name)
    pattern = _SUBTITLE_START.get(ext)
    if pattern is not None and not pattern.match(body):
        raise TaskFailure(
            f"input {name!r} does not look like a .{ext} subtitle file",
            code="input_type_mismatch",
        )


def check_file(name: str, path: Path) -> None:
    """:func:`check_input` on the file at ``path`` (blocking: run it in a thread)."""
    check_input(name, read_window(path))
