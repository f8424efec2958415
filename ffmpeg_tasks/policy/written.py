"""Options whose value names a file ffmpeg writes, and how the policy renders flags.

A muxer that writes more than its output (HLS segments, DASH chunks, a segment
list) takes the extra names from options.  Every such name must stay a plain name
in the work dir, must never match a declared input (ffmpeg would truncate the input
while reading it) and is either a declared output or a sidecar glob.
"""

# ruff: noqa: SIM905

from __future__ import annotations

__all__ = ["DECLARED_NAME_OPTIONS", "SIDECAR_NAME_OPTIONS", "parse_size"]

#: Options whose value is a name (or template) of extra files the muxer writes;
#: each becomes a sidecar glob and may not match an input.
SIDECAR_NAME_OPTIONS = frozenset(
    """hls_segment_filename hls_fmp4_init_filename single_file_name init_seg_name
    media_seg_name""".split()
)
#: Options whose value is one file the muxer writes: it must be a declared output.
DECLARED_NAME_OPTIONS = frozenset("segment_list".split())

_UNITS = {"": 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3}


def parse_size(value: str) -> int:
    """Bytes of an ``-fs`` value already checked as ``\\d+[kKMG]?`` (ffmpeg's SI suffixes)."""
    unit = value[-1] if value[-1] in "kKMG" else ""
    return int(value[: len(value) - len(unit)]) * _UNITS[unit]
