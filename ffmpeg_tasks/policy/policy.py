"""``CommandPolicy``: the allow-list that turns a user's ffmpeg command into a safe ``CommandPlan``.

Parsing follows ffmpeg's own command line rules (global options anywhere, per-file
options closed by ``-i X`` or by an output name), every option and filter must be on
the allow-list, every path must be a declared name, and library flags are added so
ffmpeg itself refuses hostile media (playlists, concat lists) and runaway resources.
"""

# ruff: noqa: SIM905

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..error_codes import ErrorCode
from ..errors import CommandRejectedError, InvalidSpecError
from .filters import FilterRule, OptionKind, check_filtergraph, default_filter_rules
from .options import ALIASES, FFMPEG_FLAGS, MIXED_ARITY, OptionSpec, default_options
from .plan import CommandPlan, InputTiming, OutputTiming, Timing
from .tokens import substitute_placeholders, tokenize
from .written import DECLARED_NAME_OPTIONS, SIDECAR_NAME_OPTIONS, parse_size

__all__ = [
    "DEFAULT_BSFS",
    "DEFAULT_CODECS",
    "DEFAULT_INPUT_FORMATS",
    "DEFAULT_OUTPUT_FORMATS",
    "CommandPolicy",
    "Limits",
]

#: Demuxers of real media.  This is also the ``-format_whitelist`` given to every
#: input, so playlists (hls, dash), concat/ffconcat lists, image2 globs via other
#: demuxers, sdp/rtp, lavfi and avisynth/vapoursynth scripts are never opened.
DEFAULT_INPUT_FORMATS = frozenset(
    """mov matroska webm avi flv mpegts mpeg mpegvideo mp3 aac wav flac ogg asf mxf
    image2 png_pipe jpeg_pipe webp_pipe bmp_pipe tiff_pipe gif apng srt ass webvtt
    y4m yuv4mpegpipe nut ac3 eac3 amr aiff caf h264 hevc m4v w64 mjpeg dv""".split()
)
DEFAULT_OUTPUT_FORMATS = frozenset(
    """mp4 mov ipod matroska webm mpegts hls dash image2 gif apng webp mp3 adts wav flac
    ogg opus oga null srt webvtt ass avi flv nut mpeg yuv4mpegpipe ac3 mjpeg segment""".split()
)
DEFAULT_CODECS = frozenset(
    """copy libx264 libx264rgb libx265 libvpx libvpx-vp9 libaom-av1 libsvtav1 libdav1d
    aac libfdk_aac libmp3lame libopus opus libvorbis vorbis flac alac pcm_s16le pcm_s24le
    pcm_f32le pcm_u8 mjpeg png gif apng libwebp libwebp_anim mpeg4 mpeg2video mpeg1video
    h264 hevc vp8 vp9 av1 mp3 prores prores_ks dnxhd ac3 eac3 srt subrip mov_text webvtt
    ass ssa rawvideo wrapped_avframe""".split()
)
DEFAULT_BSFS = frozenset(
    """h264_mp4toannexb hevc_mp4toannexb aac_adtstoasc extract_extradata remove_extra
    vp9_superframe null h264_metadata hevc_metadata dump_extra""".split()
)
_LOGLEVELS = frozenset(
    "quiet panic fatal error warning info verbose debug trace -8 0 8 16 24 32 40 48 56".split()
)
_NAMED_SIZES = {
    "sqcif": (128, 96),
    "qcif": (176, 144),
    "cif": (352, 288),
    "4cif": (704, 576),
    "qvga": (320, 240),
    "vga": (640, 480),
    "svga": (800, 600),
    "xga": (1024, 768),
    "hd480": (852, 480),
    "hd720": (1280, 720),
    "hd1080": (1920, 1080),
    "2k": (2048, 1080),
    "uhd2160": (3840, 2160),
    "4k": (4096, 2160),
    "ntsc": (720, 480),
    "pal": (720, 576),
}
_NAMED_RATES = {
    "ntsc": 30000 / 1001,
    "pal": 25.0,
    "film": 24.0,
    "ntsc-film": 24000 / 1001,
    "qntsc": 30000 / 1001,
    "qpal": 25.0,
    "sntsc": 30000 / 1001,
    "spal": 25.0,
}
_MOVFLAGS = frozenset(
    """faststart frag_keyframe empty_moov separate_moof default_base_moof dash
    omit_tfhd_offset disable_chpl cmaf frag_discont delay_moov global_sidx
    skip_sidx skip_trailer negative_cts_offsets isml write_colr write_gama
    use_metadata_tags frag_every_frame""".split()
)
_HLSFLAGS = frozenset(
    """single_file delete_segments round_durations discont_start omit_endlist
    split_by_time append_list program_date_time independent_segments iframes_only
    periodic_rekey temp_file""".split()
)
_CODECFLAGS = frozenset("global_header cgop low_delay qscale bitexact loop psnr".split())
_FFLAGS_IN = frozenset("genpts igndts discardcorrupt fastseek nofillin noparse sortdts".split())
_FFLAGS_OUT = frozenset("bitexact flush_packets shortest autobsf".split())
_DISPOSITIONS = frozenset(
    """default dub original comment lyrics karaoke forced hearing_impaired visual_impaired
    clean_effects attached_pic captions descriptions dependent metadata""".split()
)
_X264_KEYS = frozenset(
    """keyint min-keyint scenecut no-scenecut bframes b-adapt b-pyramid ref rc-lookahead
    aq-mode aq-strength deblock no-deblock me subme merange trellis psy-rd no-psy
    mbtree no-mbtree vbv-maxrate vbv-bufsize crf qp nal-hrd force-cfr open-gop
    colorprim transfer colormatrix range level profile threads weightp weightb 8x8dct
    no-8x8dct cabac no-cabac slices partitions direct bitrate ipratio pbratio
    chroma-qp-offset fast-pskip no-fast-pskip dct-decimate no-dct-decimate sliced-threads
    lookahead-threads sync-lookahead intra-refresh bluray-compat fullrange
    keyint_min qcomp cplxblur mixed-refs no-mixed-refs""".split()
)
_X265_KEYS = frozenset(
    """keyint min-keyint scenecut no-scenecut bframes b-adapt ref rc-lookahead aq-mode
    aq-strength crf qp vbv-maxrate vbv-bufsize log-level pools frame-threads open-gop
    no-open-gop repeat-headers hdr-opt hdr10-opt hdr10 colorprim transfer colormatrix
    range master-display max-cll level-idc high-tier no-high-tier profile bitrate
    psy-rd psy-rdoq no-sao sao strong-intra-smoothing no-strong-intra-smoothing
    deblock ctu min-cu-size me subme merange weightp weightb limit-sao rect amp
    no-rect no-amp tu-intra-depth tu-inter-depth rd info no-info chromaloc sar
    annexb no-annexb aud no-aud hrd""".split()
)
_KV_KEYS = frozenset(
    """preset tune crf qp keyint lp tile-columns tile-rows enable-overlays scd
    film-grain fast-decode rc tbr mbr aq-mode enable-tpl-la lookahead irefresh-type
    cpu-used row-mt threads lag-in-frames enable-cdef tiles""".split()
)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_OUT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:%0?[1-9]?d[A-Za-z0-9._-]*)?")
#: Output templates for muxer options: one printf number and DASH ``$...$`` identifiers.
_TEMPLATE_RE = re.compile(
    r"(?:[A-Za-z0-9._-]|%0?[1-9]?d|\$(?:RepresentationID|Number(?:%0?[1-9]?d)?|Bandwidth"
    r"|Time(?:%0?[1-9]?d)?|ext)\$)+"
)
_PRINTF_RE = re.compile(r"%0?[1-9]?d")
_DURATION_RE = re.compile(
    r"(-)?(?:(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)|(\d+(?:\.\d*)?|\.\d+)(s|ms|us)?)"
)
_SPEC_RE = re.compile(r"[A-Za-z0-9_.#:-]+")
_MAP_RE = re.compile(r"-?(\d+)(?::[A-Za-z0-9_.#:-]*)?\??|\[[A-Za-z0-9_.:-]+\]")
_EXPR_TOKEN_RE = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|([-+*/(),]))")
_EXPR_NAMES = frozenset(
    """iw ih in_w in_h ow oh out_w out_h a sar dar hsub vsub ohsub ovsub x y n t pos
    min max trunc round floor ceil if gt lt gte lte eq abs main_w main_h overlay_w
    overlay_h W H w h text_w text_h tw th line_h lh""".split()
)
_DRAWTEXT_FUNCS = frozenset("pts n frame_num e expr eif ef gmtime localtime metadata hms".split())


