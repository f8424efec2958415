"""The command line as ffmpeg reads it: option groups closed by ``-i X`` or an output name.

:class:`CommandLine` resolves option names against a policy's table, groups the tokens
the way ffmpeg's ``split_commandline`` does and renders the checked groups back into an
argv (with the library's flags); :func:`sidecars` and :func:`timing` read the groups.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

import attrs

from .command_plan import InputTiming, OutputTiming, Timing
from .limits import CommandLimits
from .options import ALIASES, FFMPEG_FLAGS, MIXED_ARITY, OptionSpec
from .refusals import reject
from .values import Checked, parse_duration
from .vocabulary import OUT_NAME_RE, PRINTF_RE, SPEC_RE, is_file_option, to_glob
from .written import SIDECAR_NAME_OPTIONS, parse_size

__all__ = ["CommandLine", "OptionGroup", "pattern_inputs", "sidecars", "timing"]

#: One option as given: (canonical name, stream specifier, value or None).
Option = tuple[str, str, str | None]


@attrs.frozen
class OptionGroup:
    """One option group of the command line: the options before ``-i X`` or an output."""

    kind: str  # "input" | "output"
    target: str
    options: tuple[Option, ...]

    def get(self, name: str) -> str | None:
        found = None
        for n, _, v in self.options:
            if n == name:
                found = v
        return found

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.options)


@attrs.frozen
class CommandLine:
    """Reads and writes command lines for one policy's option table and flags."""

    options: Mapping[str, OptionSpec]
    limits: CommandLimits
    input_formats: frozenset[str]
    trusted_mode: bool
    harden: bool

    def lookup(self, raw: str) -> tuple[OptionSpec, str, str | None]:
        """Resolve ``-raw`` to (spec, stream specifier, fixed value for -noX)."""
        name, _, spec = raw.partition(":")
        if name in ALIASES:
            base, implied = ALIASES[name]
            if spec and implied:
                raise reject(f"option -{raw} is not allowed", "option_not_allowed")
            name, spec = base, spec or implied
        found = self.options.get(name)
        fixed: str | None = None
        if found is None and name.startswith("no") and not spec:
            other = self.options.get(name[2:])
            if other is not None and other.kind == "flag":
                found, fixed = other, "0"
        if found is None or "@" in name:
            if (
                self.trusted_mode
                and re.fullmatch(r"[A-Za-z0-9_-]+", name)
                and not is_file_option(name)
                and name not in MIXED_ARITY
            ):
                if name in FFMPEG_FLAGS:
                    return OptionSpec(name, "flag", "file", True), spec, None
                if name.startswith("no") and name[2:] in FFMPEG_FLAGS:
                    return OptionSpec(name[2:], "flag", "file", True), spec, "0"
                if name.startswith("no") and name[2:] in MIXED_ARITY:
                    return OptionSpec(name, "flag", "file", True), spec, None
                return OptionSpec(name, "trusted", "file", True), spec, None
            raise reject(f"option -{raw} is not allowed", "option_not_allowed")
        if spec and not found.stream_spec:
            raise reject(f"option -{raw} does not take a stream specifier", "option_not_allowed")
        if spec and SPEC_RE.fullmatch(spec) is None:
            raise reject(f"option -{raw} has a bad stream specifier", "option_not_allowed")
        return found, spec, fixed

    def split(
        self, tokens: Sequence[str]
    ) -> tuple[list[tuple[str, str, str | None]], list[OptionGroup]]:
        """Group the argv the way ffmpeg's ``split_commandline`` does."""
        globals_: list[tuple[str, str, str | None]] = []
        files: list[OptionGroup] = []
        group: list[tuple[str, str, str | None]] = []
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            i += 1
            if tok == "--":
                raise reject("token '--' is not allowed", "option_not_allowed")
            if not tok.startswith("-") or tok == "-":
                files.append(OptionGroup("output", tok, tuple(group)))
                group = []
                continue
            raw = tok[1:]
            if raw.startswith("/"):
                raise reject(
                    f"option {tok} (value read from a file) is not allowed", "option_not_allowed"
                )
            if raw == "i":
                if i >= len(tokens):
                    raise reject("option -i needs a value", "missing_value")
                files.append(OptionGroup("input", tokens[i], tuple(group)))
                group = []
                i += 1
                continue
            spec, stream, fixed = self.lookup(raw)
            value: str | None
            if fixed is not None:
                value = fixed
            elif spec.takes_value:
                if i >= len(tokens):
                    raise reject(f"option {tok} needs a value", "missing_value")
                value = tokens[i]
                i += 1
            else:
                value = None
            entry = (spec.name, stream, value)
            if spec.scope == "global":
                globals_.append(entry)
            else:
                group.append(entry)
        if group:
            names = ", ".join("-" + n for n, _, _ in group)
            raise reject(f"trailing options {names} are not followed by a file", "trailing_options")
        return globals_, files

    def spec_for(self, name: str, where: str) -> OptionSpec:
        return (
            self.options.get(f"{name}@{where}")
            or self.options.get(name)
            or OptionSpec(name, "flag" if name in FFMPEG_FLAGS else "trusted", "file", True)
        )

    def build_args(
        self,
        globals_: list[tuple[str, str, str | None]],
        files: list[OptionGroup],
        ctx: Checked,
    ) -> list[str]:
        lim = self.limits
        args: list[str] = []
        if self.harden:
            args += ["-nostdin", "-y", "-hide_banner", "-max_alloc", str(lim.max_alloc)]
        seen_global = set()
        for name, stream, value in globals_:
            if self.harden and name in ("nostdin", "y", "hide_banner") and value is None:
                continue
            if (name, stream, value) in seen_global and value is None:
                continue
            if self.harden and name in ("loglevel", "v") and value is not None:
                readable = readable_loglevel(value)
                if readable != value:
                    ctx.notes.append(f"-{name} {value} is run as -{name} {readable}")
                    value = readable
            seen_global.add((name, stream, value))
            args += self.render(name, stream, value, "global")
        formats = ",".join(sorted(self.input_formats))
        for f in files:
            for name, stream, value in f.options:
                if name == "fs" and value is not None and self.harden:
                    value = str(min(parse_size(value), lim.max_file_size))
                args += self.render(name, stream, value, f.kind)
            if f.kind == "input":
                if self.harden:
                    if f.get("f") == "lavfi":
                        args += ["-format_whitelist", "lavfi"]
                    else:
                        args += ["-protocol_whitelist", "file", "-format_whitelist", formats]
                        if not f.has("max_pixels"):
                            args += ["-max_pixels", str(lim.max_pixels)]
                args += ["-i", f.target]
                continue
            if self.harden:
                added = []
                if not f.has("fs") and f.target != "-":
                    args += ["-fs", str(lim.max_file_size)]
                    added.append(f"-fs {lim.max_file_size}")
                if not f.has("t") and not f.has("to"):
                    args += ["-t", f"{lim.max_duration:g}"]
                    added.append(f"-t {lim.max_duration:g}")
                if not f.has("max_pixels") and f.target != "-":
                    args += ["-max_pixels", str(lim.max_pixels)]
                if added:
                    ctx.notes.append(f"output {f.target!r}: library caps {', '.join(added)}")
            args.append(f.target)
        return args

    def render(self, name: str, stream: str, value: str | None, where: str) -> list[str]:
        """``-name[:stream] [value]`` as ffmpeg parses it: a cleared flag is ``-noname``."""
        opt = f"-{name}:{stream}" if stream else f"-{name}"
        if value is None:
            return [opt]
        if value == "0" and self.spec_for(name, where).kind == "flag":
            return [f"-no{name}"]
        return [opt, value]


