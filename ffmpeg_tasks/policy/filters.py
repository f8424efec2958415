"""Filter graphs: a parser that follows ffmpeg's escaping rules, and the filter allow-list.

ffmpeg reads a graph in two passes.  The graph level splits chains on ``;``, filters on
``,`` and reads ``[label]`` pads; each filter's ``name=args`` is read with
``av_get_token`` (``\\`` escapes one character, ``'...'`` quotes).  The filter level
then splits ``args`` on ``:`` into ``key=value`` or positional values, unescaping once
more.  :func:`parse_filtergraph` does the same, so checks see exactly what ffmpeg
will use (``sub\\titles='/etc/passwd'`` is the ``subtitles`` filter with file
``/etc/passwd``).
"""

# ruff: noqa: SIM905

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import attrs

from ..errors import CommandRejectedError
from ._filterdata import FILTER_OPTIONS

__all__ = [
    "FilterCall",
    "FilterGraph",
    "FilterRule",
    "av_get_token",
    "default_filter_rules",
    "parse_filter_args",
    "parse_filtergraph",
]

_WS = " \n\t\r"
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/.")


def av_get_token(text: str, pos: int, term: str) -> tuple[str, int]:
    """Read one token of ``text`` from ``pos`` up to an unquoted ``term`` character.

    Mirrors libavutil's ``av_get_token``: leading whitespace is skipped, ``\\x``
    yields ``x``, ``'...'`` is literal, trailing unquoted whitespace is dropped.
    Returns the token and the position of the terminating character (or the end).
    """
    n = len(text)
    while pos < n and text[pos] in _WS:
        pos += 1
    out: list[str] = []
    end = 0  # length of out that must be kept (escaped/quoted content)
    while pos < n and text[pos] not in term:
        c = text[pos]
        pos += 1
        if c == "\\" and pos < n:
            out.append(text[pos])
            pos += 1
            end = len(out)
        elif c == "'":
            while pos < n and text[pos] != "'":
                out.append(text[pos])
                pos += 1
            if pos < n:
                pos += 1
                end = len(out)
        else:
            out.append(c)
    while len(out) > end and out[-1] in _WS:
        out.pop()
    return "".join(out), pos


@attrs.frozen
class FilterCall:
    """One filter of a graph after unescaping: ``name``, ``(key, value)`` args, pads.

    A positional argument has ``key=None``.
    """

    name: str
    instance: str | None
    args: tuple[tuple[str | None, str], ...]
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


@attrs.frozen
class FilterGraph:
    """A parsed graph: chains of filters."""

    chains: tuple[tuple[FilterCall, ...], ...]

    @property
    def filters(self) -> tuple[FilterCall, ...]:
        return tuple(f for chain in self.chains for f in chain)


def _bad(message: str) -> CommandRejectedError:
    return CommandRejectedError(message, code="bad_filtergraph")


def parse_filter_args(args: str) -> tuple[tuple[str | None, str], ...]:
    """Split a filter's (graph-unescaped) argument string like ``av_opt_get_key_value``."""
    result: list[tuple[str | None, str]] = []
    pos = 0
    n = len(args)
    while pos < n:
        # A key is [A-Za-z0-9_./-]+ followed (after blanks) by '='; otherwise positional.
        p = pos
        while p < n and args[p] in _WS:
            p += 1
        k = p
        while k < n and args[k] in _KEY_CHARS:
            k += 1
        key_end = k
        while k < n and args[k] in _WS:
            k += 1
        key: str | None = None
        if k < n and args[k] == "=":
            key = args[p:key_end]
            pos = k + 1
        value, pos = av_get_token(args, pos, ":")
        result.append((key, value))
        if pos < n:
            pos += 1  # the ':' separator
    return tuple(result)


