"""The shape of ``Task.metadata``: one entry per output, the same keys whatever the source.

Values come from ffprobe (run by the executor, under the same sandbox as ffmpeg) or,
without it, from the stream list ffmpeg printed for its outputs.  Every key is always
present; a value that is unknown or does not apply (``width`` of an audio stream) is
``None``.  Plain dicts (``TypedDict``), so tasks stay JSON-serialisable in every store.
"""

from __future__ import annotations

from typing import TypedDict

from .filenames import extension

__all__ = ["OutputMetadata", "StreamMetadata", "format_for_name", "output_metadata", "stream"]


class StreamMetadata(TypedDict):
    """One stream of an output."""

    #: ``"video"``, ``"audio"``, ``"subtitle"``, ``"data"`` or ``"attachment"``.
    type: str
    #: Codec name as ffmpeg spells it (``"h264"``, ``"aac"``, ``"mjpeg"``).
    codec: str | None
    #: Video frame size in pixels.
    width: int | None
    height: int | None
    #: Video frame rate (average), rounded to 3 decimals.
    fps: float | None
    #: Audio sample rate in Hz, and channel count.
    sample_rate: int | None
    channels: int | None
    #: Seconds: the stream's own duration when the container records it, else the output's.
    duration: float | None


class OutputMetadata(TypedDict):
    """One stored output file."""

    #: The muxer's short name: ``"mp4"``, ``"matroska"``, ``"webm"``, ``"hls"``, ``"image2"`` ….
    format: str | None
    #: File size in bytes.
    size: int
    #: Seconds.
    duration: float | None
    #: Bits per second over the whole file.
    bit_rate: int | None
    streams: list[StreamMetadata]


def stream(
    type: str,
    codec: str | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
    duration: float | None = None,
) -> StreamMetadata:
    """A :class:`StreamMetadata` with every key present."""
    return {
        "type": type,
        "codec": codec,
        "width": width,
        "height": height,
        "fps": None if fps is None else round(fps, 3),
        "sample_rate": sample_rate,
        "channels": channels,
        "duration": duration,
    }


def output_metadata(
    *,
    format: str | None,
    size: int,
    duration: float | None,
    bit_rate: int | None = None,
    streams: list[StreamMetadata] | None = None,
) -> OutputMetadata:
    """An :class:`OutputMetadata`; streams without a duration get the output's.

    ``bit_rate`` defaults to size over duration.
    """
    if bit_rate is None and duration:
        bit_rate = int(size * 8 / duration)
    filled: list[StreamMetadata] = []
    for s in streams or []:
        if s["duration"] is None and duration is not None:
            s = {**s, "duration": duration}
        filled.append(s)
    return {
        "format": format,
        "size": size,
        "duration": duration,
        "bit_rate": bit_rate,
        "streams": filled,
    }


#: The muxer ffmpeg picks for a file name (``av_guess_format``), for outputs it did not name.
_MUXER_BY_EXT = {
    "mp4": "mp4", "m4v": "ipod", "m4a": "ipod", "mov": "mov", "3gp": "3gp",
    "mkv": "matroska", "mka": "matroska", "webm": "webm", "ts": "mpegts", "m2ts": "mpegts",
    "mpg": "mpeg", "mpeg": "mpeg", "ogv": "ogg", "ogg": "ogg", "oga": "oga", "opus": "opus",
    "avi": "avi", "flv": "flv", "nut": "nut", "mp3": "mp3", "aac": "adts", "wav": "wav",
    "flac": "flac", "ac3": "ac3", "gif": "gif", "apng": "apng", "webp": "webp",
    "png": "image2", "jpg": "image2", "jpeg": "image2", "bmp": "image2", "tif": "image2",
    "tiff": "image2", "avif": "image2", "srt": "srt", "vtt": "webvtt", "ass": "ass",
    "ssa": "ass", "m3u8": "hls", "mpd": "dash", "m4s": "mp4",
}  # fmt: skip


def format_for_name(name: str) -> str | None:
    """The muxer ffmpeg would pick for ``name``: ``"clip.mkv"`` -> ``"matroska"``."""
    return _MUXER_BY_EXT.get(extension(name))
