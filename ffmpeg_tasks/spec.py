"""Checks on a task's spec at ``register`` time: file names, URLs, counts.

The command itself is checked by :mod:`ffmpeg_tasks.policy`; this module makes sure
every name that will become a path in the work dir (and a storage key) is a plain,
safe, relative file name, and every URL is something the downloader may fetch.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from urllib.parse import urlsplit

import attrs

from .downloader.router import how_to_serve
from .errors import InvalidSpecError
from .filenames import OUTPUT_NAME, PLAIN_NAME, extension, is_plain_name
from .policy.limits import MAX_INPUTS, MAX_OUTPUTS

__all__ = [
    "DEFAULT_INPUT_EXTENSIONS",
    "DEFAULT_OUTPUT_EXTENSIONS",
    "SpecLimits",
    "declared_outputs",
    "validate_spec",
]

_MEDIA = frozenset(
    [
        "mp4",
        "m4v",
        "mov",
        "mkv",
        "webm",
        "avi",
        "flv",
        "ts",
        "mpg",
        "mpeg",
        "ogv",
        "nut",
        "gif",
        "png",
        "jpg",
        "jpeg",
        "webp",
        "bmp",
        "tif",
        "tiff",
        "avif",
        "mp3",
        "m4a",
        "aac",
        "wav",
        "flac",
        "ogg",
        "oga",
        "opus",
        "ac3",
        "mka",
        "srt",
        "vtt",
        "ass",
    ]
)
#: What inputs may be called: media both ways, plus read-only kinds (fonts, camera formats).
DEFAULT_INPUT_EXTENSIONS = _MEDIA | frozenset(
    [
        "m2ts",
        "mts",
        "wmv",
        "3gp",
        "mxf",
        "y4m",
        "wma",
        "eac3",
        "aiff",
        "aif",
        "caf",
        "amr",
        "ssa",
        "ttf",
        "otf",
    ]
)
#: What outputs may be called: media both ways, plus streaming manifests.
DEFAULT_OUTPUT_EXTENSIONS = _MEDIA | frozenset({"m3u8", "mpd"})


@attrs.frozen
class SpecLimits:
    """Bounds and allow-lists for task specs.  Extend the extension sets with ``|``."""

    max_name_length: int = 128
    max_url_length: int = 4096
    max_inputs: int = MAX_INPUTS
    max_outputs: int = MAX_OUTPUTS
    max_commands: int = 8
    input_extensions: frozenset[str] = DEFAULT_INPUT_EXTENSIONS
    output_extensions: frozenset[str] = DEFAULT_OUTPUT_EXTENSIONS
    url_schemes: frozenset[str] = frozenset({"http", "https"})


def _check_name(
    name: object, *, field: str, pattern: re.Pattern[str], exts: frozenset[str], limits: SpecLimits
) -> str:
    if not isinstance(name, str):
        raise InvalidSpecError(
            f"{field}: file name must be a string, got {type(name).__name__}",
            field=field,
            code="invalid_name",
        )
    shown = name if len(name) <= 80 else name[:80] + "…"
    if not name:
        raise InvalidSpecError(f"{field}: file name is empty", field=field, code="invalid_name")
    if len(name) > limits.max_name_length:
        raise InvalidSpecError(
            f"{field}: file name {shown!r} is longer than {limits.max_name_length} characters",
            field=field,
            code="invalid_name",
        )
    if not is_plain_name(name, pattern):
        raise InvalidSpecError(
            f"{field}: file name {shown!r} is not a plain file name (allowed: letters, digits, "
            "'.', '_', '-'; no path separators, no '..', must not start with '-' or '.')",
            field=field,
            code="invalid_name",
        )
    ext = extension(name)
    if ext not in exts:
        raise InvalidSpecError(
            f"{field}: file name {shown!r} has extension {ext or '(none)'!r}, which is not allowed",
            field=field,
            code="extension_not_allowed",
        )
    return name


def _check_url(name: str, url: object, limits: SpecLimits) -> None:
    field = "input_files"
    if not isinstance(url, str) or not url:
        raise InvalidSpecError(
            f"input_files[{name!r}]: URL must be a non-empty string",
            field=field,
            code="invalid_url",
        )
    if len(url) > limits.max_url_length:
        raise InvalidSpecError(
            f"input_files[{name!r}]: URL is longer than {limits.max_url_length} characters",
            field=field,
            code="invalid_url",
        )
    if url.startswith("/"):  # a local path: the "file" scheme's downloader decides the rest
        if "file" not in limits.url_schemes:
            raise InvalidSpecError(
                f"input_files[{name!r}]: local paths are not allowed ({how_to_serve('file')})",
                field=field,
                code="url_not_allowed",
            )
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise InvalidSpecError(
                f"input_files[{name!r}]: path contains control characters",
                field=field,
                code="invalid_url",
            )
        return
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InvalidSpecError(
            f"input_files[{name!r}]: URL contains whitespace or control characters",
            field=field,
            code="invalid_url",
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidSpecError(
            f"input_files[{name!r}]: URL {url!r} is malformed ({exc})",
            field=field,
            code="invalid_url",
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in limits.url_schemes:
        allowed = ", ".join(sorted(limits.url_schemes))
        hint = f"; {how_to_serve(scheme)}" if scheme else "; give a URL or an absolute path"
        raise InvalidSpecError(
            f"input_files[{name!r}]: URL scheme {parts.scheme or '(none)'!r} is not "
            f"allowed (allowed: {allowed}{hint})",
            field=field,
            code="url_not_allowed",
        )
    if scheme == "file":
        return  # file:///path: the "file" downloader checks it
    if not parts.hostname:
        raise InvalidSpecError(
            f"input_files[{name!r}]: URL {url!r} has no host", field=field, code="invalid_url"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidSpecError(
            f"input_files[{name!r}]: URL must not contain credentials (user:pass@)",
            field=field,
            code="url_not_allowed",
        )
    if port == 0:
        raise InvalidSpecError(
            f"input_files[{name!r}]: URL {url!r} has port 0", field=field, code="invalid_url"
        )


def validate_spec(
    commands: Collection[str],
    input_files: Mapping[str, str],
    output_files: Collection[str],
    limits: SpecLimits,
) -> None:
    """Raise :class:`InvalidSpecError` naming the first bad part of the spec."""
    if not isinstance(input_files, Mapping):
        raise InvalidSpecError(
            "input_files must be a mapping of file name to URL", field="input_files"
        )
    if not commands:
        raise InvalidSpecError("command is empty", field="command", code="empty_command")
    if len(commands) > limits.max_commands:
        raise InvalidSpecError(
            f"too many chained commands ({len(commands)} > {limits.max_commands})",
            field="command",
            code="too_many_commands",
        )
    for command in commands:
        if not isinstance(command, str) or not command.strip():
            raise InvalidSpecError(
                "command must be a non-empty string", field="command", code="empty_command"
            )
    if len(input_files) > limits.max_inputs:
        raise InvalidSpecError(
            f"too many input files ({len(input_files)} > {limits.max_inputs})",
            field="input_files",
            code="too_many_inputs",
        )
    if not output_files:
        raise InvalidSpecError(
            "no output file declared", field="output_filename", code="invalid_name"
        )
    if len(output_files) > limits.max_outputs:
        raise InvalidSpecError(
            f"too many output files ({len(output_files)} > {limits.max_outputs})",
            field="output_files",
            code="too_many_outputs",
        )
    seen: dict[str, str] = {}
    for name, url in input_files.items():
        _check_name(
            name,
            field="input_files",
            pattern=PLAIN_NAME,
            exts=limits.input_extensions,
            limits=limits,
        )
        _check_url(name, url, limits)
        if name.lower() in seen:
            raise InvalidSpecError(
                f"input_files: {name!r} and {seen[name.lower()]!r} differ only in case",
                field="input_files",
                code="duplicate_name",
            )
        seen[name.lower()] = name
    out_field = "output_filename" if len(output_files) == 1 else "output_files"
    for name in output_files:
        _check_name(
            name,
            field=out_field,
            pattern=OUTPUT_NAME,
            exts=limits.output_extensions,
            limits=limits,
        )
        if name.lower() in seen:
            other = seen[name.lower()]
            what = "an input" if other in input_files else "another output"
            raise InvalidSpecError(
                f"{out_field}: {name!r} clashes with {what} ({other!r})",
                field=out_field,
                code="duplicate_name",
            )
        seen[name.lower()] = name


def declared_outputs(
    output_filename: str | None, output_files: Sequence[str] | None
) -> tuple[str, ...]:
    """The declared output names: ``output_files``, with ``output_filename`` first."""
    if output_files is not None and not isinstance(output_files, str):
        names = tuple(output_files)
        if output_filename is not None and output_filename not in names:
            names = (output_filename, *names)
        return names
    if output_filename is None:
        raise InvalidSpecError("output_filename is required", field="output_filename")
    return (output_filename,)