def _parse_labels(text: str, pos: int) -> tuple[list[str], int]:
    labels: list[str] = []
    while pos < len(text) and text[pos] == "[":
        label, pos = av_get_token(text, pos + 1, "]")
        if not label:
            raise _bad("empty [] label in filter graph")
        if pos >= len(text) or text[pos] != "]":
            raise _bad(f"unbalanced '[' in filter graph near [{label}")
        pos += 1
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        labels.append(label)
    return labels, pos


def parse_filtergraph(text: str) -> FilterGraph:
    """Parse a graph the way ``avfilter_graph_parse2`` does; refuse what it would refuse."""
    chains: list[tuple[FilterCall, ...]] = []
    chain: list[FilterCall] = []
    pos = 0
    n = len(text)
    if text.lstrip(_WS).startswith("sws_flags="):
        raise CommandRejectedError(
            "sws_flags= graph prefix is not allowed", code="filter_option_not_allowed"
        )
    while True:
        while pos < n and text[pos] in _WS:
            pos += 1
        inputs, pos = _parse_labels(text, pos)
        name, pos = av_get_token(text, pos, "=,;[")
        if not name:
            raise _bad(f"missing filter name at position {pos} of the filter graph")
        args: tuple[tuple[str | None, str], ...] = ()
        if pos < n and text[pos] == "=":
            raw, pos = av_get_token(text, pos + 1, "[],;")
            args = parse_filter_args(raw)
        outputs, pos = _parse_labels(text, pos)
        base, _, instance = name.partition("@")
        chain.append(FilterCall(base, instance or None, args, tuple(inputs), tuple(outputs)))
        while pos < n and text[pos] in _WS:
            pos += 1
        if pos >= n:
            chains.append(tuple(chain))
            break
        sep = text[pos]
        pos += 1
        if sep == ",":
            continue
        if sep == ";":
            chains.append(tuple(chain))
            chain = []
            continue
        raise _bad(f"cannot parse filter graph near {text[pos - 1 : pos + 20]!r}")
    return FilterGraph(tuple(chains))


# --- the allow-list -----------------------------------------------------------

#: Option kinds: how a filter option value is checked.
#: "value" free short text / expression, "input" a declared input file name,
#: "width"/"height" a frame dimension, "size" WxH, "loop" loop count, "expansion",
#: "text" drawtext text, "deny" never allowed.
OptionKind = str


@attrs.frozen
class FilterRule:
    """What a filter may be given: option kinds by name, positional order, aliases."""

    name: str
    options: Mapping[str, OptionKind]
    positional: tuple[str, ...]
    aliases: Mapping[str, str] = attrs.field(factory=dict)

    def canonical(self, key: str) -> str:
        return self.aliases.get(key, key)


#: Filters refused outright because they read files, run code or talk to the network.
DENIED_FILTERS = frozenset(
    """movie amovie sendcmd asendcmd zmq azmq ladspa lv2 frei0r frei0r_src lut3d_file
    ocr dnn_processing dnn_classify dnn_detect sr derain avgblur_opencl openclsrc
    program_opencl vpp_qsv libvmaf vmafmotion ffmpeg_tasks_none""".split()
)

#: Per-filter overrides of option kinds (default: ``value``).
_KINDS: dict[str, dict[str, OptionKind]] = {
    "scale": {"w": "width", "h": "height", "param0": "value", "eval": "value"},
    "scale2ref": {"w": "width", "h": "height"},
    "pad": {"width": "width", "height": "height"},
    "crop": {"out_w": "width", "out_h": "height"},
    "rotate": {"out_w": "width", "out_h": "height"},
    "drawtext": {
        "fontfile": "input",
        "textfile": "input",
        "expansion": "expansion",
        "text": "text",
        "reload": "deny",
        "text_source": "deny",
    },
    "subtitles": {"filename": "input", "fontsdir": "deny", "original_size": "size"},
    "ass": {"filename": "input", "fontsdir": "deny", "original_size": "size"},
    "lut3d": {"file": "input"},
    "curves": {"psfile": "input", "plot": "deny"},
    "paletteuse": {"debug_kdtree": "deny"},
    "fps": {"fps": "rate"},
    "framerate": {"fps": "rate"},
    "loop": {"loop": "loop", "size": "loop_size"},
    "aloop": {"loop": "loop", "size": "loop_size"},
    "tile": {"layout": "size"},
    "zoompan": {"s": "size"},
    "showwaves": {"size": "size", "rate": "rate"},
    "showwavespic": {"size": "size"},
    "showspectrumpic": {"size": "size"},
    "showspectrum": {"size": "size", "fps": "rate"},
    "showfreqs": {"size": "size", "rate": "rate"},
    "avectorscope": {"size": "size", "rate": "rate"},
    "ebur128": {"size": "size"},
    "xstack": {"grid": "size"},
    "color": {"size": "size"},
    "testsrc": {"size": "size"},
    "testsrc2": {"size": "size"},
    "smptebars": {"size": "size"},
    "nullsrc": {"size": "size"},
}

