"""Metadata of what a task produced, and optional expectations on it.

With ffprobe present, each output is probed (``-show_format -show_streams``, files
only, in the work dir).  Without it, the stream list ffmpeg printed for its outputs
and the final ``-progress`` time are used.  ``expect=`` turns bounds into a typed
failure (code ``expectation_failed``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import OutputError
from .ffmpeg import run_capture

__all__ = ["StreamDump", "check_expectations", "ffprobe_file"]

_OUTPUT_RE = re.compile(r"^Output #(\d+), ([\w,]+), to '([^']*)':")
_STREAM_RE = re.compile(
    r"^\s+Stream #\d+:\d+(?:\[\w+\])?(?:\(\w+\))?: (Video|Audio|Subtitle|Data): "
    r"([\w-]+)(.*)$"
)
_SIZE_RE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_RATE_RE = re.compile(r"\b(\d+) Hz\b")
_MAX_DUMP_LINES = 400


class StreamDump:
    """Collects the ``Output #N … Stream #…`` lines ffmpeg prints on stderr."""

    def __init__(self) -> None:
        self.outputs: dict[str, dict[str, Any]] = {}
        self._current: dict[str, Any] | None = None
        self._lines = 0

    def feed(self, line: str) -> None:
        if self._lines >= _MAX_DUMP_LINES:
            return
        match = _OUTPUT_RE.match(line)
        if match:
            self._lines += 1
            self._current = {"format": match.group(2), "streams": []}
            self.outputs[match.group(3)] = self._current
            return
        if self._current is None:
            return
        match = _STREAM_RE.match(line)
        if match:
            self._lines += 1
            kind, codec, rest = match.group(1).lower(), match.group(2), match.group(3)
            stream: dict[str, Any] = {"type": kind, "codec": codec}
            size = _SIZE_RE.search(rest)
            if kind == "video" and size:
                stream["width"], stream["height"] = int(size.group(1)), int(size.group(2))
            rate = _RATE_RE.search(rest)
            if kind == "audio" and rate:
                stream["sample_rate"] = int(rate.group(1))
            self._current["streams"].append(stream)
        elif not line.startswith(" "):
            self._current = None


async def ffprobe_file(ffprobe: str, path: Path, *, timeout: float = 30.0) -> dict[str, Any]:
    """Run ffprobe on one local file; return our metadata shape ({} on failure)."""
    argv = [ffprobe, "-v", "error", "-protocol_whitelist", "file", "-show_format",
            "-show_streams", "-of", "json", "file:" + path.name]  # fmt: skip
    code, out = await run_capture(
        argv, cwd=path.parent, timeout=timeout, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    )
    if code != 0:
        return {}
    try:
        data = json.loads(out)
    except ValueError:
        return {}
    fmt = data.get("format") or {}
    result: dict[str, Any] = {"format": fmt.get("format_name"), "streams": []}
    duration = _num(fmt.get("duration"))
    if duration is not None:
        result["duration"] = duration
    bit_rate = _num(fmt.get("bit_rate"))
    if bit_rate is not None:
        result["bit_rate"] = int(bit_rate)
    for s in data.get("streams") or []:
        stream: dict[str, Any] = {"type": s.get("codec_type"), "codec": s.get("codec_name")}
        for key in ("width", "height", "channels"):
            if isinstance(s.get(key), int):
                stream[key] = s[key]
        rate = _num(s.get("sample_rate"))
        if rate is not None:
            stream["sample_rate"] = int(rate)
        if s.get("avg_frame_rate") and s.get("codec_type") == "video":
            num, _, den = str(s["avg_frame_rate"]).partition("/")
            if num.isdigit() and den.isdigit() and int(den):
                stream["fps"] = round(int(num) / int(den), 3)
        sd = _num(s.get("duration"))
        if sd is not None:
            stream["duration"] = sd
        result["streams"].append(stream)
    return result


def _num(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


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


def merge_dump(
    files: Sequence[tuple[str, Path]], dump: StreamDump, out_time: float | None
) -> dict[str, dict[str, Any]]:
    """Metadata from ffmpeg's own output dump (the fallback without ffprobe)."""
    result: dict[str, dict[str, Any]] = {}
    for name, path in files:
        info: dict[str, Any] = dict(dump.outputs.get(name, {}))
        info["size"] = path.stat().st_size
        if out_time is not None and name in dump.outputs:
            info["duration"] = out_time
        result[name] = info
    return result
