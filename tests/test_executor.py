"""LocalExecutor against the real ffmpeg, the progress parser, and FakeExecutor."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffmpeg_tasks.errors import (
    ConfigurationError,
    ExecutionStalledError,
    ExecutionTimeoutError,
    FFmpegNotFoundError,
)
from ffmpeg_tasks.executor import ExecResult, FakeExecutor, LocalExecutor
from ffmpeg_tasks.executor._pipes import OutputPipes
from ffmpeg_tasks.executor.output import LineSplitter, ProgressParser, StderrTail
from ffmpeg_tasks.ffmpeg import spawn

SMALL = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25"]
FOREVER = ["-nostats", "-re", *SMALL, "-f", "null", "-"]  # real time, no -t: never ends


# -- helpers -------------------------------------------------------------------


def ffmpeg_pids(ffmpeg_bin: str, cwd: Path | None = None) -> list[int]:
    """Live (non-zombie) processes running ``ffmpeg_bin``, optionally only those in ``cwd``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/exe") != ffmpeg_bin:
                continue
            if cwd is not None and os.readlink(f"/proc/{entry}/cwd") != str(cwd.resolve()):
                continue
        except OSError:
            continue
        found.append(int(entry))
    return found


async def wait_for_ffmpeg(ffmpeg_bin: str, cwd: Path) -> int:
    for _ in range(400):
        pids = ffmpeg_pids(ffmpeg_bin, cwd)
        if pids:
            return pids[0]
        await asyncio.sleep(0.025)
    raise AssertionError(f"no ffmpeg process appeared in {cwd}")


async def registered(ex: LocalExecutor) -> frozenset[int]:
    """The executor's process-group leaders, once it has registered its process."""
    for _ in range(400):
        if ex.pids:
            return ex.pids
        await asyncio.sleep(0.025)
    raise AssertionError("the executor never registered a process")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def executor() -> LocalExecutor:
    async with LocalExecutor(grace_period=2.0) as ex:
        yield ex  # type: ignore[misc]


# -- LocalExecutor: plain runs ------------------------------------------------------


async def test_success_writes_output(executor: LocalExecutor, work: Path) -> None:
    result = await executor.run([*SMALL, "-t", "1", "-c:v", "mpeg4", "out.mp4"], work)
    assert result.returncode == 0
    assert (work / "out.mp4").stat().st_size > 1000
    assert result.duration > 0
    assert executor.running == 0


async def test_unknown_encoder_is_returned_not_raised(executor: LocalExecutor, work: Path) -> None:
    result = await executor.run([*SMALL, "-t", "1", "-c:v", "no_such_codec", "out.mp4"], work)
    assert result.returncode != 0
    assert "Unknown encoder" in result.stderr_tail
    assert not (work / "out.mp4").exists()


async def test_stderr_tail_is_bounded_but_callback_sees_every_line(work: Path) -> None:
    lines: list[str] = []
    async with LocalExecutor(stderr_tail_bytes=2048, sandbox="off") as ex:
        result = await ex.run(
            ["-loglevel", "debug", "-debug_ts", *SMALL, "-t", "1", "-f", "null", "-"],
            work,
            on_stderr=lines.append,
        )
    assert result.returncode == 0
    assert sum(len(line) + 1 for line in lines) > 10 * 2048  # debug output is large
    assert 0 < len(result.stderr_tail.encode()) <= 2048
    # the tail is the *end* of stderr, as lines
    assert lines[-1] in result.stderr_tail
    assert "\r" not in result.stderr_tail


async def test_on_stderr_reports_input_duration(
    executor: LocalExecutor, work: Path, media_dir: Path
) -> None:
    shutil.copy(media_dir / "clip.mp4", work / "in.mp4")
    lines: list[str] = []
    result = await executor.run(["-i", "in.mp4", "-f", "null", "-"], work, on_stderr=lines.append)
    assert result.returncode == 0
    assert any("Duration: 00:00:02.00" in line for line in lines)
    assert all("\n" not in line and "\r" not in line for line in lines)


