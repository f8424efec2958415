"""Progress percentage from ffmpeg's ``-progress`` blocks.

The expected output length comes from the input durations ffmpeg prints on stderr
(``Duration: 00:01:02.50``) combined with the trimming and length options of the
command (``-ss``, ``-t``, ``-to``, ``-frames``, ``-shortest``, ``-stream_loop``) as
parsed by the policy.  When the length cannot be known the percent is ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from .policy.command_plan import OutputTiming, Timing

__all__ = ["ProgressSnapshot", "ProgressTracker", "parse_clock"]

_INPUT_RE = re.compile(r"^Input #(\d+), ")
_DURATION_RE = re.compile(r"^\s+Duration: (\d+:\d\d:\d\d(?:\.\d+)?|N/A)")
_OUTPUT_RE = re.compile(r"^Output #\d+, ")


def parse_clock(text: str) -> float | None:
    """``01:02:03.5`` → 3723.5 seconds; plain seconds too; None if not a time."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            seconds = 0.0
            for part in parts:
                seconds = seconds * 60 + part
            return seconds
        return float(text)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip().rstrip("x")
    try:
        result = float(value)
    except ValueError:
        return None
    return result if result == result and result not in (float("inf"), float("-inf")) else None


@attrs.frozen
class ProgressSnapshot:
    percent: float | None
    out_time: float | None
    fps: float | None
    speed: float | None
    eta: float | None


class ProgressTracker:
    """Follows one ffmpeg run: feed it stderr lines and ``-progress`` blocks."""

    def __init__(self, timing: Timing | None = None) -> None:
        self.timing = timing if timing is not None else Timing()
        self.input_durations: dict[int, float | None] = {}
        self._current_input: int | None = None
        self._in_outputs = False

    # -- stderr ---------------------------------------------------------------

    def feed_stderr(self, line: str) -> None:
        """Pick the input durations out of ffmpeg's stream dump."""
        if self._in_outputs:
            return
        if _OUTPUT_RE.match(line):
            self._in_outputs = True
            return
        match = _INPUT_RE.match(line)
        if match:
            self._current_input = int(match.group(1))
            self.input_durations.setdefault(self._current_input, None)
            return
        match = _DURATION_RE.match(line)
        if match and self._current_input is not None:
            value = match.group(1)
            self.input_durations[self._current_input] = (
                None if value == "N/A" else parse_clock(value)
            )

    # -- expected length --------------------------------------------------------

    def _input_length(self, index: int, duration: float | None) -> float | None:
        spec = self.timing.inputs[index] if index < len(self.timing.inputs) else None
        if spec is None:
            return duration
        if duration is not None:
            if spec.stream_loop < 0:
                return None
            duration *= spec.stream_loop + 1
        ss = spec.ss or 0.0
        if spec.sseof is not None and duration is not None:
            ss = max(duration + spec.sseof, 0.0)
        limit = spec.t if spec.t is not None else (spec.to - ss if spec.to is not None else None)
        length = None if duration is None else max(duration - ss, 0.0)
        if limit is not None:
            length = limit if length is None else min(length, limit)
        return length

    @property
    def _output(self) -> OutputTiming | None:
        return self.timing.outputs[0] if self.timing.outputs else None

    def expected_duration(self) -> float | None:
        """Seconds the (first) output should last, or None when unknowable."""
        out = self._output
        out_ss = (out.ss if out else None) or 0.0
        out_t = out.t if out else None
        out_to = out.to if out else None
        limit = out_t if out_t is not None else (out_to - out_ss if out_to is not None else None)
        base: float | None = None
        if self.input_durations:
            lengths = [self._input_length(i, d) for i, d in sorted(self.input_durations.items())]
            known = [x for x in lengths if x is not None]
            if out is not None and out.shortest:
                base = min(known) if known else None
            else:
                base = max(known) if known and len(known) == len(lengths) else None
            if base is not None:
                base = max(base - out_ss, 0.0)
        if limit is not None:
            base = limit if base is None else min(base, limit)
        return base if base else None

    # -- progress blocks --------------------------------------------------------

    def update(self, block: Mapping[str, str]) -> ProgressSnapshot:
        out_us = _float(block.get("out_time_us") or block.get("out_time_ms"))
        out_time = out_us / 1_000_000 if out_us is not None and out_us >= 0 else None
        if out_time is None and block.get("out_time"):
            out_time = parse_clock(block["out_time"])
        fps = _float(block.get("fps"))
        speed = _float(block.get("speed"))
        percent: float | None = None
        frames_cap = self._output.frames if self._output else None
        frame = _float(block.get("frame"))
        if frames_cap:
            if frame is not None:
                percent = frame / frames_cap * 100.0
        else:
            total = self.expected_duration()
            if total and out_time is not None:
                percent = out_time / total * 100.0
        if block.get("progress") == "end":
            percent = (
                100.0 if percent is not None or frames_cap or self.expected_duration() else None
            )
        if percent is not None:
            percent = min(max(percent, 0.0), 100.0)
        eta: float | None = None
        total = self.expected_duration()
        if total and out_time is not None and speed:
            eta = max(total - out_time, 0.0) / speed
        return ProgressSnapshot(percent, out_time, fps, speed, eta)
