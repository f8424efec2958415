"""``CommandPolicy``: the allow-list that turns a user's ffmpeg command into a safe ``CommandPlan``.

Parsing follows ffmpeg's own command line rules (global options anywhere, per-file
options closed by ``-i X`` or by an output name), every option and filter must be on
the allow-list, every path must be a declared name, and library flags are added so
ffmpeg itself refuses hostile media (playlists, concat lists) and runaway resources.
The vocabulary lives in :mod:`.vocabulary`, value checks in :mod:`.values`, the command
line model in :mod:`.cmdline`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from ..errors import InvalidSpecError
from ..filenames import is_plain_name
from .cmdline import CommandLine, OptionGroup, pattern_inputs, sidecars, timing
from .command_plan import CommandPlan
from .filters import FilterRule, default_filter_rules
from .limits import CommandLimits
from .options import OptionSpec, default_options
from .refusals import reject, shown
from .tokens import substitute_placeholders, tokenize
from .values import Checked, ValueChecker, parse_duration
from .vocabulary import (
    DEFAULT_BSFS,
    DEFAULT_CODECS,
    DEFAULT_INPUT_FORMATS,
    DEFAULT_OUTPUT_FORMATS,
    NAME_RE,
    OUT_NAME_RE,
    SOURCES,
)
from .written import DECLARED_NAME_OPTIONS

__all__ = [
    "DEFAULT_BSFS",
    "DEFAULT_CODECS",
    "DEFAULT_INPUT_FORMATS",
    "DEFAULT_OUTPUT_FORMATS",
    "CommandLimits",
    "CommandPolicy",
    "parse_duration",
]


@attrs.frozen
class CommandPolicy:
    """An allow-list of ffmpeg options, formats, codecs and filters, with numeric caps.

    ``CommandPolicy()`` is the strict default for commands written by end users;
    :meth:`trusted` only checks structure and declared files.  ``harden`` adds the
    library flags (``-protocol_whitelist file``, ``-format_whitelist``, ``-max_alloc``,
    ``-fs``, ``-t`` caps) to every plan.
    """

    limits: CommandLimits = attrs.field(factory=CommandLimits)
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
    def trusted(cls, *, harden: bool = True, limits: CommandLimits | None = None) -> CommandPolicy:
        """A policy for apps that write their own commands.

        Any option, filter, codec and format is accepted, but the command must still
        parse, read only declared inputs and write only declared outputs; options
        known to touch files (``-filter_script``, ``-passlogfile`` …) keep their checks.
        """
        return cls(limits=limits or CommandLimits(), trusted_mode=True, harden=harden)

    def extend(
        self,
        *,
        options: Iterable[OptionSpec] = (),
        filters: Iterable[FilterRule] = (),
        codecs: Iterable[str] = (),
        input_formats: Iterable[str] = (),
        output_formats: Iterable[str] = (),
        bsfs: Iterable[str] = (),
        limits: CommandLimits | None = None,
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
        ins = self._declared(inputs, "input_files", NAME_RE)
        outs = self._declared(outputs, "output_files", OUT_NAME_RE)
        declared = ins | outs
        tokens = []
        for raw in tokenize(command):
            token, _ = substitute_placeholders(raw, declared)
            tokens.append(token)
        line = self._command_line()
        globals_, files = line.split(tokens)
        ctx = Checked(ins, outs)
        in_files = [f for f in files if f.kind == "input"]
        out_files = [f for f in files if f.kind == "output"]
        ctx.n_inputs = len(in_files)
        if len(in_files) > self.limits.max_inputs:
            raise reject(
                f"command has {len(in_files)} inputs (limit {self.limits.max_inputs})",
                "too_many_inputs",
            )
        if len(out_files) > self.limits.max_outputs:
            raise reject(
                f"command has {len(out_files)} outputs (limit {self.limits.max_outputs})",
                "too_many_outputs",
            )
        if not out_files:
            raise reject("command names no output file", "no_output")
        for name, spec, value in globals_:
            self._check_option(line, name, spec, value, "global", ctx)
        for f in files:
            self._check_file(line, f, ctx)
        if not partial:
            unused = sorted(ins - ctx.used_inputs)
            if unused:
                raise reject(
                    f"declared input {unused[0]!r} is not used by the command", "unused_input"
                )
            missing = sorted(outs - set(ctx.written))
            if missing:
                raise reject(
                    f"declared output {missing[0]!r} is not written by the command",
                    "missing_output",
                )
        args = line.build_args(globals_, files, ctx)
        globs = sidecars(out_files, ins)
        when = timing(in_files, out_files)
        order = [f.target for f in in_files if f.target in ins]
        patterns = [f.target for f in in_files if f.target not in ins and "%" in f.target]
        input_names = tuple(
            dict.fromkeys(order + sorted(n for n in ctx.used_inputs if n not in order and patterns))
        )
        return CommandPlan(
            args=tuple(args),
            inputs=input_names,
            outputs=tuple(dict.fromkeys(ctx.written)),
            sidecars=tuple(globs),
            timing=when,
            notes=tuple(ctx.notes),
        )

    # -- helpers --------------------------------------------------------------

    def _command_line(self) -> CommandLine:
        return CommandLine(
            self.options, self.limits, self.input_formats, self.trusted_mode, self.harden
        )

    def _values(self) -> ValueChecker:
        return ValueChecker(self.limits, self.codecs, self.bsfs, self.filters, self.trusted_mode)

    @staticmethod
    def _declared(names: Collection[str], field: str, pattern: re.Pattern[str]) -> frozenset[str]:
        if isinstance(names, str):
            names = [names]
        for name in names:
            if not isinstance(name, str) or not is_plain_name(name, pattern):
                raise InvalidSpecError(
                    f"{field}: {name!r} is not a plain file name", field=field, code="invalid_name"
                )
        return frozenset(names)

    def _check_option(
        self,
        line: CommandLine,
        name: str,
        stream: str,
        value: str | None,
        where: str,
        ctx: Checked,
    ) -> None:
        spec = line.spec_for(name, where)
        if where != "global" and spec.scope not in ("file", where):
            raise reject(f"option -{name} cannot be used on an {where}", "option_not_allowed")
        if value is None:
            return
        self._values().check(f"-{name}", spec.kind, value, ctx)

    def _check_file(self, line: CommandLine, f: OptionGroup, ctx: Checked) -> None:
        fmt = f.get("f")
        for name, stream, value in f.options:
            self._check_option(line, name, stream, value, f.kind, ctx)
        if f.kind == "input":
            if fmt == "lavfi":
                if not self.allow_lavfi:
                    raise reject("input format 'lavfi' is not allowed", "format_not_allowed")
                graph = self._values().check_graph(f.target, ctx, what="-f lavfi input")
                first = graph.chains[0][0].name if graph.chains else ""
                if first not in SOURCES:
                    raise reject(
                        f"-f lavfi input must start with a source filter, not {first!r}",
                        "filter_not_allowed",
                    )
                ctx.notes.append(f"input lavfi graph {shown(f.target)}: generated, reads no file")
                return
            if fmt is not None and fmt not in self.input_formats:
                raise reject(f"input format {fmt!r} is not allowed", "format_not_allowed")
            if f.target in ctx.inputs:
                ctx.used_inputs.add(f.target)
                ctx.notes.append(
                    f"input {f.target!r}: declared, read with -protocol_whitelist file"
                )
                return
            matched = pattern_inputs(f.target, ctx.inputs)
            if matched and fmt in (None, "image2"):
                ctx.used_inputs.update(matched)
                ctx.notes.append(
                    f"input pattern {f.target!r}: image sequence of {len(matched)} declared files"
                )
                return
            raise reject(
                f"input {shown(f.target)} is not a declared input file", "path_not_allowed"
            )
        # output
        if f.target == "-":
            if fmt != "null":
                raise reject("output '-' (stdout) is only allowed with -f null", "path_not_allowed")
            ctx.notes.append("output '-' with -f null: discarded (analysis / first pass)")
            return
        if fmt == "null":
            raise reject("-f null must write to '-'", "format_not_allowed")
        if fmt is not None and fmt not in self.output_formats:
            raise reject(f"output format {fmt!r} is not allowed", "format_not_allowed")
        if fmt == "segment" and "%" not in f.target:
            raise reject(
                "-f segment needs a numbered output name (like out_%03d.mp4)", "format_not_allowed"
            )
        if f.target not in ctx.outputs:
            raise reject(
                f"output {shown(f.target)} is not a declared output file", "path_not_allowed"
            )
        ctx.written.append(f.target)
        for name, _, value in f.options:
            if name in DECLARED_NAME_OPTIONS and value is not None:
                if value not in ctx.outputs:
                    raise reject(
                        f"option -{name}: {value!r} is not a declared output file",
                        "path_not_allowed",
                    )
                ctx.written.append(value)
        ctx.notes.append(f"output {f.target!r}: declared")
