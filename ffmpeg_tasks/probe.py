"""Metadata of what a task produced, and optional expectations on it.

With ffprobe present, each output is probed by the executor under the same sandbox,
rlimits and environment as ffmpeg, with ``-protocol_whitelist file`` and a
``-format_whitelist`` of the formats the output's name implies (after
:mod:`~ffmpeg_tasks.output_types` checked that its bytes are what its name says).
Without it, the stream list ffmpeg printed for its outputs and the final
``-progress`` time are used.  Either way the result has the same shape,
:class:`~ffmpeg_tasks.metadata.OutputMetadata`.  ``expect=`` turns bounds into a typed
failure (code ``expectation_failed``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ExecutionTimeoutError, OutputError
from .executor.base import Executor
from .filenames import extension
from .metadata import OutputMetadata, StreamMetadata, format_for_name, output_metadata, stream
from .output_types import probe_formats
from .outputs import pattern_to_glob

__all__ = ["StreamDump", "check_expectations", "ffprobe_file", "merge_dump", "probe_outputs"]

_OUTPUT_RE = re.compile(r"^Output #(\d+), ([\w,]+), to '([^']*)':")
_STREAM_RE = re.compile(
    r"^\s+Stream #\d+:\d+(?:\[\w+\])?(?:\(\w+\))?: (Video|Audio|Subtitle|Data|Attachment): "
    r"([\w-]+)(.*)$"
)
_SIZE_RE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_RATE_RE = re.compile(r"\b(\d+) Hz\b")
_FPS_RE = re.compile(r"\b(\d+(?:\.\d+)?)(k?) fps\b")
_LAYOUT_RE = re.compile(r"\bHz, ([\w.()]+)")
_CHANNELS_RE = re.compile(r"\b(\d+) channels\b")
_LAYOUTS = {
    "mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "3.0(back)": 3, "4.0": 4, "quad": 4,
    "quad(side)": 4, "3.1": 4, "4.1": 5, "5.0": 5, "5.0(side)": 5, "5.1": 6, "5.1(side)": 6,
    "6.0": 6, "6.0(front)": 6, "hexagonal": 6, "6.1": 7, "6.1(back)": 7, "6.1(front)": 7,
    "7.0": 7, "7.0(front)": 7, "7.1": 8, "7.1(wide)": 8, "7.1(wide-side)": 8, "octagonal": 8,
    "downmix": 2,
}  # fmt: skip
_MAX_DUMP_LINES = 400
#: Still images whose metadata ffmpeg's own dump gives in full (no ffprobe run).
_STILL_IMAGES = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "avif"})


class StreamDump:
    """Collects the ``Output #N … Stream #…`` lines ffmpeg prints on stderr."""

    def __init__(self) -> None:
        #: Muxer name and streams per output name ffmpeg printed.
        self.formats: dict[str, str] = {}
        self.streams: dict[str, list[StreamMetadata]] = {}
        self._current: list[StreamMetadata] | None = None
        self._lines = 0

    def feed(self, line: str) -> None:
        if self._lines >= _MAX_DUMP_LINES:
            return
        match = _OUTPUT_RE.match(line)
        if match:
            self._lines += 1
            name = match.group(3)
            self.formats[name] = match.group(2)
            self._current = self.streams[name] = []
            return
        if self._current is None:
            return
        match = _STREAM_RE.match(line)
        if match:
            self._lines += 1
            self._current.append(_dump_stream(match.group(1).lower(), match.group(2), match[3]))
        elif not line.startswith(" "):
            self._current = None


def _dump_stream(kind: str, codec: str, rest: str) -> StreamMetadata:
    if kind == "video":
        size = _SIZE_RE.search(rest)
        fps = _FPS_RE.search(rest)
        return stream(
            kind,
            codec,
            width=int(size.group(1)) if size else None,
            height=int(size.group(2)) if size else None,
            fps=float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else None,
        )
    if kind == "audio":
        rate = _RATE_RE.search(rest)
        layout = _LAYOUT_RE.search(rest)
        count = _CHANNELS_RE.search(rest)
        channels = int(count.group(1)) if count else None
        if channels is None and layout:
            channels = _LAYOUTS.get(layout.group(1))
        return stream(
            kind, codec, sample_rate=int(rate.group(1)) if rate else None, channels=channels
        )
    return stream(kind, codec)


async def ffprobe_file(
    executor: Executor, ffprobe: str, path: Path, *, timeout: float = 30.0
) -> OutputMetadata | None:
    """Probe one output in its work dir through ``executor``; None when it cannot be probed.

    Only outputs of a known kind are probed, each with the ``-format_whitelist`` its
    name implies; the size is the file's.
    """
    formats = probe_formats(path.name)
    if formats is None:
        return None
    argv = ["-v", "error", "-protocol_whitelist", "file", "-format_whitelist", formats,
            "-show_format", "-show_streams", "-of", "json", "file:" + path.name]  # fmt: skip
    try:
        result = await executor.probe(argv, path.parent, program=ffprobe, timeout=timeout)
    except ExecutionTimeoutError:
        return None
    if result.returncode != 0:
        return None
    try:
        data = json.loads(result.stdout)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    return _from_ffprobe(data, path.name, size)


