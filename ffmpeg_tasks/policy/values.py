"""Checks of option values, by the value kind an option declares (``"int:0:51"``, ``"size"`` …).

A kind is a head and arguments separated by ``:``. Each head is one small check; the
shapes that only need a pattern share one table instead of one branch each.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import attrs

from .filters import FilterRule, OptionKind, check_filtergraph
from .limits import CommandLimits
from .refusals import reject, shown
from .trusted import TrustedRules
from .vocabulary import (
    CODECFLAGS,
    DISPOSITIONS,
    DRAWTEXT_FUNCS,
    DURATION_RE,
    EXPR_NAMES,
    EXPR_TOKEN_RE,
    FFLAGS_IN,
    FFLAGS_OUT,
    HLSFLAGS,
    KV_KEYS,
    LOGLEVELS,
    MAP_RE,
    MOVFLAGS,
    NAME_RE,
    NAMED_RATES,
    NAMED_SIZES,
    TEMPLATE_RE,
    X264_KEYS,
    X265_KEYS,
    looks_like_path,
)

__all__ = ["Checked", "ValueChecker", "const_eval", "parse_duration"]


def parse_duration(value: str) -> float | None:
    """Seconds for an ffmpeg time duration (``90``, ``1:30``, ``00:01:30.5``, ``500ms``)."""
    m = DURATION_RE.fullmatch(value.strip())
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


def const_eval(text: str) -> float | None:
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


@attrs.define
class Checked:
    """What checking one command found so far (filled in as its options are checked)."""

    inputs: frozenset[str]
    outputs: frozenset[str]
    n_inputs: int = 0
    used_inputs: set[str] = attrs.field(factory=set)
    written: list[str] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)


#: Kinds whose values only need to match a pattern.
_SHAPES: Mapping[str, re.Pattern[str]] = {
    name: re.compile(pattern)
    for name, pattern in {
        "text12": r"[A-Za-z0-9._+-]{1,12}",
        "bitrate": r"\d+(\.\d+)?[kKMG]?",
        "filesize": r"\d+[kKMG]?",
        "format": r"[A-Za-z0-9_]+",
        "pix_fmt": r"[A-Za-z0-9_.+()-]{1,32}",
        "sample_fmt": r"[A-Za-z0-9_.+()-]{1,32}",
        "channel_layout": r"[A-Za-z0-9_.+()-]{1,32}",
        "tag": r"[A-Za-z0-9_.+()-]{1,32}",
        "profile": r"[A-Za-z0-9_.-]{1,24}",
        "map_metadata": r"-1|\d+(:[gscp](:[A-Za-z0-9_.:-]*)?)?",
        "adaptation_sets": r"[A-Za-z0-9=,: ]+",
        "aspect": r"\d+(\.\d+)?([:/]\d+(\.\d+)?)?",
        "timecode": r"\d{2}:\d{2}:\d{2}[:;.]\d{2}",
        "tiles": r"\d{1,2}x\d{1,2}",
    }.items()
}
_SHAPE_HINTS = {"bitrate": "not a bit rate", "filesize": "not a size"}
_FLAG_SETS = {
    "movflags": MOVFLAGS,
    "hlsflags": HLSFLAGS,
    "codecflags": CODECFLAGS,
    "fflags_in": FFLAGS_IN,
    "fflags_out": FFLAGS_OUT,
}
_PARAM_KEYS = {"x264params": X264_KEYS, "x265params": X265_KEYS, "kvparams": KV_KEYS}
_THREAD_PARAMS = frozenset({"threads", "pools", "frame-threads", "lookahead-threads"})


@attrs.frozen
class _Value:
    """One value under check: the option it belongs to, its kind's arguments, the refusal."""

    option: str
    kind: str
    args: str
    text: str

    def bad(self, why: str = "") -> NoReturn:
        detail = f": {why}" if why else ""
        raise reject(
            f"option {self.option}: value {shown(self.text)} is not allowed{detail}",
            "bad_option_value",
        )

    def over(self, message: str) -> NoReturn:
        raise reject(f"option {self.option}: {message}", "limit_exceeded")

    def shape(self, pattern: str | re.Pattern[str], why: str = "") -> None:
        if re.fullmatch(pattern, self.text) is None:
            self.bad(why)


