"""The numeric caps a command policy enforces and adds to every plan."""

from __future__ import annotations

import warnings

import attrs

__all__ = ["MAX_INPUTS", "MAX_OUTPUTS", "CommandLimits"]

#: Files one task may name (the spec) and one command may open (the policy).
MAX_INPUTS = 32
MAX_OUTPUTS = 16


@attrs.frozen
class CommandLimits:
    """Numeric caps a :class:`CommandPolicy` enforces on commands and adds as ffmpeg flags.

    (``SpecLimits`` bounds a task's spec — names, URLs, counts; ``ResourceLimits`` are
    the rlimits ffmpeg runs under.)
    """

    max_threads: int = 16
    max_dimension: int = 8192
    max_pixels: int = 7680 * 4320
    max_duration: float = 6 * 3600.0
    max_stream_loop: int = 100
    max_loop: int = 1000
    max_loop_size: int = 10_000
    max_frame_rate: float = 240.0
    max_inputs: int = MAX_INPUTS
    max_outputs: int = MAX_OUTPUTS
    max_filters: int = 100
    max_graph_length: int = 8 * 1024
    max_file_size: int = 16 * 1024**3
    max_alloc: int = 1024**3
    max_text_length: int = 1024


def __getattr__(name: str) -> object:
    if name == "Limits":
        warnings.warn(
            "ffmpeg_tasks.policy.Limits is now CommandLimits", DeprecationWarning, stacklevel=2
        )
        return CommandLimits
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
