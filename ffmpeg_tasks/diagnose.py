"""Turn ffmpeg's raw stderr into a curated, caller-safe error.

Raw stderr can quote file contents (a hostile input may be a text file), so callers
only ever see a code and a message built from a fixed table; the raw tail stays in
``Task.diagnostics`` for the host.
"""

from __future__ import annotations

import re

from .error_codes import ErrorCode
from .errors import ExecutionError

__all__ = ["diagnose"]

# (pattern, code, message template) — groups are only ever short names that came from
# the command itself (encoder, filter, option), never from the media.
_RULES: tuple[tuple[re.Pattern[str], ErrorCode, str], ...] = (
    (re.compile(r"Unknown encoder '([\w.-]{1,40})'"), "unknown_encoder", "unknown encoder {0!r}"),
    (re.compile(r"Unknown decoder '([\w.-]{1,40})'"), "unknown_decoder", "unknown decoder {0!r}"),
    (re.compile(r"No such filter: '([\w.-]{1,40})'"), "unknown_filter", "unknown filter {0!r}"),
    (
        re.compile(r"Unrecognized option '([\w.:-]{1,40})'"),
        "unknown_option",
        "ffmpeg does not know option -{0}",
    ),
    (
        re.compile(r"Protocol '?[\w+-]{0,20}'? not on whitelist"),
        "input_not_allowed",
        "an input tried to open a protocol that is not allowed",
    ),
    (
        re.compile(r"Format '?[\w,-]{0,40}'? is not on whitelist|not on format whitelist"),
        "input_format_not_allowed",
        "an input is in a container format that is not allowed",
    ),
    (
        re.compile(r"Invalid data found when processing input"),
        "invalid_media",
        "an input is not valid media",
    ),
    (
        re.compile(r"does not contain any stream"),
        "no_streams",
        "an output would contain no streams",
    ),
    (
        re.compile(r"Stream map '[^']{0,40}' matches no streams|matches no streams"),
        "no_streams",
        "a -map selector matches no streams",
    ),
    (
        re.compile(r"Error (?:while opening|initializing output stream|opening output)"),
        "encoder_error",
        "ffmpeg could not open an encoder or output (check codec options)",
    ),
    (
        re.compile(
            r"Error (?:while filtering|reinitializing filters|initializing complex filters)|"
            r"Failed to configure|Invalid argument.*filter|Error parsing"
        ),
        "filter_error",
        "the filter graph is invalid",
    ),
    (
        re.compile(r"File size limit exceeded|larger than|max_alloc"),
        "resource_limit",
        "ffmpeg hit a resource limit",
    ),
    (
        re.compile(r"No space left on device|Disk quota exceeded"),
        "disk_full",
        "the work dir ran out of space",
    ),
    (re.compile(r"Conversion failed!"), "ffmpeg_failed", "ffmpeg could not convert the input"),
)


def diagnose(returncode: int, stderr_tail: str) -> ExecutionError:
    """An ``ExecutionError`` with a curated code and message for a failed run."""
    if returncode < 0:
        return ExecutionError(
            f"ffmpeg was killed by signal {-returncode}",
            returncode=returncode,
            code="ffmpeg_killed",
        )
    for pattern, code, template in _RULES:
        match = pattern.search(stderr_tail)
        if match:
            return ExecutionError(
                f"ffmpeg failed: {template.format(*match.groups())} (exit status {returncode})",
                returncode=returncode,
                code=code,
            )
    return ExecutionError(f"ffmpeg failed with exit status {returncode}", returncode=returncode)
