"""The result of planning a command: the argv to run and what it will read and write."""

from __future__ import annotations

import attrs

__all__ = ["CommandPlan", "InputTiming", "OutputTiming", "Timing"]


@attrs.frozen
class InputTiming:
    """Seek/limit options of one input, in seconds (``None`` when not given)."""

    name: str
    ss: float | None = None
    t: float | None = None
    to: float | None = None
    sseof: float | None = None
    stream_loop: int = 0


@attrs.frozen
class OutputTiming:
    """Seek/limit options of one output; ``frames`` is the video frame limit."""

    name: str
    ss: float | None = None
    t: float | None = None
    to: float | None = None
    frames: int | None = None
    shortest: bool = False


@attrs.frozen
class Timing:
    """What a progress percentage needs to know about the command."""

    inputs: tuple[InputTiming, ...] = ()
    outputs: tuple[OutputTiming, ...] = ()


@attrs.frozen
class CommandPlan:
    """An allowed command, ready to run with ``cwd`` = the work dir.

    ``args`` is the final argv without the ffmpeg binary (library flags included);
    ``inputs`` the declared inputs in ``-i`` order; ``outputs`` the declared outputs
    written; ``sidecars`` glob patterns (relative to the work dir) of extra files the
    outputs produce (HLS/DASH segments, image sequences); ``notes`` the verdicts.
    """

    args: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    sidecars: tuple[str, ...] = ()
    timing: Timing = Timing()
    notes: tuple[str, ...] = ()