def _from_ffprobe(data: Mapping[str, Any], name: str, size: int) -> OutputMetadata:
    fmt = data.get("format") or {}
    if not isinstance(fmt, Mapping):
        fmt = {}
    streams: list[StreamMetadata] = []
    for s in data.get("streams") or []:
        if not isinstance(s, Mapping):
            continue
        kind = str(s.get("codec_type") or "data")
        fps = None
        if kind == "video":
            num, _, den = str(s.get("avg_frame_rate") or "").partition("/")
            if num.isdigit() and den.isdigit() and int(den):
                fps = int(num) / int(den)
        rate = _num(s.get("sample_rate"))
        streams.append(
            stream(
                kind,
                _str(s.get("codec_name")),
                width=_int(s.get("width")) if kind == "video" else None,
                height=_int(s.get("height")) if kind == "video" else None,
                fps=fps or None,
                sample_rate=int(rate) if rate and kind == "audio" else None,
                channels=_int(s.get("channels")) if kind == "audio" else None,
                duration=_num(s.get("duration")),
            )
        )
    bit_rate = _num(fmt.get("bit_rate"))
    names = str(fmt.get("format_name") or "")
    return output_metadata(
        format=format_for_name(name) or names.split(",")[0] or None,
        size=size,
        duration=_num(fmt.get("duration")),
        bit_rate=int(bit_rate) if bit_rate is not None else None,
        streams=streams,
    )


def _num(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dump_key(dump: StreamDump, name: str) -> str | None:
    """The name ffmpeg printed for the file ``name``: itself or its pattern (``thumb_%03d.jpg``)."""
    if name in dump.streams:
        return name
    for printed in dump.streams:
        glob = pattern_to_glob(printed)
        if glob is not None and fnmatch.fnmatchcase(name, glob):
            return printed
    return None


def merge_dump(
    files: Sequence[tuple[str, Path]], dump: StreamDump, out_time: float | None
) -> dict[str, OutputMetadata]:
    """Metadata from ffmpeg's own output dump (the fallback without ffprobe; blocking)."""
    result: dict[str, OutputMetadata] = {}
    for name, path in files:
        key = _dump_key(dump, name)
        result[name] = output_metadata(
            format=(dump.formats.get(key) if key else None) or format_for_name(name),
            size=path.stat().st_size,
            duration=out_time if key else None,
            streams=dump.streams.get(key, []) if key else [],
        )
    return result


async def probe_outputs(
    executor: Executor,
    ffprobe: str | None,
    files: Sequence[tuple[str, Path]],
    dump: StreamDump,
    out_time: float | None,
) -> dict[str, OutputMetadata]:
    """Metadata of ``files``: ffprobe's view where it works, else ffmpeg's dump.

    The format stays the muxer's name from the dump when ffmpeg printed one, so both
    sources agree (``"mp4"``, not the demuxer's ``"mov,mp4,m4a,3gp,3g2,mj2"``).
    """
    metadata = await asyncio.to_thread(merge_dump, files, dump, out_time)
    if ffprobe is None or not hasattr(executor, "probe"):
        return metadata
    for name, path in files:
        key = _dump_key(dump, name)
        if extension(name) in _STILL_IMAGES and key is not None:
            continue  # ffmpeg's own dump has codec and size; ffprobe would double the cost
        probed = await ffprobe_file(executor, ffprobe, path)
        if probed is not None:
            probed["format"] = (dump.formats.get(key) if key else None) or probed["format"]
            metadata[name] = probed
    return metadata


def _at_least(value: float, bound: float) -> bool:
    return value >= bound


def _at_most(value: float, bound: float) -> bool:
    return value <= bound


_BOUNDS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "min_duration": ("duration", _at_least),
    "max_duration": ("duration", _at_most),
    "min_size": ("size", _at_least),
    "max_size": ("size", _at_most),
}


def check_expectations(
    metadata: Mapping[str, Mapping[str, Any]], name: str, expect: Mapping[str, Any]
) -> None:
    """Raise ``OutputError(code="expectation_failed")`` when ``name`` misses ``expect``.

    Keys: ``min_duration``/``max_duration`` (s), ``min_size``/``max_size`` (bytes),
    ``width``/``height`` (exact, first video stream), ``streams`` (e.g. ``["video",
    "audio"]``: types that must be present).
    """
    info = metadata.get(name, {})
    for key, bound in expect.items():
        if key in _BOUNDS:
            field, ok = _BOUNDS[key]
            value = info.get(field)
            if value is None or not ok(value, bound):
                raise OutputError(
                    f"output {name!r}: {field} {value!r} fails {key}={bound!r}",
                    code="expectation_failed",
                )
        elif key in ("width", "height"):
            video = [s for s in info.get("streams", []) if s.get("type") == "video"]
            value = video[0].get(key) if video else None
            if value != bound:
                raise OutputError(
                    f"output {name!r}: {key} is {value!r}, expected {bound!r}",
                    code="expectation_failed",
                )
        elif key == "streams":
            present = {s.get("type") for s in info.get("streams", [])}
            missing = [k for k in bound if k not in present]
            if missing:
                raise OutputError(
                    f"output {name!r} has no {missing[0]} stream", code="expectation_failed"
                )
        else:
            raise OutputError(f"unknown expectation {key!r}", code="expectation_failed")
