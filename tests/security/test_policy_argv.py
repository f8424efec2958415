"""The argv the policy renders means to ffmpeg what the policy checked.

ffmpeg itself is the parser: with ``-loglevel debug`` it logs how it split the command
line (which option took which argument, which token closed an input or an output
group, which options are global).  Both the user's command and the rendered argv are
split by the real binaries (Debian's ffmpeg and the static imageio-ffmpeg when
present) and compared: same files in the same groups, every user option in the group
the policy checked, every output under the library's caps.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffmpeg_tasks.policy import CommandLimits, CommandPolicy

LIMITS = CommandLimits()
LIBRARY_OPTIONS = {"t", "fs", "max_pixels", "protocol_whitelist", "format_whitelist"}

_READ = re.compile(r"Reading option '(.*)' \.\.\. matched as (.*)$")
_OPTION = re.compile(r"option '[^']+' \(.*\) with argument (.*)\.$")
_AVOPTION = re.compile(r"AVOption '[^']+' with argument '(.*)'\.$")
_INPUT = re.compile(r"input url with argument '(.*)'\.$")
_APPLY = re.compile(r"Applying option (\S+) \(.*\) with argument (.*)\.$")


@attrs.frozen
class Split:
    """ffmpeg's reading of an argv: global options and the file groups in order."""

    globals_: tuple[tuple[str, str], ...]
    groups: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]  # (kind, target, options)


def _binaries() -> Iterator[str]:
    yield "/usr/bin/ffmpeg"
    try:
        import imageio_ffmpeg

        yield imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return


BINARIES = [b for b in _binaries() if Path(b).is_file()]


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "'" else text