#: Levels that hide the stream dump ffmpeg prints at ``info``.
_BELOW_INFO = frozenset(["quiet", "panic", "fatal", "error", "warning", "-8", "0", "8", "16", "24"])


def readable_loglevel(value: str) -> str:
    """A ``-loglevel`` value at ``info`` or more and without flags (``level+`` prefixes
    every line): the library reads input durations (progress) and output streams
    (metadata without ffprobe) from the stream dump; ffmpeg's stderr stays host-side."""
    level = value.split("+")[-1]
    return "info" if level in _BELOW_INFO else level


def pattern_inputs(target: str, inputs: frozenset[str]) -> list[str]:
    if OUT_NAME_RE.fullmatch(target) is None or "%" not in target or ".." in target:
        return []
    m = PRINTF_RE.search(target)
    assert m is not None
    width = re.sub(r"\D", "", m.group(0)[1:-1])
    digits = rf"\d{{{int(width)},}}" if width else r"\d+"
    rx = re.compile(re.escape(target[: m.start()]) + digits + re.escape(target[m.end() :]))
    return sorted(n for n in inputs if rx.fullmatch(n))


def sidecars(out_files: list[OptionGroup], inputs: frozenset[str]) -> list[str]:
    globs: list[str] = []
    for f in out_files:
        if f.target == "-":
            continue
        globs += [to_glob(v) for n, _, v in f.options if n in SIDECAR_NAME_OPTIONS and v]
        fmt = f.get("f")
        stem, _, ext = f.target.rpartition(".")
        if "%" in f.target:
            globs.append(PRINTF_RE.sub("*", f.target))
        if fmt == "hls" or (fmt is None and ext.lower() == "m3u8"):
            seg_type = f.get("hls_segment_type") or "mpegts"
            seg_ext = "m4s" if seg_type == "fmp4" else "ts"
            flags = f.get("hls_flags") or ""
            seg = f.get("hls_segment_filename")
            if seg:
                globs.append(to_glob(seg))
            elif "single_file" in flags:
                globs.append(f"{stem}.{seg_ext}")
            else:
                globs.append(f"{stem}*.{seg_ext}")
            if seg_type == "fmp4":
                globs.append(f.get("hls_fmp4_init_filename") or "init.mp4")
        if fmt == "dash" or (fmt is None and ext.lower() == "mpd"):
            globs.append(to_glob(f.get("init_seg_name") or "init-stream$RepresentationID$.$ext$"))
            globs.append(
                to_glob(
                    f.get("media_seg_name") or "chunk-stream$RepresentationID$-$Number%05d$.$ext$"
                )
            )
            if f.get("single_file") == "1" and not f.get("single_file_name"):
                globs.append(f"{stem}-stream*")
            if f.get("hls_playlist") == "1":
                globs += ["master.m3u8", "media_*.m3u8"]

    for pattern in globs:
        clash = sorted(n for n in inputs if fnmatch.fnmatchcase(n, pattern))
        if clash:
            raise reject(
                f"output file pattern {pattern!r} would overwrite input {clash[0]!r}",
                "path_not_allowed",
            )
    return list(dict.fromkeys(globs))


def timing(in_files: list[OptionGroup], out_files: list[OptionGroup]) -> Timing:
    def secs(f: OptionGroup, name: str) -> float | None:
        v = f.get(name)
        return parse_duration(v) if v is not None else None

    ins = tuple(
        InputTiming(
            name=f.target,
            ss=secs(f, "ss"),
            t=secs(f, "t"),
            to=secs(f, "to"),
            sseof=secs(f, "sseof"),
            stream_loop=int(f.get("stream_loop") or 0),
        )
        for f in in_files
    )
    outs = []
    for f in out_files:
        frames = None
        for name, stream, value in f.options:
            if name == "frames" and stream in ("", "v") and value is not None:
                frames = int(value)
        outs.append(
            OutputTiming(
                name=f.target,
                ss=secs(f, "ss"),
                t=secs(f, "t"),
                to=secs(f, "to"),
                frames=frames,
                shortest=f.has("shortest") and f.get("shortest") is None,
            )
        )
    return Timing(ins, tuple(outs))
