"""``argv=``: one command as a list of arguments, e.g. from ffmpeg-python or typed-ffmpeg.

The two libraries cannot share one environment (both install a top-level ``ffmpeg``
package), so the lists below are what they printed, verbatim:

* ffmpeg-python 0.2.0::

      s = ffmpeg.input("in.mp4")
      v = s.video.filter("scale", "iw / 2", -2).filter("hflip")
      ffmpeg.output(v, s.audio, "out.mp4", vcodec="libx264", preset="ultrafast",
                    acodec="aac", metadata="title=hello world")
            .global_args("-hide_banner", "-loglevel", "error").overwrite_output().compile()

* typed-ffmpeg 4.6.2 (``compile()`` returns the list; there is no ``compile_as_list``)::

      s = ffmpeg.input("in.mp4")
      v = s.video.scale(w="iw / 2", h="-2").hflip()
      ffmpeg.output(v, s.audio, filename="out.mp4", extra_options={"c:v": "libx264",
                    "preset": "ultrafast", "c:a": "aac", "metadata": "title=hello world"})
            .global_args(hide_banner=True, loglevel="error").overwrite_output().compile()

ffmpeg-python puts global options (``-y`` too) after the output, typed-ffmpeg before
the first input; ffmpeg reads global options anywhere and so does the policy.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffmpeg_tasks import CommandPolicy, InvalidSpecError, Task, TaskStatus
from ffmpeg_tasks.argv import argv_to_command, task_commands
from ffmpeg_tasks.policy.tokens import tokenize
from ffmpeg_tasks.store.sqlite import SQLiteTaskStore

from .helpers import make_manager
from .servers import MediaServer

FFMPEG_PYTHON = [
    "ffmpeg", "-i", "in.mp4",
    "-filter_complex", "[0:v]scale=iw / 2:-2[s0];[s0]hflip[s1]",
    "-map", "[s1]", "-map", "0:a",
    "-acodec", "aac", "-metadata", "title=hello world", "-preset", "ultrafast",
    "-vcodec", "libx264", "out.mp4",
    "-hide_banner", "-loglevel", "error", "-y",
]  # fmt: skip
TYPED_FFMPEG = [
    "ffmpeg", "-loglevel", "error", "-hide_banner", "-y", "-i", "in.mp4",
    "-filter_complex", "[0:v]scale=w=iw / 2:h=-2[s0];[s0]hflip[s1]",
    "-map", "[s1]", "-map", "0:a",
    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
    "-metadata", "title=hello world", "out.mp4",
]  # fmt: skip


def probe(ffprobe: str, path: Path) -> dict[str, object]:
    out = subprocess.run(
        [ffprobe, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


# -- the stored form ---------------------------------------------------------------


@pytest.mark.parametrize(
    "program", ["ffmpeg", "/usr/bin/ffmpeg", "C:\\ffmpeg\\bin\\ffmpeg.exe", "FFMPEG.EXE", None]
)
def test_a_leading_program_token_is_dropped(program: str | None) -> None:
    args = ["-i", "in.mp4", "out.mp4"]
    command = argv_to_command([program, *args] if program else args)
    assert command == "-i in.mp4 out.mp4"


def test_tokens_are_kept_whole_quotes_and_all() -> None:
    args = ["-i", "in.mp4", "-vf", "drawtext=text='it''s':x=1", "-metadata", 'a="b c" \\ $HOME',
            "-metadata", "", "-map", "[s1]", "{{out.mp4}}"]  # fmt: skip
    command = argv_to_command(args)
    assert tokenize(command) == tuple(args)
    assert task_commands(None, args) == (command,)


@given(
    st.lists(
        st.text(
            st.characters(
                codec="utf-8", categories=["L", "N", "P", "S"], include_characters=" \\'\""
            )
        ),
        min_size=1,
    )
)
def test_any_printable_argv_round_trips_through_the_policy_tokenizer(args: list[str]) -> None:
    args = ["-i", *args]  # a first token could be a program name, dropped on purpose
    assert tokenize(argv_to_command(args)) == tuple(args)


@pytest.mark.parametrize(
    ("command", "argv", "field", "code", "says"),
    [
        (None, None, "command", "empty_command", "give command= (a string"),
        ("-i in.mp4 out.mp4", ["-i", "in.mp4", "out.mp4"], "argv", "invalid_spec", "not both"),
        (None, "-i in.mp4 out.mp4", "argv", "invalid_spec", "a list of arguments"),
        (None, ["-i", b"in.mp4", "out.mp4"], "argv", "invalid_token", "argv[1] must be a string"),
        (None, [], "argv", "empty_command", "no arguments"),
        (None, ["/usr/bin/ffmpeg"], "argv", "empty_command", "no arguments"),
        (None, ["/bin/sh", "-c", "id"], "argv", "invalid_spec", "program path other than"),
        (
            ["ffmpeg", "-i", "in.mp4", "out.mp4"],
            None,
            "command",
            "invalid_spec",
            "pass it as argv=",
        ),
        (["-i", "in.mp4", "out.mp4"], None, "command", "invalid_spec", "pass it as argv="),
    ],
)
async def test_exactly_one_of_command_and_argv(
    tmp_path: Path,
    command: Any,
    argv: Any,
    field: str,
    code: str,
    says: str,
) -> None:
    async with make_manager(tmp_path) as tm:
        inputs = {"in.mp4": "https://example.com/in.mp4"}
        for call in (tm.register, tm.plan, tm.run):
            with pytest.raises(InvalidSpecError) as err:
                await call(command, inputs, "out.mp4", argv=argv)
            assert (err.value.field, err.value.code) == (field, code)
            assert says in err.value.message
            assert "/usr/bin" not in err.value.message and "/bin/sh" not in err.value.message
        assert await tm.list() == []


async def test_a_list_of_command_strings_is_still_a_chain(tmp_path: Path) -> None:
    chain = ["-i in.mp4 -c copy mid.mp4", "-i mid.mp4 -c copy out.mp4"]
    async with make_manager(tmp_path) as tm:
        task = await tm.register(chain, {"in.mp4": "https://example.com/in.mp4"}, "out.mp4",
                                 output_files=["out.mp4", "mid.mp4"])  # fmt: skip
    assert task.commands == tuple(chain)


async def test_argv_is_checked_by_the_policy_like_a_command(tmp_path: Path) -> None:
    async with make_manager(tmp_path) as tm:
        with pytest.raises(InvalidSpecError) as err:
            await tm.register(
                argv=["ffmpeg", "-i", "in.mp4", "-filter_complex", "movie=/etc/passwd", "out.mp4"],
                input_files={"in.mp4": "https://example.com/in.mp4"},
                output_filename="out.mp4",
            )
        assert err.value.code == "filter_not_allowed", err.value
        with pytest.raises(InvalidSpecError, match="not a declared"):
            await tm.register(
                argv=["-i", "in.mp4", "out file.mp4"],  # one token: a name with a space
                input_files={"in.mp4": "https://example.com/in.mp4"},
                output_filename="out.mp4",
            )


# -- real runs -----------------------------------------------------------------------


@pytest.mark.parametrize("argv", [FFMPEG_PYTHON, TYPED_FFMPEG], ids=["ffmpeg-python", "typed"])
async def test_a_compiled_argv_runs_through_the_manager(
    tmp_path: Path, media_server: MediaServer, ffprobe_bin: str | None, argv: list[str]
) -> None:
    assert ffprobe_bin, "ffprobe is needed to check the output"
    inputs = {"in.mp4": media_server.media_url("clip.mp4")}
    async with make_manager(tmp_path, ffprobe=False) as tm:
        plan = await tm.plan(argv=argv, input_files=inputs, output_filename="out.mp4")
        step = plan.argv[0]
        assert "title=hello world" in step
        assert argv[argv.index("-filter_complex") + 1] in step
        assert step.count("-y") == 1 and step.count("-hide_banner") == 1
        # -loglevel error would hide the stream dump the library reads: run at info
        assert step[step.index("-loglevel") + 1] == "info"
        assert "-loglevel error is run as -loglevel info" in plan.notes
        task = await tm.run(argv=argv, input_files=inputs, output_filename="out.mp4")
        assert task.status is TaskStatus.COMPLETED, (task.error, task.diagnostics)
        assert task.progress == 100.0
        meta = task.metadata["out.mp4"]  # from the stream dump: ffprobe=False
        assert meta["duration"] and [s["type"] for s in meta["streams"]] == ["video", "audio"]
        again = Task.from_dict(json.loads(json.dumps(task.to_dict(include_diagnostics=True))))
        assert again == task
        assert tokenize(again.commands[0]) == tuple(argv[1:])
    assert task.output is not None
    info = probe(ffprobe_bin, Path(task.output.uri.removeprefix("file://")))
    video = next(s for s in info["streams"] if s["codec_type"] == "video")  # type: ignore[attr-defined]
    assert (video["width"], video["height"]) == (160, 120)
    assert info["format"]["tags"]["title"] == "hello world"  # type: ignore[index]


async def test_an_argv_task_runs_from_another_manager_on_a_shared_store(
    tmp_path: Path, media_server: MediaServer, ffprobe_bin: str | None
) -> None:
    """What a worker elsewhere reads back from the store is an ordinary command string."""
    db = tmp_path / "tasks.db"
    inputs = {"in.mp4": media_server.media_url("clip.mp4")}
    argv = ["ffmpeg", "-i", "in.mp4", "-metadata", "comment=it's \"quoted\"", "-c", "copy",
            "out.mp4"]  # fmt: skip
    async with make_manager(tmp_path, store=SQLiteTaskStore(db)) as api:
        task = await api.register(argv=argv, input_files=inputs, output_filename="out.mp4")
    async with make_manager(tmp_path, store=SQLiteTaskStore(db)) as worker:
        done = await worker.execute(task.id)
    assert done.status is TaskStatus.COMPLETED, (done.error, done.diagnostics)
    assert done.commands == task.commands
    assert tokenize(done.commands[0]) == tuple(argv[1:])
    assert ffprobe_bin and done.output is not None
    info = probe(ffprobe_bin, Path(done.output.uri.removeprefix("file://")))
    assert info["format"]["tags"]["comment"] == 'it\'s "quoted"'  # type: ignore[index]


@pytest.mark.parametrize(
    ("given", "run"),
    [("error", "info"), ("quiet", "info"), ("24", "info"), ("repeat+level+warning", "info"),
     ("level+info", "info"), ("verbose", "verbose"), ("debug", "debug"), ("info", "info")],
)  # fmt: skip
def test_a_log_level_below_info_is_raised_to_info(given: str, run: str) -> None:
    args = ["-v", given, "-i", "in.mp4", "out.mp4"]
    plan = CommandPolicy().plan(args, inputs=["in.mp4"], outputs=["out.mp4"])
    assert plan.args[plan.args.index("-v") + 1] == run
    assert (f"-v {given} is run as -v {run}" in plan.notes) is (given != run)
    unhardened = CommandPolicy.trusted(harden=False).plan(
        args, inputs=["in.mp4"], outputs=["out.mp4"]
    )
    assert unhardened.args[unhardened.args.index("-v") + 1] == given