def _shown(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _reject(message: str, code: ErrorCode) -> CommandRejectedError:
    return CommandRejectedError(message, code=code)


def parse_duration(value: str) -> float | None:
    """Seconds for an ffmpeg time duration (``90``, ``1:30``, ``00:01:30.5``, ``500ms``)."""
    m = _DURATION_RE.fullmatch(value.strip())
    if m is None:
        return None
    sign = -1.0 if m.group(1) else 1.0
    if m.group(3) is not None:
        hours = int(m.group(2) or 0)
        return sign * (hours * 3600 + int(m.group(3)) * 60 + float(m.group(4)))
    unit = {"s": 1.0, "ms": 1e-3, "us": 1e-6, None: 1.0}[m.group(6)]
    return sign * float(m.group(5)) * unit


_BINOPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def _const_eval(text: str) -> float | None:
    """Value of a purely numeric expression (``640``, ``2*100+1``), else ``None``."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


@attrs.frozen
class Limits:
    """Numeric caps enforced on commands and added as ffmpeg flags."""

    max_threads: int = 16
    max_dimension: int = 8192
    max_pixels: int = 7680 * 4320
    max_duration: float = 6 * 3600.0
    max_stream_loop: int = 100
    max_loop: int = 1000
    max_loop_size: int = 10_000
    max_frame_rate: float = 240.0
    max_inputs: int = 32
    max_outputs: int = 16
    max_filters: int = 100
    max_graph_length: int = 8 * 1024
    max_file_size: int = 16 * 1024**3
    max_alloc: int = 1024**3
    max_text_length: int = 1024


@attrs.frozen
class _File:
    """One option group of the command line: the options before ``-i X`` or an output."""

    kind: str  # "input" | "output"
    target: str
    options: tuple[tuple[str, str, str | None], ...]  # (canonical name, spec, value)

    def get(self, name: str) -> str | None:
        found = None
        for n, _, v in self.options:
            if n == name:
                found = v
        return found

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.options)


@attrs.frozen
class _Ctx:
    inputs: frozenset[str]
    outputs: frozenset[str]
    n_inputs: int = 0
    used_inputs: set[str] = attrs.field(factory=set)
    written: list[str] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)


@attrs.frozen
class CommandPolicy:
    """An allow-list of ffmpeg options, formats, codecs and filters, with numeric caps.

    ``CommandPolicy()`` is the strict default for commands written by end users;
    :meth:`trusted` only checks structure and declared files.  ``harden`` adds the
    library flags (``-protocol_whitelist file``, ``-format_whitelist``, ``-max_alloc``,
    ``-fs``, ``-t`` caps) to every plan.
    """

    limits: Limits = Limits()
    options: Mapping[str, OptionSpec] = attrs.field(factory=default_options)
    filters: Mapping[str, FilterRule] = attrs.field(factory=default_filter_rules)
    input_formats: frozenset[str] = DEFAULT_INPUT_FORMATS
    output_formats: frozenset[str] = DEFAULT_OUTPUT_FORMATS
    codecs: frozenset[str] = DEFAULT_CODECS
    bsfs: frozenset[str] = DEFAULT_BSFS
    allow_lavfi: bool = True
    trusted_mode: bool = False
    harden: bool = True

    @classmethod
    def trusted(cls, *, harden: bool = True, limits: Limits | None = None) -> CommandPolicy:
        """A policy for apps that write their own commands.

        Any option, filter, codec and format is accepted, but the command must still
        parse, read only declared inputs and write only declared outputs; options
        known to touch files (``-filter_script``, ``-passlogfile`` …) keep their checks.
        """
        return cls(limits=limits or Limits(), trusted_mode=True, harden=harden)

    def extend(
        self,
        *,
        options: Iterable[OptionSpec] = (),
        filters: Iterable[FilterRule] = (),
        codecs: Iterable[str] = (),
        input_formats: Iterable[str] = (),
        output_formats: Iterable[str] = (),
        bsfs: Iterable[str] = (),
        limits: Limits | None = None,
    ) -> CommandPolicy:
        """A copy with more allowed options, filters, codecs, formats (or other limits)."""
        table = dict(self.options)
        table.update({o.name: o for o in options})
        rules = dict(self.filters)
        rules.update({r.name: r for r in filters})
        return attrs.evolve(
            self,
            options=table,
            filters=rules,
            codecs=self.codecs | frozenset(codecs),
            input_formats=self.input_formats | frozenset(input_formats),
            output_formats=self.output_formats | frozenset(output_formats),
            bsfs=self.bsfs | frozenset(bsfs),
            limits=limits or self.limits,
        )

    # -- planning -------------------------------------------------------------

    def plan(
        self,
        command: str | Sequence[str],
        *,
        inputs: Collection[str],
        outputs: Collection[str],
        partial: bool = False,
    ) -> CommandPlan:
        """Check ``command`` against the policy and return the argv to run.

        ``inputs``/``outputs`` are the declared file names.  ``partial=True`` is for
        one step of a chain: declared names need not all be used by this command.
        Raises :class:`CommandRejectedError` naming the first offending token.
        """
        ins = self._declared(inputs, "input_files", _NAME_RE)
        outs = self._declared(outputs, "output_files", _OUT_NAME_RE)
        declared = ins | outs
        tokens = []
        for raw in tokenize(command):
            token, _ = substitute_placeholders(raw, declared)
            tokens.append(token)
        globals_, files = self._split(tokens)
        ctx = _Ctx(ins, outs)
        in_files = [f for f in files if f.kind == "input"]
        out_files = [f for f in files if f.kind == "output"]
        ctx = attrs.evolve(ctx, n_inputs=len(in_files))
        if len(in_files) > self.limits.max_inputs:
            raise _reject(
                f"command has {len(in_files)} inputs (limit {self.limits.max_inputs})",
                "too_many_inputs",
            )
        if len(out_files) > self.limits.max_outputs:
            raise _reject(
                f"command has {len(out_files)} outputs (limit {self.limits.max_outputs})",
                "too_many_outputs",
            )
        if not out_files:
            raise _reject("command names no output file", "no_output")
        for name, spec, value in globals_:
            self._check_option(name, spec, value, "global", ctx)
        for f in files:
            self._check_file(f, ctx)
        if not partial:
            unused = sorted(ins - ctx.used_inputs)
            if unused:
                raise _reject(
                    f"declared input {unused[0]!r} is not used by the command", "unused_input"
                )
            missing = sorted(outs - set(ctx.written))
            if missing:
                raise _reject(
                    f"declared output {missing[0]!r} is not written by the command",
                    "missing_output",
                )
        args = self._build_args(globals_, files, ctx)
        sidecars = self._sidecars(out_files, ins)
        timing = self._timing(in_files, out_files)
        order = [f.target for f in in_files if f.target in ins]
        patterns = [f.target for f in in_files if f.target not in ins and "%" in f.target]
        input_names = tuple(
            dict.fromkeys(order + sorted(n for n in ctx.used_inputs if n not in order and patterns))
        )
        return CommandPlan(
            args=tuple(args),
            inputs=input_names,
            outputs=tuple(dict.fromkeys(ctx.written)),
            sidecars=tuple(sidecars),
            timing=timing,
            notes=tuple(ctx.notes),
        )

    # -- helpers --------------------------------------------------------------

    @staticmethod
    def _declared(names: Collection[str], field: str, pattern: re.Pattern[str]) -> frozenset[str]:
        if isinstance(names, str):
            names = [names]
        for name in names:
            if not isinstance(name, str) or pattern.fullmatch(name) is None or ".." in name:
                raise InvalidSpecError(
                    f"{field}: {name!r} is not a plain file name", field=field, code="invalid_name"
                )
        return frozenset(names)

    def _lookup(self, raw: str) -> tuple[OptionSpec, str, str | None]:
        """Resolve ``-raw`` to (spec, stream specifier, fixed value for -noX)."""
        name, _, spec = raw.partition(":")
        if name in ALIASES:
            base, implied = ALIASES[name]
            if spec and implied:
                raise _reject(f"option -{raw} is not allowed", "option_not_allowed")
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
                and not _is_file_option(name)
                and name not in MIXED_ARITY
            ):
                if name in FFMPEG_FLAGS:
                    return OptionSpec(name, "flag", "file", True), spec, None
                if name.startswith("no") and name[2:] in FFMPEG_FLAGS:
                    return OptionSpec(name[2:], "flag", "file", True), spec, "0"
                if name.startswith("no") and name[2:] in MIXED_ARITY:
                    return OptionSpec(name, "flag", "file", True), spec, None
                return OptionSpec(name, "trusted", "file", True), spec, None
            raise _reject(f"option -{raw} is not allowed", "option_not_allowed")
        if spec and not found.stream_spec:
            raise _reject(f"option -{raw} does not take a stream specifier", "option_not_allowed")
        if spec and _SPEC_RE.fullmatch(spec) is None:
            raise _reject(f"option -{raw} has a bad stream specifier", "option_not_allowed")
        return found, spec, fixed

    def _split(
        self, tokens: Sequence[str]
    ) -> tuple[list[tuple[str, str, str | None]], list[_File]]:
        """Group the argv the way ffmpeg's ``split_commandline`` does."""
        globals_: list[tuple[str, str, str | None]] = []
        files: list[_File] = []
        group: list[tuple[str, str, str | None]] = []
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            i += 1
            if tok == "--":
                raise _reject("token '--' is not allowed", "option_not_allowed")
            if not tok.startswith("-") or tok == "-":
                files.append(_File("output", tok, tuple(group)))
                group = []
                continue
            raw = tok[1:]
            if raw.startswith("/"):
                raise _reject(
                    f"option {tok} (value read from a file) is not allowed", "option_not_allowed"
                )
            if raw == "i":
                if i >= len(tokens):
                    raise _reject("option -i needs a value", "missing_value")
                files.append(_File("input", tokens[i], tuple(group)))
                group = []
                i += 1
                continue
            spec, stream, fixed = self._lookup(raw)
            value: str | None
            if fixed is not None:
                value = fixed
            elif spec.takes_value:
                if i >= len(tokens):
                    raise _reject(f"option {tok} needs a value", "missing_value")
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
            raise _reject(
                f"trailing options {names} are not followed by a file", "trailing_options"
            )
        return globals_, files

    def _spec_for(self, name: str, where: str) -> OptionSpec:
        return (
            self.options.get(f"{name}@{where}")
            or self.options.get(name)
            or OptionSpec(name, "flag" if name in FFMPEG_FLAGS else "trusted", "file", True)
        )

    def _check_option(
        self, name: str, stream: str, value: str | None, where: str, ctx: _Ctx
    ) -> None:
        spec = self._spec_for(name, where)
        if where != "global" and spec.scope not in ("file", where):
            raise _reject(f"option -{name} cannot be used on an {where}", "option_not_allowed")
        if value is None:
            return
        self._check_value(f"-{name}", spec.kind, value, ctx)

    def _check_value(self, option: str, kind: str, value: str, ctx: _Ctx) -> None:
        lim = self.limits
        head, _, rest = kind.partition(":")

        def bad(why: str = "") -> CommandRejectedError:
            return _reject(
                f"option {option}: value {_shown(value)} is not allowed{': ' + why if why else ''}",
                "bad_option_value",
            )

        if len(value) > lim.max_text_length and head != "graph":
            raise bad("too long")
        if head == "trusted":
            if _looks_like_path(value) and value not in ctx.inputs | ctx.outputs:
                raise bad("looks like a path or URL")
            return
        if head == "flag":
            return
        if head == "text":
            return
        if head == "text12":
            if not re.fullmatch(r"[A-Za-z0-9._+-]{1,12}", value):
                raise bad()
            return
        if head == "int":
            lo, hi = (int(x) for x in rest.split(":"))
            if not re.fullmatch(r"-?\d+", value) or not lo <= int(value) <= hi:
                raise bad(f"must be an integer from {lo} to {hi}")
            return
        if head == "float":
            lo_f, hi_f = (float(x) for x in rest.split(":"))
            try:
                number = float(value)
            except ValueError:
                raise bad("must be a number") from None
            if not lo_f <= number <= hi_f:
                raise bad(f"must be from {lo_f:g} to {hi_f:g}")
            return
        if head == "enum":
            if value not in rest.split("|"):
                raise bad(f"allowed: {rest.replace('|', ', ')}")
            return
        if head == "loglevel":
            level = value.split("+")[-1]
            if level not in _LOGLEVELS:
                raise bad()
            return
        if head == "duration":
            seconds = parse_duration(value)
            if seconds is None:
                raise bad("not a duration")
            if option in ("-t", "-to") and not 0 <= seconds <= lim.max_duration:
                raise _reject(
                    f"option {option}: duration {value} exceeds the limit of "
                    f"{lim.max_duration:g} seconds",
                    "limit_exceeded",
                )
            if abs(seconds) > 10 * lim.max_duration + 86400:
                raise bad("out of range")
            return
        if head == "threads":
            if not value.isdigit() or int(value) > lim.max_threads:
                raise _reject(
                    f"option {option}: {value} threads exceeds the limit of {lim.max_threads}",
                    "limit_exceeded",
                )
            return
        if head == "stream_loop":
            if not re.fullmatch(r"-?\d+", value) or not 0 <= int(value) <= lim.max_stream_loop:
                raise _reject(
                    f"option {option}: loop count {value} is not allowed (0 to "
                    f"{lim.max_stream_loop}; -1 = forever is refused)",
                    "limit_exceeded",
                )
            return
        if head == "max_pixels":
            if not value.isdigit() or int(value) > lim.max_pixels:
                raise _reject(
                    f"option {option}: {value} exceeds {lim.max_pixels} pixels", "limit_exceeded"
                )
            return
        if head == "size":
            self._check_size(option, value)
            return
        if head == "rate":
            self._check_rate(option, value)
            return
        if head == "bitrate":
            if not re.fullmatch(r"\d+(\.\d+)?[kKMG]?", value):
                raise bad("not a bit rate")
            return
        if head == "filesize":
            if not re.fullmatch(r"\d+[kKMG]?", value):
                raise bad("not a size")
            return
        if head == "codec":
            if value not in self.codecs and not self.trusted_mode:
                raise _reject(
                    f"option {option}: codec {value!r} is not allowed", "codec_not_allowed"
                )
            if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
                raise bad()
            return
        if head == "format":
            # direction is checked per file; here only the shape
            if not re.fullmatch(r"[A-Za-z0-9_]+", value):
                raise bad()
            return
        if head in ("pix_fmt", "sample_fmt", "channel_layout", "tag"):
            if not re.fullmatch(r"[A-Za-z0-9_.+()-]{1,32}", value):
                raise bad()
            return
        if head == "profile":
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,24}", value):
                raise bad()
            return
        if head == "graph":
            check_filtergraph(
                value,
                self.filters if not self.trusted_mode else _TrustedRules(self.filters),
                lambda f, o, k, v: self._check_filter_value(f, o, k, v, ctx),
                max_filters=lim.max_filters,
                max_length=lim.max_graph_length,
                what=f"option {option}",
            )
            return
        if head == "map":
            m = _MAP_RE.fullmatch(value)
            if m is None:
                raise bad("expected INPUT[:STREAM] or [label]")
            if m.group(1) is not None and int(m.group(1)) >= ctx.n_inputs:
                raise bad(f"there is no input #{m.group(1)}")
            return
        if head == "map_metadata":
            if not re.fullmatch(r"-1|\d+(:[gscp](:[A-Za-z0-9_.:-]*)?)?", value):
                raise bad()
            return
        if head == "metadata":
            key, eq, _ = value.partition("=")
            if not eq or not re.fullmatch(r"[A-Za-z0-9_ .-]{1,64}", key):
                raise bad("expected key=value")
            return
        if head == "disposition":
            parts = [p for p in re.split(r"[+-]", value) if p]
            if value != "0" and (not parts or any(p not in _DISPOSITIONS for p in parts)):
                raise bad()
            return
        if head in ("movflags", "hlsflags", "codecflags", "fflags_in", "fflags_out"):
            allowed = {
                "movflags": _MOVFLAGS,
                "hlsflags": _HLSFLAGS,
                "codecflags": _CODECFLAGS,
                "fflags_in": _FFLAGS_IN,
                "fflags_out": _FFLAGS_OUT,
            }[head]
            parts = [p for p in re.split(r"[+-]", value) if p]
            unknown = [p for p in parts if p not in allowed]
            if not parts or unknown:
                raise bad(f"flag {unknown[0] if unknown else value!r} is not allowed")
            return
        if head in ("x264params", "x265params", "kvparams"):
            keys = {"x264params": _X264_KEYS, "x265params": _X265_KEYS, "kvparams": _KV_KEYS}[head]
            for item in value.split(":"):
                key, _, val = item.partition("=")
                if key not in keys:
                    raise _reject(
                        f"option {option}: parameter {key!r} is not allowed", "bad_option_value"
                    )
                if not re.fullmatch(r"[A-Za-z0-9.,+/_-]*", val) or ".." in val:
                    raise bad(f"bad value for {key}")
                if key in ("threads", "pools", "frame-threads", "lookahead-threads") and (
                    val.isdigit() and int(val) > lim.max_threads
                ):
                    raise _reject(
                        f"option {option}: {key}={val} exceeds the thread limit", "limit_exceeded"
                    )
            return
        if head == "bsf":
            for item in value.split(","):
                name = item.split("=", 1)[0]
                if name not in self.bsfs and not self.trusted_mode:
                    raise _reject(
                        f"option {option}: bitstream filter {name!r} is not allowed",
                        "bad_option_value",
                    )
                if _looks_like_path(item.partition("=")[2]):
                    raise bad()
            return
        if head == "plainname":
            if _NAME_RE.fullmatch(value) is None or ".." in value:
                raise _reject(
                    f"option {option}: {value!r} must be a plain file name in the work dir",
                    "path_not_allowed",
                )
            return
        if head == "outname":
            if _TEMPLATE_RE.fullmatch(value) is None or ".." in value or value[0] in "-.":
                raise _reject(
                    f"option {option}: {value!r} must be a plain file name (pattern) "
                    "in the work dir",
                    "path_not_allowed",
                )
            return
        if head == "urltext":
            # Written into a manifest, whose entries the output check requires to be plain
            # names of this task's files: any prefix (host path, other host, or a relative
            # one the stored layout does not have) would only fail the task after the run.
            raise bad("a playlist names its segments, stored beside it, by plain name")
        if head == "adaptation_sets":
            if not re.fullmatch(r"[A-Za-z0-9=,: ]+", value):
                raise bad()
            return
        if head == "aspect":
            if not re.fullmatch(r"\d+(\.\d+)?([:/]\d+(\.\d+)?)?", value):
                raise bad()
            return
        if head == "timecode":
            if not re.fullmatch(r"\d{2}:\d{2}:\d{2}[:;.]\d{2}", value):
                raise bad()
            return
        if head == "tiles":
            if not re.fullmatch(r"\d{1,2}x\d{1,2}", value):
                raise bad()
            return
        raise bad(f"unknown value kind {kind!r}")

    def _check_size(self, what: str, value: str) -> None:
        lim = self.limits
        if value in _NAMED_SIZES:
            w, h = _NAMED_SIZES[value]
        else:
            m = re.fullmatch(r"(\d{1,9})x(\d{1,9})", value)
            if m is None:
                raise _reject(f"{what}: {value!r} is not a frame size (WxH)", "bad_option_value")
            w, h = int(m.group(1)), int(m.group(2))
        if w > lim.max_dimension or h > lim.max_dimension or w * h > lim.max_pixels:
            raise _reject(
                f"{what}: frame size {value} exceeds the limit of "
                f"{lim.max_dimension}x{lim.max_dimension} / {lim.max_pixels} pixels",
                "limit_exceeded",
            )

    def _check_rate(self, what: str, value: str) -> None:
        if value in _NAMED_RATES:
            return
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(?:/(\d+(?:\.\d+)?))?", value)
        if m is None:
            raise _reject(f"{what}: {value!r} is not a frame rate", "bad_option_value")
        rate = float(m.group(1)) / float(m.group(2) or 1) if float(m.group(2) or 1) else 0.0
        if rate > self.limits.max_frame_rate:
            raise _reject(
                f"{what}: frame rate {value} exceeds the limit of {self.limits.max_frame_rate:g}",
                "limit_exceeded",
            )

    def _check_filter_value(
        self, filt: str, option: str, kind: OptionKind, value: str, ctx: _Ctx
    ) -> None:
        lim = self.limits
        what = f"filter {filt!r} option {option!r}"
        if len(value) > lim.max_text_length:
            raise _reject(f"{what}: value is too long", "bad_option_value")
        if kind == "input":
            if value not in ctx.inputs:
                raise _reject(f"{what}: {value!r} is not a declared input file", "path_not_allowed")
            ctx.used_inputs.add(value)
            return
        if kind in ("width", "height"):
            self._check_dimension(what, value)
            return
        if kind == "size":
            self._check_size(what, value)
            return
        if kind == "rate":
            self._check_rate(what, value)
            return
        if kind == "loop":
            if not re.fullmatch(r"-?\d+", value) or not 0 <= int(value) <= lim.max_loop:
                raise _reject(
                    f"{what}: loop count {value} is not allowed (0 to {lim.max_loop}; "
                    "-1 = forever is refused)",
                    "limit_exceeded",
                )
            return
        if kind == "loop_size":
            if not re.fullmatch(r"\d+", value) or int(value) > lim.max_loop_size:
                raise _reject(
                    f"{what}: {value} exceeds {lim.max_loop_size} frames", "limit_exceeded"
                )
            return
        if kind == "expansion":
            if value not in ("none", "normal", "0", "1"):
                raise _reject(
                    f"{what}: expansion {value!r} is not allowed (none, normal)", "bad_option_value"
                )
            return
        if kind == "text":
            for m in re.finditer(r"%\{\s*([A-Za-z_]*)", value):
                if m.group(1) not in _DRAWTEXT_FUNCS:
                    raise _reject(
                        f"{what}: text expansion %{{{m.group(1)}}} is not allowed",
                        "bad_option_value",
                    )
            return
        if kind == "trusted" and _looks_like_path(value) and value not in ctx.inputs:
            raise _reject(f"{what}: {value!r} looks like a path or URL", "path_not_allowed")

    def _check_dimension(self, what: str, value: str) -> None:
        lim = self.limits
        number = _const_eval(value)
        if number is not None:
            if number > lim.max_dimension:
                raise _reject(
                    f"{what}: {value} exceeds the limit of {lim.max_dimension} pixels",
                    "limit_exceeded",
                )
            return
        pos = 0
        text = value.strip()
        while pos < len(text):
            m = _EXPR_TOKEN_RE.match(text, pos)
            if m is None or m.end() == pos:
                raise _reject(f"{what}: expression {value!r} is not allowed", "bad_option_value")
            if m.group(2) and m.group(2) not in _EXPR_NAMES:
                raise _reject(
                    f"{what}: name {m.group(2)!r} is not allowed in {value!r}", "bad_option_value"
                )
            if m.group(1) and float(m.group(1)) > lim.max_dimension:
                raise _reject(
                    f"{what}: {m.group(1)} exceeds the limit of {lim.max_dimension}",
                    "limit_exceeded",
                )
            pos = m.end()

    def _check_file(self, f: _File, ctx: _Ctx) -> None:
        fmt = f.get("f")
        for name, stream, value in f.options:
            self._check_option(name, stream, value, f.kind, ctx)
        if f.kind == "input":
            if fmt == "lavfi":
                if not self.allow_lavfi:
                    raise _reject("input format 'lavfi' is not allowed", "format_not_allowed")
                graph = check_filtergraph(
                    f.target,
                    self.filters if not self.trusted_mode else _TrustedRules(self.filters),
                    lambda fi, o, k, v: self._check_filter_value(fi, o, k, v, ctx),
                    max_filters=self.limits.max_filters,
                    max_length=self.limits.max_graph_length,
                    what="-f lavfi input",
                )
                first = graph.chains[0][0].name if graph.chains else ""
                if first not in _SOURCES:
                    raise _reject(
                        f"-f lavfi input must start with a source filter, not {first!r}",
                        "filter_not_allowed",
                    )
                ctx.notes.append(f"input lavfi graph {_shown(f.target)}: generated, reads no file")
                return
            if fmt is not None and fmt not in self.input_formats:
                raise _reject(f"input format {fmt!r} is not allowed", "format_not_allowed")
            if f.target in ctx.inputs:
                ctx.used_inputs.add(f.target)
                ctx.notes.append(
                    f"input {f.target!r}: declared, read with -protocol_whitelist file"
                )
                return
            matched = self._pattern_inputs(f.target, ctx.inputs)
            if matched and fmt in (None, "image2"):
                ctx.used_inputs.update(matched)
                ctx.notes.append(
                    f"input pattern {f.target!r}: image sequence of {len(matched)} declared files"
                )
                return
            raise _reject(
                f"input {_shown(f.target)} is not a declared input file", "path_not_allowed"
            )
        # output
        if f.target == "-":
            if fmt != "null":
                raise _reject(
                    "output '-' (stdout) is only allowed with -f null", "path_not_allowed"
                )
            ctx.notes.append("output '-' with -f null: discarded (analysis / first pass)")
            return
        if fmt == "null":
            raise _reject("-f null must write to '-'", "format_not_allowed")
        if fmt is not None and fmt not in self.output_formats:
            raise _reject(f"output format {fmt!r} is not allowed", "format_not_allowed")
        if fmt == "segment" and "%" not in f.target:
            raise _reject(
                "-f segment needs a numbered output name (like out_%03d.mp4)", "format_not_allowed"
            )
        if f.target not in ctx.outputs:
            raise _reject(
                f"output {_shown(f.target)} is not a declared output file", "path_not_allowed"
            )
        ctx.written.append(f.target)
        for name, _, value in f.options:
            if name in DECLARED_NAME_OPTIONS and value is not None:
                if value not in ctx.outputs:
                    raise _reject(
                        f"option -{name}: {value!r} is not a declared output file",
                        "path_not_allowed",
                    )
                ctx.written.append(value)
        ctx.notes.append(f"output {f.target!r}: declared")

    @staticmethod
    def _pattern_inputs(target: str, inputs: frozenset[str]) -> list[str]:
        if _OUT_NAME_RE.fullmatch(target) is None or "%" not in target or ".." in target:
            return []
        m = _PRINTF_RE.search(target)
        assert m is not None
        width = re.sub(r"\D", "", m.group(0)[1:-1])
        digits = rf"\d{{{int(width)},}}" if width else r"\d+"
        rx = re.compile(re.escape(target[: m.start()]) + digits + re.escape(target[m.end() :]))
        return sorted(n for n in inputs if rx.fullmatch(n))

    def _build_args(
        self,
        globals_: list[tuple[str, str, str | None]],
        files: list[_File],
        ctx: _Ctx,
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
            seen_global.add((name, stream, value))
            args += self._render(name, stream, value, "global")
        formats = ",".join(sorted(self.input_formats))
        for f in files:
            for name, stream, value in f.options:
                if name == "fs" and value is not None and self.harden:
                    value = str(min(parse_size(value), lim.max_file_size))
                args += self._render(name, stream, value, f.kind)
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

    def _render(self, name: str, stream: str, value: str | None, where: str) -> list[str]:
        """``-name[:stream] [value]`` as ffmpeg parses it: a cleared flag is ``-noname``."""
        opt = f"-{name}:{stream}" if stream else f"-{name}"
        if value is None:
            return [opt]
        if value == "0" and self._spec_for(name, where).kind == "flag":
            return [f"-no{name}"]
        return [opt, value]

    def _sidecars(self, out_files: list[_File], inputs: frozenset[str]) -> list[str]:
        globs: list[str] = []
        for f in out_files:
            if f.target == "-":
                continue
            globs += [_to_glob(v) for n, _, v in f.options if n in SIDECAR_NAME_OPTIONS and v]
            fmt = f.get("f")
            stem, _, ext = f.target.rpartition(".")
            if "%" in f.target:
                globs.append(_PRINTF_RE.sub("*", f.target))
            if fmt == "hls" or (fmt is None and ext.lower() == "m3u8"):
                seg_type = f.get("hls_segment_type") or "mpegts"
                seg_ext = "m4s" if seg_type == "fmp4" else "ts"
                flags = f.get("hls_flags") or ""
                seg = f.get("hls_segment_filename")
                if seg:
                    globs.append(_to_glob(seg))
                elif "single_file" in flags:
                    globs.append(f"{stem}.{seg_ext}")
                else:
                    globs.append(f"{stem}*.{seg_ext}")
                if seg_type == "fmp4":
                    globs.append(f.get("hls_fmp4_init_filename") or "init.mp4")
            if fmt == "dash" or (fmt is None and ext.lower() == "mpd"):
                globs.append(
                    _to_glob(f.get("init_seg_name") or "init-stream$RepresentationID$.$ext$")
                )
                globs.append(
                    _to_glob(
                        f.get("media_seg_name")
                        or "chunk-stream$RepresentationID$-$Number%05d$.$ext$"
                    )
                )
                if f.get("single_file") == "1" and not f.get("single_file_name"):
                    globs.append(f"{stem}-stream*")
                if f.get("hls_playlist") == "1":
                    globs += ["master.m3u8", "media_*.m3u8"]
        import fnmatch

        for pattern in globs:
            clash = sorted(n for n in inputs if fnmatch.fnmatchcase(n, pattern))
            if clash:
                raise _reject(
                    f"output file pattern {pattern!r} would overwrite input {clash[0]!r}",
                    "path_not_allowed",
                )
        return list(dict.fromkeys(globs))

    @staticmethod
    def _timing(in_files: list[_File], out_files: list[_File]) -> Timing:
        def secs(f: _File, name: str) -> float | None:
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


_SOURCES = frozenset("color testsrc testsrc2 smptebars nullsrc sine anullsrc aevalsrc".split())
_FILE_OPTIONS = frozenset(
    """filter_script filter_complex_script attach dump_attachment report progress
    vstats vstats_file sdp_file passlogfile listen protocol_whitelist protocol_blacklist
    format_whitelist codec_whitelist max_alloc i init_hw_device filter_hw_device
    hls_key_info_file key_info_file method headers cookies user_agent http_proxy
    segment_list var_stream_map master_pl_name fontsdir safe allowed_extensions
    dump_separator stats_enc_pre stats_enc_post stats_mux_pre segment_list_entry_prefix
    segment_format_options hls_segment_options format_options""".split()
)


def _is_file_option(name: str) -> bool:
    """Unknown options that may name a file or a URL (refused even in trusted mode)."""
    return name in _FILE_OPTIONS or name.endswith(
        ("_file", "_url", "file", "script", "dir", "_name", "filename", "_path", "_prefix")
    )


def _looks_like_path(value: str) -> bool:
    return bool(re.search(r"[/\\]|^[A-Za-z0-9+.-]*:|^~|\.\.|^-$|^[a-z]+,", value))


def _to_glob(template: str) -> str:
    return re.sub(r"\*+", "*", _PRINTF_RE.sub("*", re.sub(r"\$[^$]*\$", "*", template)))


class _TrustedRules(dict[str, FilterRule]):
    """Filter rules for trusted mode: unknown filters allowed, file options still checked."""

    def __init__(self, base: Mapping[str, FilterRule]) -> None:
        super().__init__(base)

    def get(self, key: str, default: Any = None) -> FilterRule | None:  # type: ignore[override]
        if key in _DENIED_TRUSTED:
            return None
        rule = super().get(key)
        if rule is None:
            return FilterRule(key, _AnyOption(), tuple(f"#{i}" for i in range(64)))
        return FilterRule(rule.name, _AnyOption(rule.options), rule.positional, rule.aliases)


_DENIED_TRUSTED = frozenset("movie amovie sendcmd asendcmd zmq azmq ladspa lv2 frei0r".split())


class _AnyOption(dict[str, OptionKind]):
    def __init__(self, base: Mapping[str, OptionKind] | None = None) -> None:
        super().__init__(base or {})

    def get(self, key: str, default: Any = None) -> OptionKind:
        found = super().get(key)
        if found is not None and found != "deny":
            return found
        return "deny" if _is_file_option(key) else "trusted"