@attrs.frozen
class ValueChecker:
    """Checks option and filter-option values against a policy's vocabulary and limits."""

    limits: CommandLimits
    codecs: frozenset[str]
    bsfs: frozenset[str]
    filters: Mapping[str, FilterRule]
    trusted_mode: bool

    def check(self, option: str, kind: str, value: str, ctx: Checked) -> None:
        """Refuse ``value`` of ``option`` (``"-crf"``) unless it fits ``kind``."""
        head, _, args = kind.partition(":")
        v = _Value(option, kind, args, value)
        if len(value) > self.limits.max_text_length and head != "graph":
            v.bad("too long")
        if head in _SHAPES:
            v.shape(_SHAPES[head], _SHAPE_HINTS.get(head, ""))
            return
        if head in _FLAG_SETS:
            self._flags(v, _FLAG_SETS[head])
            return
        if head in _PARAM_KEYS:
            self._params(v, _PARAM_KEYS[head])
            return
        check = _CHECKS.get(head)
        if check is None:
            v.bad(f"unknown value kind {kind!r}")
        check(self, v, ctx)

    # -- one check per kind ----------------------------------------------------

    def _any(self, v: _Value, ctx: Checked) -> None:
        """``flag`` and ``text``: nothing to check beyond the length."""

    def _trusted(self, v: _Value, ctx: Checked) -> None:
        if looks_like_path(v.text) and v.text not in ctx.inputs | ctx.outputs:
            v.bad("looks like a path or URL")

    def _int(self, v: _Value, ctx: Checked) -> None:
        lo, hi = (int(x) for x in v.args.split(":"))
        if not re.fullmatch(r"-?\d+", v.text) or not lo <= int(v.text) <= hi:
            v.bad(f"must be an integer from {lo} to {hi}")

    def _float(self, v: _Value, ctx: Checked) -> None:
        lo, hi = (float(x) for x in v.args.split(":"))
        try:
            number = float(v.text)
        except ValueError:
            v.bad("must be a number")
        if not lo <= number <= hi:
            v.bad(f"must be from {lo:g} to {hi:g}")

    def _enum(self, v: _Value, ctx: Checked) -> None:
        if v.text not in v.args.split("|"):
            v.bad(f"allowed: {v.args.replace('|', ', ')}")

    def _loglevel(self, v: _Value, ctx: Checked) -> None:
        if v.text.split("+")[-1] not in LOGLEVELS:
            v.bad()

    def _duration(self, v: _Value, ctx: Checked) -> None:
        lim = self.limits
        seconds = parse_duration(v.text)
        if seconds is None:
            v.bad("not a duration")
        if v.option in ("-t", "-to") and not 0 <= seconds <= lim.max_duration:
            v.over(f"duration {v.text} exceeds the limit of {lim.max_duration:g} seconds")
        if abs(seconds) > 10 * lim.max_duration + 86400:
            v.bad("out of range")

    def _threads(self, v: _Value, ctx: Checked) -> None:
        if not v.text.isdigit() or int(v.text) > self.limits.max_threads:
            v.over(f"{v.text} threads exceeds the limit of {self.limits.max_threads}")

    def _stream_loop(self, v: _Value, ctx: Checked) -> None:
        most = self.limits.max_stream_loop
        if not re.fullmatch(r"-?\d+", v.text) or not 0 <= int(v.text) <= most:
            v.over(f"loop count {v.text} is not allowed (0 to {most}; -1 = forever is refused)")

    def _max_pixels(self, v: _Value, ctx: Checked) -> None:
        if not v.text.isdigit() or int(v.text) > self.limits.max_pixels:
            v.over(f"{v.text} exceeds {self.limits.max_pixels} pixels")

    def _size(self, v: _Value, ctx: Checked) -> None:
        self.check_size(v.option, v.text)

    def _rate(self, v: _Value, ctx: Checked) -> None:
        self.check_rate(v.option, v.text)

    def _codec(self, v: _Value, ctx: Checked) -> None:
        if v.text not in self.codecs and not self.trusted_mode:
            raise reject(f"option {v.option}: codec {v.text!r} is not allowed", "codec_not_allowed")
        v.shape(r"[A-Za-z0-9_-]+")

    def _graph(self, v: _Value, ctx: Checked) -> None:
        self.check_graph(v.text, ctx, what=f"option {v.option}")

    def _map(self, v: _Value, ctx: Checked) -> None:
        m = MAP_RE.fullmatch(v.text)
        if m is None:
            v.bad("expected INPUT[:STREAM] or [label]")
        if m.group(1) is not None and int(m.group(1)) >= ctx.n_inputs:
            v.bad(f"there is no input #{m.group(1)}")

    def _metadata(self, v: _Value, ctx: Checked) -> None:
        key, eq, _ = v.text.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z0-9_ .-]{1,64}", key):
            v.bad("expected key=value")

    def _disposition(self, v: _Value, ctx: Checked) -> None:
        parts = [p for p in re.split(r"[+-]", v.text) if p]
        if v.text != "0" and (not parts or any(p not in DISPOSITIONS for p in parts)):
            v.bad()

    def _flags(self, v: _Value, allowed: frozenset[str]) -> None:
        parts = [p for p in re.split(r"[+-]", v.text) if p]
        unknown = [p for p in parts if p not in allowed]
        if not parts or unknown:
            v.bad(f"flag {unknown[0] if unknown else v.text!r} is not allowed")

    def _params(self, v: _Value, keys: frozenset[str]) -> None:
        for item in v.text.split(":"):
            key, _, val = item.partition("=")
            if key not in keys:
                raise reject(
                    f"option {v.option}: parameter {key!r} is not allowed", "bad_option_value"
                )
            if not re.fullmatch(r"[A-Za-z0-9.,+/_-]*", val) or ".." in val:
                v.bad(f"bad value for {key}")
            if key in _THREAD_PARAMS and val.isdigit() and int(val) > self.limits.max_threads:
                v.over(f"{key}={val} exceeds the thread limit")

    def _bsf(self, v: _Value, ctx: Checked) -> None:
        for item in v.text.split(","):
            name = item.split("=", 1)[0]
            if name not in self.bsfs and not self.trusted_mode:
                raise reject(
                    f"option {v.option}: bitstream filter {name!r} is not allowed",
                    "bad_option_value",
                )
            if looks_like_path(item.partition("=")[2]):
                v.bad()

    def _plainname(self, v: _Value, ctx: Checked) -> None:
        if NAME_RE.fullmatch(v.text) is None or ".." in v.text:
            raise reject(
                f"option {v.option}: {v.text!r} must be a plain file name in the work dir",
                "path_not_allowed",
            )

    def _outname(self, v: _Value, ctx: Checked) -> None:
        if TEMPLATE_RE.fullmatch(v.text) is None or ".." in v.text or v.text[0] in "-.":
            raise reject(
                f"option {v.option}: {v.text!r} must be a plain file name (pattern) "
                "in the work dir",
                "path_not_allowed",
            )

    def _urltext(self, v: _Value, ctx: Checked) -> None:
        # Written into a manifest, whose entries the output check requires to be plain
        # names of this task's files: any prefix (host path, other host, or a relative
        # one the stored layout does not have) would only fail the task after the run.
        v.bad("a playlist names its segments, stored beside it, by plain name")

    # -- shared by options and filters -----------------------------------------

    def check_graph(self, graph: str, ctx: Checked, *, what: str) -> Any:
        """Check a filtergraph (an option's value or a lavfi input); return it parsed."""
        return check_filtergraph(
            graph,
            self.filters if not self.trusted_mode else TrustedRules(self.filters),
            lambda f, o, k, val: self.check_filter_value(f, o, k, val, ctx),
            max_filters=self.limits.max_filters,
            max_length=self.limits.max_graph_length,
            what=what,
        )

    def check_size(self, what: str, value: str) -> None:
        lim = self.limits
        if value in NAMED_SIZES:
            w, h = NAMED_SIZES[value]
        else:
            m = re.fullmatch(r"(\d{1,9})x(\d{1,9})", value)
            if m is None:
                raise reject(f"{what}: {value!r} is not a frame size (WxH)", "bad_option_value")
            w, h = int(m.group(1)), int(m.group(2))
        if w > lim.max_dimension or h > lim.max_dimension or w * h > lim.max_pixels:
            raise reject(
                f"{what}: frame size {value} exceeds the limit of "
                f"{lim.max_dimension}x{lim.max_dimension} / {lim.max_pixels} pixels",
                "limit_exceeded",
            )

    def check_rate(self, what: str, value: str) -> None:
        if value in NAMED_RATES:
            return
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(?:/(\d+(?:\.\d+)?))?", value)
        if m is None:
            raise reject(f"{what}: {value!r} is not a frame rate", "bad_option_value")
        rate = float(m.group(1)) / float(m.group(2) or 1) if float(m.group(2) or 1) else 0.0
        if rate > self.limits.max_frame_rate:
            raise reject(
                f"{what}: frame rate {value} exceeds the limit of {self.limits.max_frame_rate:g}",
                "limit_exceeded",
            )

    def check_filter_value(
        self, filt: str, option: str, kind: OptionKind, value: str, ctx: Checked
    ) -> None:
        lim = self.limits
        what = f"filter {filt!r} option {option!r}"
        if len(value) > lim.max_text_length:
            raise reject(f"{what}: value is too long", "bad_option_value")
        if kind == "input":
            if value not in ctx.inputs:
                raise reject(f"{what}: {value!r} is not a declared input file", "path_not_allowed")
            ctx.used_inputs.add(value)
        elif kind in ("width", "height"):
            self._check_dimension(what, value)
        elif kind == "size":
            self.check_size(what, value)
        elif kind == "rate":
            self.check_rate(what, value)
        elif kind == "loop":
            if not re.fullmatch(r"-?\d+", value) or not 0 <= int(value) <= lim.max_loop:
                raise reject(
                    f"{what}: loop count {value} is not allowed (0 to {lim.max_loop}; "
                    "-1 = forever is refused)",
                    "limit_exceeded",
                )
        elif kind == "loop_size":
            if not re.fullmatch(r"\d+", value) or int(value) > lim.max_loop_size:
                raise reject(
                    f"{what}: {value} exceeds {lim.max_loop_size} frames", "limit_exceeded"
                )
        elif kind == "expansion":
            if value not in ("none", "normal", "0", "1"):
                raise reject(
                    f"{what}: expansion {value!r} is not allowed (none, normal)", "bad_option_value"
                )
        elif kind == "text":
            for m in re.finditer(r"%\{\s*([A-Za-z_]*)", value):
                if m.group(1) not in DRAWTEXT_FUNCS:
                    raise reject(
                        f"{what}: text expansion %{{{m.group(1)}}} is not allowed",
                        "bad_option_value",
                    )
        elif kind == "trusted" and looks_like_path(value) and value not in ctx.inputs:
            raise reject(f"{what}: {value!r} looks like a path or URL", "path_not_allowed")

    def _check_dimension(self, what: str, value: str) -> None:
        lim = self.limits
        number = const_eval(value)
        if number is not None:
            if number > lim.max_dimension:
                raise reject(
                    f"{what}: {value} exceeds the limit of {lim.max_dimension} pixels",
                    "limit_exceeded",
                )
            return
        pos = 0
        text = value.strip()
        while pos < len(text):
            m = EXPR_TOKEN_RE.match(text, pos)
            if m is None or m.end() == pos:
                raise reject(f"{what}: expression {value!r} is not allowed", "bad_option_value")
            if m.group(2) and m.group(2) not in EXPR_NAMES:
                raise reject(
                    f"{what}: name {m.group(2)!r} is not allowed in {value!r}", "bad_option_value"
                )
            if m.group(1) and float(m.group(1)) > lim.max_dimension:
                raise reject(
                    f"{what}: {m.group(1)} exceeds the limit of {lim.max_dimension}",
                    "limit_exceeded",
                )
            pos = m.end()


_CHECKS: dict[str, Callable[[ValueChecker, _Value, Checked], None]] = {
    "flag": ValueChecker._any,
    "text": ValueChecker._any,
    "trusted": ValueChecker._trusted,
    "int": ValueChecker._int,
    "float": ValueChecker._float,
    "enum": ValueChecker._enum,
    "loglevel": ValueChecker._loglevel,
    "duration": ValueChecker._duration,
    "threads": ValueChecker._threads,
    "stream_loop": ValueChecker._stream_loop,
    "max_pixels": ValueChecker._max_pixels,
    "size": ValueChecker._size,
    "rate": ValueChecker._rate,
    "codec": ValueChecker._codec,
    "graph": ValueChecker._graph,
    "map": ValueChecker._map,
    "metadata": ValueChecker._metadata,
    "disposition": ValueChecker._disposition,
    "bsf": ValueChecker._bsf,
    "plainname": ValueChecker._plainname,
    "outname": ValueChecker._outname,
    "urltext": ValueChecker._urltext,
}