#: Filters that read no input: usable as ``-f lavfi`` inputs and in ``-filter_complex``.
SOURCE_FILTERS = frozenset(
    "color testsrc testsrc2 smptebars nullsrc sine anullsrc aevalsrc".split()
)

#: Options every filter with timeline support accepts.
_GENERIC = {"enable": "value"}


def default_filter_rules() -> dict[str, FilterRule]:
    """The strict filter allow-list, built from :data:`FILTER_OPTIONS`."""
    rules: dict[str, FilterRule] = {}
    for name, (order, alias_text) in FILTER_OPTIONS.items():
        if name in DENIED_FILTERS:
            continue
        positional = tuple(order.split())
        aliases = dict(item.split("=", 1) for item in alias_text.split())
        kinds: dict[str, OptionKind] = dict.fromkeys(positional, "value")
        kinds.update(_GENERIC)
        kinds.update(_KINDS.get(name, {}))
        rules[name] = FilterRule(name, kinds, positional, aliases)
    return rules


#: Called for each checked filter option value: ``(filter, option, kind, value)``.
ValueChecker = Callable[[str, str, OptionKind, str], None]


def check_filtergraph(
    text: str,
    rules: Mapping[str, FilterRule],
    check_value: ValueChecker,
    *,
    max_filters: int,
    max_length: int,
    what: str,
) -> FilterGraph:
    """Parse ``text`` and check every filter and option against ``rules``.

    ``check_value`` validates option values by kind (paths, sizes, loop counts).
    """
    if len(text) > max_length:
        raise CommandRejectedError(
            f"{what}: filter graph is {len(text)} characters long (limit {max_length})",
            code="filtergraph_too_large",
        )
    graph = parse_filtergraph(text)
    filters = graph.filters
    if len(filters) > max_filters:
        raise CommandRejectedError(
            f"{what}: filter graph has {len(filters)} filters (limit {max_filters})",
            code="filtergraph_too_large",
        )
    for call in filters:
        if call.instance is not None and not re.fullmatch(r"[A-Za-z0-9_]+", call.instance):
            raise _bad(f"{what}: bad filter instance name {call.instance!r}")
        rule = rules.get(call.name)
        if rule is None:
            raise CommandRejectedError(
                f"{what}: filter {call.name!r} is not allowed", code="filter_not_allowed"
            )
        seen_named = False
        for index, (key, value) in enumerate(call.args):
            if key is None:
                if seen_named or index >= len(rule.positional):
                    raise CommandRejectedError(
                        f"{what}: filter {call.name!r}: unexpected positional argument {value!r}",
                        code="bad_filtergraph",
                    )
                option = rule.positional[index]
            else:
                seen_named = True
                option = rule.canonical(key)
            kind = rule.options.get(option)
            if kind is None or kind == "deny":
                raise CommandRejectedError(
                    f"{what}: option {key or option!r} of filter {call.name!r} is not allowed",
                    code="filter_option_not_allowed",
                )
            check_value(call.name, option, kind, value)
    return graph