async def test_progress_blocks_end_with_progress_end(executor: LocalExecutor, work: Path) -> None:
    blocks: list[Mapping[str, str]] = []
    result = await executor.run(
        ["-progress", "pipe:1", "-nostats", *SMALL, "-t", "2", "-c:v", "mpeg4", "out.mp4"],
        work,
        progress=blocks.append,
    )
    assert result.returncode == 0
    assert blocks
    assert blocks[-1]["progress"] == "end"
    assert all(b["progress"] in ("continue", "end") for b in blocks)
    assert blocks[-1]["frame"] == "50"
    assert int(blocks[-1]["out_time_us"]) > 1_500_000
    # progress lines go to the callback, not into the stderr tail
    assert "out_time_us" not in result.stderr_tail


async def test_args_must_be_a_sequence(executor: LocalExecutor, work: Path) -> None:
    with pytest.raises(TypeError):
        await executor.run("-i in.mp4 out.mp4", work)


async def test_missing_work_dir_is_named(executor: LocalExecutor, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="nowhere"):
        await executor.run(["-version"], tmp_path / "nowhere")


# -- construction and describe() ------------------------------------------------------


def test_missing_binary_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FFmpegNotFoundError, match="no-ffmpeg"):
        LocalExecutor(tmp_path / "no-ffmpeg")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"sandbox": "maybe"}, "maybe"),
        ({"timeout": 0}, "timeout"),
        ({"grace_period": -1}, "grace_period"),
        ({"env": {"A=B": "x"}}, "A=B"),
        ({"nice": 20}, "nice"),
        ({"nice": -1}, "nice"),
        ({"nice": True}, "nice"),
    ],
)
def test_bad_configuration_is_named(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        LocalExecutor(**kwargs)  # type: ignore[arg-type]


async def test_describe_reports_binary_version_and_limits(ffmpeg_bin: str) -> None:
    async with LocalExecutor(max_concurrency=3) as ex:
        info = await ex.describe()
    assert info["ffmpeg_path"] == ffmpeg_bin
    assert info["ffmpeg_version"].startswith("ffmpeg version")
    assert info["sandbox"] in ("bwrap", "none")
    assert info["rlimits"]["open_files"] == 256
    assert info["max_concurrency"] == 3
    assert info["running"] == 0
    assert "error" not in info


async def test_describe_never_raises_for_a_broken_binary(tmp_path: Path) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'segmentation fault'\nexit 139\n")
    fake.chmod(0o755)
    async with LocalExecutor(fake, sandbox="off") as ex:
        info = await ex.describe()
    assert info["ffmpeg_path"] == str(fake)
    assert "segmentation fault" in info["error"]
    assert info["ffmpeg_version"] is None


# -- concurrency ------------------------------------------------------------------------


async def test_never_more_than_max_concurrency_processes(ffmpeg_bin: str, tmp_path: Path) -> None:
    dirs = [tmp_path / f"w{i}" for i in range(6)]
    for d in dirs:
        d.mkdir()
    seen_running: list[int] = []
    seen_procs: list[int] = []
    done = asyncio.Event()

    async def sample(ex: LocalExecutor) -> None:
        while not done.is_set():
            seen_running.append(ex.running)
            seen_procs.append(sum(len(ffmpeg_pids(ffmpeg_bin, d)) for d in dirs))
            await asyncio.sleep(0.02)

    async with LocalExecutor(max_concurrency=2) as ex:
        sampler = asyncio.create_task(sample(ex))
        job = ["-nostats", "-re", *SMALL, "-t", "0.8", "-f", "null", "-"]
        results = await asyncio.gather(*(ex.run(job, d) for d in dirs))
        done.set()
        await sampler
    assert [r.returncode for r in results] == [0] * 6
    assert max(seen_running) <= 2
    assert max(seen_procs) <= 2
    assert max(seen_procs) >= 1  # the sampler did see processes


# -- stopping: timeout, cancel, stall, aclose ---------------------------------------------


async def test_timeout_stops_the_process_group(
    executor: LocalExecutor, work: Path, ffmpeg_bin: str
) -> None:
    run = asyncio.create_task(executor.run(FOREVER, work, timeout=1.5))
    pid = await wait_for_ffmpeg(ffmpeg_bin, work)
    leaders = await registered(executor)
    with pytest.raises(ExecutionTimeoutError, match=r"timeout of 1\.5s") as info:
        await run
    assert info.value.code == "timeout"
    assert info.value.returncode == -9  # no result, no graceful stop: killed at once
    assert "testsrc2" not in str(info.value)
    assert not os.path.exists(f"/proc/{pid}")
    assert ffmpeg_pids(ffmpeg_bin, work) == []
    assert leaders
    assert not any(group_alive(p) for p in leaders)
    assert executor.running == 0


async def test_default_timeout_from_constructor(work: Path, ffmpeg_bin: str) -> None:
    async with LocalExecutor(timeout=1.0, grace_period=2.0) as ex:
        with pytest.raises(ExecutionTimeoutError, match="1s"):
            await ex.run(FOREVER, work)
    assert ffmpeg_pids(ffmpeg_bin, work) == []


async def test_cancel_stops_the_process_and_propagates(
    executor: LocalExecutor, work: Path, ffmpeg_bin: str
) -> None:
    run = asyncio.create_task(executor.run(FOREVER, work))
    pid = await wait_for_ffmpeg(ffmpeg_bin, work)
    leaders = await registered(executor)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not os.path.exists(f"/proc/{pid}")
    assert not any(group_alive(p) for p in leaders)
    assert executor.running == 0


def autogroups_enabled() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


@pytest.mark.parametrize("sandbox", ["off", "auto"])
@pytest.mark.parametrize("nice", [0, 7])
async def test_ffmpeg_runs_nice_steps_below_the_host(
    work: Path, ffmpeg_bin: str, sandbox: Literal["off", "auto"], nice: int
) -> None:
    async with LocalExecutor(sandbox=sandbox, nice=nice) as ex:
        run = asyncio.create_task(ex.run(FOREVER, work))
        pid = await wait_for_ffmpeg(ffmpeg_bin, work)
        try:
            ours = os.getpriority(os.PRIO_PROCESS, 0)
            assert os.getpriority(os.PRIO_PROCESS, pid) == min(ours + nice, 19)
            assert (await ex.describe())["nice"] == nice
            if autogroups_enabled():  # each run is a session: its share too
                for _ in range(100):
                    group = Path(f"/proc/{pid}/autogroup").read_text().split()
                    if group[-1] == str(nice):
                        break
                    await asyncio.sleep(0.02)
                assert group[-1] == str(nice)
                # Empty when we sit in the kernel's default group (no setsid since boot).
                mine = Path("/proc/self/autogroup").read_text().split()
                assert not mine or group[0] != mine[0]
        finally:
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run


@pytest.mark.parametrize("sandbox", ["off", "auto"])
async def test_sigkill_after_grace_period_when_sigterm_is_ignored(
    work: Path, ffmpeg_bin: str, sandbox: Literal["off", "auto"]
) -> None:
    """ffmpeg blocked opening a FIFO nobody writes does not die on aclose()'s SIGTERM."""
    os.mkfifo(work / "in.fifo")
    ex = LocalExecutor(grace_period=0.3, sandbox=sandbox)
    run = asyncio.create_task(ex.run(["-i", "in.fifo", "-f", "null", "-"], work))
    pid = await wait_for_ffmpeg(ffmpeg_bin, work)
    await registered(ex)
    await asyncio.sleep(1.0)  # ffmpeg has set its SIGTERM handler and blocks in open()
    await ex.aclose()
    result = await asyncio.wait_for(run, 30)
    assert result.returncode == -9
    assert not os.path.exists(f"/proc/{pid}")


async def test_aclose_lets_ffmpeg_finish_its_file(work: Path, ffmpeg_bin: str) -> None:
    """The one graceful stop: the run returns, and the output ffmpeg finalized is valid."""
    ex = LocalExecutor(grace_period=10.0)
    run = asyncio.create_task(ex.run(["-re", *SMALL, "-c:v", "mpeg4", "out.mkv"], work))
    await wait_for_ffmpeg(ffmpeg_bin, work)
    await registered(ex)
    await asyncio.sleep(1.0)
    await ex.aclose()
    result = await asyncio.wait_for(run, 30)
    assert result.returncode == 255  # ffmpeg's exit on SIGTERM, after writing the trailer
    check = await LocalExecutor(sandbox="off").run(["-i", "out.mkv", "-f", "null", "-"], work)
    assert check.returncode == 0, check.stderr_tail


async def test_stall_when_input_never_arrives(work: Path, ffmpeg_bin: str) -> None:
    os.mkfifo(work / "in.fifo")
    blocks: list[Mapping[str, str]] = []
    async with LocalExecutor(grace_period=0.3) as ex:
        with pytest.raises(ExecutionStalledError, match=r"no progress for 1s"):
            await ex.run(
                ["-progress", "pipe:1", "-i", "in.fifo", "-f", "null", "-"],
                work,
                stall_timeout=1,
                progress=blocks.append,
            )
    assert blocks == []
    assert ffmpeg_pids(ffmpeg_bin, work) == []


async def test_stall_when_progress_stops_advancing(work: Path, ffmpeg_bin: str) -> None:
    """Feed 2 s of raw video through a FIFO in real time, then keep it open and silent."""
    fifo = work / "in.fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer that never closes
    try:
        os.write(writer, bytes(16 * 16) * 50)
        blocks: list[Mapping[str, str]] = []
        args = ["-progress", "pipe:1", "-nostats", "-re", "-f", "rawvideo", "-pix_fmt", "gray"]
        args += ["-s", "16x16", "-r", "25", "-i", "in.fifo", "-f", "null", "-"]
        async with LocalExecutor(grace_period=0.3) as ex:
            with pytest.raises(ExecutionStalledError) as info:
                await ex.run(args, work, stall_timeout=1.5, timeout=30, progress=blocks.append)
    finally:
        os.close(writer)
    assert info.value.code == "stalled"
    assert blocks  # progress advanced first …
    assert all(b["progress"] == "continue" for b in blocks)  # … and never finished
    assert ffmpeg_pids(ffmpeg_bin, work) == []


async def test_stall_without_progress_watches_stderr(work: Path) -> None:
    async with LocalExecutor(grace_period=2.0) as ex:
        with pytest.raises(ExecutionStalledError, match="output on stderr"):
            await ex.run(FOREVER, work, stall_timeout=1)


async def test_slow_but_advancing_run_is_not_stalled(executor: LocalExecutor, work: Path) -> None:
    blocks: list[Mapping[str, str]] = []
    args = ["-progress", "pipe:1", "-nostats", "-re", *SMALL, "-t", "2", "-f", "null", "-"]
    result = await executor.run(args, work, stall_timeout=1.5, progress=blocks.append)
    assert result.returncode == 0
    assert blocks[-1]["progress"] == "end"


async def test_aclose_stops_running_processes(work: Path, ffmpeg_bin: str) -> None:
    ex = LocalExecutor(grace_period=2.0)
    run = asyncio.create_task(ex.run(FOREVER, work))
    pid = await wait_for_ffmpeg(ffmpeg_bin, work)  # the process may not be registered yet
    await ex.aclose()
    result = await asyncio.wait_for(run, 30)
    assert result.returncode != 0
    assert not os.path.exists(f"/proc/{pid}")
    with pytest.raises(ConfigurationError, match="closed"):
        await ex.run(FOREVER, work)


async def test_failing_progress_callback_does_not_break_the_run(
    executor: LocalExecutor, work: Path
) -> None:
    def boom(block: Mapping[str, str]) -> None:
        raise RuntimeError("callback bug")

    args = ["-progress", "pipe:1", "-nostats", *SMALL, "-t", "1", "-f", "null", "-"]
    result = await executor.run(args, work, progress=boom)
    assert result.returncode == 0


# -- _pipes.py: ffmpeg's output with few event-loop wakeups ------------------------------


def _writer(script: str) -> list[str]:
    """A Python child whose output does not depend on our environment.

    ``-I`` ignores ``PYTHON*`` variables: with ``PYTHONUNBUFFERED=1`` (common in container
    images) a ``print`` would arrive as two writes.
    """
    return [sys.executable, "-I", "-c", script]


async def _run_with_pipes(
    argv: list[str], handlers: dict[int, Callable[[bytes], None]], coalesce: float
) -> int:
    pipes = OutputPipes(handlers, coalesce=coalesce)
    proc = await spawn(
        *argv,
        protocol=pipes,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code = await asyncio.wait_for(proc.wait(), 10)
    await asyncio.wait_for(pipes.closed, 10)
    return code


async def test_output_pipes_gather_small_writes_into_few_reads() -> None:
    reads: list[bytes] = []
    script = (
        "import sys, time\n"
        "for i in range(100):\n"
        "    sys.stderr.write(f'line {i}\\n'); sys.stderr.flush(); time.sleep(0.002)\n"
    )
    assert await _run_with_pipes(_writer(script), {2: reads.append}, coalesce=0.05) == 0
    assert reads[-1] == b""  # EOF is delivered once, last
    text = b"".join(reads).decode()
    assert text.splitlines() == [f"line {i}" for i in range(100)]
    assert len(reads) < 30  # 100 writes spread over >= 0.2 s


async def test_output_pipes_resume_at_exit_instead_of_waiting_for_the_timer() -> None:
    reads: list[bytes] = []
    script = "import sys, time; print('a', flush=True); time.sleep(0.2); print('b', flush=True)"
    # the pipe is paused for 60 s after 'a'; the exit must resume it at once
    assert await _run_with_pipes(_writer(script), {1: reads.append}, coalesce=60) == 0
    assert b"".join(reads) == b"a\nb\n"


async def test_output_pipes_drop_a_failing_handler_and_read_to_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    out: list[bytes] = []

    def boom(data: bytes) -> None:
        raise RuntimeError("handler bug")

    script = "import sys; sys.stderr.write('x' * 200000); print('done')"
    assert await _run_with_pipes(_writer(script), {1: out.append, 2: boom}, coalesce=0.02) == 0
    assert b"".join(out) == b"done\n"
    assert "reading ffmpeg's output (fd 2) failed" in caplog.text


async def test_output_pipes_close_stops_the_callbacks_and_the_pipes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")  # the caller's environment must not matter
    reads: list[bytes] = []
    got_first = asyncio.Event()

    def handler(data: bytes) -> None:
        reads.append(data)
        got_first.set()

    pipes = OutputPipes({1: handler}, coalesce=0)
    # One write per line even with PYTHONUNBUFFERED (print() writes 'a' and '\n' apart).
    script = (
        "import sys, time; sys.stdout.write('a\\n'); sys.stdout.flush(); time.sleep(0.5); "
        "sys.stdout.write('b\\n'); sys.stdout.flush()"
    )
    proc = await spawn(
        *_writer(script), protocol=pipes, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.wait_for(got_first.wait(), 10)
    pipes.close()
    await asyncio.wait_for(pipes.closed, 10)
    assert await asyncio.wait_for(proc.wait(), 10) != 0  # 'b' hit a closed pipe
    assert reads == [b"a\n"]


# -- progress.py -------------------------------------------------------------------------

PROGRESS = (
    b"frame=10\nfps=0.0\nout_time_us=400000\ntotal_size=48\nprogress=continue\n"
    b"frame=25\r\nfps=24.5\r\nout_time_us=1000000\r\ntotal_size=1024\r\nprogress=end\r\n"
)


def test_progress_parser_blocks() -> None:
    blocks = ProgressParser().feed(PROGRESS)
    assert blocks == [
        {"frame": "10", "fps": "0.0", "out_time_us": "400000", "total_size": "48",
         "progress": "continue"},
        {"frame": "25", "fps": "24.5", "out_time_us": "1000000", "total_size": "1024",
         "progress": "end"},
    ]  # fmt: skip


@given(st.lists(st.integers(min_value=0, max_value=len(PROGRESS)), max_size=12))
def test_progress_parser_is_independent_of_chunking(cuts: list[int]) -> None:
    parser = ProgressParser()
    blocks: list[dict[str, str]] = []
    bounds = [0, *sorted(cuts), len(PROGRESS)]
    for start, end in itertools.pairwise(bounds):
        blocks += parser.feed(PROGRESS[start:end])
    blocks += parser.flush()
    assert blocks == ProgressParser().feed(PROGRESS)


def test_progress_parser_bounds_lines_and_keys() -> None:
    parser = ProgressParser(max_line=64, max_keys=4)
    assert parser.feed(b"x" * 100_000) == []  # no newline: nothing held beyond max_line
    assert len(parser._lines._buf) <= 65
    many_keys = b"".join(b"k%d=1\n" % i for i in range(50))
    blocks = parser.feed(b"\nk=" + b"v" * 1000 + b"\n" + many_keys)
    blocks += parser.feed(b"progress=end\n")
    assert len(blocks) == 1
    assert len(blocks[0]) <= 5
    assert blocks[0]["progress"] == "end"
    assert all(len(v) <= 64 for v in blocks[0].values())


def test_line_splitter_cr_lf_across_chunks() -> None:
    s = LineSplitter()
    assert s.feed(b"a\r") == []  # could be the first half of \r\n
    assert s.feed(b"\nb\rc\n") == [(b"a", False), (b"b", True), (b"c", False)]
    assert s.feed(b"tail") == []
    assert s.flush() == [(b"tail", False)]


def test_line_splitter_cuts_long_lines() -> None:
    s = LineSplitter(max_line=8)
    out = s.feed(b"0123456789abcdef")
    out += s.feed(b"ghij\nok\n")
    assert out == [(b"01234567", False), (b"ok", False)]


def test_stderr_tail_overwrites_stats_lines_and_keeps_the_end() -> None:
    tail = StderrTail(limit=40)
    tail.add("Input #0, lavfi")
    tail.add("frame=1", overwritable=True)
    tail.add("frame=2", overwritable=True)
    tail.add("frame=3 final")
    assert tail.text() == "Input #0, lavfi\nframe=3 final"
    for i in range(100):
        tail.add(f"line {i}")
    text = tail.text()
    assert len(text.encode()) <= 40
    assert text.endswith("line 99")
    assert "line 0\n" not in text


def test_stderr_tail_cuts_a_single_huge_line() -> None:
    tail = StderrTail(limit=10)
    tail.add("é" * 100)
    assert len(tail.text().encode()) <= 10


# -- FakeExecutor ------------------------------------------------------------------------


async def test_fake_executor_writes_outputs_and_records_calls(work: Path) -> None:
    blocks: list[Mapping[str, str]] = []
    lines: list[str] = []
    fake = FakeExecutor(
        outputs={"out.mp4": b"video", "hls/seg0.ts": b"ts"},
        stderr="Duration: 00:00:02.00\nok",
        progress=[{"out_time_us": "1", "progress": "end"}],
    )
    result = await fake.run(["-i", "in.mp4", "out.mp4"], work, timeout=5,
                            progress=blocks.append, on_stderr=lines.append)  # fmt: skip
    assert result.returncode == 0
    assert (work / "out.mp4").read_bytes() == b"video"
    assert (work / "hls" / "seg0.ts").read_bytes() == b"ts"
    assert fake.calls[0].args == ("-i", "in.mp4", "out.mp4")
    assert fake.calls[0].timeout == 5
    assert blocks == [{"out_time_us": "1", "progress": "end"}]
    assert lines == ["Duration: 00:00:02.00", "ok"]
    assert (await fake.describe())["ffmpeg_path"] == "fake"


async def test_fake_executor_script_sync_and_async(work: Path) -> None:
    def sync(args: tuple[str, ...], cwd: Path) -> ExecResult:
        return ExecResult(1, f"failed {args[-1]}", 0.0)

    async def async_(args: tuple[str, ...], cwd: Path) -> ExecResult:
        (cwd / args[-1]).write_bytes(b"x")
        return ExecResult(0, "", 0.0)

    assert (await FakeExecutor(sync).run(["a.mp4"], work)).stderr_tail == "failed a.mp4"
    assert (await FakeExecutor(async_).run(["b.mp4"], work)).returncode == 0
    assert (work / "b.mp4").exists()


async def test_fake_executor_timeout_concurrency_and_cancel(work: Path) -> None:
    fake = FakeExecutor(delay=0.2, max_concurrency=2)
    with pytest.raises(ExecutionTimeoutError):
        await fake.run(["x"], work, timeout=0.05)
    await asyncio.gather(*(fake.run(["x"], work) for _ in range(5)))
    assert fake.max_running == 2
    slow = asyncio.create_task(FakeExecutor(delay=30).run(["x"], work))
    await asyncio.sleep(0.01)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow


def test_fake_executor_rejects_escaping_outputs() -> None:
    with pytest.raises(ValueError, match=r"\.\./x"):
        FakeExecutor(outputs={"../x": b""})