def ffmpeg_split(binary: str, args: list[str] | tuple[str, ...], cwd: Path) -> Split:
    """Run ``binary -loglevel debug ARGS`` until it has split and applied the global options.

    The process is stopped before it opens any file (inputs do not exist in ``cwd``).
    """
    proc = subprocess.Popen(
        [binary, "-loglevel", "debug", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    assert proc.stderr is not None
    reads: list[tuple[str, str]] = []
    applied: list[tuple[str, str]] = []
    finished = in_global = False
    try:
        for line in proc.stderr:
            line = line.rstrip("\n")
            if line.startswith("Parsing a group of options: global"):
                in_global = True
                continue
            if line.startswith(("Parsing a group of options:", "Opening an input file")):
                break
            if in_global:
                m = _APPLY.match(line)
                if m:
                    applied.append((m.group(1), _unquote(m.group(2))))
                continue
            if line.startswith("Finished splitting the commandline"):
                finished = True
            m = _READ.match(line)
            if m:
                reads.append((m.group(1), m.group(2)))
    finally:
        proc.kill()
        proc.communicate()
    assert finished, f"ffmpeg could not split {args!r}"
    globals_: list[tuple[str, str]] = []
    groups: list[tuple[str, str, tuple[tuple[str, str], ...]]] = []
    group: list[tuple[str, str]] = []
    for token, how in reads:
        if how == "output url.":
            groups.append(("output", token, tuple(group)))
            group = []
            continue
        m = _INPUT.match(how)
        if m:
            groups.append(("input", m.group(1), tuple(group)))
            group = []
            continue
        m = _OPTION.match(how) or _AVOPTION.match(how)
        assert m, how
        entry = (token[1:], _unquote(m.group(1)))
        if entry in applied:  # ffmpeg applies a repeated global option once
            globals_.append(entry)
        else:
            group.append(entry)
    assert not group, f"trailing options {group}"
    return Split(tuple(g for g in globals_ if g[0] != "loglevel"), tuple(groups))


def assert_same_meaning(binary: str, command: list[str], args: tuple[str, ...], cwd: Path) -> None:
    user = ffmpeg_split(binary, command, cwd)
    rendered = ffmpeg_split(binary, args, cwd)
    # the same files, in the same order: no hidden output, no output that lost its options
    assert [g[:2] for g in rendered.groups] == [g[:2] for g in user.groups], (command, args)
    assert set(user.globals_) <= set(rendered.globals_)
    for (kind, target, mine), (_, _, theirs) in zip(user.groups, rendered.groups, strict=True):
        extra = list(theirs)
        for name, value in mine:
            if name == "fs":
                value = str(min(int(value), LIMITS.max_file_size))
            assert (name, value) in extra, (name, value, target, theirs)
            extra.remove((name, value))
        assert {n for n, _ in extra} <= LIBRARY_OPTIONS, (target, extra)
        if kind != "output":
            continue
        names = [n for n, _ in theirs]
        assert "t" in names or "to" in names, f"output {target} has no duration cap: {theirs}"
        t_values = [float(v) for n, v in theirs if n == "t"]
        assert not t_values or t_values[-1] <= LIMITS.max_duration
        if target != "-":
            fs_values = [int(v) for n, v in theirs if n == "fs"]
            assert fs_values and fs_values[-1] <= LIMITS.max_file_size, theirs


@pytest.fixture(params=BINARIES, ids=lambda b: "system" if b.startswith("/usr") else "static")
def binary(request: pytest.FixtureRequest) -> str:
    return str(request.param)


CASES = [
    "-i in.mp4 -t 1 -noshortest out.mp4",
    "-i in.mp4 -t 1 -novn -noan out.mp4",
    "-i in.mp4 -f mp4 -t 1 -nosn -nodn out.mp4",
    "-i in.mp4 -shortest -vn out.mp4",
    "-i in.mp4 -t 2 -shortest out.mp4 -noshortest -an out.mkv",
    "-i in.mp4 -fs 999999999999999 out.mp4",
    "-i in.mp4 -fs 1000 out.mp4",
    "-loop 1 -i in.png -f null -",
    "-i in.mp4 -c:v libx264 -forced-idr 1 -a53cc 0 out.mp4",
    "-noaccurate_seek -seek_timestamp 1 -ss 1 -i in.mp4 out.mp4",
    "-accurate_seek -noautorotate -i in.mp4 -copyinkf out.mp4",
    "-nostats -copy_unknown -ignore_unknown -i in.mp4 -nostdin out.mp4",
    "-i in.mp4 -c copy -f segment -segment_time 1 -reset_timestamps 1 "
    "-segment_format mp4 -segment_list list.m3u8 out_%03d.mp4",
]


@pytest.mark.parametrize("command", CASES)
def test_rendered_argv_means_what_was_checked(binary: str, command: str, tmp_path: Path) -> None:
    argv = command.split()
    ins = [a for i, a in enumerate(argv) if i and argv[i - 1] == "-i"]
    outs = [a for a in ("out.mp4", "out.mkv", "out_%03d.mp4", "list.m3u8") if a in argv]
    plan = CommandPolicy().plan(argv, inputs=ins, outputs=outs)
    assert_same_meaning(binary, argv, plan.args, tmp_path)


def test_trusted_flags_keep_their_arity(binary: str, tmp_path: Path) -> None:
    argv = ["-nofind_stream_info", "-i", "in.mp4", "-bitexact", "-nobitexact", "-noautoscale"]
    argv.append("out.mp4")
    plan = CommandPolicy.trusted().plan(argv, inputs=["in.mp4"], outputs=["out.mp4"])
    assert_same_meaning(binary, argv, plan.args, tmp_path)


def test_mixed_arity_option_is_refused_in_trusted_mode() -> None:
    from ffmpeg_tasks.errors import CommandRejectedError

    for opt in ("-autorotate", "-autoscale"):
        with pytest.raises(CommandRejectedError):
            CommandPolicy.trusted().plan(
                ["-i", "in.mp4", opt, "out.mp4"], inputs=["in.mp4"], outputs=["out.mp4"]
            )


# -- property: any mix of allowed options --------------------------------------------

GLOBAL = ["-stats", "-nostats", "-copyts", "-nocopyts", "-start_at_zero", "-xerror", "-debug_ts"]
INPUT = ["-ss 1", "-t 2", "-noaccurate_seek", "-accurate_seek", "-re", "-nore", "-itsoffset 1",
         "-noautorotate", "-stream_loop 1", "-seek_timestamp 1"]  # fmt: skip
OUTPUT = ["-t 1", "-to 2", "-ss 0.5", "-fs 999999999999999", "-fs 5000", "-shortest",
          "-noshortest", "-vn", "-novn", "-an", "-noan", "-sn", "-nosn", "-dn", "-nodn",
          "-c:v libx264", "-preset fast", "-forced-idr 1", "-copyinkf", "-nocopyinkf",
          "-map 0", "-frames:v 10", "-metadata title=x", "-movflags +faststart",
          "-f mp4"]  # fmt: skip


@st.composite
def commands(draw: st.DrawFn) -> tuple[list[str], list[str], list[str]]:
    argv: list[str] = []
    ins = draw(st.lists(st.sampled_from(["a.mp4", "b.mp4"]), min_size=1, max_size=2, unique=True))
    for name in ins:
        argv += draw(st.lists(st.sampled_from(INPUT + GLOBAL), max_size=3))
        argv += ["-i", name]
    outs = draw(st.lists(st.sampled_from(["o1.mp4", "o2.mp4", "-"]), min_size=1, max_size=3,
                         unique=True))  # fmt: skip
    for name in outs:
        argv += draw(st.lists(st.sampled_from(OUTPUT + GLOBAL), max_size=5))
        argv += ["-f", "null", "-"] if name == "-" else [name]
    tokens = [t for piece in argv for t in piece.split()]
    return tokens, ins, [o for o in outs if o != "-"]


@pytest.mark.parametrize("policy", ["strict", "trusted"])
def test_any_allowed_command_renders_faithfully(binary: str, policy: str, tmp_path: Path) -> None:
    chosen = CommandPolicy() if policy == "strict" else CommandPolicy.trusted()

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(commands())
    def check(case: tuple[list[str], list[str], list[str]]) -> None:
        argv, ins, outs = case
        plan = chosen.plan(argv, inputs=ins, outputs=outs)
        assert_same_meaning(binary, argv, plan.args, tmp_path)

    check()


def _split_reads(binary: str, args: list[str], cwd: Path) -> tuple[list[str], str]:
    """Output names ffmpeg's split finds in ``args`` and its error, if any."""
    proc = subprocess.run(
        [binary, "-hide_banner", "-loglevel", "debug", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )
    outs: list[str] = []
    for line in proc.stderr.splitlines():
        if line.startswith("Finished splitting"):
            return outs, ""
        m = _READ.match(line)
        if m and m.group(2) == "output url.":
            outs.append(m.group(1))
    return outs, proc.stderr[-500:]


def test_option_table_arity_matches_ffmpeg(binary: str, tmp_path: Path) -> None:
    """Every option of the strict table takes a value exactly when ffmpeg's parser takes one.

    Each option is followed by its own output name, so an option that swallows or leaves a
    token shifts the output list; options this binary does not know are left out.
    """
    from ffmpeg_tasks.policy.options import ALIASES, default_options

    table = default_options()
    names = sorted({n for n in table if "@" not in n} | set(ALIASES))
    names = [n for n in names if n not in ("loglevel", "v", "preset:v")]
    while True:
        args: list[str] = []
        expected: dict[str, str] = {}
        for i, name in enumerate(names):
            spec = table[ALIASES[name][0]] if name in ALIASES else table[name]
            out = f"o{i}.mp4"
            args += [f"-{name}", *(["1"] if spec.takes_value else []), out]
            expected[out] = name
        outs, error = _split_reads(binary, args, tmp_path)
        m = re.search(r"Unrecognized option '([^']+)'", error)
        if m and m.group(1) in names:
            names.remove(m.group(1))  # not in this ffmpeg version
            continue
        assert not error, error
        order = list(expected)
        bad = next((i for i, o in enumerate(outs) if i >= len(order) or o != order[i]), len(outs))
        culprit = expected[order[min(bad, len(order) - 1)]]
        assert outs == order, f"arity of -{culprit} (or the option before) differs from ffmpeg's"
        break
    assert len(names) > 100


def test_global_options_are_global_to_ffmpeg(binary: str, tmp_path: Path) -> None:
    """The policy moves its global options to the front; ffmpeg must apply them globally."""
    from ffmpeg_tasks.policy.options import default_options

    samples = {"abort_on": "empty_output", "filter_complex": "nullsrc", "vsync": "cfr"}
    names = [
        n
        for n, spec in default_options().items()
        if spec.scope == "global" and n not in ("loglevel", "v")
    ]
    while True:
        args = ["-i", "a.mp4"]
        for name in names:
            spec = default_options()[name]
            args += [f"-{name}", *([samples.get(name, "1")] if spec.takes_value else [])]
        args.append("o.mp4")
        proc = subprocess.run(
            [binary, "-hide_banner", "-loglevel", "debug", *args],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
        )
        m = re.search(r"Unrecognized option '([^']+)'", proc.stderr)
        if m and m.group(1) in names:
            names.remove(m.group(1))  # not in this ffmpeg version
            continue
        break
    applied = {m.group(1) for m in map(_APPLY.match, proc.stderr.splitlines()) if m}
    assert set(names) <= applied, sorted(set(names) - applied)
